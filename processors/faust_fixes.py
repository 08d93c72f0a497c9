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
what the second fix does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Producer

_APPLIED = "_persona_stream_fixed"


async def _highwaters_from_the_broker(self: Any, partitions: Iterable[Any]) -> Mapping[Any, int]:
    consumer = self._ensure_consumer()
    offsets: Mapping[Any, int] = await consumer.end_offsets(list(partitions))
    return offsets


_commit_transactions = Producer.commit_transactions


async def _commit_transactions_from_anywhere(
    self: Any, tid_to_offset_map: Mapping[str, Mapping[Any, int]], group_id: str, start_new_transaction: bool = True
) -> None:
    for transactional_id in tid_to_offset_map:
        producer = self._transaction_producers.get(transactional_id)
        if producer is not None and not producer._txn_manager.is_in_transaction():
            async with self._trn_locks[transactional_id]:
                await producer.begin_transaction()
    await _commit_transactions(self, tid_to_offset_map, group_id, start_new_transaction)


def apply() -> None:
    if getattr(AIOKafkaConsumerThread, _APPLIED, False):
        return
    AIOKafkaConsumerThread._highwaters = _highwaters_from_the_broker
    Producer.commit_transactions = _commit_transactions_from_anywhere
    setattr(AIOKafkaConsumerThread, _APPLIED, True)
