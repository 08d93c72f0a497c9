"""Load and limits, end to end against the real broker.

=================================  ================================================================
what happens                       what must hold
=================================  ================================================================
one subscriber stops reading       it alone is closed, 1013 ``slow-consumer``; every other one got
                                   every update, once, in version order, while it was still stuck
someone follows another's          answered like an unknown inquiry, or refused with
                                   ``channel-forbidden`` (or ``invalid-frame``, or
inquiry or reference id            close 1008 ``token-scope``) and never sent one of their records
a connection flood                 past ``max_connections`` handshakes get 503
                                   ``too-many-connections``; the open ones keep working; closing
                                   some makes room again
silent, idle and slow clients      1008 ``auth-timeout``, 1000 ``idle-timeout``, 1011 on no pong;
                                   a handshake sent byte by byte is dropped at the open timeout
                                   while everyone else is served
a bounded soak                     (gateway and worker as processes) every webhook's update
                                   arrives, every frame is acknowledged, memory stays flat
=================================  ================================================================

Waits are conditions with generous timeouts; nothing asserts a duration.

The soak runs ``PERSONA_STREAM_SOAK_SECONDS`` (default 90) at ``PERSONA_STREAM_SOAK_RATE``
inquiries a second (default 30: what a loaded 2-core machine sustains; at 50 it falls seconds behind
but still loses nothing) and writes its time series to ``PERSONA_STREAM_SOAK_OUT`` if set.
These are read when the module is imported: the ``clean_environ`` fixture removes every
``PERSONA_STREAM_*`` variable before each test.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import os
import re
import socket
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil
import pytest
from aiokafka import AIOKafkaProducer
from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from bench.harness import percentile
from core.tokens import Scope, TokenAuthority
from core.topics import TopicPlan, create_topics
from gateway.app import Gateway
from gateway.signatures import sign
from persona_stream.scenarios import TEMPLATE_ID, InquiryPlan, plan_inquiry
from persona_stream.webhook_bodies import body, inquiry_event
from schemas.codec import encode
from schemas.records import Cause, StatusRecord
from tests.integration.conftest import TOKEN_SECRET, WEBHOOK_SECRET, gateway_settings, started_gateway
from tests.integration.workers import Worker, worker_env
from tests.kafkautil import produce, wait_for
from tests.processes import GatewayProcess
from tests.wsclient import Client

pytestmark = pytest.mark.integration

SOAK_SECONDS = float(os.environ.get("PERSONA_STREAM_SOAK_SECONDS", "90"))
SOAK_RATE = float(os.environ.get("PERSONA_STREAM_SOAK_RATE", "30"))
SOAK_OUT = os.environ.get("PERSONA_STREAM_SOAK_OUT")

TOKENS = TokenAuthority(TOKEN_SECRET.encode())
STEPS = (
    ("inquiry.created", "created"),
    ("inquiry.started", "pending"),
    ("inquiry.completed", "completed"),
    ("inquiry.approved", "approved"),
)
SESSION = "sess_load_0001"


# --- the stack: one worker process for the module, a gateway in this process per test -----------


@pytest.fixture(scope="module")
def prefix() -> str:
    """The topics every test of this module shares with the module's worker."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def worker(kafka_bootstrap: str, prefix: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    worker = Worker(worker_env(kafka_bootstrap, prefix), tmp_path_factory.mktemp("worker")).start()
    yield worker
    worker.stop()


@contextlib.asynccontextmanager
async def running_gateway(kafka_bootstrap: str, prefix: str, **overrides: object) -> AsyncIterator[Gateway]:
    gateway = await started_gateway(gateway_settings(kafka_bootstrap, prefix, **overrides))
    try:
        yield gateway
    finally:
        await gateway.stop()


def worker_url(worker: Worker) -> str:
    return f"http://127.0.0.1:{worker.port}"


def ws_url(gateway: Gateway, path: str = "") -> str:
    return f"ws://127.0.0.1:{gateway.ws_port}{path}"


def http_url(gateway: Gateway) -> str:
    return f"http://127.0.0.1:{gateway.http_port}"


def token(subject: str, scope: Scope, **claims: Any) -> str:
    return TOKENS.mint(subject, scope, 900, **claims)


def step_webhook(inquiry: str, reference: str, step: int) -> bytes:
    """Step ``step`` of an inquiry's life (created, started, completed, approved), as Persona sends it."""
    name, status = STEPS[step]
    stamp = f"2026-03-01T10:0{step}:00Z"
    return body(inquiry_event(f"evt_{inquiry}_{step}", name, status, stamp, inquiry_id=inquiry, reference_id=reference))


async def post_webhook(http: aiohttp.ClientSession, base: str, payload: bytes) -> int:
    headers = {"Persona-Signature": sign(WEBHOOK_SECRET.encode(), int(time.time()), payload)}
    async with http.post(f"{base}/v1/webhooks/persona", data=payload, headers=headers) as answer:
        await answer.read()
        return answer.status


async def metric(http: aiohttp.ClientSession, base: str, name: str, label: str) -> float:
    """One sample of the gateway's ``/metrics`` (0 when it has not been counted yet)."""
    async with http.get(f"{base}/metrics") as answer:
        text = await answer.text()
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(label)}\}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def status_record(inquiry: str, version: int, reference: str) -> bytes:
    return encode(
        StatusRecord(
            inquiry_id=inquiry,
            version=version,
            status="created",
            previous_status=None,
            reference_id=reference,
            cause=Cause(
                event_id=f"evt_{inquiry}_{version}", event_name="inquiry.created", created_at=datetime.now(UTC)
            ),
        )
    )


# --- subscribers -----------------------------------------------------------------------------------


class Listener:
    """A ``/v1/subscribe`` connection that reads every frame as soon as it arrives."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.frames: list[dict[str, Any]] = []
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, ws: str, bearer: str) -> Listener:
        listener = cls(await connect(f"{ws}/v1/subscribe", max_queue=None, open_timeout=60))
        await listener.connection.send(orjson.dumps({"type": "auth", "token": bearer}).decode())
        await listener.until(lambda frame: frame["type"] == "ready")
        return listener

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in self.connection:
                self.frames.append(orjson.loads(message))

    @property
    def closed(self) -> Close | None:
        """The close frame the gateway sent, if it closed this connection."""
        return self.connection.protocol.close_rcvd

    async def until(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60) -> dict[str, Any]:
        """The first frame for which ``predicate`` holds, waiting for it if need be."""
        async with asyncio.timeout(timeout):
            while True:
                found = next((frame for frame in self.frames if predicate(frame)), None)
                if found is not None:
                    return found
                if self.reader.done():
                    raise AssertionError(f"closed by the gateway ({self.closed}) before the frame came")
                await asyncio.sleep(0.05)

    async def subscribe(self, request_id: str, channel: str, since: dict[str, int] | None = None) -> dict[str, Any]:
        """Subscribe; the answer: ``subscribed`` or ``error``."""
        request: dict[str, Any] = {"type": "subscribe", "id": request_id, "channel": channel}
        if since is not None:
            request["since"] = since
        await self.connection.send(orjson.dumps(request).decode())
        return await self.until(lambda f: f.get("id") == request_id and f["type"] in ("subscribed", "error"))

    def records(self, request_id: str | None = None) -> list[dict[str, Any]]:
        """Every status record received (snapshots, then updates), in arrival order."""
        out: list[dict[str, Any]] = []
        for frame in self.frames:
            if request_id is not None and frame.get("id") != request_id:
                continue
            if frame["type"] == "subscribed":
                out.extend(frame["snapshot"])
            elif frame["type"] == "update":
                out.append(frame["data"])
        return out

    def history(self, prefix: str = "") -> dict[str, list[tuple[int, str]]]:
        """(version, status) per inquiry whose id starts with ``prefix``, in arrival order."""
        seen: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for record in self.records():
            if record["inquiry_id"].startswith(prefix):
                seen[record["inquiry_id"]].append((record["version"], record["status"]))
        return dict(seen)

    async def until_count(self, count: int, prefix: str = "", timeout: float = 60) -> None:
        def enough() -> bool:
            if self.reader.done():
                raise AssertionError(f"closed by the gateway ({self.closed})")
            return sum(len(v) for v in self.history(prefix).values()) >= count

        await wait_for(enough, timeout=timeout, interval=0.05)

    async def close(self) -> None:
        await self.connection.close()
        await self.reader


class RawClient:
    """A websocket client that reads only when told to, and answers nothing on its own.

    websockets' sans-I/O protocol on a bare socket: nothing is taken from the socket unless
    :meth:`read` is called, so with a small receive buffer the gateway's writes back up into TCP;
    the pongs the protocol prepares go out only with the next frame this client sends.
    """

    def __init__(self, sock: socket.socket, protocol: ClientProtocol) -> None:
        self.sock, self.protocol = sock, protocol
        self.frames: list[dict[str, Any]] = []
        self.eof = False

    @classmethod
    async def open(cls, url: str, *, receive_buffer: int | None = None) -> RawClient:
        uri = parse_uri(url)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:  # before connecting, so the kernel does not grow it
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        client = cls(sock, ClientProtocol(uri))
        try:
            await asyncio.get_running_loop().sock_connect(sock, (uri.host, uri.port))
            client.protocol.send_request(client.protocol.connect())
            await client.flush()
            while client.protocol.state is State.CONNECTING and not client.eof:
                await client.read()
            if client.protocol.handshake_exc is not None:
                raise client.protocol.handshake_exc
        except BaseException:
            sock.close()
            raise
        return client

    async def flush(self) -> None:
        data = b"".join(self.protocol.data_to_send())
        if data:
            await asyncio.get_running_loop().sock_sendall(self.sock, data)

    async def send(self, document: dict[str, Any]) -> None:
        self.protocol.send_text(orjson.dumps(document))
        await self.flush()

    async def read(self, timeout: float = 60) -> None:
        """One read from the socket, fed to the protocol."""
        try:
            data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(self.sock, 65536), timeout)
        except ConnectionResetError:
            data = b""
        if data:
            self.protocol.receive_data(data)
        else:
            self.eof = True
            self.protocol.receive_eof()
        for event in self.protocol.events_received():
            if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                self.frames.append(orjson.loads(event.data))

    async def read_until(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                found = next((frame for frame in self.frames if predicate(frame)), None)
                if found is not None:
                    return found
                if self.eof:
                    raise AssertionError(f"the gateway closed the connection ({self.protocol.close_rcvd})")
                await self.read()

    async def read_to_end(self, timeout: float = 60) -> Close | None:
        """Read until the gateway ends the connection, answering its close frame as a client must."""
        async with asyncio.timeout(timeout):
            while not self.eof:
                await self.read()
                if self.protocol.close_rcvd is not None:
                    with contextlib.suppress(OSError):  # the gateway may already be gone
                        await self.flush()
        return self.protocol.close_rcvd

    def close(self) -> None:
        self.sock.close()


# --- 1. one slow subscriber ----------------------------------------------------------------------

PER_ROUND = 16  # inquiries per round: one update each, so one Kafka fetch of the gateway holds at most 16
FOLLOWS = 50  # firehose subscriptions of the stuck client: 800 frames a round, below the queue (1000)
MAX_ROUNDS = 120


async def stuck_subscriber(ws: str) -> RawClient:
    """A client that follows the firehose ``FOLLOWS`` times over, then stops reading.

    Its small receive buffer leaves the gateway's kernel send buffer to fill (it grows to ~4 MB);
    following the firehose many times over fills it within a few hundred updates.
    """
    stuck = await RawClient.open(f"{ws}/v1/subscribe", receive_buffer=4096)
    await stuck.send({"type": "auth", "token": token("ops", "firehose")})
    for n in range(FOLLOWS):
        await stuck.send({"type": "subscribe", "id": f"s{n}", "channel": "all"})
    await stuck.read_until(lambda frame: frame["type"] == "subscribed" and frame["id"] == f"s{FOLLOWS - 1}")
    return stuck


async def test_a_subscriber_that_stops_reading_is_closed_alone_and_the_others_get_every_update(
    kafka_bootstrap: str, prefix: str, worker: Worker, unique: str
) -> None:
    reference = f"user-{unique}"
    # keepalive off for this test: the stuck client answers no ping, and a 1011 would hide the 1013
    overrides = {"ping_interval_seconds": 600, "worker_url": worker_url(worker)}
    async with running_gateway(kafka_bootstrap, prefix, **overrides) as gateway, aiohttp.ClientSession() as http:
        ws, base = ws_url(gateway), http_url(gateway)
        normals = [await Listener.open(ws, token("ops", "firehose")) for _ in range(2)]
        normals += [await Listener.open(ws, token(reference, "subscribe")) for _ in range(2)]
        for listener, channel in zip(normals, ["all", "all", "mine", "mine"], strict=True):
            assert (await listener.subscribe("s1", channel))["type"] == "subscribed"
        stuck = await stuck_subscriber(ws)
        try:
            # from here on the stuck client reads nothing until the normal ones have everything
            expected: dict[str, list[tuple[int, str]]] = defaultdict(list)
            published = 0
            for number in range(MAX_ROUNDS):
                group, step = divmod(number, len(STEPS))
                inquiries = [f"inq_{unique}{group:03d}x{n:02d}" for n in range(PER_ROUND)]
                answers = await asyncio.gather(
                    *(post_webhook(http, base, step_webhook(inquiry, reference, step)) for inquiry in inquiries)
                )
                assert answers == [200] * PER_ROUND
                for inquiry in inquiries:
                    expected[inquiry].append((step + 1, STEPS[step][1]))
                published += PER_ROUND
                # the next round waits for this one to reach every normal subscriber, so no fetch of
                # the gateway holds more than one round (see the burst test below for why it matters)
                for listener in normals:
                    await listener.until_count(published, prefix=f"inq_{unique}")
                if await metric(http, base, "persona_stream_connections_closed_total", 'reason="slow-consumer"') >= 1:
                    break
            else:
                pytest.fail(f"{published} updates and the stuck subscriber was never closed")

            # every normal subscriber has had every update, once, in version order, and is still
            # connected -- all while the stuck one had not read a byte since it subscribed
            for listener in normals:
                assert listener.history(f"inq_{unique}") == expected
                assert listener.closed is None
            close = await stuck.read_to_end()
            assert close is not None
            assert (close.code, close.reason) == (1013, "slow-consumer")
            got: dict[str, list[tuple[str, int]]] = defaultdict(list)
            for frame in stuck.frames:
                if frame["type"] == "update":
                    got[frame["id"]].append((frame["data"]["inquiry_id"], frame["data"]["version"]))
            assert sum(map(len, got.values())) < published * FOLLOWS  # it was cut off...
            for updates in got.values():
                assert len(set(updates)) == len(updates)  # ...after updates that were each sent once
        finally:
            stuck.close()
            for listener in normals:
                await listener.close()


async def test_a_burst_larger_than_the_queue_does_not_close_a_subscriber_that_keeps_up(
    kafka_bootstrap: str, unique: str
) -> None:
    """3,000 status changes made visible at once -- here one transaction; in production a worker
    catching up after a failover, or the gateway's feed reconnecting after Kafka was unreachable --
    with the default settings, and one firehose subscriber that reads all the time."""
    async with running_gateway(kafka_bootstrap, unique) as gateway:
        listener = await Listener.open(ws_url(gateway), token("ops", "firehose"))
        assert (await listener.subscribe("s1", "all"))["type"] == "subscribed"
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap, transactional_id=f"{unique}-burst", enable_idempotence=True
        )
        await producer.start()
        try:
            async with producer.transaction():
                for n in range(3000):
                    inquiry = f"inq_{unique}{n:05d}"
                    await producer.send(
                        gateway.topics.inquiry_status.name, status_record(inquiry, 1, "user-1"), key=inquiry.encode()
                    )
        finally:
            await producer.stop()
        try:
            await listener.until_count(3000, prefix=f"inq_{unique}")
        finally:
            await listener.close()


async def test_a_slow_consumer_that_never_reads_again_is_disconnected(kafka_bootstrap: str, unique: str) -> None:
    # keepalive off: a ping sent into the full buffer blocks the same way, one sent before may rescue it
    async with (
        running_gateway(kafka_bootstrap, unique, ping_interval_seconds=600) as gateway,
        aiohttp.ClientSession() as http,
    ):
        ws, base = ws_url(gateway), http_url(gateway)
        pacer = await Listener.open(ws, token("ops", "firehose"))
        assert (await pacer.subscribe("s1", "all"))["type"] == "subscribed"
        stuck = await stuck_subscriber(ws)
        try:
            published = 0
            while await metric(http, base, "persona_stream_connections_closed_total", 'reason="slow-consumer"') < 1:
                assert published < MAX_ROUNDS * PER_ROUND, "the stuck subscriber was never closed"
                batch = [f"inq_{unique}{published + n:05d}" for n in range(PER_ROUND)]
                await produce(
                    kafka_bootstrap,
                    gateway.topics.inquiry_status.name,
                    [(i.encode(), status_record(i, 1, "user-1")) for i in batch],
                )
                published += PER_ROUND
                await pacer.until_count(published, prefix=f"inq_{unique}")
            # the close timeout is 10 s: three times that is plenty for the gateway to let go of it
            await wait_for(subscribers_open(http, base, at_most=1), timeout=30, interval=0.5)
        finally:
            stuck.close()
            await pacer.close()


def subscribers_open(http: aiohttp.ClientSession, base: str, *, at_most: int) -> Callable[[], Any]:
    async def check() -> bool:
        gauge = await metric(http, base, "persona_stream_open_connections", 'endpoint="/v1/subscribe"')
        return gauge <= at_most

    return check


# --- 2. cross-tenant subscriptions --------------------------------------------------------------


async def test_no_one_follows_another_reference_ids_inquiries(
    kafka_bootstrap: str, prefix: str, worker: Worker, unique: str
) -> None:
    """Attacker A (a genuine subscribe token for reference ``a``) against victim B.

    Already covered elsewhere: following B's *known* inquiry answered like an unknown one
    (tests/integration/test_downstream.py)
    and the rule table itself (tests/gateway/test_statuses.py). Here, end to end: following B's
    inquiry before it exists, resuming ``mine`` with B's inquiry in ``since``, a token bound to A's
    inquiry, the firehose without its scope, a made-up reference channel, and the wrong scopes.
    """
    alice, bob = f"a-{unique}", f"b-{unique}"
    mine, theirs = f"inq_{unique}a", f"inq_{unique}b"
    async with (
        running_gateway(kafka_bootstrap, prefix, worker_url=worker_url(worker)) as gateway,
        aiohttp.ClientSession() as http,
    ):
        ws, base = ws_url(gateway), http_url(gateway)
        attacker = await Listener.open(ws, token(alice, "subscribe"))
        early = await attacker.subscribe("early", f"inquiry:{theirs}")  # not known yet: allowed, filtered
        assert (early["type"], early["snapshot"]) == ("subscribed", [])
        assert (await attacker.subscribe("mine", "mine"))["type"] == "subscribed"
        assert (await attacker.subscribe("resume", "mine", since={theirs: 0}))["type"] == "subscribed"
        refused = {
            "all": await attacker.subscribe("all", "all"),
            "reference": await attacker.subscribe("reference", f"reference:{bob}"),
        }
        assert (refused["all"]["type"], refused["all"]["code"]) == ("error", "channel-forbidden")
        assert (refused["reference"]["code"], refused["reference"]["field"]) == ("invalid-frame", "channel")
        bound = await Listener.open(ws, token(alice, "subscribe", inquiry_id=mine))
        answer = await bound.subscribe("s1", f"inquiry:{theirs}")
        assert (answer["type"], answer["code"]) == ("error", "channel-forbidden")

        victim = await Listener.open(ws, token(bob, "subscribe"))
        assert (await victim.subscribe("s1", "mine"))["type"] == "subscribed"
        operator = await Listener.open(ws, token("ops", "firehose"))
        assert (await operator.subscribe("s1", "all"))["type"] == "subscribed"

        for step in range(len(STEPS)):
            for inquiry, reference in ((mine, alice), (theirs, bob)):
                assert await post_webhook(http, base, step_webhook(inquiry, reference, step)) == 200
        await victim.until_count(len(STEPS), prefix=theirs)
        await attacker.until_count(2 * len(STEPS), prefix=mine)  # on "mine" and on "resume"
        await operator.until_count(2 * len(STEPS), prefix=f"inq_{unique}")
        assert seen(victim, "s1") == lifecycle(theirs)
        assert operator.history(f"inq_{unique}") == {i: [(v, s) for _, v, s in lifecycle(i)] for i in (mine, theirs)}

        # now that B's inquiry is known, following it is answered exactly as before it existed (no
        # existence oracle) and still carries nothing of B's; A's own still works. The answers come
        # after every update already sent on the connection: nothing of B's is in flight
        late = await attacker.subscribe("late", f"inquiry:{theirs}")
        assert {k: v for k, v in late.items() if k != "id"} == {k: v for k, v in early.items() if k != "id"}
        assert (await attacker.subscribe("own", f"inquiry:{mine}"))["type"] == "subscribed"
        assert seen(attacker, "own") == lifecycle(mine)[-1:]
        assert seen(attacker, "mine") == seen(attacker, "resume") == lifecycle(mine)
        assert seen(attacker, "early") == seen(attacker, "late") == []
        assert bound.records() == []
        mentions = [
            (frame["type"], frame.get("id"))
            for frame in attacker.frames + bound.frames
            if theirs in orjson.dumps(frame).decode() or bob in orjson.dumps(frame).decode()
        ]
        assert mentions == [("subscribed", "early"), ("subscribed", "late"), ("error", "s1")]  # the requests, answered
        for listener in (attacker, bound, victim, operator):
            assert listener.closed is None
            await listener.close()

        # B's view, asked with the wrong tokens
        for bearer, expected in (
            (token(alice, "subscribe"), (404, "not-found")),
            (token(alice, "subscribe", inquiry_id=mine), (404, "not-found")),
            (token(bob, "ingest"), (401, "token-scope")),
            (token(bob, "analytics"), (401, "token-scope")),
        ):
            headers = {"Authorization": f"Bearer {bearer}"}
            async with http.get(f"{base}/v1/inquiries/{theirs}", headers=headers) as response:
                assert (response.status, (await response.json())["code"]) == expected
        headers = {"Authorization": f"Bearer {token(bob, 'subscribe')}"}
        async with http.get(f"{base}/v1/inquiries/{theirs}", headers=headers) as response:
            assert (response.status, (await response.json())["inquiry_id"]) == (200, theirs)


ALL_SCOPES: tuple[Scope, ...] = ("ingest", "subscribe", "firehose", "analytics")
SCOPES_OPEN = {"/v1/client": {"ingest"}, "/v1/subscribe": {"subscribe", "firehose"}, "/v1/analytics": {"analytics"}}


async def test_each_endpoint_opens_for_its_scopes_only(kafka_bootstrap: str, unique: str) -> None:
    outcomes: dict[tuple[str, str], object] = {}
    async with running_gateway(kafka_bootstrap, unique) as gateway:
        for path, scope in itertools.product(SCOPES_OPEN, ALL_SCOPES):
            client = await Client.open(ws_url(gateway, path), token("user-1", scope))
            try:
                outcomes[path, scope] = (await client.recv())["scope"]  # the ready frame
                await client.close()
            except ConnectionClosed:
                outcomes[path, scope] = await client.closed()
    assert outcomes == {
        (path, scope): scope if scope in scopes else (1008, "token-scope")
        for path, scopes in SCOPES_OPEN.items()
        for scope in ALL_SCOPES
    }


def lifecycle(inquiry: str) -> list[tuple[str, int, str]]:
    """What a subscriber sees of an inquiry that went through every step of ``STEPS``."""
    return [(inquiry, n + 1, status) for n, (_, status) in enumerate(STEPS)]


def seen(listener: Listener, request_id: str) -> list[tuple[str, int, str]]:
    return [(r["inquiry_id"], r["version"], r["status"]) for r in listener.records(request_id)]


# --- 3. a connection flood ----------------------------------------------------------------------

LIMIT = 20
FULL = (503, b"too-many-connections\n")


async def ingest_client(gateway: Gateway) -> Client | tuple[int, bytes]:
    """An authenticated ingest connection, or the refusal of its handshake (status, body)."""
    try:
        client = await Client.open(ws_url(gateway, "/v1/client"), token("user-1", "ingest"), open_timeout=60)
    except InvalidStatus as refused:
        return refused.response.status_code, bytes(refused.response.body)
    await client.ready()
    return client


async def acknowledged(client: Client, seq: int) -> bool:
    await client.callback(SESSION, seq, {"kind": "onLoad"})
    await client.until_acked(SESSION, seq, timeout=60)
    return True


async def test_past_max_connections_handshakes_are_refused_and_room_comes_back(
    kafka_bootstrap: str, unique: str
) -> None:
    async with running_gateway(kafka_bootstrap, unique, max_connections=LIMIT) as gateway:
        clients = [c for _ in range(LIMIT) if isinstance(c := await ingest_client(gateway), Client)]
        assert len(clients) == LIMIT  # up to the limit, one after the other: every one is let in
        # then a flood, all at once: every one refused
        flood = await asyncio.gather(*(ingest_client(gateway) for _ in range(2 * LIMIT)))
        assert flood == [FULL] * (2 * LIMIT)

        # those already in are served as before
        for seq, client in enumerate((clients[0], clients[-1])):
            assert await acknowledged(client, seq)

        # closing five makes room for five, and then the gateway is full again
        for client in clients[:5]:
            await client.close()
        again = [c for _ in range(5) if isinstance(c := await ingest_client(gateway), Client)]
        assert len(again) == 5
        assert await ingest_client(gateway) == FULL
        for client in [*clients[5:], *again]:
            await client.close()


async def test_exactly_max_connections_are_admitted(kafka_bootstrap: str, unique: str) -> None:
    async with running_gateway(kafka_bootstrap, unique, max_connections=3) as gateway:
        clients = [await ingest_client(gateway) for _ in range(4)]
        try:
            assert clients[3] == FULL  # docs/protocol.md: "the gateway holds max_connections already"
        finally:
            for client in clients:
                if isinstance(client, Client):
                    await client.close()


# --- 4. silent, idle and slow clients -----------------------------------------------------------


async def test_a_connection_that_never_authenticates_is_closed_on_every_endpoint(
    kafka_bootstrap: str, unique: str
) -> None:
    async with running_gateway(kafka_bootstrap, unique, auth_timeout_seconds=0.5) as gateway:
        for path in SCOPES_OPEN:
            client = await Client.open(ws_url(gateway, path), None)
            assert await client.closed(timeout=60) == (1008, "auth-timeout"), path


async def test_an_idle_ingest_connection_is_closed_and_a_quiet_subscriber_is_not(
    kafka_bootstrap: str, unique: str
) -> None:
    async with running_gateway(kafka_bootstrap, unique, idle_timeout_seconds=1.0) as gateway:
        listener = await Listener.open(ws_url(gateway), token("user-1", "subscribe"))
        client = await Client.open(ws_url(gateway, "/v1/client"), token("user-1", "ingest"))
        await client.ready()
        assert await acknowledged(client, 0)
        assert await client.closed(timeout=60) == (1000, "idle-timeout")
        # a subscriber only listens: it was as quiet, and is still connected and served
        assert (await listener.subscribe("s1", "mine"))["type"] == "subscribed"
        assert listener.closed is None
        await listener.close()


async def test_a_client_that_stops_answering_pings_is_closed_with_1011(kafka_bootstrap: str, unique: str) -> None:
    settings = {"ping_interval_seconds": 0.5, "ping_timeout_seconds": 1.0}
    async with running_gateway(kafka_bootstrap, unique, **settings) as gateway:
        silent = await RawClient.open(ws_url(gateway, "/v1/client"))
        try:
            await silent.send({"type": "auth", "token": token("user-1", "ingest")})
            await silent.read_until(lambda frame: frame["type"] == "ready")
            # it sends nothing more, so the pongs its protocol prepares never leave
            close = await silent.read_to_end()
        finally:
            silent.close()
        assert close is not None
        assert close.code == 1011  # the reason is the library's: "keepalive ping timeout"


def dribbled_request() -> Iterator[int]:
    """A websocket handshake that never ends: a request line, then header after header."""
    yield from b"GET /v1/client HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    for n in itertools.count():
        yield from f"X-Slow-{n}: {n}\r\n".encode()


async def dribble(sock: socket.socket) -> bytes:
    """Send the handshake one byte every 0.2 s until the gateway lets go; what it answered."""
    loop = asyncio.get_running_loop()
    answer = asyncio.ensure_future(loop.sock_recv(sock, 4096))
    try:
        for byte in dribbled_request():
            try:
                await loop.sock_sendall(sock, bytes([byte]))
            except OSError:  # reset: the gateway dropped it
                break
            done, _ = await asyncio.wait({answer}, timeout=0.2)
            if done:
                break
        try:
            return await answer
        except ConnectionResetError:
            return b""
    finally:
        answer.cancel()  # and unregistered from the loop before its socket (and file descriptor) goes
        await asyncio.gather(answer, return_exceptions=True)
        sock.close()


async def test_a_handshake_sent_byte_by_byte_is_dropped_and_others_are_served(
    kafka_bootstrap: str, unique: str
) -> None:
    """Eight slow handshakes (twice max_connections): the gateway's open timeout (websockets'
    default, 10 s) drops each, and meanwhile clients that complete theirs are let in and served."""
    loop = asyncio.get_running_loop()
    async with running_gateway(kafka_bootstrap, unique, max_connections=4) as gateway:
        socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(8)]
        for sock in socks:
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", gateway.ws_port))
        dribbling = asyncio.gather(*(dribble(sock) for sock in socks))
        client = await Client.open(ws_url(gateway, "/v1/client"), token("user-1", "ingest"))
        await client.ready()
        assert await acknowledged(client, 0)
        answers = await asyncio.wait_for(dribbling, 120)
        assert answers == [b""] * len(socks)  # dropped, unanswered
        assert await acknowledged(client, 1)
        later = await Client.open(ws_url(gateway, "/v1/client"), token("user-1", "ingest"))
        await later.ready()
        await later.close()
        await client.close()


# --- 5. a bounded soak --------------------------------------------------------------------------

SAMPLE_SECONDS = 5.0
WARM_UP = SOAK_SECONDS / 3
# bounded caches sized to be full halfway through the warm-up (an inquiry is ~9 frames and ~3.4
# webhooks), so that the baseline includes them; the worker's table of views is not a cache
FULL_BY = SOAK_RATE * WARM_UP / 2
GATEWAY_CACHES = {"STATUS_CACHE_SIZE": max(100, int(FULL_BY)), "DEDUPE_CACHE_SIZE": max(500, int(3 * FULL_BY))}
WORKER_CACHES = {"VIEW_CACHE_SIZE": max(100, int(FULL_BY))}
GROWTH, SLACK_MB = 1.15, 8.0
STATE_FACTOR = 2.0  # a stored view in the worker's memory, per byte of its JSON
BACKLOG_MB = 16.0  # a worker behind: faust's stream buffers (4,096 events, two agents) at ~2 KB an event


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MB."""
    process = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / 2**20


@dataclass
class Sample:
    at: float  # seconds since the traffic started
    phase: str  # "drive" while inquiries start, "drain" after
    gateway_rss_mb: float
    worker_rss_mb: float
    inquiries: int  # started
    inquiries_with_status: int  # with at least one update received: what the worker has processed
    webhooks_posted: int
    updates_received: int
    frames_acknowledged: int
    latency_count: int  # updates received since the previous sample
    latency_p50_ms: float | None
    latency_p99_ms: float | None


@dataclass
class Soak:
    """Realistic traffic -- the simulator's flows (persona_stream/scenarios.py), played as the
    browser bridge and Persona do -- with every webhook timed from its POST to its update on a
    firehose subscription. (``persona-stream simulate`` plays the same flows but times nothing.)"""

    ws: str
    http: str
    pids: tuple[int, int]  # gateway, worker
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    plans: list[InquiryPlan] = field(default_factory=list)
    posted: dict[str, float] = field(default_factory=dict)  # event id -> when its POST was sent
    updates: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))  # inquiry -> versions
    causes: Counter[str] = field(default_factory=Counter)  # event id -> updates it caused
    latencies: list[float] = field(default_factory=list)
    counters: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    started: float = 0.0
    driven: float = 0.0  # seconds during which inquiries started
    view_bytes: float = 0.0  # mean size of an inquiry's view (JSON), measured at the end

    # --- the traffic -----------------------------------------------------------------------------

    async def drive(self, http: aiohttp.ClientSession) -> list[asyncio.Task[None]]:
        """Start ``SOAK_RATE`` inquiries a second for ``SOAK_SECONDS``, sampling as it goes."""
        users = max(1, int(SOAK_RATE * SOAK_SECONDS) // 4)
        plays = []
        self.started = time.perf_counter()
        for number in itertools.count():
            if self.elapsed() >= SOAK_SECONDS:
                break
            self.sample_if_due("drive")
            plan = plan_inquiry(number, self.run, 7, chaos=False, users=users)
            self.plans.append(plan)
            plays.append(asyncio.create_task(self.play(plan, http)))
            await asyncio.sleep(max(0.0, self.started + (number + 1) / SOAK_RATE - time.perf_counter()))
        self.driven = self.elapsed()
        self.sample("drive")
        return plays

    async def drain(self, plays: list[asyncio.Task[None]], follower: asyncio.Task[None]) -> None:
        """Until every play is over and every update in (or the subscription ends), sampling."""
        pending = asyncio.gather(*plays)
        while not (pending.done() and len(self.causes) == len(self.posted)) and not follower.done():
            await asyncio.sleep(0.2)
            self.sample_if_due("drain")
        await pending
        self.sample("drain")

    async def play(self, plan: InquiryPlan, http: aiohttp.ClientSession) -> None:
        async def browse() -> None:
            for session, callbacks, opened_with in plan.sessions:
                await self.browse(plan, session, callbacks, opened_with)

        await asyncio.gather(browse(), self.deliver(plan, http))

    async def browse(
        self, plan: InquiryPlan, session: str, callbacks: list[dict[str, Any]], opened_with: str | None
    ) -> None:
        """One browser session, as the bridge sends it: reconnect and resend until all is acknowledged."""
        bearer = token(plan.reference_id, "ingest", template_id=TEMPLATE_ID)
        frames, inquiry = [], opened_with
        for seq, callback in enumerate(callbacks):
            inquiry = inquiry or callback.get("inquiryId") or (callback.get("metadata") or {}).get("inquiryId")
            frame = {"type": "callback", "session": session, "seq": seq, "ts": int(time.time() * 1000)}
            frames.append({**frame, "callback": callback, **({"inquiry": inquiry} if inquiry else {})})
        acked = -1
        for attempt in range(10):
            if attempt:
                self.counters["connections retried"] += 1
                await asyncio.sleep(min(4.0, 0.25 * 2**attempt))
            try:
                client = await Client.open(f"{self.ws}/v1/client", bearer, open_timeout=60)
            except (InvalidHandshake, OSError, TimeoutError):
                continue
            try:
                await client.ready()
                for frame in frames[acked + 1 :]:
                    await client.send(frame)
                await client.until_acked(session, len(frames) - 1, timeout=60)
                self.counters["frames acknowledged"] += len(frames)
                return
            except (ConnectionClosed, TimeoutError):
                acked = max(acked, client.acks.get(session, -1))
            finally:
                await client.close()
        self.problems.append(f"{session}: frames after {acked} never acknowledged")

    async def deliver(self, plan: InquiryPlan, http: aiohttp.ClientSession) -> None:
        """Persona's side: each webhook in order, retried (as Persona does) until accepted."""
        for payload in plan.webhooks:
            self.posted[orjson.loads(payload)["data"]["id"]] = time.perf_counter()
            for _ in range(10):
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    if await post_webhook(http, self.http, payload) == 200:
                        self.counters["webhooks accepted"] += 1
                        break
                self.counters["webhooks retried"] += 1
                await asyncio.sleep(1)
            else:
                self.problems.append(f"{plan.inquiry_id}: a webhook was never accepted")

    # --- the measurements ------------------------------------------------------------------------

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def sample_if_due(self, phase: str) -> None:
        if self.elapsed() >= SAMPLE_SECONDS * (len(self.samples) + 1):
            self.sample(phase)

    def sample(self, phase: str) -> None:
        recent = self.latencies[sum(s.latency_count for s in self.samples) :]
        gateway, worker = self.pids
        self.samples.append(
            Sample(
                at=round(self.elapsed(), 1),
                phase=phase,
                gateway_rss_mb=round(rss_mb(gateway), 1),
                worker_rss_mb=round(rss_mb(worker), 1),
                inquiries=len(self.plans),
                inquiries_with_status=len(self.updates),
                webhooks_posted=len(self.posted),
                updates_received=len(self.latencies),
                frames_acknowledged=self.counters["frames acknowledged"],
                latency_count=len(recent),
                latency_p50_ms=round(percentile(recent, 50) * 1000, 1) if recent else None,
                latency_p99_ms=round(percentile(recent, 99) * 1000, 1) if recent else None,
            )
        )

    def on_update(self, data: dict[str, Any]) -> None:
        cause = data["cause"]["event_id"]
        if cause not in self.posted:
            return  # not ours
        self.updates[data["inquiry_id"]].append(data["version"])
        trigger = data.get("trigger") or {"source": "webhook"}
        if trigger["source"] == "webhook":  # a flag a callback or the timer raised later keeps the same cause
            self.latencies.append(time.perf_counter() - self.posted[cause])
            self.causes[cause] += 1

    async def follow(self, subscribed: asyncio.Event) -> None:
        """The firehose, from the gateway: every update is timed against its webhook's POST."""
        async with connect(f"{self.ws}/v1/subscribe", max_queue=None, open_timeout=60) as connection:
            await connection.send(orjson.dumps({"type": "auth", "token": token("soak", "firehose")}).decode())
            await connection.send(orjson.dumps({"type": "subscribe", "id": "all", "channel": "all"}).decode())
            async for message in connection:
                frame = orjson.loads(message)
                if frame["type"] == "update":
                    self.on_update(frame["data"])
                elif frame["type"] == "subscribed":
                    subscribed.set()
                elif frame["type"] == "error":
                    self.problems.append(f"subscription error: {frame}")
            self.problems.append(f"the firehose subscription was closed: {connection.protocol.close_rcvd}")

    async def measure_views(self, http: aiohttp.ClientSession, count: int = 50) -> None:
        """The mean size of an inquiry's view, from ``GET /v1/inquiries/{id}`` (through the gateway)."""
        headers = {"Authorization": f"Bearer {token('soak', 'firehose')}"}
        sized = [plan for plan in self.plans if plan.webhooks]
        sizes = []
        for plan in sized[:: max(1, len(sized) // count)]:
            async with http.get(f"{self.http}/v1/inquiries/{plan.inquiry_id}", headers=headers) as answer:
                assert answer.status == 200, plan.inquiry_id
                sizes.append(len(await answer.read()))
        self.view_bytes = sum(sizes) / len(sizes)

    def memory(self) -> dict[str, list[tuple[Sample, float]]]:
        """Per process, each sample of the second half of the drive with the RSS bound it must respect.

        The baseline is the sample at the end of the warm-up (the first third). The bound is
        1.15 x baseline + 8 MB: CPython returns little memory to the system and grows in steps, and
        the Kafka clients' buffers swing with the moment's traffic by a few MB. Every cache is full
        by the baseline (GATEWAY_CACHES, WORKER_CACHES). Two things in the worker are not caches
        and get their own allowance: its table of views (store=memory keeps every inquiry by
        design; RocksDB is the store for volume), STATE_FACTOR x the measured JSON size of a view
        (the bytes, the key, the table's slot, the session's entry) per inquiry processed since the
        baseline; and its prefetch, which fills when it falls behind (BACKLOG_MB). So a leak of
        about 1 KB per frame, or 10 KB per inquiry, crosses the bound within the default 90 s;
        longer runs (PERSONA_STREAM_SOAK_SECONDS) catch proportionally smaller ones.
        """
        drive = [s for s in self.samples if s.phase == "drive"]
        warm = min(drive, key=lambda s: abs(s.at - self.driven / 3))
        state_mb = STATE_FACTOR * self.view_bytes / 2**20
        second_half = [s for s in drive if s.at >= self.driven / 2]
        return {
            "gateway": [(s, GROWTH * warm.gateway_rss_mb + SLACK_MB) for s in second_half],
            "worker": [
                (
                    s,
                    GROWTH * warm.worker_rss_mb
                    + SLACK_MB
                    + BACKLOG_MB
                    + state_mb * (s.inquiries_with_status - warm.inquiries_with_status),
                )
                for s in second_half
            ],
        }

    def report(self) -> str:
        columns = [f.name for f in dataclasses.fields(Sample) if f.name != "frames_acknowledged"]
        lines = [f"soak: {SOAK_RATE:g} inquiries/s for {self.driven:.0f} s", " ".join(f"{c[:14]:>14}" for c in columns)]
        lines += [" ".join(f"{getattr(s, c)!s:>14}" for c in columns) for s in self.samples]
        everything = self.latencies
        lines.append(
            f"{len(self.plans)} inquiries, {len(self.posted)} webhooks, {len(self.latencies)} updates, "
            f"{self.counters['frames acknowledged']} frames acknowledged, {self.counters['webhooks retried']} webhook "
            f"retries, {self.counters['connections retried']} reconnections; latency p50 "
            f"{percentile(everything, 50) * 1000:.0f} ms, p99 {percentile(everything, 99) * 1000:.0f} ms; "
            f"a view is {self.view_bytes:.0f} bytes"
        )
        if self.driven:
            for name, bounded in self.memory().items():
                worst = max(bounded, key=lambda pair: getattr(pair[0], f"{name}_rss_mb") - pair[1])
                first, last = getattr(self.samples[0], f"{name}_rss_mb"), getattr(self.samples[-1], f"{name}_rss_mb")
                lines.append(
                    f"{name}: {first} MB at {self.samples[0].at} s, {last} MB at the end; closest to its bound: "
                    f"{getattr(worst[0], f'{name}_rss_mb')} MB at {worst[0].at} s (bound {worst[1]:.1f} MB)"
                )
        lines.extend(f"PROBLEM {p}" for p in self.problems[:10])
        return "\n".join(lines)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.document(), indent=2) + "\n")

    def document(self) -> dict[str, Any]:
        everything = self.latencies
        return {
            "rate_per_second": SOAK_RATE,
            "seconds": self.driven,
            "sample_seconds": SAMPLE_SECONDS,
            "gateway_settings": GATEWAY_CACHES,
            "worker_settings": WORKER_CACHES,
            "bound": {"growth": GROWTH, "slack_mb": SLACK_MB, "state_factor": STATE_FACTOR, "backlog_mb": BACKLOG_MB},
            "view_bytes": self.view_bytes,
            "inquiries": len(self.plans),
            "webhooks": len(self.posted),
            "updates": len(self.latencies),
            "frames_acknowledged": self.counters["frames acknowledged"],
            "latency_p50_ms": percentile(everything, 50) * 1000,
            "latency_p99_ms": percentile(everything, 99) * 1000,
            "bounds": {
                name: [{"at": s.at, "bound_mb": round(bound, 1)} for s, bound in bounded]
                for name, bounded in (self.memory().items() if self.driven else ())
            },
            "samples": [asdict(s) for s in self.samples],
            "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()},
            "at": datetime.now(UTC).isoformat(),
        }


@pytest.mark.soak
@pytest.mark.timeout(SOAK_SECONDS + 300)
async def test_a_steady_load_loses_nothing_and_memory_stays_flat(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    await create_topics(kafka_bootstrap, TopicPlan.from_settings(gateway_settings(kafka_bootstrap, unique)).all())
    worker = Worker(worker_env(kafka_bootstrap, unique, **WORKER_CACHES), tmp_path, "soak-worker").start()
    gateway = GatewayProcess(
        {
            **worker_env(kafka_bootstrap, unique, **GATEWAY_CACHES),
            "PERSONA_STREAM_WEBHOOK_SECRETS": WEBHOOK_SECRET,
            "PERSONA_STREAM_WORKER_URL": worker_url(worker),
            "PERSONA_STREAM_GATEWAY_PROCESSES": "1",  # the soak samples the memory of the process that serves
        },
        tmp_path / "gateway.log",
        log_level="warning",
    )
    soak: Soak | None = None
    try:
        gateway.start()
        assert gateway.process is not None
        assert worker.process is not None
        soak = Soak(
            f"ws://127.0.0.1:{gateway.ws_port}",
            f"http://127.0.0.1:{gateway.http_port}",
            (gateway.process.pid, worker.process.pid),
        )
        subscribed = asyncio.Event()
        follower = asyncio.create_task(soak.follow(subscribed))
        await asyncio.wait_for(subscribed.wait(), 60)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as http:
            try:
                plays = await soak.drive(http)
                await asyncio.wait_for(soak.drain(plays, follower), 180)
                await soak.measure_views(http)
            finally:
                follower.cancel()
                await asyncio.gather(follower, return_exceptions=True)
    finally:
        gateway.stop()
        worker.stop()
        if soak is not None:
            print("\n" + soak.report())
            if SOAK_OUT:
                soak.save(Path(SOAK_OUT))

    assert soak.problems == []
    # nothing lost, nothing doubled: every webhook's update, once; every inquiry's versions in order
    assert set(soak.causes) == set(soak.posted)
    assert set(soak.causes.values()) == {1}
    expected = {plan.inquiry_id: len(plan.webhooks) for plan in soak.plans if plan.webhooks}
    assert set(soak.updates) == set(expected)
    for inquiry, versions in soak.updates.items():  # plus any record a flag's change made
        assert versions == list(range(1, len(versions) + 1)), inquiry
        assert len(versions) >= expected[inquiry], inquiry
    assert soak.counters["frames acknowledged"] == sum(len(c) for p in soak.plans for _, c, _ in p.sessions)
    for name, bounded in soak.memory().items():
        over = [(s.at, getattr(s, f"{name}_rss_mb"), round(bound, 1)) for s, bound in bounded]
        assert [o for o in over if o[1] > o[2]] == [], f"{name} RSS over its bound (at, MB, bound MB)"
