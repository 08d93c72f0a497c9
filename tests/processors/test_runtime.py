"""The workers' runtime classes, each correction with fakes in place of Kafka (no broker).

Each test drives the project's class and, where the defect is a behaviour of faust's own class,
shows that class doing the wrong thing with the same fakes -- so the test fails without the fix.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from faust.transport.drivers import aiokafka as faust_driver
from faust.types import TP

from core.settings import Settings
from processors import driver, versions
from processors.app import create_app
from processors.runtime import WorkerApp
from processors.tables import Table, keys_in, partition_of


@pytest.fixture
def app(tmp_path: Path) -> WorkerApp:
    settings = Settings(
        topic_prefix="unit", partitions=3, kafka_bootstrap_servers="127.0.0.1:1", store="memory", state_dir=tmp_path
    )
    made, _ = create_app(settings)
    made.in_worker = True  # as faust's Worker sets it, before the consumer is made: it runs transactions
    return made


class FakeAIOKafkaConsumer:
    """What the consumer thread asks of aiokafka's consumer for changelog ends."""

    def last_stable_offset(self, tp: Any) -> int | None:
        return None  # never fetched: aiokafka has not seen it

    async def end_offsets(self, partitions: list[Any]) -> dict[Any, int]:
        return dict.fromkeys(partitions, 42)  # ListOffsets, read-committed: the last stable offset


async def test_changelog_ends_come_from_the_broker_for_a_partition_never_fetched(app: WorkerApp) -> None:
    thread = app.consumer._thread
    assert isinstance(thread, driver.ConsumerThread)
    thread._consumer = FakeAIOKafkaConsumer()
    tp = TP("unit-inquiries-changelog", 1)
    assert app.consumer.in_transaction  # exactly-once: faust would take the last fetch's value
    assert await faust_driver.AIOKafkaConsumerThread._highwaters(thread, [tp]) == {tp: None}  # the defect
    assert await thread._highwaters([tp]) == {tp: 42}


@dataclass
class FakeTxnManager:
    in_transaction: bool
    partitions: set[Any] = field(default_factory=set)

    def is_in_transaction(self) -> bool:
        return self.in_transaction

    @property
    def _txn_partitions(self) -> set[Any]:
        return self.partitions

    @property
    def _pending_txn_partitions(self) -> set[Any]:
        return set()


class FakeTransactionalProducer:
    """One partition's transactional aiokafka producer; ``both_inside`` sees commits overlap."""

    def __init__(self, in_transaction: bool, both_inside: asyncio.Barrier, partitions: set[Any] | None = None) -> None:
        self._txn_manager = FakeTxnManager(in_transaction, partitions or set())
        self.both_inside = both_inside
        self.calls: list[str] = []

    async def begin_transaction(self) -> None:
        self.calls.append("begin")
        self._txn_manager.in_transaction = True

    async def send_offsets_to_transaction(self, offsets: Any, group_id: str) -> None:
        if not self._txn_manager.in_transaction:
            raise RuntimeError("IllegalOperation: not in a transaction")  # what aiokafka raises
        self.calls.append("offsets")

    async def commit_transaction(self) -> None:
        self.calls.append("commit")
        await self.both_inside.wait()  # returns only once every commit is under way
        self._txn_manager.in_transaction = False

    async def abort_transaction(self) -> None:
        self.calls.append("abort")
        self._txn_manager.in_transaction = False


def with_producers(app: WorkerApp, producers: dict[str, Any]) -> driver.Producer:
    producer = app.producer
    assert isinstance(producer, driver.Producer)
    # an instance's own: faust's defaults are dicts shared by the class
    producer._transaction_producers = producers
    producer._trn_locks = defaultdict(asyncio.Lock)
    return producer


async def test_transactions_commit_concurrently_and_a_producer_outside_one_commits_a_fresh_one(
    app: WorkerApp,
) -> None:
    barrier = asyncio.Barrier(2)
    idle, busy = FakeTransactionalProducer(False, barrier), FakeTransactionalProducer(True, barrier)
    producer = with_producers(app, {"w-0-0": idle, "w-0-1": busy})
    offsets = {"w-0-0": {TP("in", 0): 5}, "w-0-1": {TP("in", 1): 7}}
    await asyncio.wait_for(producer.commit_transactions(offsets, "w", start_new_transaction=False), 5)
    assert idle.calls == ["begin", "offsets", "commit"]
    assert busy.calls == ["offsets", "commit"]


async def test_faust_commits_transactions_one_after_the_other_and_fails_outside_one(app: WorkerApp) -> None:
    barrier = asyncio.Barrier(2)
    producer = with_producers(app, {"w-0-0": FakeTransactionalProducer(True, barrier)})
    producer._transaction_producers["w-0-1"] = FakeTransactionalProducer(True, barrier)
    base = faust_driver.Producer.commit_transactions(producer, {"w-0-0": {}, "w-0-1": {}}, "w", False)
    with pytest.raises(TimeoutError):  # the first commit waits for the second, which never starts
        await asyncio.wait_for(base, 0.5)
    outside = with_producers(app, {"w-0-0": FakeTransactionalProducer(False, asyncio.Barrier(1))})
    with pytest.raises(RuntimeError, match="IllegalOperation"):
        await faust_driver.Producer.commit_transactions(outside, {"w-0-0": {}}, "w", False)


async def test_a_transaction_left_open_by_the_last_generation_is_aborted_and_its_acks_forgotten(
    app: WorkerApp,
) -> None:
    tid = f"{app.conf.id}-0-2"
    left_open = FakeTransactionalProducer(True, asyncio.Barrier(1), partitions={TP("status", 0)})
    producer = with_producers(app, {tid: left_open})
    input_tp = TP("unit.webhooks", 2)
    app.assignor._topic_groups["unit.webhooks"] = 0  # as an assignment would have set it
    app.consumer._acked[input_tp].append(11)
    app.consumer._acked_index[input_tp].add(11)
    await producer.maybe_begin_transaction(tid)
    assert left_open.calls[:1] == ["abort"]
    assert input_tp not in app.consumer._acked
    assert app.aborted.of(app.consumer_generation_id) == {2}


async def test_a_clean_transaction_is_not_aborted_at_a_rebalance(app: WorkerApp) -> None:
    tid = f"{app.conf.id}-0-1"
    clean = FakeTransactionalProducer(True, asyncio.Barrier(1))
    producer = with_producers(app, {tid: clean})
    await producer.maybe_begin_transaction(tid)
    assert "abort" not in clean.calls
    assert app.aborted.of(app.consumer_generation_id) == set()


@dataclass
class FakeMessage:
    """The fields of a faust ConsumerMessage that ack reads."""

    topic: str
    partition: int
    offset: int
    tracked: bool
    generation_id: int | None
    use_tracking: bool = True
    acked: bool = False

    @property
    def tp(self) -> TP:
        return TP(self.topic, self.partition)

    def __hash__(self) -> int:
        return hash((self.topic, self.partition, self.offset))


@pytest.mark.parametrize(
    ("tracked", "generation"),
    [pytest.param(False, None, id="skipped by the stream"), pytest.param(True, -7, id="fetched a generation ago")],
)
def test_a_record_not_processed_is_not_acknowledged_as_processed(
    app: WorkerApp, tracked: bool, generation: int | None
) -> None:
    app.topics.add(app.topic("unit.client-events", acks=True))
    app.topics._acking_topics.add("unit.client-events")
    message = FakeMessage("unit.client-events", 0, 3, tracked=tracked, generation_id=generation)
    assert app.consumer.ack(message) is False
    assert message.acked
    assert 3 not in app.consumer._acked_index[message.tp]
    processed = FakeMessage("unit.client-events", 0, 4, tracked=True, generation_id=None)
    assert app.consumer.ack(processed) is True
    assert app.consumer._acked[processed.tp] == [4]
    skipped = FakeMessage("unit.client-events", 0, 5, tracked=tracked, generation_id=generation)
    assert faust_driver.Consumer.ack(app.consumer, skipped) is True  # faust counts it as processed


async def test_a_commit_waits_until_no_input_is_half_processed(app: WorkerApp) -> None:
    gate = app.commit_gate
    async with gate.input():
        await asyncio.wait_for(faust_driver.Consumer.commit(app.consumer), 5)  # faust's commits at any time
        commit = asyncio.ensure_future(app.consumer.commit())
        for _ in range(20):
            await asyncio.sleep(0)
        assert not commit.done()
        assert gate.committing
    await asyncio.wait_for(commit, 5)


def test_keys_of_lost_partitions_are_found_by_the_producers_partitioner() -> None:
    keys = [f"inq_{n:04d}".encode() for n in range(60)]
    lost = keys_in(keys, {1}, 3)
    assert lost
    assert all(partition_of(key, 3) == 1 for key in lost)
    assert set(keys) - set(lost) == {key for key in keys if partition_of(key, 3) != 1}


async def test_a_lost_partition_is_forgotten_so_that_it_returns_from_its_changelog_alone(app: WorkerApp) -> None:
    table = app.Table("probe", partitions=3, key_type=bytes, value_type=bytes)
    assert isinstance(table, Table)
    keys = [f"inq_{n:04d}".encode() for n in range(30)]
    for key in keys:
        table.data[key] = b"uncommitted?"
    changelog = table.changelog_topic.get_topic_name()
    kept = {TP(changelog, 0), TP(changelog, 2)}
    await table.on_rebalance(assigned=kept, revoked={TP(changelog, 1)}, newly_assigned=set())
    assert set(table.data) == {key for key in keys if partition_of(key, 3) != 1}


async def test_faust_keeps_a_lost_partitions_entries(app: WorkerApp) -> None:
    table = app.Table("probe", partitions=3, key_type=bytes, value_type=bytes)
    table.data[b"inq_0001"] = b"x"
    changelog = table.changelog_topic.get_topic_name()
    lost = TP(changelog, partition_of(b"inq_0001", 3))
    await super(Table, table).on_rebalance(set(), {lost}, set())
    assert b"inq_0001" in table.data  # the defect Table.on_rebalance corrects


def test_a_worker_refuses_a_faust_version_it_was_not_written_for() -> None:
    installed = {**versions.SUPPORTED, "faust-streaming": "0.16.0"}
    with pytest.raises(versions.UnsupportedVersionError) as caught:
        versions.check(installed.get)
    assert caught.value.code == "unsupported-version"
    assert "faust-streaming 0.15.3" in str(caught.value)
    assert "0.16.0 is installed" in str(caught.value)
    versions.check()  # this environment: the pinned versions
