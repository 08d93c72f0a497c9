"""The HTTP port's defences against slow and idle clients.

A webhook delivery must be answered within Persona's 5 s, whatever else holds connections to the
HTTP port. Without limits one client trickling request headers can hold thousands of connections
open for as long as it likes, and the server's memory and latency grow with them. So:

=================================  ==============================================================
limit (setting)                    what happens
=================================  ==============================================================
``http_header_timeout_seconds``    a connection whose first request's headers are not complete by
                                   then is closed (no answer: the request never arrived)
``http_body_timeout_seconds``      a request whose body is not complete that long after its
                                   headers is closed
``http_keepalive_seconds``         an idle keep-alive connection is closed (also bounds the wait
                                   for a later request's headers)
``http_max_connections``           at the cap, a new connection takes the place of the oldest one
                                   still waiting for its first headers (that one is closed); if
                                   every connection is serving a request, the new one is refused:
                                   ``503`` ``too-many-connections`` with ``Retry-After: 1``
=================================  ==============================================================

Taking the place of the oldest waiting connection means a flood of slow connections, however
large, cannot lock a prompt client out: the newest connection is always admitted while any
connection is merely waiting, and one that sends its headers at once is never the oldest waiting.

:class:`ConnectionTable` is the pure policy (no sockets, no clock); :class:`EdgeAppRunner` is the
aiohttp extension that applies it: an ``AppRunner`` whose server builds
:class:`EdgeRequestHandler` protocols (a ``RequestHandler`` subclass).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web, web_protocol, web_server
from aiohttp.streams import StreamReader

from gateway.metrics import GatewayMetrics
from schemas.errors import Code


@dataclass(frozen=True)
class EdgeLimits:
    max_connections: int
    header_timeout: float
    body_timeout: float
    keepalive_timeout: float


@dataclass(frozen=True)
class Admission:
    """What to do with a new connection: admit it (closing ``evict`` first, if set) or refuse it."""

    admitted: bool
    evict: Hashable | None = None


@dataclass
class ConnectionTable:
    """Open connections, and those of them still waiting for their first request's headers."""

    limit: int
    open: set[Hashable] = field(default_factory=set)
    waiting: dict[Hashable, None] = field(default_factory=dict)
    """Oldest first (a dict keeps insertion order)."""

    def admit(self, connection: Hashable) -> Admission:
        evict: Hashable | None = None
        if len(self.open) >= self.limit:
            if not self.waiting:
                return Admission(admitted=False)
            evict = next(iter(self.waiting))
            self.closed(evict)
        self.open.add(connection)
        self.waiting[connection] = None
        return Admission(admitted=True, evict=evict)

    def started(self, connection: Hashable) -> None:
        """Its first request's headers are complete: no longer evictable."""
        self.waiting.pop(connection, None)

    def closed(self, connection: Hashable) -> None:
        self.open.discard(connection)
        self.waiting.pop(connection, None)


def _refusal() -> bytes:
    body = json.dumps(
        {"code": Code.TOO_MANY_CONNECTIONS, "message": "the gateway holds http_max_connections busy connections"}
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
        f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


REFUSAL = _refusal()


class Edge:
    """The limits and the connection table shared by the protocols of one HTTP server."""

    def __init__(self, limits: EdgeLimits, metrics: GatewayMetrics) -> None:
        self.limits = limits
        self.metrics = metrics
        self.table = ConnectionTable(limits.max_connections)
        self.handlers: dict[Hashable, EdgeRequestHandler] = {}


class EdgeRequestHandler(web_protocol.RequestHandler):
    """aiohttp's protocol with the deadlines and the admission of :class:`Edge`."""

    def __init__(self, manager: web_server.Server, edge: Edge, **kwargs: Any) -> None:
        super().__init__(manager, keepalive_timeout=edge.limits.keepalive_timeout, **kwargs)
        self.edge = edge
        self.refused = False
        self.deadline: asyncio.TimerHandle | None = None
        self.awaiting_headers = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        admission = self.edge.table.admit(self)
        if not admission.admitted:
            self.refused = True
            self.edge.metrics.http_connections_closed.labels("too-many-connections").inc()
            assert isinstance(transport, asyncio.Transport)
            transport.write(REFUSAL)
            transport.close()
            return
        if admission.evict is not None:
            evicted = self.edge.handlers.pop(admission.evict, None)
            if evicted is not None:
                self.edge.metrics.http_connections_closed.labels("evicted").inc()
                evicted.force_close()
        self.edge.handlers[self] = self
        super().connection_made(transport)
        loop = asyncio.get_running_loop()
        self.deadline = loop.call_later(self.edge.limits.header_timeout, self._headers_late)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        before = self._request_count
        super().data_received(data)
        if self.awaiting_headers and self._request_count != before:
            self.awaiting_headers = False
            self.edge.table.started(self)
            self._cancel_deadline()
            payload = self._messages[-1][1] if self._messages else None
            if isinstance(payload, StreamReader) and not payload.is_eof():
                loop = asyncio.get_running_loop()
                self.deadline = loop.call_later(self.edge.limits.body_timeout, self._body_late, payload)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.refused:
            return
        self._cancel_deadline()
        self.edge.table.closed(self)
        self.edge.handlers.pop(self, None)
        super().connection_lost(exc)

    def _cancel_deadline(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _headers_late(self) -> None:
        self.deadline = None
        if self.awaiting_headers:
            self.edge.metrics.http_connections_closed.labels("header-timeout").inc()
            self.force_close()

    def _body_late(self, payload: StreamReader) -> None:
        self.deadline = None
        if not payload.is_eof():
            self.edge.metrics.http_connections_closed.labels("body-timeout").inc()
            self.force_close()


class EdgeServer(web_server.Server):
    """An aiohttp low-level server whose connections are :class:`EdgeRequestHandler` protocols."""

    def __init__(self, *args: Any, edge: Edge, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.edge = edge
        self.handler_kwargs = {
            k: v for k, v in kwargs.items() if k not in ("request_factory", "handler_cancellation", "loop")
        }

    def __call__(self) -> EdgeRequestHandler:
        return EdgeRequestHandler(self, self.edge, loop=asyncio.get_running_loop(), **self.handler_kwargs)


class EdgeAppRunner(web.AppRunner):
    """``web.AppRunner`` serving the application through an :class:`EdgeServer`."""

    def __init__(self, app: web.Application, edge: Edge, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.edge = edge

    async def _make_server(self) -> web_server.Server:
        plain = await super()._make_server()  # the application's startup, and its request handler
        options = {k: v for k, v in self._kwargs.items() if k != "keepalive_timeout"}
        return EdgeServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=asyncio.get_running_loop(),
            edge=self.edge,
            **options,
        )
