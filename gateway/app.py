"""The gateway process: a websocket server and an HTTP server around one Kafka publisher.

=========  ==========================  ======================================================
port       path                        what
=========  ==========================  ======================================================
ws_port    /v1/client                  ingest of browser callbacks (``gateway.client_ws``)
ws_port    /v1/subscribe               trusted status updates (``gateway.subscribe_ws``)
ws_port    /v1/analytics               the analytics feed (``gateway.subscribe_ws``)
http_port  POST /v1/webhooks/persona   signed webhooks (``gateway.webhook_receiver``)
http_port  GET /v1/inquiries/{id}      one inquiry's view (``gateway.inquiries``)
http_port  GET /dashboard              the live analytics dashboard (static page)
http_port  GET /dashboard/vendor/...   the page's charting library (uPlot, vendored)
http_port  GET /healthz                the process is up (and its pid)
http_port  GET /readyz                 503 until Kafka is reachable and the status feed caught up (and the pid)
http_port  GET /metrics                Prometheus text format
=========  ==========================  ======================================================

Websockets are served by the ``websockets`` library; HTTP by aiohttp, which (unlike the websockets
server) reads request bodies, with the limits on slow and idle clients of ``gateway.http_edge``.
Handshakes refused before the upgrade get an HTTP status and a code in the body: 404
``not-found``, 403 ``origin-forbidden``, 503 ``too-many-connections`` or ``shutting-down``.

:meth:`Gateway.stop` is the graceful shutdown of SIGTERM: refuse new connections, let every ingest
connection flush and acknowledge what it has in flight, close them with 1001, flush the producer.

With ``reuse_port`` both ports are bound with SO_REUSEPORT, so that several gateway processes share
them (``persona-stream gateway --processes N``, ``persona_stream.gateways``); each one stays whole
and stateless, with its own producer and its own readers of the status and analytics topics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from http import HTTPStatus
from pathlib import Path

from aiohttp import web
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from core.settings import Settings
from core.tokens import TokenAuthority
from core.topics import TopicPlan
from gateway.client_ws import IngestHandler
from gateway.feeds import TopicFeed
from gateway.http_edge import Edge, EdgeAppRunner, EdgeLimits
from gateway.ingest import IngestLimits, Recent
from gateway.inquiries import InquiryReader
from gateway.metrics import GatewayMetrics
from gateway.publisher import Publisher
from gateway.statuses import StatusCache
from gateway.subscribe_ws import AnalyticsHub, StatusHub, SubscribeHandler, serve_analytics
from gateway.webhook_receiver import PATH as WEBHOOK_PATH
from gateway.webhook_receiver import WebhookReceiver
from schemas.errors import Code

log = logging.getLogger(__name__)

WsRoute = Callable[[ServerConnection], Awaitable[None]]
STATIC = Path(__file__).with_name("static")
DASHBOARD = STATIC / "dashboard.html"
# what the page loads besides itself: the charting library, vendored (no CDN; the page works offline)
VENDOR_DIR = STATIC / "vendor" / "uplot"
VENDOR = {"uPlot.iife.min.js": "text/javascript", "uPlot.min.css": "text/css"}
PAGE_CSP = (
    "default-src 'self'; connect-src 'self' ws: wss:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self' 'unsafe-inline'; img-src data:"
)


@dataclass
class Gateway:
    settings: Settings
    publisher: Publisher
    tokens: TokenAuthority
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)
    reuse_port: bool = False

    def __post_init__(self) -> None:
        s = self.settings
        self.topics = TopicPlan.from_settings(s)
        self.limits = IngestLimits(
            rate_per_second=s.rate_per_second,
            rate_burst=s.rate_burst,
            max_errors=s.max_errors_per_connection,
            max_sessions=s.max_sessions_per_connection,
            keep_field_values=s.keep_field_values,
            max_frame_bytes=s.max_frame_bytes,
        )
        self.recent_frames: Recent[tuple[str, str, int]] = Recent(s.dedupe_cache_size)
        self.receiver = WebhookReceiver(
            topics=self.topics,
            publisher=self.publisher,
            secrets=[secret.get_secret_value().encode() for secret in s.webhook_secrets],
            tolerance_seconds=s.webhook_tolerance_seconds,
            max_bytes=s.webhook_max_bytes,
            metrics=self.metrics,
            recent=Recent(s.dedupe_cache_size),
        )
        self._feeds()
        self.reader = InquiryReader(s.worker_url, self.tokens)
        self.ws_routes: dict[str, WsRoute] = {
            "/v1/client": self._ingest,
            "/v1/subscribe": self._subscribe,
            "/v1/analytics": self._analytics,
        }
        self.ingest_handlers: set[IngestHandler] = set()
        self.followers: set[ServerConnection] = set()
        self.stopping = False
        self._ws_server: Server | None = None
        self._http_runner: web.AppRunner | None = None
        self.ws_port = s.ws_port
        self.http_port = s.http_port
        self.metrics.ready.set_function(lambda: float(self.ready))

    def _feeds(self) -> None:
        """The status and analytics topics' readers, each feeding its hub (and the status cache)."""
        s = self.settings
        self.statuses = StatusCache(capacity=s.status_cache_size, history=s.status_history)
        self.status_hub = StatusHub(self.statuses)
        self.analytics_hub = AnalyticsHub(timedelta(hours=s.analytics_retention_hours))
        bootstrap = s.bootstrap_servers()
        self.status_feed = TopicFeed(bootstrap, self.topics.inquiry_status.name, self.status_hub.on_record)
        self.analytics_feed = TopicFeed(
            bootstrap,
            self.topics.analytics.name,
            self.analytics_hub.on_record,
            since_seconds=s.analytics_retention_hours * 3600,
        )

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        await self.publisher.start()
        await self.status_feed.start()
        await self.analytics_feed.start()
        await self._start_ws()
        await self._start_http()
        log.info("gateway listening: ws://%s:%d  http://%s:%d", s.host, self.ws_port, s.host, self.http_port)
        if "*" in s.allowed_origins:
            log.warning("allowed_origins is '*': any web page may open a websocket (set it in production)")

    async def _start_ws(self) -> None:
        """The websocket server on ``ws_port``; ``self.ws_port`` becomes the bound port (for port 0)."""
        s = self.settings
        self._ws_server = await serve(
            self._dispatch,
            s.host,
            s.ws_port,
            process_request=self._admit,
            max_size=s.max_frame_bytes,
            compression="deflate" if s.ws_compression else None,
            ping_interval=s.ping_interval_seconds,
            ping_timeout=s.ping_timeout_seconds,
            server_header="persona-stream",
            reuse_port=self.reuse_port,
        )
        self.ws_port = self._ws_server.sockets[0].getsockname()[1]

    async def _start_http(self) -> None:
        """The HTTP server on ``http_port``, behind the edge's limits; ``self.http_port`` becomes the bound port."""
        s = self.settings
        app = web.Application(client_max_size=s.webhook_max_bytes + 1)
        self.add_http_routes(app)
        edge = Edge(
            EdgeLimits(
                max_connections=s.http_max_connections,
                header_timeout=s.http_header_timeout_seconds,
                body_timeout=s.http_body_timeout_seconds,
                keepalive_timeout=s.http_keepalive_seconds,
            ),
            self.metrics,
        )
        self._http_runner = EdgeAppRunner(app, edge, access_log=None)
        await self._http_runner.setup()
        site = web.TCPSite(self._http_runner, s.host, s.http_port, reuse_port=self.reuse_port or None)
        await site.start()
        server = site._server
        assert server is not None
        self.http_port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]  # uvloop servers too

    @property
    def ready(self) -> bool:
        """Kafka reachable and the status feed caught up: safe to serve snapshots."""
        return self.publisher.healthy and self.status_feed.caught_up.is_set() and not self.stopping

    async def wait_ready(self, timeout: float) -> bool:
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.ready and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110 - two sources
            await asyncio.sleep(0.05)
        return self.ready

    async def stop(self, grace: float = 10.0) -> None:
        """Graceful shutdown: in-flight frames are flushed and acknowledged before connections close."""
        self.stopping = True
        for handler in list(self.ingest_handlers):
            handler.shutdown()
        for connection in list(self.followers):
            asyncio.get_running_loop().create_task(connection.close(1001, Code.SHUTDOWN))
        if self._ws_server is not None:
            self._ws_server.close(close_connections=False)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ws_server.wait_closed(), grace)
            self._ws_server.close(close_connections=True)
        if self._http_runner is not None:
            await self._http_runner.cleanup()
        await self.status_feed.stop()
        await self.analytics_feed.stop()
        await self.reader.close()
        await self.publisher.stop()

    def summary(self) -> str:
        """What this process served, for the line it prints when it stops."""
        m = self.metrics
        return (
            f"gateway pid {os.getpid()}: served {m.total(m.connections_opened)} websocket connections, "
            f"{m.total(m.webhooks, outcome='accepted')} webhooks accepted"
        )

    # --- websockets --------------------------------------------------------------------------

    def _admit(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path not in self.ws_routes:
            return connection.respond(HTTPStatus.NOT_FOUND, "not-found\n")
        if self.stopping:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "shutting-down\n")
        origin = request.headers.get("Origin")
        if origin is not None and not self.origin_allowed(origin):
            return connection.respond(HTTPStatus.FORBIDDEN, "origin-forbidden\n")
        assert self._ws_server is not None
        if len(self._ws_server.connections) >= self.settings.max_connections:  # open ones: not counting this one
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "too-many-connections\n")
        return None

    def origin_allowed(self, origin: str) -> bool:
        allowed = self.settings.allowed_origins
        return "*" in allowed or origin in allowed

    async def _dispatch(self, connection: ServerConnection) -> None:
        assert connection.request is not None
        route = self.ws_routes[connection.request.path.split("?", 1)[0]]
        endpoint = connection.request.path.split("?", 1)[0]
        gauge = self.metrics.open_connections.labels(endpoint)
        self.metrics.connections_opened.labels(endpoint).inc()
        gauge.inc()
        try:
            await route(connection)
        except Exception:
            log.exception("websocket handler failed")
            with contextlib.suppress(Exception):
                await connection.close(1011, Code.INTERNAL_ERROR)
        finally:
            gauge.dec()

    async def _ingest(self, connection: ServerConnection) -> None:
        s = self.settings
        handler = IngestHandler(
            connection,
            tokens=self.tokens,
            publisher=self.publisher,
            topics=self.topics,
            limits=self.limits,
            recent=self.recent_frames,
            metrics=self.metrics,
            auth_timeout=s.auth_timeout_seconds,
            idle_timeout=s.idle_timeout_seconds,
            max_inflight=s.max_inflight_frames,
        )
        self.ingest_handlers.add(handler)
        try:
            await handler.run()
        finally:
            self.ingest_handlers.discard(handler)

    async def _subscribe(self, connection: ServerConnection) -> None:
        s = self.settings
        handler = SubscribeHandler(
            connection,
            hub=self.status_hub,
            tokens=self.tokens,
            metrics=self.metrics,
            auth_timeout=s.auth_timeout_seconds,
            queue_size=s.subscriber_queue_size,
            max_subscriptions=s.max_subscriptions_per_connection,
            max_errors=s.max_errors_per_connection,
        )
        self.followers.add(connection)
        try:
            await handler.run()
        finally:
            self.followers.discard(connection)

    async def _analytics(self, connection: ServerConnection) -> None:
        s = self.settings
        self.followers.add(connection)
        try:
            await serve_analytics(
                connection,
                hub=self.analytics_hub,
                tokens=self.tokens,
                metrics=self.metrics,
                auth_timeout=s.auth_timeout_seconds,
                queue_size=s.subscriber_queue_size,
            )
        finally:
            self.followers.discard(connection)

    # --- HTTP --------------------------------------------------------------------------------

    def add_http_routes(self, app: web.Application) -> None:
        app.router.add_post(WEBHOOK_PATH, self.receiver.handle)
        app.router.add_get("/v1/inquiries/{inquiry_id}", self.reader.handle)
        app.router.add_get("/dashboard", self._dashboard)
        app.router.add_get("/dashboard/vendor/{name}", self._vendor)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "pid": os.getpid()})

    async def _readyz(self, request: web.Request) -> web.Response:
        caught_up = self.status_feed.caught_up.is_set()
        return web.json_response(
            {
                "status": "ready" if self.ready else "unavailable",
                "kafka": self.publisher.healthy,
                "statuses": caught_up,
                "pid": os.getpid(),
            },
            status=200 if self.ready else 503,
        )

    async def _dashboard(self, request: web.Request) -> web.Response:
        host = request.url.host or self.settings.host
        page = DASHBOARD.read_text().replace("__ANALYTICS_URL__", f"ws://{host}:{self.ws_port}/v1/analytics")
        return web.Response(
            text=page,
            content_type="text/html",
            headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-store"},
        )

    async def _vendor(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in VENDOR:
            return web.json_response({"code": Code.NOT_FOUND, "message": f"no file {name!r}"}, status=404)
        return web.Response(
            body=(VENDOR_DIR / name).read_bytes(),
            content_type=VENDOR[name],
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), content_type="text/plain", charset="utf-8")


def create_gateway(settings: Settings, publisher: Publisher | None = None, *, reuse_port: bool = False) -> Gateway:
    """A gateway wired to the real Kafka publisher (``publisher`` only for unit tests).

    ``reuse_port``: bind with SO_REUSEPORT, to share the ports with the other gateway processes.
    """
    from gateway.publisher import KafkaPublisher

    if settings.token_secret is None:
        raise ValueError("PERSONA_STREAM_TOKEN_SECRET is required to run the gateway")
    metrics = GatewayMetrics()
    if publisher is None:
        plan = TopicPlan.from_settings(settings)
        publisher = KafkaPublisher(
            settings.bootstrap_servers(),
            timeout=settings.produce_timeout_seconds,
            observe_latency=metrics.produce_latency.observe,
            watch_topics=(plan.client_events.name, plan.webhooks.name),
        )
    tokens = TokenAuthority(settings.token_secret.get_secret_value().encode())
    return Gateway(settings, publisher, tokens, metrics, reuse_port=reuse_port)
