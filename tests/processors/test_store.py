"""The local store holds committed state only, at its changelog offset (a real RocksDB in a
temporary directory; no broker)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faust.types import TP

from core.settings import Settings
from processors.app import create_app
from processors.store import CommittedWrites, Store
from processors.tables import partition_of

KEY = b"inq_0000000000000000000000001"
PARTITION = partition_of(KEY, 3)


def store_in(directory: Path) -> Store:
    settings = Settings(topic_prefix="unit", partitions=3, kafka_bootstrap_servers="127.0.0.1:1", state_dir=directory)
    _, pipeline = create_app(settings)
    store = pipeline.tables.inquiries.data
    assert isinstance(store, Store)
    return store


def changelog(store: Store) -> str:
    name: str = store.table.changelog_topic.get_topic_name()
    return name


def test_a_write_is_seen_at_once_but_reaches_rocksdb_only_when_its_transaction_commits(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    store.put(PARTITION, KEY, b"v1")
    assert store[KEY] == b"v1"  # the worker's own reads see it
    assert store.database(PARTITION).get(KEY) is None  # not committed: not on disk
    store.commit(PARTITION, 41)
    assert store.database(PARTITION).get(KEY) == b"v1"
    assert store.persisted_offset(TP(changelog(store), PARTITION)) == 41


def test_an_aborted_transaction_leaves_nothing_and_a_restart_finds_the_committed_state(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    store.put(PARTITION, KEY, b"committed")
    store.commit(PARTITION, 7)
    store.put(PARTITION, KEY, b"aborted")
    store.put(PARTITION, b"inq_0000000000000000000000002", b"never happened")
    store.discard(PARTITION)
    assert store[KEY] == b"committed"
    store.close(PARTITION)  # as after kill -9: only what was committed is on disk
    again = store_in(tmp_path)
    assert again[KEY] == b"committed"
    assert b"inq_0000000000000000000000002" not in again
    assert again.persisted_offset(TP(changelog(again), PARTITION)) == 7  # recovery replays from here


def test_deletes_and_iteration_see_the_overlay_over_rocksdb(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    keys = [f"inq_{n:025d}".encode() for n in range(12)]
    for key in keys:
        store.put(partition_of(key, 3), key, b"x")
    for partition in range(3):
        store.commit(partition, 1)
    store.put(partition_of(keys[0], 3), keys[0], None)
    assert keys[0] not in store
    assert sorted(store.keys()) == sorted(keys[1:])  # no offset key among them


@dataclass
class Metadata:
    offset: int


async def test_committed_writes_commit_each_store_at_its_last_changelog_offset(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    writes = CommittedWrites()
    store.put(PARTITION, KEY, b"v")
    sent: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    writes.wrote(store, PARTITION, sent)
    sent.set_result(Metadata(offset=99))
    await writes.committed([PARTITION + 1])  # another partition's commit: not this one's
    assert store.database(PARTITION).get(KEY) is None
    await writes.committed([PARTITION])
    assert store.persisted_offset(TP(changelog(store), PARTITION)) == 99
    store.put(PARTITION, KEY, b"w")
    writes.wrote(store, PARTITION, sent)
    writes.aborted(PARTITION)
    assert store[KEY] == b"v"


@dataclass
class ChangelogMessage:
    key: bytes
    value: bytes | None
    partition: int
    offset: int


@dataclass
class ChangelogEvent:
    message: ChangelogMessage


def test_recovery_writes_committed_records_with_their_offset(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    batch = [
        ChangelogEvent(ChangelogMessage(KEY, b"a", PARTITION, 5)),
        ChangelogEvent(ChangelogMessage(KEY, b"b", PARTITION, 9)),
    ]
    store.apply_changelog_batch(batch, lambda k: k, lambda v: v)
    assert store.database(PARTITION).get(KEY) == b"b"
    assert store.persisted_offset(TP(changelog(store), PARTITION)) == 9


async def test_a_partition_that_leaves_drops_its_overlay_and_keeps_its_committed_files(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    store.put(PARTITION, KEY, b"committed")
    store.commit(PARTITION, 3)
    store.put(PARTITION, KEY, b"uncommitted")
    lost = TP(changelog(store), PARTITION)
    await store.on_rebalance(assigned=set(), revoked={lost}, newly_assigned=set())
    assert store[KEY] == b"committed"
    assert store.persisted_offset(lost) == 3
