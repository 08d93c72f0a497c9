"""The workers' local store: RocksDB that only ever holds committed state, with its changelog offset.

faust's own RocksDB store takes every write at once, before the transaction that carries it has
committed: after a ``kill -9`` it holds writes of the aborted transaction -- state that never
happened -- and, since the changelog is read again from the start to be safe, it restores the whole
changelog on every restart. This store is Kafka Streams' transactional state store (KIP-892):

* a write goes to an in-memory overlay of its partition, which the worker's own reads see;
* when the partition's transaction commits, the overlay and the offset of the last changelog
  record the transaction wrote reach RocksDB together, in one write batch (:meth:`Store.commit`);
* an aborted transaction, or a partition that leaves, drops its overlay (:meth:`Store.discard`).

So after ``kill -9`` RocksDB holds exactly the committed state at a known changelog offset. At each
rebalance the store first brings every partition it is given up to the changelog's end in bulk
(:mod:`processors.restore`), from that offset -- the tail, or all of it for a partition new to this
worker -- and faust's recovery then finds nothing left. A partition that leaves keeps its files: if
it comes back, only what its other owner wrote since is read.

One RocksDB database per partition, under the app's table directory; the store URL is
``persona-stream://`` (the ``faust.stores`` entry point in ``pyproject.toml``).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from faust.stores.base import SerializedStore
from rocksdict import BlockBasedOptions, Cache, Options, Rdict, WriteBatch, WriteBufferManager, WriteOptions

from processors.restore import RestoreStats, restore
from processors.tables import partition_of

OFFSET_KEY = b"\x00persona-stream:changelog-offset"  # sorts first; never a table key (keys are text)
# Restored data is in the changelog: without the write-ahead log a crash loses a suffix of it, read
# again from the offset that survived; a restore is flushed before any commit is written (restored).
NO_WAL = WriteOptions()
NO_WAL.disable_wal = True  # type: ignore[method-assign,assignment]  # a property; the stubs say a method


def rocksdb_options(memory_bytes: int) -> Options:
    """Options for every partition's database of one store: memtables and block cache share one
    budget of ``memory_bytes``, so that memory does not grow with partitions or with data."""
    cache = Cache(memory_bytes // 2)
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_write_buffer_size(min(16 << 20, memory_bytes // 8))
    options.set_max_write_buffer_number(2)
    options.set_write_buffer_manager(
        WriteBufferManager.new_write_buffer_manager_with_cache(memory_bytes // 2, False, cache)
    )
    table = BlockBasedOptions()
    table.set_block_cache(cache)
    options.set_block_based_table_factory(table)
    return options


class Store(SerializedStore):  # type: ignore[misc]
    holds_committed_state_only = True  # see processors.tables.Table.on_rebalance

    def __init__(self, url: Any, app: Any, table: Any, **kwargs: Any) -> None:
        super().__init__(url, app, table, **kwargs)
        self.partitions: int = table.partitions or app.conf.topic_partitions
        self.directory = Path(app.conf.tabledir)
        self.databases: dict[int, Rdict] = {}
        self.overlay: dict[int, dict[bytes, bytes | None]] = {}
        self.last_restore = RestoreStats(0, 0, 0.0)
        self.options = rocksdb_options(getattr(app, "store_memory_bytes", 128 << 20))

    # --- the transaction's view -----------------------------------------------------------------

    def put(self, partition: int, key: bytes, value: bytes | None) -> None:
        """An uncommitted write (``None`` deletes); it reaches RocksDB when its partition commits."""
        self.overlay.setdefault(partition, {})[key] = value

    def commit(self, partition: int, changelog_offset: int) -> None:
        """The partition's transaction committed, its last changelog record at ``changelog_offset``."""
        batch = WriteBatch(raw_mode=True)
        for key, value in self.overlay.pop(partition, {}).items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        batch.put(OFFSET_KEY, str(changelog_offset).encode())
        self.database(partition).write(batch)

    def discard(self, partition: int) -> None:
        """The partition's transaction was aborted, or the partition left: forget its overlay."""
        self.overlay.pop(partition, None)

    def estimated_size(self) -> tuple[int, int]:
        """(entries, bytes) of the partitions open here, RocksDB's estimates: no scan of the data."""
        entries = size = 0
        for database in self.databases.values():
            entries += database.property_int_value("rocksdb.estimate-num-keys") or 0
            size += database.property_int_value("rocksdb.estimate-live-data-size") or 0
        return entries, size

    def uncommitted(self) -> set[int]:
        return {partition for partition, writes in self.overlay.items() if writes}

    # --- RocksDB --------------------------------------------------------------------------------

    def path(self, partition: int) -> Path:
        return self.directory / f"{self.table_name}-{partition}.rocksdb"

    def database(self, partition: int) -> Rdict:
        found = self.databases.get(partition)
        if found is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            found = self.databases[partition] = Rdict(str(self.path(partition)), options=self.options)
        return found

    def close(self, partition: int) -> None:
        found = self.databases.pop(partition, None)
        if found is not None:
            found.close()

    def persisted_offset(self, tp: Any) -> int | None:
        raw = self.database(tp.partition).get(OFFSET_KEY)
        return int(raw) if raw is not None else None

    def set_persisted_offset(self, tp: Any, offset: int) -> None:
        self.database(tp.partition).put(OFFSET_KEY, str(offset).encode())

    def write_committed(self, partition: int, records: Sequence[tuple[bytes, bytes | None]], offset: int) -> None:
        """Committed changelog records (a bulk restore), straight to RocksDB, with the last one's offset."""
        batch = WriteBatch(raw_mode=True)
        for key, value in records:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        batch.put(OFFSET_KEY, str(offset).encode())
        self.database(partition).write(batch, NO_WAL)

    def restored(self, partition: int) -> None:
        """A bulk restore of the partition reached a checkpoint or its end: make what it wrote durable
        (before any commit is written with the write-ahead log, which a restart would replay on top
        of restored data lost with the memtable)."""
        self.database(partition).flush(True)

    def apply_changelog_batch(
        self, batch: Iterable[Any], to_key: Callable[[Any], Any], to_value: Callable[[Any], Any]
    ) -> None:
        """Recovery: committed changelog records (read-committed), straight to RocksDB with their offset."""
        batches: dict[int, WriteBatch] = {}
        offsets: dict[int, int] = {}
        for event in batch:
            message = event.message
            write = batches.get(message.partition)
            if write is None:
                write = batches[message.partition] = WriteBatch(raw_mode=True)
            if message.value is None:
                write.delete(message.key)
            else:
                write.put(message.key, message.value)
            offsets[message.partition] = max(message.offset, offsets.get(message.partition, -1))
        for partition, write in batches.items():
            write.put(OFFSET_KEY, str(offsets[partition]).encode())
            self.database(partition).write(write)

    # --- faust's mapping interface (reads see the overlay) ------------------------------------

    def _get(self, key: bytes) -> bytes | None:
        partition = partition_of(key, self.partitions)
        writes = self.overlay.get(partition)
        if writes is not None and key in writes:
            return writes[key]
        value: bytes | None = self.database(partition).get(key)
        return value

    def _set(self, key: bytes, value: bytes | None) -> None:
        self.put(partition_of(key, self.partitions), key, value)

    def _del(self, key: bytes) -> None:
        self.put(partition_of(key, self.partitions), key, None)

    def _iteritems(self) -> Iterator[tuple[bytes, bytes]]:
        for partition in sorted(set(self.databases) | set(self.overlay)):
            writes = self.overlay.get(partition, {})
            for key, value in self.database(partition).items():
                if isinstance(key, bytes) and key != OFFSET_KEY and key not in writes:
                    yield key, value
            yield from ((key, value) for key, value in writes.items() if value is not None)

    def _iterkeys(self) -> Iterator[bytes]:
        return (key for key, _ in self._iteritems())

    def _itervalues(self) -> Iterator[bytes]:
        return (value for _, value in self._iteritems())

    def _size(self) -> int:
        return sum(1 for _ in self._iteritems())

    def _contains(self, key: bytes) -> bool:
        return self._get(key) is not None

    def _clear(self) -> None:
        self.reset_state()

    def reset_state(self) -> None:
        """Forget everything, on disk too (faust asks when a changelog must be read from its start)."""
        self.overlay.clear()
        for partition in list(self.databases):
            self.close(partition)
        for path in self.directory.glob(f"{self.table_name}-*.rocksdb"):
            shutil.rmtree(path, ignore_errors=True)

    async def on_rebalance(
        self, assigned: set[Any], revoked: set[Any], newly_assigned: set[Any], generation_id: int = 0
    ) -> None:
        changelog = self.table.changelog_topic.get_topic_name()
        kept = {tp.partition for tp in assigned if tp.topic == changelog}
        for tp in revoked:
            if tp.topic == changelog and tp.partition not in kept:
                self.discard(tp.partition)  # its committed state stays valid, at its offset
                self.close(tp.partition)
        # before faust's recovery (which then starts from the offsets restored to) and before any input
        self.last_restore = await restore(
            self,
            self.bootstrap_servers(),
            changelog,
            kept,
            checkpoint_records=getattr(self.app, "restore_checkpoint_records", 250_000),
        )

    def bootstrap_servers(self) -> str:
        return ",".join(f"{url.host}:{url.port or 9092}" for url in self.app.conf.broker)

    async def backup_partition(self, tp: Any, flush: bool = True, purge: bool = False, keep: int = 1) -> None:
        """No backups: RocksDB is committed state and the changelog its backup."""

    def restore_backup(self, tp: Any, latest: bool = True, backup_id: int = 0) -> None:
        """No backups: see :meth:`backup_partition`."""

    async def on_recovery_completed(self, active_tps: set[Any], standby_tps: set[Any]) -> None:
        return None

    async def on_stop(self) -> None:
        for partition in list(self.databases):
            self.close(partition)


class CommittedWrites:
    """Which store each partition's open transaction wrote to, and its last changelog record.

    The pipeline reports each changelog write (:meth:`wrote`, with the send's future); the
    transport driver reports each commit and abort, and the stores follow.
    """

    def __init__(self) -> None:
        self.last: dict[tuple[int, int], tuple[Store, Any]] = {}  # (id(store), partition) -> store, future

    def wrote(self, store: Store, partition: int, sent: Any) -> None:
        self.last[(id(store), partition)] = (store, sent)

    async def committed(self, partitions: Iterable[int] | None = None) -> None:
        """Those partitions' transactions committed (``None``: every partition's offsets did)."""
        wanted = None if partitions is None else set(partitions)
        for key in [k for k in self.last if wanted is None or k[1] in wanted]:
            store, sent = self.last.pop(key)
            metadata = await sent
            store.commit(key[1], metadata.offset)

    def aborted(self, partition: int) -> None:
        for key in [k for k in self.last if k[1] == partition]:
            store, _ = self.last.pop(key)
            store.discard(partition)
