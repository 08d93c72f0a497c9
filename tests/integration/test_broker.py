"""The embedded broker is a real Kafka: idempotent produce, consume, and transactions."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer

from core.topics import ensure_topic
from tests.kafkautil import consume, produce

pytestmark = pytest.mark.integration


async def test_produce_and_consume_round_trip(kafka_bootstrap: str, unique: str) -> None:
    topic = f"{unique}.round-trip"
    await ensure_topic(kafka_bootstrap, topic, partitions=3, replication_factor=1)
    sent = [(f"inq_{i}".encode(), f"value-{i}".encode()) for i in range(30)]
    await produce(kafka_bootstrap, topic, sent)
    received = await consume(kafka_bootstrap, topic, count=30)
    assert sorted((r.key, r.value) for r in received) == sorted(sent)


async def test_a_transactional_produce_commits_and_an_aborted_one_stays_invisible(
    kafka_bootstrap: str, unique: str
) -> None:
    topic = f"{unique}.transactions"
    await ensure_topic(kafka_bootstrap, topic, partitions=1, replication_factor=1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"{unique}-tx")
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(topic, b"committed-1")
            await producer.send_and_wait(topic, b"committed-2")
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"aborted")
        await producer.abort_transaction()
    finally:
        await producer.stop()

    committed = await consume(kafka_bootstrap, topic)
    assert [r.value for r in committed] == [b"committed-1", b"committed-2"]
    everything = await consume(kafka_bootstrap, topic, isolation_level="read_uncommitted")
    assert b"aborted" in [r.value for r in everything]
