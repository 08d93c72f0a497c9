"""Writing to Kafka durably, behind a small protocol the gateway's handlers depend on.

:class:`KafkaPublisher` is the only implementation used outside unit tests: an idempotent aiokafka
producer with ``acks=all``, whose :meth:`send` returns only once the broker has the record. It keeps
trying to connect when Kafka is down at start-up, and reports its health for ``/readyz`` and for
the ingest handler, which stops acknowledging (and tells clients to retry) while it is unhealthy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError

from schemas.errors import Code, PersonaStreamError

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]


class PublishError(PersonaStreamError):
    """Kafka did not confirm the write in time; the caller must not acknowledge it."""

    code = Code.KAFKA_UNAVAILABLE
    retriable = code.retriable


@dataclass(frozen=True)
class Message:
    topic: str
    key: bytes
    value: bytes
    headers: Headers | None = None


class Publisher(Protocol):
    @property
    def healthy(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, messages: Sequence[Message]) -> None:
        """Return once every message is durably in Kafka; raise :class:`PublishError` otherwise."""


class KafkaPublisher:
    """An idempotent ``acks=all`` producer; :meth:`send` waits for the broker's acknowledgement."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        client_id: str = "persona-stream-gateway",
        timeout: float = 4.0,
        linger_ms: int = 2,
        compression_type: str | None = None,
        observe_latency: Callable[[float], None] | None = None,
        watch_topics: tuple[str, ...] = (),
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._client_id = client_id
        self._timeout = timeout
        self._linger_ms = linger_ms
        self._compression = compression_type
        self._producer: AIOKafkaProducer | None = None
        self._healthy = False
        self._tasks: list[asyncio.Task[None]] = []
        self._observe = observe_latency
        self._watch = watch_topics
        self._became_healthy = asyncio.Event()

    @property
    def healthy(self) -> bool:
        return self._healthy and self._producer is not None

    async def start(self) -> None:
        """Start connecting in the background; never fails because Kafka is down."""
        self._tasks.append(asyncio.create_task(self._connect_and_watch(), name="publisher-health"))

    async def wait_healthy(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._became_healthy.wait(), timeout)
        return self.healthy

    def _set_healthy(self, healthy: bool) -> None:
        self._healthy = healthy
        if healthy:
            self._became_healthy.set()
        else:
            self._became_healthy.clear()

    async def _connect_and_watch(self) -> None:
        while self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap,
                client_id=self._client_id,
                acks="all",
                enable_idempotence=True,
                linger_ms=self._linger_ms,
                compression_type=self._compression,
                request_timeout_ms=int(self._timeout * 1000),
            )
            try:
                await producer.start()
            except KafkaError as exc:
                log.warning("Kafka is not reachable yet (%s); retrying", exc)
                with contextlib.suppress(Exception):
                    await producer.stop()
                await asyncio.sleep(1.0)
                continue
            self._producer = producer
            self._set_healthy(True)
        while True:
            await asyncio.sleep(1.0)
            try:
                # the metadata of the topics this producer writes (not of the whole cluster)
                client = self._producer.client
                async with asyncio.timeout(self._timeout):
                    for topic in self._watch:
                        await client.add_topic(topic)
                    if not await client.force_metadata_update():
                        raise KafkaConnectionError("metadata update failed")
                writable = all(self._has_leaders(client.cluster, topic) for topic in self._watch)
            except (KafkaError, TimeoutError, OSError) as exc:
                if self._healthy:
                    log.warning("Kafka became unavailable: %r", exc)
                self._set_healthy(False)
            else:
                if writable and not self._healthy:
                    log.info("Kafka is available again")
                self._set_healthy(writable)

    @staticmethod
    def _has_leaders(cluster: Any, topic: str) -> bool:
        """Every partition of the topic has a leader: a write would be accepted (after a broker
        restart, partitions come back one by one)."""
        partitions = cluster.partitions_for_topic(topic) or set()
        return bool(partitions) and len(cluster.available_partitions_for_topic(topic) or ()) == len(partitions)

    async def send(self, messages: Sequence[Message]) -> None:
        producer = self._producer
        if producer is None or not self._healthy:
            raise PublishError("Kafka is unavailable")
        started = time.perf_counter()
        futures: list[asyncio.Future[Any]] = []
        try:
            for m in messages:
                # waits only while the producer's buffer is full; aiokafka bounds that wait by
                # request_timeout_ms (the same timeout) and raises KafkaTimeoutError
                futures.append(await producer.send(m.topic, m.value, key=m.key, headers=m.headers))
            async with asyncio.timeout(self._timeout):  # one deadline for the acks of the whole batch
                for future in futures:
                    await future
        except (KafkaError, TimeoutError) as exc:
            for future in futures:
                future.cancel()  # nobody waits for them any more
            self._set_healthy(False)
            raise PublishError(f"Kafka did not confirm the write: {exc!r}") from exc
        if self._observe is not None:
            self._observe(time.perf_counter() - started)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._producer is not None:
            with contextlib.suppress(KafkaError):
                await self._producer.flush()
            await self._producer.stop()
            self._producer = None
