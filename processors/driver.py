"""The workers' Kafka transport: faust's aiokafka driver, corrected for exactly-once.

faust takes a transport driver by URL scheme: the workers' broker URLs read
``persona-stream://host:port``, and the ``faust.transports`` entry point in ``pyproject.toml`` names
:class:`Transport`. Each class below subclasses the faust class it corrects and holds its state as
typed instance attributes; nothing of faust, mode or aiokafka is reassigned. They were written
against the exact versions :mod:`processors.versions` pins.

====================  ===========================================================================
class                 correction
====================  ===========================================================================
ConsumerThread        changelog ends from the broker (ListOffsets, read-committed): faust's
                      ``last_stable_offset`` is ``None`` for a partition not fetched yet -- every
                      partition newly assigned -- which faust takes for "empty": state lost
Consumer              * the fetch loop hands nothing over from a batch fetched before or during a
                        seek, marks read only what it handed over, and fetches again what a batch
                        left behind (:mod:`processors.seeks`): otherwise inputs are lost
                      * a record the stream skipped (never tracked) or fetched in an earlier
                        generation is not acknowledged as processed: otherwise it is committed
                        unprocessed at the next revocation
                      * commits run only between inputs (:class:`~processors.commit_gate.CommitGate`);
                        at least once, a commit of offsets commits the local stores' writes
                      * on a rebalance abort, drop the acknowledged offsets of the aborted writes
Producer              * commit every partition's transaction at once; a producer outside a
                        transaction (a graceful stop's second commit) commits in a new, empty one
                        instead of raising ``IllegalOperation`` and hanging the stop
                      * a rebalance that finds a kept partition's transaction open with the last
                        generation's writes aborts it and has its tables recovered from the
                        changelog (Kafka Streams' "close dirty"): otherwise a version is doubled
                      * a committed transaction's writes reach the local stores; an aborted
                        one's are dropped (:mod:`processors.store`)
====================  ===========================================================================

The table-side correction (forget a lost partition's entries) is :class:`processors.tables.Table`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as driver

from processors.seeks import Seeks, rewind_targets

if TYPE_CHECKING:
    from processors.runtime import WorkerApp

SCHEME = "persona-stream"
logger = logging.getLogger(__name__)


class ConsumerThread(driver.AIOKafkaConsumerThread):  # type: ignore[misc]
    async def _highwaters(self, partitions: Iterable[Any]) -> Mapping[Any, int]:
        """The end of committed data of each partition, asked of the broker, assigned or not."""
        consumer = self._ensure_consumer()
        offsets: Mapping[Any, int] = await consumer.end_offsets(list(partitions))
        return offsets


class Consumer(driver.Consumer):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seeks = Seeks()

    @property
    def worker_app(self) -> WorkerApp:
        app: WorkerApp = self.app
        return app

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def perform_seek(self) -> None:
        self.seeks.begin_every()
        try:
            await super().perform_seek()
        finally:
            self.seeks.end_every()

    async def seek(self, partition: Any, offset: int) -> None:
        self.seeks.begin(partition)
        try:
            await super().seek(partition, offset)
        finally:
            self.seeks.end(partition)

    def ack(self, message: Any) -> bool:
        """faust's ack, except for records the stream skipped or that an earlier generation fetched."""
        stale = message.generation_id is not None and message.generation_id != self.app.consumer_generation_id
        if message.use_tracking and (not message.tracked or stale):
            message.acked = True  # done with, but not processed: its offset stays uncommitted
            self._unacked_messages.discard(message)
            return False
        acked: bool = super().ack(message)
        return acked

    async def commit(self, topics: Any = None, start_new_transaction: bool = True) -> bool:
        """faust's commit, run only while no input is half processed."""
        app = self.worker_app
        async with app.commit_gate.commit():
            committed: bool = await super().commit(topics, start_new_transaction=start_new_transaction)
            if committed and not app.in_transaction:  # at least once: the offsets committed, the writes flushed
                await app.committed_writes.committed()
            return committed

    def forget_acknowledgements(self, group: int, partition: int) -> None:
        """Drop the acknowledged, uncommitted offsets of one partition: their writes were aborted."""
        for tp in [tp for tp in self._acked if tp.partition == partition]:
            if self.app.assignor.group_for_topic(tp.topic) == group:
                self._acked.pop(tp, None)
                self._acked_index.pop(tp, None)
                self._gap.pop(tp, None)

    async def _drain_messages(self, fetcher: Any) -> None:  # noqa: C901, PLR0912, PLR0915  # pragma: no cover - exercised end to end; the hot fetch loop, kept whole
        """faust's fetch loop, except that what is not handed to the streams is fetched again."""
        callback, to_message, scheduler = self.callback, self._to_message, self.scheduler
        consumer_should_stop, fetcher_should_stop = self._stopped.is_set, fetcher._stopped.is_set
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        seeks = self.seeks
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                before = seeks.mark()
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


async def _rewind(consumer: Any, left: Mapping[Any, int]) -> None:  # pragma: no cover - end to end
    """Seek back what a batch left behind; in the consumer's thread, so nothing moves meanwhile."""
    subscription = consumer._subscription.subscription
    assignment = subscription.assignment if subscription is not None else None
    positions: dict[Any, int | None] = {}
    for tp in left:
        state = assignment.state_value(tp) if assignment is not None else None
        if state is not None:
            positions[tp] = state.position if state.has_valid_position else None
    for tp, offset in rewind_targets(left, positions).items():
        logger.info("Fetching %s again from offset %d: its records from there were not processed", tp, offset)
        consumer.seek(tp, offset)


class Producer(driver.Producer):  # type: ignore[misc]
    @property
    def worker_app(self) -> WorkerApp:
        app: WorkerApp = self.app
        return app

    async def commit_transactions(
        self, tid_to_offset_map: Mapping[str, Mapping[Any, int]], group_id: str, start_new_transaction: bool = True
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
                await self.worker_app.committed_writes.committed([int(transactional_id.rsplit("-", 1)[1])])
                if start_new_transaction:
                    await producer.begin_transaction()

        await asyncio.gather(*(commit(tid, offsets) for tid, offsets in tid_to_offset_map.items()))

    async def maybe_begin_transaction(self, transactional_id: str) -> None:
        """faust's, at a rebalance, aborting first what the previous generation left open."""
        app = self.worker_app
        async with app.commit_gate.commit():
            producer = self._transaction_producers.get(transactional_id)
            txn = producer._txn_manager if producer is not None else None
            if txn is not None and txn.is_in_transaction() and (txn._txn_partitions or txn._pending_txn_partitions):
                logger.warning("Aborting the transaction %s left open by the previous generation", transactional_id)
                await self.abort_transaction(transactional_id)
                group, partition = (int(part) for part in transactional_id.rsplit("-", 2)[1:])
                app.consumer.forget_acknowledgements(group, partition)
                app.aborted.add(app.consumer_generation_id, partition)
                app.committed_writes.aborted(partition)
            await super().maybe_begin_transaction(transactional_id)


class Transport(driver.Transport):  # type: ignore[misc]
    """faust's aiokafka transport with the classes above."""

    Consumer = Consumer
    Producer = Producer
