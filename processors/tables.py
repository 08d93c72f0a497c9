"""The workers' table class: a faust Table that closes the state of the partitions it loses.

A worker that loses a partition in a rebalance would otherwise keep that partition's entries. Its
last, uncommitted transaction for the partition is aborted when the new owner takes over, but the
writes of that transaction stay in the old owner's memory; if the partition comes back, faust
replays the changelog on top of them, and an entry that no committed record overwrites survives as
state that never happened. Kafka Streams closes a task's state when the task leaves; so does
:meth:`Table.on_rebalance`: before faust handles the rebalance, the table forgets the entries of
each partition it loses -- and of each kept partition whose transaction was aborted
(:class:`AbortedPartitions`) -- so that such a partition is recovered from its changelog alone.

The app passes this class to faust as ``App(Table=...)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import faust
from aiokafka.partitioner import murmur2


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` (murmur2, as the producers use)."""
    return int((murmur2(key) & 0x7FFFFFFF) % partitions)


def keys_in(keys: Iterable[bytes], partitions: set[int], count: int) -> list[bytes]:
    """The keys among ``keys`` that belong to one of ``partitions`` (of ``count``)."""
    return [key for key in keys if partition_of(key, count) in partitions]


@dataclass
class AbortedPartitions:
    """The partitions whose transaction was aborted in the current generation's rebalance."""

    generation: int | None = None
    partitions: set[int] = field(default_factory=set)

    def add(self, generation: int, partition: int) -> None:
        self.of(generation).add(partition)

    def of(self, generation: int) -> set[int]:
        if generation != self.generation:
            self.generation, self.partitions = generation, set()
        return self.partitions


class Table(faust.Table):  # type: ignore[misc]
    async def on_rebalance(
        self, assigned: set[Any], revoked: set[Any], newly_assigned: set[Any], generation_id: int = 0
    ) -> None:
        if getattr(self.data, "holds_committed_state_only", False):
            # processors.store.Store: its RocksDB is committed state at a known offset, valid as it is;
            # what an aborted or lost partition wrote since is dropped with the transaction
            await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
            return
        changelog = self.changelog_topic.get_topic_name()
        kept = {tp.partition for tp in assigned if tp.topic == changelog}
        lost = {tp for tp in revoked if tp.topic == changelog and tp.partition not in kept}
        aborted = self.app.aborted.of(self.app.consumer_generation_id)
        lost |= {tp for tp in assigned if tp.topic == changelog and tp.partition in aborted}
        if lost:
            for key in keys_in(list(self.data), {tp.partition for tp in lost}, self.partitions):
                del self.data[key]
            offsets = self.app.tables.recovery.active_offsets
            for tp in lost:
                self.data.set_persisted_offset(tp, -1)
                if tp in offsets:  # a kept partition: read its changelog again from the start
                    offsets[tp] = None  # (assigned, not popped: a recovery may be iterating over it)
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
