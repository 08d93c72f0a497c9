"""Real faults at the edge, and the invariants that must survive them.

=====================================  ===============================================================
fault                                  what must hold
=====================================  ===============================================================
the broker is ``kill -9``-ed while     while it is down nothing sent after the kill is acknowledged;
browsers stream callbacks, then        every connection is closed 1013 ``kafka-unavailable``;
restarted on the same ports and data   ``/readyz`` answers 503. Once it is back, the *same* gateway
                                       process acknowledges again. Every frame ever acknowledged is
                                       in Kafka, every frame sent is there, and repeats are copies of
                                       one ``(session, seq)``
Persona delivers webhooks while the    each delivery answered 503 ``kafka-unavailable`` with
broker is down                         ``Retry-After``; Persona's retries (same body, fresh
                                       signature) get 200 once it is back, a later repeat 200
                                       ``duplicate``; every event id is in ``<p>.webhooks``, byte for
                                       byte, repeats only of the same event
the gateway process is ``kill -9``-ed  a new gateway on the same ports takes the reconnecting clients;
with 50 browsers streaming             what the dead one acknowledged is in Kafka, every frame is
                                       there at least once, repeats only of one ``(session, seq)``
=====================================  ===============================================================

The clients behave as docs/protocol.md asks (and ``clients/js`` does): they keep every frame until
it is acknowledged, and after any close or lost connection they reconnect and resend the
unacknowledged ones with their original ``seq``. Every wait is for a condition, with a generous timeout.

The broker faults use a broker of this module's own (its own ports and data directory, the cached
jars), so that killing it disturbs no other test; the gateway fault uses the session's broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from websockets.exceptions import WebSocketException

from core.tokens import TokenAuthority
from core.topics import TopicPlan, TopicSpec, create_topics
from gateway.signatures import sign
from persona_stream.localkafka import LocalKafka
from persona_stream.webhook_bodies import body, inquiry_event
from schemas.codec import decode
from schemas.records import WEBHOOK_EVENT_ID_HEADER, CallbackRecord, ClientEvent
from tests.conftest import DEFAULTS
from tests.integration.conftest import TOKEN_SECRET, WEBHOOK_SECRET, gateway_settings, started_gateway
from tests.integration.workers import worker_env
from tests.kafkautil import wait_for
from tests.processes import GatewayProcess, cli_env, kafka_on_free_ports
from tests.wsclient import Client

pytestmark = pytest.mark.integration

NO_RATE_LIMIT: dict[str, Any] = {"rate_per_second": 10_000.0, "rate_burst": 10_000}
"""The rate limit is not under test here: a client resending a long backlog must not trip it."""

RECONNECT_DELAY = 0.5
CONNECTION_LOST = (OSError, TimeoutError, EOFError, WebSocketException)


# --- a dedicated broker -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A broker of this module's own, sharing the cached jars: killing it disturbs no other test."""
    jars = LocalKafka.in_cache(DEFAULTS.cache_dir, 0, 0).jars

    def make(ports: list[int]) -> LocalKafka:
        return LocalKafka(jars, tmp_path_factory.mktemp("own-kafka") / "broker", ports[0], ports[1])

    kafka = kafka_on_free_ports(make, 2, timeout=180)
    yield kafka
    kafka.stop()


@pytest.fixture
def tokens() -> TokenAuthority:
    return TokenAuthority(TOKEN_SECRET.encode())


def address(kafka: LocalKafka) -> str:
    return f"127.0.0.1:{kafka.port}"


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def kill9(kafka: LocalKafka) -> None:
    """SIGKILL the broker's JVM (no shutdown hook, no flush) and wait until it is gone."""
    state = kafka.running()
    assert state is not None, "the broker is not running"
    os.kill(state.pid, signal.SIGKILL)
    await wait_for(lambda: gone(state.pid), timeout=60)


async def restart(kafka: LocalKafka) -> None:
    """Start the broker again on the same ports and data directory (a no-op if it runs)."""
    await kafka.start(timeout=180)


# --- browsers that keep their frames until acknowledged -----------------------------------------


@dataclass
class Flow:
    """One browser flow: its callbacks keep coming and are kept until acknowledged."""

    session: str
    subject: str
    token: str
    generated: int = 0
    """Frames ``0 .. generated - 1`` exist."""
    acked: int = -1
    sent: int = -1
    """The highest seq sent on the current connection."""
    closes: list[tuple[int | None, str | None]] = field(default_factory=list)
    """How each connection ended: the server's close code and reason, or (None, None) if lost."""
    errors: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    @staticmethod
    def callback(seq: int) -> dict[str, Any]:
        return {"kind": "onEvent", "name": f"step-{seq}", "metadata": {"n": seq}}

    @property
    def settled(self) -> bool:
        return self.finished and self.acked >= self.generated - 1

    def closes_since(self, index: int) -> list[tuple[int | None, str | None]]:
        return self.closes[index:]


def in_flight(flows: Sequence[Flow]) -> int:
    """Frames on the wire or being written: sent, not yet acknowledged."""
    return sum(max(0, flow.sent - flow.acked) for flow in flows)


def flows(tokens: TokenAuthority, count: int, tag: str) -> list[Flow]:
    subjects = [f"user-{tag}-{n}" for n in range(count)]
    return [
        Flow(f"s_{tag}_{n:04d}", subject, tokens.mint(subject, "ingest", 900)) for n, subject in enumerate(subjects)
    ]


class Traffic:
    """Flows generating ``burst`` frames ``rate`` times a second each (as a page emits several callbacks
    at once), one reconnecting connection per flow."""

    def __init__(self, url: str, flows: Sequence[Flow], rate: float, burst: int = 1) -> None:
        self.url, self.flows, self.rate, self.burst = url, flows, rate, burst
        self.tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Traffic:
        self.tasks.append(asyncio.create_task(self._generate()))
        self.tasks.extend(asyncio.create_task(self._connect(flow)) for flow in self.flows)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _generate(self) -> None:
        while not all(flow.finished for flow in self.flows):
            for flow in self.flows:
                if not flow.finished:
                    flow.generated += self.burst
                    flow.wake.set()
            await asyncio.sleep(1 / self.rate)

    def finish(self) -> None:
        """No new frames from now on; the flows still resend until everything is acknowledged."""
        for flow in self.flows:
            flow.finished = True
            flow.wake.set()

    async def settled(self, timeout: float) -> None:
        await wait_for(lambda: all(flow.settled for flow in self.flows), timeout=timeout)

    async def _connect(self, flow: Flow) -> None:
        while not flow.settled:
            client: Client | None = None
            try:
                client = await Client.open(self.url, flow.token, open_timeout=30)
                await self._exchange(flow, client)
            except CONNECTION_LOST:
                pass
            finally:
                if client is not None:
                    flow.acked = max(flow.acked, client.acks.get(flow.session, -1))
                    flow.errors.extend(client.errors)
                    received = client.connection.protocol.close_rcvd
                    flow.closes.append((received.code, received.reason) if received else (None, None))
                    with contextlib.suppress(*CONNECTION_LOST):
                        await client.close()
            if not flow.settled:
                await asyncio.sleep(RECONNECT_DELAY)

    @staticmethod
    async def _exchange(flow: Flow, client: Client) -> None:
        """One connection: resend what is unacknowledged, send new frames, read acks."""
        ready = await client.recv(timeout=30)
        if ready["type"] != "ready":
            raise ConnectionError(f"expected ready, got {ready}")

        async def send() -> None:
            flow.sent = flow.acked  # the ack rule is per connection: resend everything after the last ack
            while not flow.settled:
                while flow.sent < flow.generated - 1:
                    flow.sent += 1
                    await client.callback(flow.session, flow.sent, flow.callback(flow.sent))
                flow.wake.clear()
                await flow.wake.wait()

        async def receive() -> None:
            while not flow.settled:
                await client.recv(timeout=60)
                flow.acked = max(flow.acked, client.acks.get(flow.session, -1))

        tasks = [asyncio.create_task(send()), asyncio.create_task(receive())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()


# --- what is in Kafka ---------------------------------------------------------------------------


async def read_topic(bootstrap: str, spec: TopicSpec, timeout: float = 90.0) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of the topic, up to the end offsets of the moment of the call."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        partitions = [TopicPartition(spec.name, n) for n in range(spec.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        async with asyncio.timeout(timeout):
            for partition in partitions:
                while await consumer.position(partition) < ends[partition]:
                    batch = await consumer.getmany(partition, timeout_ms=500)
                    records.extend(batch.get(partition, []))
    finally:
        await consumer.stop()
    return records


async def callbacks_in(bootstrap: str, spec: TopicSpec) -> list[CallbackRecord]:
    events = [decode(ClientEvent, r.value) for r in await read_topic(bootstrap, spec)]
    return [e for e in events if isinstance(e, CallbackRecord)]


def assert_delivered(all_flows: Sequence[Flow], acked_before: dict[str, int], records: list[CallbackRecord]) -> None:
    """Nothing acknowledged lost, every frame there, repeats only as copies of one identity."""
    by_identity: dict[tuple[str, int], list[CallbackRecord]] = defaultdict(list)
    for record in records:
        by_identity[(record.session, record.seq)].append(record)
    lost = [
        (flow.session, seq)
        for flow in all_flows
        for seq in range(acked_before[flow.session] + 1)
        if (flow.session, seq) not in by_identity
    ]
    assert lost == [], f"acknowledged before the fault, but not in Kafka: {lost[:20]}"
    expected = {(flow.session, seq) for flow in all_flows for seq in range(flow.generated)}
    assert set(by_identity) - expected == set(), "records no client sent"
    assert expected - set(by_identity) == set(), "frames sent (and finally acknowledged) but not in Kafka"
    subjects = {flow.session: flow.subject for flow in all_flows}
    for (session, seq), copies in by_identity.items():
        first = copies[0]
        assert (first.subject, first.callback.model_dump()) == (subjects[session], Flow.callback(seq)), first
        assert all(c.model_dump(exclude={"received_at"}) == first.model_dump(exclude={"received_at"}) for c in copies)


# --- 1. the broker dies under the gateway, and comes back ---------------------------------------


async def readyz(gateway_http: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(f"{gateway_http}/readyz") as response:
        return response.status


async def test_a_broker_killed_mid_stream_stops_acks_and_the_same_gateway_recovers_losing_nothing(
    own_kafka: LocalKafka, unique: str, tokens: TokenAuthority
) -> None:
    settings = gateway_settings(address(own_kafka), unique, produce_timeout_seconds=2.0, **NO_RATE_LIMIT)
    gateway = await started_gateway(settings)
    browsers = flows(tokens, 6, unique)
    try:
        async with Traffic(f"ws://127.0.0.1:{gateway.ws_port}/v1/client", browsers, rate=5, burst=3) as traffic:
            await wait_for(lambda: all(flow.acked >= 10 for flow in browsers), timeout=60)
            await wait_for(lambda: in_flight(browsers) > 0, timeout=60, interval=0.002)  # mid-stream

            closes_at_kill = {flow.session: len(flow.closes) for flow in browsers}
            await kill9(own_kafka)
            generated_at_kill = {flow.session: flow.generated for flow in browsers}

            def refused_since_kill(flow: Flow) -> bool:
                return (1013, "kafka-unavailable") in flow.closes_since(closes_at_kill[flow.session])

            await wait_for(lambda: all(refused_since_kill(flow) for flow in browsers), timeout=90)
            assert await readyz(f"http://127.0.0.1:{gateway.http_port}") == 503
            acked_in_outage = {flow.session: flow.acked for flow in browsers}
            assert all(acked_in_outage[s] < generated_at_kill[s] for s in acked_in_outage), (
                f"acknowledged while the broker was dead: {acked_in_outage} (frames from {generated_at_kill} on "
                "were sent after the kill)"
            )
            unexpected = [
                (flow.session, close)
                for flow in browsers
                for close in flow.closes_since(closes_at_kill[flow.session])
                if close not in {(1013, "kafka-unavailable"), (None, None)}
            ]
            assert unexpected == [], unexpected

            await restart(own_kafka)
            generated_at_restart = {flow.session: flow.generated for flow in browsers}
            # the same gateway process takes frames again: new ones, sent after the restart, are acknowledged
            await wait_for(
                lambda: all(flow.acked >= generated_at_restart[flow.session] + 5 for flow in browsers), timeout=150
            )
            traffic.finish()
            await traffic.settled(timeout=120)
        assert await gateway.wait_ready(60)
    finally:
        await restart(own_kafka)
        await gateway.stop()
    assert all(flow.errors == [] for flow in browsers), [flow.errors for flow in browsers]
    records = await callbacks_in(address(own_kafka), gateway.topics.client_events)
    assert_delivered(browsers, acked_in_outage, records)


# --- 2. webhooks while the broker is down -------------------------------------------------------


@dataclass
class Delivery:
    """One webhook event as Persona delivers it: the same body on every attempt."""

    event_id: str
    payload: bytes
    attempts: int = 0

    async def attempt(self, http: aiohttp.ClientSession, url: str) -> tuple[int, str, str | None]:
        self.attempts += 1
        headers = {
            "Content-Type": "application/json",
            "Persona-Signature": sign(WEBHOOK_SECRET.encode(), int(time.time()), self.payload),
            "Persona-Webhook-Attempts-Made": str(self.attempts),
        }
        async with http.post(url, data=self.payload, headers=headers) as response:
            answer = await response.json()
            return response.status, answer["code"], response.headers.get("Retry-After")


def deliveries(tag: str, count: int) -> list[Delivery]:
    made = []
    for n in range(count):
        event_id = f"evt_{tag}_{n}"
        document = inquiry_event(event_id, "inquiry.completed", "completed", f"2024-02-15T23:48:{n:02d}.000Z")
        made.append(Delivery(event_id, body(document)))
    return made


async def test_webhooks_get_503_while_the_broker_is_down_and_persona_retries_land_once_it_is_back(
    own_kafka: LocalKafka, unique: str
) -> None:
    await restart(own_kafka)  # up, whatever the test before did
    gateway = await started_gateway(gateway_settings(address(own_kafka), unique, produce_timeout_seconds=2.0))
    url = f"http://127.0.0.1:{gateway.http_port}/v1/webhooks/persona"
    before, during = deliveries(f"{unique}_before", 1), deliveries(f"{unique}_during", 4)
    try:
        async with aiohttp.ClientSession() as http:
            assert [(await d.attempt(http, url))[:2] for d in before] == [(200, "accepted")]

            await kill9(own_kafka)
            answers = [await d.attempt(http, url) for d in during]
            assert answers == [(503, "kafka-unavailable", "5")] * len(during)
            assert await readyz(f"http://127.0.0.1:{gateway.http_port}") == 503

            await restart(own_kafka)
            deadline = time.monotonic() + 120
            for delivery in during:  # Persona retries each until it gets a 2xx
                while (answer := await delivery.attempt(http, url))[0] == 503:
                    assert answer[1:] == ("kafka-unavailable", "5")
                    assert time.monotonic() < deadline, f"{delivery.event_id} never accepted after the restart"
                    await asyncio.sleep(1)
                assert answer[:2] == (200, "accepted"), answer
            for delivery in before + during:  # and sometimes delivers again what was answered
                assert (await delivery.attempt(http, url))[:2] == (200, "duplicate")
    finally:
        await restart(own_kafka)
        await gateway.stop()

    records = await read_topic(address(own_kafka), gateway.topics.webhooks)
    bodies = {d.event_id: d.payload for d in before + during}
    seen: dict[str, int] = defaultdict(int)
    for record in records:
        event_id = dict(record.headers)[WEBHOOK_EVENT_ID_HEADER].decode()
        assert record.value == bodies[event_id], event_id  # repeats only as the same event, byte for byte
        seen[event_id] += 1
    assert set(seen) == set(bodies)


# --- 3. the gateway process dies with many clients connected ------------------------------------


@pytest.fixture
async def gateway_processes(tmp_path: Path) -> AsyncIterator[Callable[[dict[str, str], str], GatewayProcess]]:
    """Makes gateway processes (each logging to a file of ``tmp_path``), one process each: kill -9
    must hit the process that serves (tests/integration/test_gateway_processes.py covers a child's
    death under the parent of several); kills those left at the end."""
    made: list[GatewayProcess] = []

    def make(env: dict[str, str], name: str) -> GatewayProcess:
        env = {**env, "PERSONA_STREAM_GATEWAY_PROCESSES": "1"}
        made.append(process := GatewayProcess(env, tmp_path / f"{name}.log"))
        return process

    yield make
    for process in made:
        process.kill9()


async def test_a_gateway_killed_with_50_clients_streaming_loses_nothing_they_resend_to_its_successor(
    kafka_bootstrap: str,
    unique: str,
    tokens: TokenAuthority,
    gateway_processes: Callable[[dict[str, str], str], GatewayProcess],
) -> None:
    settings = gateway_settings(kafka_bootstrap, unique)
    plan = TopicPlan.from_settings(settings)
    await create_topics(kafka_bootstrap, plan.all())
    env = worker_env(
        kafka_bootstrap,
        unique,
        WEBHOOK_SECRETS=WEBHOOK_SECRET,
        RATE_PER_SECOND=NO_RATE_LIMIT["rate_per_second"],
        RATE_BURST=NO_RATE_LIMIT["rate_burst"],
    )
    first = await asyncio.to_thread(gateway_processes(env, "gateway-1").start)  # on port 0
    # its successor on the ports it got, where the clients reconnect
    env = cli_env(env, WS_PORT=first.ws_port, HTTP_PORT=first.http_port)
    browsers = flows(tokens, 50, unique)
    async with Traffic(f"{first.ws}/v1/client", browsers, rate=4, burst=5) as traffic:
        await wait_for(lambda: all(flow.acked >= 5 for flow in browsers), timeout=90)
        await wait_for(lambda: in_flight(browsers) >= 50, timeout=60, interval=0.002)  # mid-stream

        closes_at_kill = {flow.session: len(flow.closes) for flow in browsers}
        first.kill9()
        acked_at_kill = {flow.session: flow.acked for flow in browsers}
        await wait_for(lambda: all(flow.closes_since(closes_at_kill[flow.session]) for flow in browsers), timeout=60)

        second = await asyncio.to_thread(gateway_processes(env, "gateway-2").start)
        generated_at_restart = {flow.session: flow.generated for flow in browsers}
        await wait_for(
            lambda: all(flow.acked >= generated_at_restart[flow.session] + 3 for flow in browsers), timeout=120
        )
        traffic.finish()
        await traffic.settled(timeout=120)
    assert await asyncio.to_thread(second.stop, 60) == 0, second.log_tail()

    assert all(flow.errors == [] for flow in browsers), [flow.errors for flow in browsers if flow.errors]
    assert_delivered(browsers, acked_at_kill, await callbacks_in(kafka_bootstrap, plan.client_events))
