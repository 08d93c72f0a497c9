"""The gateway's readers of the workers' output topics.

:class:`TopicFeed` reads every partition of one topic (read-committed: only what the workers'
transactions committed), from a starting point, and hands each record to a callback. It keeps
retrying while Kafka is unreachable, and knows when it has *caught up* -- read up to the end
offsets it saw at start -- which ``/readyz`` waits for: a gateway that had not caught up would
serve stale snapshots.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

log = logging.getLogger(__name__)

# A fetch holds up to thousands of records: hand them out a slice at a time, so that a subscriber
# that keeps up is not taken for a slow one because its writer never ran during the fetch.
YIELD_EVERY = 100


class TopicFeed:
    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        on_record: Callable[[Any], None],
        *,
        since_seconds: float | None = None,
    ) -> None:
        self.bootstrap, self.topic, self.on_record = bootstrap_servers, topic, on_record
        self.since_seconds = since_seconds
        self.caught_up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"feed:{self.topic}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                isolation_level="read_committed",
                enable_auto_commit=False,
                max_poll_records=2000,
            )
            try:
                await consumer.start()
                await self._consume(consumer)
            except (KafkaError, OSError) as exc:
                log.warning("feed %s interrupted (%r); reconnecting", self.topic, exc)
            finally:
                await consumer.stop()
            await asyncio.sleep(1.0)

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        partitions = consumer.partitions_for_topic(self.topic)
        while not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(self.topic)
            if not partitions:
                await asyncio.sleep(0.5)
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await self._seek_start(consumer, tps)
        ends = await consumer.end_offsets(tps)
        pending = {tp for tp in tps if ends[tp] > await consumer.position(tp)}
        if not pending:
            self.caught_up.set()
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            handled = 0
            for records in batch.values():
                for record in records:
                    self.on_record(record)
                    handled += 1
                    if handled % YIELD_EVERY == 0:
                        await asyncio.sleep(0)  # let the subscribers' writers drain their queues
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
            if not pending:
                self.caught_up.set()

    async def _seek_start(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
        if self.since_seconds is None:
            await consumer.seek_to_beginning(*tps)
            return
        since_ms = int((time.time() - self.since_seconds) * 1000)
        found = await consumer.offsets_for_times(dict.fromkeys(tps, since_ms))
        for tp in tps:
            offset = found.get(tp)
            if offset is None:
                await consumer.seek_to_end(tp)
            else:
                consumer.seek(tp, offset.offset)
