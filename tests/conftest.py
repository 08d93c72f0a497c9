"""Fixtures shared by every test.

The real broker: :func:`session_broker` starts the embedded Apache Kafka once per session, on free
ports and in a throwaway data directory, and at the end stops it and deletes that directory: the
topics a session creates die with it, so no run is slowed down by the runs before it. Only the
jars are shared (cached once under ``~/.cache/persona-stream``). Tests never skip for want of a
broker: if it cannot start, the session fails.

Hypothesis: the profile named by ``HYPOTHESIS_PROFILE`` -- ``ci`` (the default) derandomized and
without an example database, so that every run tries the same cases; ``dev`` random, remembering
failing examples in ``.hypothesis/``. A test's own settings (more examples, say) build on it.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from core.settings import Settings
from persona_stream.localkafka import LocalKafka
from tests.processes import kafka_on_free_ports

DEFAULTS = Settings.model_construct()

hypothesis_settings.register_profile("ci", deadline=None, derandomize=True, database=None, print_blob=True)
hypothesis_settings.register_profile("dev", deadline=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No PERSONA_STREAM_* variable of the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("PERSONA_STREAM_"):
            monkeypatch.delenv(name)


SESSION_BROKER_DIR = "session-kafka"


def stop_orphaned_brokers(runs: Path) -> None:
    """Stop the session brokers of earlier runs killed before their teardown -- only those whose
    pytest process is gone: other sessions running at the same time keep theirs."""
    for owner_file in runs.glob(f"*/{SESSION_BROKER_DIR}*/owner"):
        home = owner_file.parent / "broker"
        try:
            owner = int(owner_file.read_text())
            os.kill(owner, 0)
            continue  # its session is still running
        except ProcessLookupError:
            pass
        except (OSError, ValueError):
            continue
        try:
            pid = int(json.loads((home / "state.json").read_text())["pid"])
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError, KeyError, TypeError):
            command = b""
        if str(home).encode() in command:  # that JVM, not a process that reused its pid
            LocalKafka(Path(), home, 0, 0).stop()
        shutil.rmtree(owner_file.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def session_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """The real broker every integration test uses: this session's own (see the module docstring)."""
    stop_orphaned_brokers(tmp_path_factory.getbasetemp().parent)
    jars = LocalKafka.in_cache(DEFAULTS.cache_dir, 0, 0).jars
    directory = tmp_path_factory.mktemp(SESSION_BROKER_DIR)
    (directory / "owner").write_text(str(os.getpid()))

    def make(ports: list[int]) -> LocalKafka:
        shutil.rmtree(directory / "broker", ignore_errors=True)  # what a start on taken ports left
        return LocalKafka(jars, directory / "broker", ports[0], ports[1])

    kafka = kafka_on_free_ports(make, 2, timeout=120)
    yield kafka
    kafka.stop()
    shutil.rmtree(directory, ignore_errors=True)
    assert not directory.exists(), f"the session's broker left {directory}"


@pytest.fixture(scope="session")
def kafka_bootstrap(session_broker: LocalKafka) -> str:
    """The address of the session's broker."""
    return session_broker.address


@pytest.fixture
def unique() -> str:
    """A name no other test uses: a topic prefix, a group id."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings(kafka_bootstrap: str, unique: str) -> Settings:
    """Settings of one test: its own topics on the session broker."""
    return Settings(kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=unique, partitions=3)
