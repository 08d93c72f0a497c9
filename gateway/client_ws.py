"""``/v1/client``: the ingest websocket, the I/O around :mod:`gateway.ingest`.

The connection authenticates with its first frame, then streams callback frames. The frames read
in one go (those already received when the reader next waits) form a write batch: one task and one
deadline write the batch to Kafka, not one per frame. At most ``max_inflight_frames`` frames are
being written at once (beyond, reading pauses and TCP pushes back on the client); each is
acknowledged, cumulatively, once Kafka has it.

Tokens on an open connection (:class:`Lease`): ``ready`` announces the token's ``expires_at``; at
that moment the gateway closes the connection with 4001 ``token-expired`` -- after flushing and
acknowledging what is in flight -- unless the client sent a ``refresh`` frame with a new token
for the same subject, scope, inquiry and template (answered ``refreshed``; a refused one is
answered with an error frame -- ``token-invalid``, ``token-expired``, ``token-scope``,
``token-mismatch`` -- and the old expiry stands).

Closing codes: 1008 with ``auth-timeout``, ``auth-required``, ``token-*`` (``token-missing``: an auth
frame without a token) or ``too-many-errors``;
4001 ``token-expired`` when the token of an open connection expires without a refresh;
1013 ``rate-limited`` over the rate limit (the frame is resent after reconnecting);
1009 when a message exceeds ``max_frame_bytes`` (the websockets library closes it); 1013
``kafka-unavailable`` when a write is not confirmed -- nothing after it is acknowledged and the
client resends; 1000 ``idle-timeout``; 1001 ``shutdown`` after in-flight writes are flushed and
acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from core.tokens import Claims, Scope, TokenAuthority, TokenError
from core.topics import TopicPlan
from gateway.ingest import AckTracker, Close, Duplicate, IngestConnection, IngestLimits, Recent, Refresh, Reject, Write
from gateway.metrics import GatewayMetrics
from gateway.publisher import Message, Publisher, PublishError
from schemas.codec import decode, encode
from schemas.errors import Code, SchemaError
from schemas.frames import (
    AckFrame,
    AnalyticsLimits,
    AuthFrame,
    ClientLimits,
    ErrorFrame,
    ReadyFrame,
    RefreshedFrame,
    SubscribeLimits,
)

log = logging.getLogger(__name__)


async def authenticate(
    connection: ServerConnection,
    tokens: TokenAuthority,
    scopes: tuple[Scope, ...],
    timeout: float,
    metrics: GatewayMetrics,
) -> Claims | None:
    """Read the auth frame and verify its token; close the connection (1008) and return None if not."""
    try:
        first = await asyncio.wait_for(connection.recv(), timeout)
    except TimeoutError:
        await close(connection, 1008, Code.AUTH_TIMEOUT, metrics, discard_unread=True)
        return None
    except ConnectionClosed:
        return None
    try:
        frame = decode(AuthFrame, first)
        return tokens.verify(frame.token, scopes)
    except SchemaError:
        reason = Code.TOKEN_MISSING if _tokenless_auth(first) else Code.AUTH_REQUIRED
        await close(connection, 1008, reason, metrics, discard_unread=True)
    except TokenError as exc:
        await close(connection, 1008, exc.code, metrics, discard_unread=True)
    return None


def _tokenless_auth(message: str | bytes) -> bool:
    """An auth frame whose token is absent, null or empty: the client has no token (``token-missing``),
    which is not the same mistake as a first frame that is no auth frame (``auth-required``)."""
    try:
        document = orjson.loads(message)
    except orjson.JSONDecodeError:
        return False
    return (
        isinstance(document, dict)
        and document.get("type") == "auth"
        and document.get("token") in (None, "")
        and set(document) <= {"type", "token"}
    )


async def close(
    connection: ServerConnection,
    code: int,
    reason: Code,
    metrics: GatewayMetrics,
    *,
    within: float | None = None,
    discard_unread: bool = False,
) -> None:
    """Close with a code and reason; ``within`` seconds at most, then drop the TCP connection.

    A close frame queues behind everything already sent: a peer that no longer reads would hold the
    connection (and its buffers) open for ever, so slow consumers are closed ``within`` a bound.

    The peer's answering close frame queues, likewise, behind the messages it sent that were not
    read: once websockets' receive buffer is full it stops reading the socket, and the handshake
    would wait out the library's close timeout (10 s) before the TCP connection ends -- late for a
    browser's ``onclose``. ``discard_unread`` (only for the task that reads the connection) reads
    and drops those messages while closing, so the handshake completes as soon as the peer answers.
    """
    metrics.connections_closed.labels(reason).inc()
    discarding = asyncio.create_task(_discard(connection)) if discard_unread else None
    with contextlib.suppress(ConnectionClosed):
        try:
            await asyncio.wait_for(connection.close(code, reason), within)
        except TimeoutError:
            connection.transport.abort()
        finally:
            if discarding is not None:
                discarding.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await discarding


async def _discard(connection: ServerConnection) -> None:
    with contextlib.suppress(ConnectionClosed):
        while True:
            await connection.recv(decode=False)


def ready_frame(
    connection: ServerConnection, claims: Claims, limits: ClientLimits | SubscribeLimits | AnalyticsLimits
) -> ReadyFrame:
    """The answer to a valid auth frame: who the connection is, its limits, when its token expires."""
    return ReadyFrame(
        connection=str(connection.id),
        subject=claims.subject,
        scope=claims.scope,
        limits=limits,
        expires_at=claims.expires_at,
    )


async def send(connection: ServerConnection, frame: Any) -> None:
    with contextlib.suppress(ConnectionClosed):
        await connection.send(encode(frame).decode())


TOKEN_EXPIRED = 4001


class Lease:
    """An open connection's token: closes the connection when it expires, unless refreshed.

    ``before_close`` runs first (the ingest connection flushes and acknowledges its writes).
    """

    def __init__(
        self,
        connection: ServerConnection,
        tokens: TokenAuthority,
        claims: Claims,
        scopes: tuple[Scope, ...],
        metrics: GatewayMetrics,
        before_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.connection, self.tokens, self.claims, self.scopes = connection, tokens, claims, scopes
        self.metrics, self.before_close = metrics, before_close
        self.expired = False
        self._task = asyncio.create_task(self._expire())

    async def _expire(self) -> None:
        await asyncio.sleep(max(0.0, self.claims.expires_at - time.time()))
        self.expired = True
        if self.before_close is not None:
            await self.before_close()
        await close(self.connection, TOKEN_EXPIRED, Code.TOKEN_EXPIRED, self.metrics)

    def refresh(self, token: str) -> RefreshedFrame | ErrorFrame:
        """Take a refresh token; the answer to send."""
        if self.expired:
            return ErrorFrame(code=Code.TOKEN_EXPIRED, message="the connection's token has expired")
        try:
            self.claims = self.tokens.refresh(self.claims, token, self.scopes)
        except TokenError as exc:
            return ErrorFrame(code=exc.code, message=str(exc))
        self._task.cancel()  # not expired: the timer is still asleep
        self._task = asyncio.create_task(self._expire())
        return RefreshedFrame(expires_at=self.claims.expires_at)

    async def stop(self) -> None:
        if asyncio.current_task() is self._task:
            return
        if not self.expired:
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task  # an expiry under way finishes its close first


class IngestHandler:
    """One ingest connection from accept to close."""

    def __init__(
        self,
        connection: ServerConnection,
        *,
        tokens: TokenAuthority,
        publisher: Publisher,
        topics: TopicPlan,
        limits: IngestLimits,
        recent: Recent[tuple[str, str, int]],
        metrics: GatewayMetrics,
        auth_timeout: float,
        idle_timeout: float,
        max_inflight: int,
    ) -> None:
        self.connection = connection
        self.tokens, self.publisher, self.topics = tokens, publisher, topics
        self.limits, self.recent, self.metrics = limits, recent, metrics
        self.auth_timeout, self.idle_timeout = auth_timeout, idle_timeout
        self.inflight = asyncio.Semaphore(max_inflight)
        self.tracker = AckTracker()
        self.writes: set[asyncio.Task[None]] = set()
        self.batch: list[tuple[Write, list[Any]]] = []
        """Frames read but not yet handed to Kafka; the task of :meth:`_write_batch` takes them all."""
        self.failed = False
        self.reader: asyncio.Task[None] | None = None
        self.flusher: asyncio.Task[None] | None = None

    async def run(self) -> None:
        claims = await authenticate(self.connection, self.tokens, ("ingest",), self.auth_timeout, self.metrics)
        if claims is None:
            return
        if not self.publisher.healthy:
            await close(self.connection, 1013, Code.KAFKA_UNAVAILABLE, self.metrics)
            return
        origin = self.connection.request.headers.get("Origin") if self.connection.request else None
        core = IngestConnection(claims, origin, self.limits, self.recent, now=time.monotonic())
        await send(
            self.connection,
            ready_frame(
                self.connection,
                claims,
                ClientLimits(
                    max_frame_bytes=self.limits.max_frame_bytes,
                    rate_per_second=self.limits.rate_per_second,
                    rate_burst=self.limits.rate_burst,
                    max_sessions=self.limits.max_sessions,
                ),
            ),
        )
        self.reader = asyncio.current_task()
        lease = Lease(self.connection, self.tokens, claims, ("ingest",), self.metrics, self._drain)
        try:
            await self._read(core, lease)
        except asyncio.CancelledError:
            # gateway shutdown: flush what is in flight, acknowledge it, then say goodbye
            await lease.stop()
            await self._drain()
            await close(self.connection, 1001, Code.SHUTDOWN, self.metrics)
            return
        await lease.stop()
        await self._drain()

    async def _read(self, core: IngestConnection, lease: Lease) -> None:
        while not self.failed:
            try:
                async with asyncio.timeout(self.idle_timeout):  # a timer, not a task per frame
                    message = await self.connection.recv()
            except TimeoutError:
                await close(self.connection, 1000, Code.IDLE_TIMEOUT, self.metrics)
                return
            except ConnectionClosed:
                return
            self.metrics.frames_received.inc()
            decision = core.receive(message, time.monotonic(), datetime.now(UTC))
            if isinstance(decision, Write):
                await self.inflight.acquire()
                self.batch.append((decision, self.tracker.add(decision.session, decision.seq)))
                if len(self.batch) == 1:  # a new batch: written once this reader waits for the network
                    task = asyncio.create_task(self._write_batch())
                    self.writes.add(task)
                    task.add_done_callback(self.writes.discard)
            elif isinstance(decision, Refresh):
                answer = lease.refresh(decision.token)
                core.claims = lease.claims
                if isinstance(answer, ErrorFrame):
                    self.metrics.frames_rejected.labels(answer.code).inc()
                await send(self.connection, answer)
            elif isinstance(decision, Duplicate):
                self.metrics.frames_deduplicated.inc()
                self.tracker.add(decision.session, decision.seq, done=True)
                await self._flush_acks()
            elif isinstance(decision, Reject):
                await self._reject(decision.error, final=decision.close is None)
                if decision.close is not None:
                    await self._drain()  # what came before is written and acknowledged first
                    await close(
                        self.connection, decision.close.code, decision.close.reason, self.metrics, discard_unread=True
                    )
                    return
            elif isinstance(decision, Close):
                await close(self.connection, decision.code, decision.reason, self.metrics, discard_unread=True)
                return

    async def _write_batch(self) -> None:
        batch, self.batch = self.batch, []
        topic = self.topics.client_events.name
        try:
            messages = [Message(topic, key, value) for write, _ in batch for key, value in write.messages]
            await self.publisher.send(messages)
        except PublishError:
            if not self.failed:
                self.failed = True
                await close(self.connection, 1013, Code.KAFKA_UNAVAILABLE, self.metrics)
            return
        finally:
            for _ in batch:
                self.inflight.release()
        for write, entry in batch:
            self.recent.add((write.subject, write.session, write.seq))
            self.tracker.complete(entry)
        self._request_flush()

    async def _reject(self, error: ErrorFrame, *, final: bool) -> None:
        self.metrics.frames_rejected.labels(error.code).inc()
        if final and error.session is not None and error.seq is not None:
            self.tracker.add(error.session, error.seq, done=True)
        await send(self.connection, error)
        await self._flush_acks()

    def _request_flush(self) -> None:
        """Acknowledge soon: writes completing in the same moment share one ack frame."""
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.create_task(self._flush_acks())

    async def _flush_acks(self) -> None:
        while not self.failed:  # after a failed write nothing more is acknowledged on this connection
            ready = self.tracker.ready()
            if not ready:
                return
            for session, seq, frames in ready:
                self.metrics.frames_acknowledged.inc(frames)
                await send(self.connection, AckFrame(session=session, seq=seq))

    async def _drain(self, timeout: float = 10.0) -> None:
        if self.writes:
            await asyncio.wait(set(self.writes), timeout=timeout)
        await self._flush_acks()

    def shutdown(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
