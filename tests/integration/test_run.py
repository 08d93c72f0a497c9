"""`persona-stream run --demo` from scratch: its own Kafka, data on the dashboard and no warnings on
the way, Ctrl-C cleans up."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from persona_stream.localkafka import LocalKafka
from tests.conftest import DEFAULTS
from tests.fixtures.persona_api import stand_in_thread
from tests.nodejs import run_node
from tests.processes import free_ports

pytestmark = pytest.mark.integration

NOISE = re.compile(r"WARNING|ERROR|CRITICAL|Error|Traceback")


API_KEY = "persona_sandbox_run-" + os.urandom(8).hex()


def test_run_demo_shows_data_on_the_dashboard_and_ctrl_c_leaves_nothing_behind(tmp_path: Path) -> None:
    with stand_in_thread() as api:
        run_demo(tmp_path, api.url)


def run_demo(tmp_path: Path, api_url: str) -> None:
    jars = LocalKafka.in_cache(DEFAULTS.cache_dir, 0, 0).jars
    (tmp_path / "jars").mkdir()
    (tmp_path / "jars" / jars.name).symlink_to(jars)
    env = {name: value for name, value in os.environ.items() if not name.startswith("PERSONA_STREAM_")}
    # `run` prints the URLs of the ports it was given, so not port 0: five free ones
    kafka_port, controller_port, ws_port, http_port, worker_port = free_ports(5)
    env.update(
        {
            "PERSONA_STREAM_CACHE_DIR": str(tmp_path),
            "PERSONA_STREAM_LOCAL_KAFKA_PORT": str(kafka_port),
            "PERSONA_STREAM_LOCAL_KAFKA_CONTROLLER_PORT": str(controller_port),
            "PERSONA_STREAM_WS_PORT": str(ws_port),
            "PERSONA_STREAM_HTTP_PORT": str(http_port),
            "PERSONA_STREAM_WORKER_PORT": str(worker_port),
            "PERSONA_STREAM_WORKER_URL": f"http://127.0.0.1:{worker_port}",
            "PERSONA_STREAM_PARTITIONS": "3",
            # an API key configured: `run` starts a reconciler too (pointed at the stand-in)
            "PERSONA_STREAM_PERSONA_API_KEY": API_KEY,
            "PERSONA_STREAM_PERSONA_API_URL": api_url,
        }
    )
    log = (tmp_path / "run.log").open("w")
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "persona_stream.cli", "run", "--demo"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    family: set[int] = set()
    try:
        dashboard = None
        while dashboard is None and time.monotonic() - started < 120:
            assert process.poll() is None, (tmp_path / "run.log").read_text()
            match = re.search(r"dashboard\s+(\S+#token=\S+)", (tmp_path / "run.log").read_text())
            dashboard = match.group(1) if match else None
            time.sleep(0.3)
        assert dashboard, (tmp_path / "run.log").read_text()
        children = psutil.Process(process.pid).children(recursive=True)
        family = {child.pid for child in children}
        assert any("reconciler" in child.cmdline() for child in children), (tmp_path / "run.log").read_text()
        state = json.loads((tmp_path / "broker" / "state.json").read_text())
        family.add(state["pid"])  # the Kafka that `run` started

        code, output = run_node(
            "dashboard.mjs", "--url", dashboard, "--expect", '{"funnel.loaded": 1}',
            "--screenshot", str(tmp_path / "demo.png"), "--timeout", "60",
        )  # fmt: skip
        assert code == 0, output
        assert time.monotonic() - started < 120
        # a newcomer's first screen, on a fresh broker: only what matters, no warnings or errors
        noise = [line for line in (tmp_path / "run.log").read_text().splitlines() if NOISE.search(line)]
        assert noise == []
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            code = process.wait(timeout=90)
        finally:
            if process.poll() is None:
                process.kill()
            log.close()
    assert code == 0, (tmp_path / "run.log").read_text()
    leftovers = [
        pid for pid in family if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]
    assert leftovers == [], (tmp_path / "run.log").read_text()
    assert API_KEY not in (tmp_path / "run.log").read_text()
