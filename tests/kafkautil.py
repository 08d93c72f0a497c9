"""Small helpers for tests that read and write the real broker.

What :func:`consume` reads from a persona-stream topic is checked against the topic's published
JSON Schema (tests/contract.py); a test that reads records it wrote malformed on purpose passes
``checked=False``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.contract import check_record


async def produce(bootstrap: str, topic: str, records: Sequence[tuple[bytes | None, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for key, value in records:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def consume(
    bootstrap: str,
    topic: str,
    *,
    count: int | None = None,
    timeout: float = 15.0,
    quiet: float = 1.5,
    isolation_level: str = "read_committed",
    checked: bool = True,
) -> list[Any]:
    """Every record of ``topic`` from the beginning, each checked against its topic's schema.

    Stops once ``count`` records arrived (if given), or after ``quiet`` seconds without a new
    record, or at ``timeout``.
    """
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level=isolation_level,
    )
    await consumer.start()
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    last_new = time.monotonic()
    try:
        while time.monotonic() < deadline:
            if count is not None and len(records) >= count:
                break
            if count is None and time.monotonic() - last_new > quiet:
                break
            batch = await consumer.getmany(timeout_ms=200)
            for messages in batch.values():
                records.extend(messages)
                last_new = time.monotonic()
    finally:
        await consumer.stop()
    records.sort(key=lambda r: (r.partition, r.offset))
    if checked:
        for record in records:
            check_record(topic, record.value)
    return records


async def wait_for(predicate: Any, timeout: float = 20.0, interval: float = 0.1) -> None:
    """Poll an async or sync predicate until it is true."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)
