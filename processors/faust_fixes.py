"""Corrections to faust-streaming 0.15's exactly-once mode, applied by :func:`apply` (idempotent).

Table recovery under ``processing_guarantee="exactly_once"`` asks the consumer for each changelog
partition's *last stable offset* -- the end of committed data -- to know how far to read. faust
takes it from ``AIOKafkaConsumer.last_stable_offset``, which is only the value seen in the last
fetch response: ``None`` for a partition this consumer has not fetched yet, which is every
partition a worker is newly given in a rebalance. faust turns ``None`` into "empty changelog",
declares recovery complete at once, and the worker then processes with an empty table -- state is
silently lost (the symptom reported upstream as robinhood/faust#658). The integration test that
``kill -9``s a worker mid-stream finds it: an inquiry's versions restart at 1.

The fix asks the broker: a ListOffsets request made with the consumer's ``read_committed``
isolation level returns exactly the last stable offset, for any partition, assigned or not.

On a graceful stop faust commits and ends every transaction, then -- once the streams are empty --
commits *again*: the second commit finds producers outside any transaction and raises
``IllegalOperation``, and the worker hangs instead of stopping. A producer outside a transaction
has appended nothing since its last commit (a transactional producer cannot send outside one), so
committing the consumed offsets in a new, otherwise empty transaction is exactly right; that is
what the second fix does. It also commits the partitions' transactions concurrently rather than
one after the other: a commit holds its partition's producer, so sequential commits of several
partitions stall processing and delay what read-committed consumers see.

Third: a worker that loses a partition in a rebalance keeps that partition's entries in its
tables. Its last, uncommitted transaction for the partition is aborted when the new owner takes
over, but the writes of that transaction stay in the old owner's memory; if the partition comes
back later, faust replays the changelog on top of them, and an entry that no committed record
overwrites survives as state that never happened. Kafka Streams closes a task's state when the task
leaves; so does the third fix: before faust handles a rebalance, every table forgets the entries of
the partitions it loses (and, for RocksDB, the offset it persisted for them), so that a partition
that returns is recovered from its changelog alone.

Fourth: faust's fetcher loop hands each fetched record to the streams, but gives up on it when the
flow is suspended (during a rebalance) -- and still records its offset as read. After the rebalance
the partition is sought back to its committed offset, yet a record that was given up on while a
stale batch was still being iterated is then taken for already read and silently skipped: an input
lost. The ``kill -9`` test caught it (a webhook never applied, its offset committed). The fix is the
same loop, except that a record the streams did not take ends the batch, and its offset is not
recorded as read; the partition's next fetch starts from the seek.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka.partitioner import murmur2
from faust.tables.base import Collection
from faust.transport.consumer import CONSUMER_FETCHING, Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Producer

_APPLIED = "_persona_stream_fixed"


async def _highwaters_from_the_broker(self: Any, partitions: Iterable[Any]) -> Mapping[Any, int]:
    consumer = self._ensure_consumer()
    offsets: Mapping[Any, int] = await consumer.end_offsets(list(partitions))
    return offsets


async def _commit_transactions(
    self: Any, tid_to_offset_map: Mapping[str, Mapping[Any, int]], group_id: str, start_new_transaction: bool = True
) -> None:
    """Commit each partition's transaction -- all of them at once, not one after the other."""

    async def commit(transactional_id: str, offsets: Mapping[Any, int]) -> None:
        async with self._trn_locks[transactional_id]:
            producer = self._transaction_producers.get(transactional_id)
            if producer is None:
                return  # its partition was revoked: the new owner's producer fenced it
            if not producer._txn_manager.is_in_transaction():
                await producer.begin_transaction()
            await producer.send_offsets_to_transaction(offsets, group_id)
            await producer.commit_transaction()
            if start_new_transaction:
                await producer.begin_transaction()

    await asyncio.gather(*(commit(tid, offsets) for tid, offsets in tid_to_offset_map.items()))


_on_rebalance = Collection.on_rebalance


async def _forget_lost_partitions(
    self: Any, assigned: set[Any], revoked: set[Any], newly_assigned: set[Any], generation_id: int = 0
) -> None:
    changelog = self.changelog_topic.get_topic_name()
    kept = {tp.partition for tp in assigned if tp.topic == changelog}
    lost = {tp for tp in revoked if tp.topic == changelog and tp.partition not in kept}
    if lost:
        partitions, count = {tp.partition for tp in lost}, self.partitions
        for key in [k for k in self.data if (murmur2(k) & 0x7FFFFFFF) % count in partitions]:
            del self.data[key]
        for tp in lost:
            self.data.set_persisted_offset(tp, -1)
    await _on_rebalance(self, assigned, revoked, newly_assigned, generation_id)


async def _drain_messages(self: Any, fetcher: Any) -> None:  # pragma: no cover - exercised end to end
    """faust's ``Consumer._drain_messages``, with records not taken by the streams left unread."""
    callback, getmany = self.callback, self.getmany
    consumer_should_stop, fetcher_should_stop = self._stopped.is_set, fetcher._stopped.is_set
    read_offset = self._read_offset
    acks_enabled_for = self.app.topics.acks_enabled_for
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            self.diag.set_flag(CONSUMER_FETCHING)
            batch = getmany(timeout=1.0)
            await self.sleep(0)
            if self.should_stop:
                continue
            taken_since_yield = 0
            async for tp, message in batch:
                taken_since_yield += 1
                if taken_since_yield > 100:
                    await asyncio.sleep(0)
                    taken_since_yield = 0
                last = read_offset[tp]
                if last is not None and message.offset < last:
                    continue  # already read (a refetch after a seek)
                if last and message.offset - last > 1 and acks_enabled_for(message.topic):
                    await self._add_gap(tp, last + 1, message.offset)
                delivered = asyncio.ensure_future(callback(message))
                await self.wait_first(delivered, self.suspend_flow.wait())
                if not delivered.done():
                    delivered.cancel()
                    break  # the flow stopped: this batch is stale, the next fetch follows the seek
                read_offset[tp] = message.offset
            self.diag.unset_flag(CONSUMER_FETCHING)
    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            return
        raise
    finally:
        self.diag.unset_flag(CONSUMER_FETCHING)


def apply() -> None:
    if getattr(AIOKafkaConsumerThread, _APPLIED, False):
        return
    AIOKafkaConsumerThread._highwaters = _highwaters_from_the_broker
    Producer.commit_transactions = _commit_transactions
    Collection.on_rebalance = _forget_lost_partitions
    Consumer._drain_messages = _drain_messages
    setattr(AIOKafkaConsumerThread, _APPLIED, True)
