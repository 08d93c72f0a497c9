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

Fourth: faust's fetcher loop hands each fetched record to the streams, but gives up on the rest of
a batch when the flow is suspended (a rebalance), when the consumer generation changes, or -- record
by record -- when its partition is not active -- and the consumer's fetch position is already past
the whole batch. A record given up on is then never fetched again unless a seek happens to follow:
an input lost. And when a seek (recovery's "seek to committed offsets") runs while a batch fetched
from the old position is still being handed over, the read offset moves past the seek's target: the
records the seek asked for are taken for already read, and committed as a gap, unprocessed. The
``kill -9`` test under CPU stress caught each of these. The fix is the same loop, except that it
counts seeks and hands nothing over from a batch fetched before or during one; a record not handed
over is not marked read; and once the batch ends every partition that left records behind is
sought back to the first of them -- only ever backwards, and in the consumer's thread, so no seek
made meanwhile is overridden.

Fifth: a stream skips the records it is handed while the flow is suspended (a rebalance has begun)
or that were fetched in an earlier consumer generation -- and *acknowledges* them, as if processed.
faust commits acknowledged offsets when the partitions are revoked, so a record skipped that way
counts as done and the partition's next owner starts after it: an input lost, found by the same
test under CPU stress. A skipped record is one the stream never started (never "tracked"); the fix
marks such a record acknowledged without recording its offset, and ignores acknowledgements of
records fetched in an earlier generation. Such a record is read again from the committed offset.

Sixth: a rebalance can leave a partition's transaction open -- faust commits at a revocation only
if the consumer still reports an assignment, and aiokafka may already have dropped it. A partition
the worker keeps then carries the previous generation's uncommitted writes into the new one, while
its input is read again from the committed offset: the writes appear twice (a status version
published twice, found by the ``kill -9`` test under CPU stress). Kafka Streams closes such a task
"dirty"; so does the fix: when a rebalance begins a kept partition's transaction and finds one
open with writes in it, it aborts it -- once no input is half processed -- drops the offsets that
were acknowledged but not committed (their writes are gone), and the tables forget that partition,
to be recovered from the committed changelog like a partition newly assigned.

Seventh, with :mod:`processors.commit_gate`: faust commits on a timer, whatever the agents are
doing, so a commit can make an input's first writes durable while its offset waits for the next
transaction. Commits run only while no input is half processed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka.partitioner import murmur2
from faust.tables.base import Collection
from faust.transport.consumer import CONSUMER_FETCHING, Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Producer

from processors.commit_gate import CommitGate

_APPLIED = "_persona_stream_fixed"
GATE = "_persona_stream_commit_gate"  # set on the app by processors.app: its CommitGate
ABORTED = "_persona_stream_aborted"
SEEKS = "_persona_stream_seeks"
logger = logging.getLogger(__name__)


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
    aborted = _aborted_partitions(self.app)
    lost |= {tp for tp in assigned if tp.topic == changelog and tp.partition in aborted}
    if lost:
        partitions, count = {tp.partition for tp in lost}, self.partitions
        for key in [k for k in self.data if (murmur2(k) & 0x7FFFFFFF) % count in partitions]:
            del self.data[key]
        for tp in lost:
            self.data.set_persisted_offset(tp, -1)
            offsets = self.app.tables.recovery.active_offsets
            if tp in offsets:  # a kept partition: read its changelog again from the start
                offsets[tp] = None  # (assigned, not popped: a recovery may be iterating over it)
    await _on_rebalance(self, assigned, revoked, newly_assigned, generation_id)


async def _drain_messages(self: Any, fetcher: Any) -> None:  # pragma: no cover - exercised end to end
    """faust's ``Consumer._drain_messages``, with records not handed to the streams fetched again."""
    callback, to_message, scheduler = self.callback, self._to_message, self.scheduler
    consumer_should_stop, fetcher_should_stop = self._stopped.is_set, fetcher._stopped.is_set
    read_offset = self._read_offset
    acks_enabled_for = self.app.topics.acks_enabled_for
    seeks = _seeks(self)
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            self.diag.set_flag(CONSUMER_FETCHING)
            before = seeks.snapshot()
            records, active_partitions = await self._wait_next_records(1.0)
            await self.sleep(0)
            if not records or self.should_stop:
                continue
            generation_id = self.app.consumer_generation_id
            left: dict[Any, int] = {}  # partition -> offset of its first record not handed over
            taken_since_yield = 0
            for tp, record in scheduler.iterate(records):
                if tp in left:
                    continue
                if seeks.moved(tp, before):
                    left[tp] = record.offset  # sought since the fetch: hand nothing more over from it
                    continue
                if (
                    not self.flow_active
                    or self.app.consumer_generation_id != generation_id
                    or (
                        active_partitions is not None
                        and tp not in active_partitions
                        and tp not in self._buffered_partitions
                    )
                ):
                    left[tp] = record.offset
                    continue
                last = read_offset[tp]
                if last is not None and record.offset < last:
                    continue  # already read (a refetch after a seek)
                if last and record.offset - last > 1 and acks_enabled_for(record.topic):
                    await self._add_gap(tp, last + 1, record.offset)
                self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                delivered = asyncio.ensure_future(callback(to_message(tp, record)))
                await self.wait_first(delivered, self.suspend_flow.wait())
                if not delivered.done():
                    delivered.cancel()
                    left[tp] = record.offset
                    continue
                if seeks.moved(tp, before):
                    left[tp] = record.offset + 1  # handed over, but the seek owns the read offset now
                    continue
                read_offset[tp] = record.offset
                taken_since_yield += 1
                if taken_since_yield > 100:
                    await asyncio.sleep(0)
                    taken_since_yield = 0
            if left:
                await self._thread.call_thread(_rewind, self._thread._ensure_consumer(), left)
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


class _Seeks:
    """Counts the consumer's seeks, so that a batch fetched before one is not handed over after it.

    A seek moves a partition's fetch position; records fetched from the old position and handed to
    the streams afterwards would move the read offset past the seek's target, and the records the
    seek asked for would then be taken for already read (and, as a gap, committed unprocessed).
    A seek is counted when it begins and when it ends, so a batch fetched while one runs is stale.
    """

    def __init__(self) -> None:
        self.all = 0  # faust's perform_seek (every partition): begun and ended
        self.all_running = 0
        self.each: dict[Any, int] = {}  # seeks of one partition: begun and ended
        self.each_running: dict[Any, int] = {}

    def snapshot(self) -> tuple[int, dict[Any, int]]:
        return self.all, dict(self.each)

    def moved(self, tp: Any, before: tuple[int, dict[Any, int]]) -> bool:
        every, each = before
        return (
            self.all_running > 0
            or self.all != every
            or self.each_running.get(tp, 0) > 0
            or self.each.get(tp, 0) != each.get(tp, 0)
        )


def _seeks(consumer: Any) -> _Seeks:
    seeks: _Seeks | None = getattr(consumer, SEEKS, None)
    if seeks is None:
        seeks = _Seeks()
        setattr(consumer, SEEKS, seeks)
    return seeks


_perform_seek, _seek = Consumer.perform_seek, Consumer.seek


async def _perform_seek_counted(self: Any) -> None:
    seeks = _seeks(self)
    seeks.all += 1
    seeks.all_running += 1
    try:
        await _perform_seek(self)
    finally:
        seeks.all_running -= 1
        seeks.all += 1


async def _seek_counted(self: Any, partition: Any, offset: int) -> None:
    seeks = _seeks(self)
    seeks.each[partition] = seeks.each.get(partition, 0) + 1
    seeks.each_running[partition] = seeks.each_running.get(partition, 0) + 1
    try:
        await _seek(self, partition, offset)
    finally:
        seeks.each_running[partition] -= 1
        seeks.each[partition] += 1


async def _rewind(consumer: Any, left: Mapping[Any, int]) -> None:  # pragma: no cover - end to end
    """Seek each partition still fetching past a record that was not handed over back to it.

    Runs in the consumer's thread, so that nothing moves a position between the test and the seek.
    Only ever seeks backwards: a partition since sought to or before the record is left alone, and
    one no longer assigned is the next owner's to read.
    """
    assignment = consumer._subscription.subscription
    assignment = assignment.assignment if assignment is not None else None
    for tp, offset in left.items():
        state = assignment.state_value(tp) if assignment is not None else None
        if state is None or not state.has_valid_position or state.position <= offset:
            continue
        logger.info("Fetching %s again from offset %d: its records from there were not processed", tp, offset)
        consumer.seek(tp, offset)


_ack = Consumer.ack


def _ack_processed_only(self: Any, message: Any) -> bool:
    """faust's ``Consumer.ack``, except for records the stream skipped or fetched before a rebalance."""
    stale = message.generation_id is not None and message.generation_id != self.app.consumer_generation_id
    if message.use_tracking and (not message.tracked or stale):
        message.acked = True  # done with, but not processed: its offset stays uncommitted
        self._unacked_messages.discard(message)
        return False
    acked: bool = _ack(self, message)
    return acked


_commit = Consumer.commit


async def _commit_between_inputs(self: Any, *args: Any, **kwargs: Any) -> bool:
    """faust's ``Consumer.commit``, run only while no input is half processed (see commit_gate)."""
    gate: CommitGate | None = getattr(self.app, GATE, None)
    if gate is None:
        committed: bool = await _commit(self, *args, **kwargs)
        return committed
    async with gate.commit():
        committed = await _commit(self, *args, **kwargs)
        return committed


_maybe_begin_transaction = Producer.maybe_begin_transaction


async def _begin_afresh(self: Any, transactional_id: str) -> None:
    """faust's ``maybe_begin_transaction`` at a rebalance, aborting what the last generation left open."""
    gate: CommitGate | None = getattr(self.app, GATE, None)
    async with gate.commit() if gate is not None else contextlib.nullcontext():
        producer = self._transaction_producers.get(transactional_id)
        txn = producer._txn_manager if producer is not None else None
        if txn is not None and txn.is_in_transaction() and (txn._txn_partitions or txn._pending_txn_partitions):
            logger.warning("Aborting the transaction %s left open by the previous generation", transactional_id)
            await self.abort_transaction(transactional_id)
            group, partition = (int(part) for part in transactional_id.rsplit("-", 2)[1:])
            _forget_acknowledgements(self.app, group, partition)
            _aborted_partitions(self.app).add(partition)
        await _maybe_begin_transaction(self, transactional_id)


def _forget_acknowledgements(app: Any, group: int, partition: int) -> None:
    """Drop the acknowledged, uncommitted offsets of one partition: their writes were just aborted."""
    consumer = app.consumer
    for tp in [tp for tp in consumer._acked if tp.partition == partition]:
        if app.assignor.group_for_topic(tp.topic) == group:
            consumer._acked.pop(tp, None)
            consumer._acked_index.pop(tp, None)
            consumer._gap.pop(tp, None)


def _aborted_partitions(app: Any) -> set[int]:
    """Partitions whose transaction was aborted in the current generation's rebalance."""
    generation, partitions = getattr(app, ABORTED, (None, set()))
    if generation != app.consumer_generation_id:
        generation, partitions = app.consumer_generation_id, set()
        setattr(app, ABORTED, (generation, partitions))
    return partitions


def apply() -> None:
    if getattr(AIOKafkaConsumerThread, _APPLIED, False):
        return
    AIOKafkaConsumerThread._highwaters = _highwaters_from_the_broker
    Producer.commit_transactions = _commit_transactions
    Collection.on_rebalance = _forget_lost_partitions
    Consumer._drain_messages = _drain_messages
    Consumer.perform_seek = _perform_seek_counted
    Consumer.seek = _seek_counted
    Consumer.ack = _ack_processed_only
    Consumer.commit = _commit_between_inputs
    Producer.maybe_begin_transaction = _begin_afresh
    setattr(AIOKafkaConsumerThread, _APPLIED, True)
