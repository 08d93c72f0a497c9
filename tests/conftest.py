"""Fixtures shared by every test.

The real broker: :func:`kafka_bootstrap` starts the embedded Apache Kafka once per session (or
reuses one already running) and stops it at the end if this session started it. Tests never
skip for want of a broker: if it cannot start, the session fails.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import pytest

from persona_stream.localkafka import LocalKafka
from persona_stream.settings import Settings

DEFAULTS = Settings.model_construct()


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No PERSONA_STREAM_* variable of the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("PERSONA_STREAM_"):
            monkeypatch.delenv(name)


def session_kafka() -> LocalKafka:
    return LocalKafka.in_cache(DEFAULTS.cache_dir, DEFAULTS.local_kafka_port, DEFAULTS.local_kafka_controller_port)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """The address of the real broker every integration test uses."""
    kafka = session_kafka()
    result = asyncio.run(kafka.start(timeout=120))
    yield result.state.address
    if not result.reused:
        kafka.stop()


@pytest.fixture
def unique() -> str:
    """A name no other test uses: a topic prefix, a group id."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings(kafka_bootstrap: str, unique: str) -> Settings:
    """Settings of one test: its own topics on the session broker."""
    return Settings(kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=unique, partitions=3)
