"""`persona-stream kafka start | status | stop` on a broker of its own (not the session's)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from persona_stream.localkafka import KAFKA_VERSION, LocalKafka
from tests.conftest import DEFAULTS
from tests.processes import free_ports

pytestmark = pytest.mark.integration


def port_is_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment of a second broker: its own cache dir (sharing the fetched jars) and ports."""
    shared_jars = LocalKafka.in_cache(DEFAULTS.cache_dir, 0, 0).jars
    (tmp_path / "jars").mkdir()
    (tmp_path / "jars" / shared_jars.name).symlink_to(shared_jars)
    port, controller_port = free_ports(2)
    env = {
        **os.environ,
        "PERSONA_STREAM_CACHE_DIR": str(tmp_path),
        "PERSONA_STREAM_LOCAL_KAFKA_PORT": str(port),
        "PERSONA_STREAM_LOCAL_KAFKA_CONTROLLER_PORT": str(controller_port),
    }
    yield env
    subprocess.run([sys.executable, "-m", "persona_stream.cli", "kafka", "stop"], env=env, check=False)


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "persona_stream.cli", *args], env=env, capture_output=True, text=True, timeout=180
    )


def test_start_reuses_status_reports_and_stop_frees_the_ports(kafka_bootstrap: str, own_broker: dict[str, str]) -> None:
    port = int(own_broker["PERSONA_STREAM_LOCAL_KAFKA_PORT"])
    controller_port = int(own_broker["PERSONA_STREAM_LOCAL_KAFKA_CONTROLLER_PORT"])

    first = cli(own_broker, "kafka", "start")
    assert first.returncode == 0, first.stderr
    started = re.search(r"ready at 127\.0\.0\.1:(\d+) in ([\d.]+) s \(started pid (\d+)\)", first.stdout)
    assert started, first.stdout
    assert int(started.group(1)) == port

    second = cli(own_broker, "kafka", "start")
    assert second.returncode == 0, second.stderr
    assert "reused the running broker" in second.stdout

    status = cli(own_broker, "kafka", "status")
    assert status.returncode == 0
    assert f"Kafka {KAFKA_VERSION} at 127.0.0.1:{port}" in status.stdout
    assert f"pid {started.group(3)}" in status.stdout

    stop = cli(own_broker, "kafka", "stop")
    assert stop.returncode == 0, stop.stderr
    assert not port_is_open(port)
    assert not port_is_open(controller_port)
    assert cli(own_broker, "kafka", "status").returncode == 3


def test_missing_java_is_reported_clearly(own_broker: dict[str, str]) -> None:
    result = cli({**own_broker, "PATH": "/nonexistent"}, "kafka", "start")
    assert result.returncode == 1
    assert "[java-missing]" in result.stderr


@pytest.mark.cluster
def test_start_brokers_3_runs_a_replicated_cluster_that_status_and_stop_see(own_broker: dict[str, str]) -> None:
    port, controller_port = free_ports(6, consecutive=True)[:2]  # three nodes: port + 2n, controller_port + 2n
    env = {
        **own_broker,
        "PERSONA_STREAM_LOCAL_KAFKA_PORT": str(port),
        "PERSONA_STREAM_LOCAL_KAFKA_CONTROLLER_PORT": str(controller_port),
    }
    try:
        started = cli(env, "kafka", "start", "--brokers", "3")
        assert started.returncode == 0, started.stderr
        addresses = ",".join(f"127.0.0.1:{port + 2 * n}" for n in range(3))
        assert f"cluster of 3 brokers ready at {addresses}" in started.stdout
        assert "replication factor 3, min.insync.replicas 2" in started.stdout

        status = cli({**env, "PERSONA_STREAM_LOCAL_KAFKA_BROKERS": "3"}, "kafka", "status")
        assert status.returncode == 0, status.stdout
        assert status.stdout.count("running: Kafka") == 3
        assert cli(env, "kafka", "status").returncode == 3  # the single broker of this cache is not running

        stop = cli(env, "kafka", "stop", "--brokers", "3")
        assert stop.returncode == 0, stop.stderr
        assert stop.stdout.count("stopped Kafka") == 3
        assert not any(port_is_open(port + n) for n in range(6))
    finally:
        cli(env, "kafka", "stop", "--brokers", "3")
