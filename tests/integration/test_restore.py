"""Bulk restore from a real changelog: committed records only, straight into RocksDB, resumable."""

from __future__ import annotations

from pathlib import Path

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from core.settings import Settings
from processors.app import create_app
from processors.restore import restore
from processors.store import Store
from processors.tables import partition_of

PARTITIONS = 3


def store_for(kafka_bootstrap: str, unique: str, directory: Path) -> Store:
    settings = Settings(
        kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=unique, partitions=PARTITIONS, state_dir=directory
    )
    _, pipeline = create_app(settings)
    store = pipeline.tables.inquiries.data
    assert isinstance(store, Store)
    return store


async def write(kafka_bootstrap: str, topic: str, items: list[tuple[bytes, bytes]], *, abort: bool = False) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"{topic}-writer", acks="all")
    await producer.start()
    try:
        await producer.begin_transaction()
        for key, value in items:
            await producer.send(topic, value, key=key, partition=partition_of(key, PARTITIONS))
        if abort:
            await producer.abort_transaction()
        else:
            await producer.commit_transaction()
    finally:
        await producer.stop()


async def test_a_bulk_restore_reads_committed_records_only_and_resumes_from_its_offset(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    store = store_for(kafka_bootstrap, unique, tmp_path)
    topic = store.table.changelog_topic.get_topic_name()
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1, topic_configs={"cleanup.policy": "compact"})])
        keys = [f"inq_restore{n:017d}".encode() for n in range(300)]
        await write(kafka_bootstrap, topic, [(key, b"v1") for key in keys])
        await write(kafka_bootstrap, topic, [(key, b"aborted") for key in keys[:50]], abort=True)
        first = await restore(store, kafka_bootstrap, topic, range(PARTITIONS))
        assert first.records == 300
        assert all(store.database(partition_of(key, PARTITIONS)).get(key) == b"v1" for key in keys)
        offsets = [store.persisted_offset(TopicPartition(topic, p)) for p in range(PARTITIONS)]
        assert all(offset is not None for offset in offsets)

        await write(kafka_bootstrap, topic, [(keys[0], b"v2")])
        again = await restore(store, kafka_bootstrap, topic, range(PARTITIONS))
        assert again.records == 1  # only the tail
        assert store[keys[0]] == b"v2"
    finally:
        await admin.delete_topics([topic])
        await admin.close()
