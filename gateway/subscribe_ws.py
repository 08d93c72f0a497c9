"""``/v1/subscribe`` and ``/v1/analytics``: fan-out of trusted statuses and analytics to websockets.

Each connection has one bounded queue and one writer task. Publishing never awaits a subscriber:
a record is encoded once, then offered to each interested connection's queue; a connection whose
queue is full is a slow consumer and is closed (1013 ``slow-consumer``) -- it resumes with
``since`` after reconnecting, and the others never wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from core.tokens import STATUS_READERS, Claims, TokenAuthority
from gateway.client_ws import Lease, authenticate, close, ready_frame
from gateway.metrics import GatewayMetrics
from gateway.statuses import StatusCache
from gateway.subscriptions import Channel, may_see, plan, refusal
from schemas.codec import decode, encode
from schemas.errors import Code, SchemaError
from schemas.frames import (
    AnalyticsLimits,
    ErrorFrame,
    RefreshFrame,
    SubscribedFrame,
    SubscribeFrame,
    SubscribeLimits,
    UnsubscribeFrame,
    UpdateFrame,
)
from schemas.records import AnalyticsRecord, StatusRecord

log = logging.getLogger(__name__)

SLOW_CONSUMER_CLOSE_SECONDS = 10.0  # a slow consumer that still reads gets its 1013; one that does not, a TCP reset


UPDATE: str = UpdateFrame.model_fields["type"].default


def update_frame(request_id: str, channel: str, raw: bytes) -> str:
    """An :class:`~schemas.frames.UpdateFrame` around a record already encoded: the record is encoded
    once and embedded as it is (an orjson fragment, no string splicing) in each subscription's frame."""
    return orjson.dumps({"type": UPDATE, "id": request_id, "channel": channel, "data": orjson.Fragment(raw)}).decode()


class Outbox:
    """One connection's bounded queue and the task that writes it to the socket."""

    def __init__(self, connection: ServerConnection, size: int, metrics: GatewayMetrics) -> None:
        self.connection, self.metrics = connection, metrics
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=size)
        self.slow = False
        self.writer = asyncio.create_task(self._write())

    def offer(self, text: str) -> bool:
        if self.slow:
            return False
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.slow = True
            self.writer.cancel()
            closing = close(self.connection, 1013, Code.SLOW_CONSUMER, self.metrics, within=SLOW_CONSUMER_CLOSE_SECONDS)
            asyncio.get_running_loop().create_task(closing)
            return False
        return True

    async def _write(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await self.connection.send(await self.queue.get())

    async def stop(self) -> None:
        self.writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.writer


@dataclass(eq=False)
class Subscription:
    request_id: str
    channel: Channel
    claims: Claims
    outbox: Outbox
    versions: dict[str, int] = field(default_factory=dict)

    def deliver(self, record: StatusRecord, raw: bytes) -> None:
        if record.version <= self.versions.get(record.inquiry_id, 0) or not may_see(self.claims, self.channel, record):
            return
        self.versions[record.inquiry_id] = record.version
        self.outbox.offer(update_frame(self.request_id, str(self.channel), raw))


class StatusHub:
    """Who follows what; fed by the status topic."""

    def __init__(self, cache: StatusCache) -> None:
        self.cache = cache
        self.by_inquiry: dict[str, set[Subscription]] = {}
        self.by_reference: dict[str, set[Subscription]] = {}
        self.firehose: set[Subscription] = set()

    def on_record(self, message: Any) -> None:
        try:
            record = decode(StatusRecord, message.value)
        except SchemaError:
            log.warning("undecodable status record at %s[%d]@%d", message.topic, message.partition, message.offset)
            return
        if self.cache.apply(record, message.value):
            self.publish(record, message.value)

    def publish(self, record: StatusRecord, raw: bytes) -> None:
        targets: Iterable[Subscription] = self.by_inquiry.get(record.inquiry_id, set())
        if record.reference_id is not None and record.reference_id in self.by_reference:
            targets = [*targets, *self.by_reference[record.reference_id]]
        for subscription in [*targets, *self.firehose]:
            subscription.deliver(record, raw)

    def add(self, subscription: Subscription) -> None:
        channel = subscription.channel
        if channel.kind == "inquiry":
            self.by_inquiry.setdefault(channel.inquiry_id or "", set()).add(subscription)
        elif channel.kind == "mine":
            self.by_reference.setdefault(subscription.claims.subject, set()).add(subscription)
        else:
            self.firehose.add(subscription)

    def remove(self, subscription: Subscription) -> None:
        for index, key in (
            (self.by_inquiry, subscription.channel.inquiry_id),
            (self.by_reference, subscription.claims.subject),
        ):
            members = index.get(key or "")
            if members is not None:
                members.discard(subscription)
                if not members:
                    del index[key or ""]
        self.firehose.discard(subscription)


class SubscribeHandler:
    """One ``/v1/subscribe`` connection."""

    def __init__(
        self,
        connection: ServerConnection,
        *,
        hub: StatusHub,
        tokens: TokenAuthority,
        metrics: GatewayMetrics,
        auth_timeout: float,
        queue_size: int,
        max_subscriptions: int,
        max_errors: int,
    ) -> None:
        self.connection, self.hub, self.tokens, self.metrics = connection, hub, tokens, metrics
        self.auth_timeout, self.queue_size = auth_timeout, queue_size
        self.max_subscriptions, self.max_errors = max_subscriptions, max_errors
        self.subscriptions: dict[str, Subscription] = {}
        self.errors = 0
        self.lease: Lease

    async def run(self) -> None:
        claims = await authenticate(self.connection, self.tokens, STATUS_READERS, self.auth_timeout, self.metrics)
        if claims is None:
            return
        outbox = Outbox(self.connection, self.queue_size, self.metrics)
        outbox.offer(
            encode(
                ready_frame(
                    self.connection,
                    claims,
                    SubscribeLimits(max_subscriptions=self.max_subscriptions, queue_size=self.queue_size),
                )
            ).decode()
        )
        self.lease = Lease(self.connection, self.tokens, claims, STATUS_READERS, self.metrics)
        try:
            async for message in self.connection:
                if not await self._handle(message, claims, outbox):
                    break
        except ConnectionClosed:
            pass
        finally:
            for subscription in self.subscriptions.values():
                self.hub.remove(subscription)
            await self.lease.stop()
            await outbox.stop()

    async def _handle(self, message: str | bytes, claims: Claims, outbox: Outbox) -> bool:
        try:
            document = orjson.loads(message)
        except orjson.JSONDecodeError:
            return await self._error(outbox, Code.INVALID_JSON, "the frame is not JSON")
        kind = document.get("type") if isinstance(document, dict) else None
        request_id = document.get("id") if isinstance(document, dict) and isinstance(document.get("id"), str) else None
        if kind not in ("subscribe", "unsubscribe", "refresh"):
            return await self._error(outbox, Code.UNKNOWN_FRAME_TYPE, f"no frame type {kind!r} here", request_id)
        try:
            if kind == "refresh":
                answer = self.lease.refresh(decode(RefreshFrame, message).token)
                if isinstance(answer, ErrorFrame):
                    return await self._error(outbox, Code(answer.code), answer.message)
                outbox.offer(encode(answer).decode())
                return True
            if kind == "unsubscribe":
                stop = decode(UnsubscribeFrame, message)
                subscription = self.subscriptions.pop(stop.id, None)
                if subscription is not None:
                    self.hub.remove(subscription)
                return True
            frame = decode(SubscribeFrame, message)
        except SchemaError as exc:
            return await self._error(outbox, Code.INVALID_FRAME, str(exc), request_id, exc.field)
        if frame.id in self.subscriptions:
            return await self._error(outbox, Code.DUPLICATE_SUBSCRIPTION, "this id is in use", frame.id)
        if len(self.subscriptions) >= self.max_subscriptions:
            await close(self.connection, 1008, Code.TOO_MANY_SUBSCRIPTIONS, self.metrics, discard_unread=True)
            return False
        channel = Channel.parse(frame.channel)
        if (code := refusal(claims, channel)) is not None:
            return await self._error(outbox, code, f"not allowed to follow {frame.channel}", frame.id)
        subscription = Subscription(frame.id, channel, claims, outbox)
        # register and plan in one synchronous step: every later record reaches the subscription
        # after the snapshot, and the versions fixed here drop anything already in it
        self.hub.add(subscription)
        start = plan(claims, channel, frame.since, self.hub.cache)
        subscription.versions = dict(start.versions)
        self.subscriptions[frame.id] = subscription
        outbox.offer(
            encode(
                SubscribedFrame(id=frame.id, channel=frame.channel, recovered=start.recovered, snapshot=start.snapshot)
            ).decode()
        )
        for record in start.replay:
            outbox.offer(update_frame(frame.id, frame.channel, encode(record)))
        return True

    async def _error(
        self, outbox: Outbox, code: Code, message: str, request_id: str | None = None, field: str | None = None
    ) -> bool:
        self.metrics.frames_rejected.labels(code).inc()
        self.errors += 1
        if self.errors > self.max_errors:
            await close(self.connection, 1008, Code.TOO_MANY_ERRORS, self.metrics, discard_unread=True)
            return False
        outbox.offer(encode(ErrorFrame(code=code, message=message, id=request_id, field=field)).decode())
        return True


class AnalyticsHub:
    """The latest analytics record per (template, window) of the last hours, and who follows them."""

    def __init__(self, retention: timedelta) -> None:
        self.retention = retention
        self.records: dict[tuple[str, datetime], bytes] = {}
        self.outboxes: set[Outbox] = set()

    def on_record(self, message: Any) -> None:
        try:
            record = decode(AnalyticsRecord, message.value)
        except SchemaError:
            log.warning("undecodable analytics record at offset %d", message.offset)
            return
        self.records[(record.template_id, record.window_start)] = message.value
        horizon = datetime.now(UTC) - self.retention
        for key in [k for k in self.records if k[1] < horizon]:
            del self.records[key]
        text = update_frame("analytics", "analytics", message.value)
        for outbox in list(self.outboxes):
            outbox.offer(text)

    def recent(self) -> list[bytes]:
        return [self.records[key] for key in sorted(self.records, key=lambda k: (k[1], k[0]))]


async def serve_analytics(
    connection: ServerConnection,
    *,
    hub: AnalyticsHub,
    tokens: TokenAuthority,
    metrics: GatewayMetrics,
    auth_timeout: float,
    queue_size: int,
) -> None:
    """One ``/v1/analytics`` connection: the recent windows, then every new record."""
    claims = await authenticate(connection, tokens, ("analytics",), auth_timeout, metrics)
    if claims is None:
        return
    outbox = Outbox(connection, max(queue_size, len(hub.records) + 16), metrics)
    outbox.offer(encode(ready_frame(connection, claims, AnalyticsLimits(queue_size=queue_size))).decode())
    for raw in hub.recent():
        outbox.offer(update_frame("analytics", "analytics", raw))
    hub.outboxes.add(outbox)
    lease = Lease(connection, tokens, claims, ("analytics",), metrics)
    try:
        async for message in connection:  # reading keeps pings answered; only refresh frames mean anything
            try:
                answer = lease.refresh(decode(RefreshFrame, message).token)
            except SchemaError as exc:
                answer = ErrorFrame(code=Code.INVALID_FRAME, message=str(exc), field=exc.field)
            outbox.offer(encode(answer).decode())
    except ConnectionClosed:
        pass
    finally:
        hub.outboxes.discard(outbox)
        await lease.stop()
        await outbox.stop()
