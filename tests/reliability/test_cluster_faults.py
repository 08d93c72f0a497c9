"""Faults on a real three-broker cluster (replication factor 3, ``min.insync.replicas`` 2).

=====================================  ===============================================================
fault                                  what must hold
=====================================  ===============================================================
the leader of the partition being      the gateway keeps acknowledging once a new leader is elected
written is ``kill -9``-ed while        (no client is told anything but, at worst, 1013
browsers stream callbacks and Persona  ``kafka-unavailable``); webhooks are answered 200, or 503
delivers webhooks; then restarted      ``kafka-unavailable`` and accepted on Persona's retry; the
                                       restarted broker rejoins the ISR
then a second broker is killed: two    nothing sent after the kill is acknowledged, clients are told
of three down, below                   to retry (1013 ``kafka-unavailable``, webhooks 503 with
``min.insync.replicas``                ``Retry-After``); once both are back, everything is written:
                                       every frame and event acknowledged is in Kafka, repeats only as
                                       copies of one ``(session, seq)`` or event id
the leader of the status partition is  every inquiry's status records are exactly what the pure core
``kill -9``-ed while a worker          computes, versions 1..n, none twice
processes webhooks (exactly-once)
=====================================  ===============================================================

Each test prints how long recovery took after each kill (docs/reliability.md gives the figures);
the times are observed, never asserted. With three nodes that are each broker *and* controller,
killing two also takes the controller quorum below its majority: no ISR change or leader election
can happen until one is back, so the writes time out rather than fail fast with
``NotEnoughReplicas`` -- the clients see the same answer either way.

The cluster is this module's own (free ports, a throwaway directory, the cached jars) and is
stopped at the end; the shared broker is not touched.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from core.tokens import TokenAuthority
from core.topics import TopicPlan, TopicSpec, create_topics
from persona_stream.localcluster import LocalKafkaCluster
from persona_stream.localkafka import LocalKafka
from schemas.records import WEBHOOK_EVENT_ID_HEADER
from tests.conftest import DEFAULTS
from tests.integration.conftest import TOKEN_SECRET, gateway_settings, started_gateway
from tests.integration.test_processors import expected_status, produce_all, status_by_inquiry, webhooks_for
from tests.integration.workers import Worker, worker_env
from tests.kafkautil import consume, wait_for
from tests.processes import kafka_on_free_ports
from tests.reliability.test_faults import (
    NO_RATE_LIMIT,
    Delivery,
    Flow,
    Traffic,
    assert_delivered,
    callbacks_in,
    deliveries,
    flows,
    gone,
    read_topic,
    readyz,
)

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

BROKERS = 3


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafkaCluster]:
    jars = LocalKafka.in_cache(DEFAULTS.cache_dir, 0, 0).jars

    def make(ports: list[int]) -> LocalKafkaCluster:
        """Node n listens on ports[0] + 2n, its controller on ports[1] + 2n."""
        return LocalKafkaCluster.in_directory(jars, tmp_path_factory.mktemp("cluster"), BROKERS, ports[0], ports[1])

    cluster = kafka_on_free_ports(make, 2 * BROKERS, timeout=240, consecutive=True)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def tokens() -> TokenAuthority:
    return TokenAuthority(TOKEN_SECRET.encode())


# --- the cluster's state ------------------------------------------------------------------------


async def partition_state(bootstrap: str, topic: str) -> tuple[int, list[int]]:
    """Partition 0's leader and in-sync replicas (node ids, from 1), as the metadata says."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        (partition,) = [p for p in described["partitions"] if p["partition"] == 0]
        return int(partition["leader"]), sorted(int(n) for n in partition["isr"])
    finally:
        await admin.close()


async def wait_in_sync(cluster: LocalKafkaCluster, topic: str, replicas: int, timeout: float = 120.0) -> float:
    """Seconds until partition 0 of ``topic`` has ``replicas`` replicas in sync."""
    began = time.monotonic()

    async def in_sync() -> bool:
        try:
            return len((await partition_state(cluster.bootstrap_servers, topic))[1]) == replicas
        except Exception:  # noqa: BLE001 - metadata unavailable while brokers come and go
            return False

    await wait_for(in_sync, timeout=timeout, interval=0.2)
    return time.monotonic() - began


def node(cluster: LocalKafkaCluster, node_id: int) -> LocalKafka:
    return cluster.nodes[node_id - 1]


async def kill9(kafka: LocalKafka) -> None:
    state = kafka.running()
    assert state is not None, f"node {kafka.node_id} is not running"
    os.kill(state.pid, signal.SIGKILL)
    await wait_for(lambda: gone(state.pid), timeout=60)


async def restart(cluster: LocalKafkaCluster) -> None:
    """Start the nodes that are down (a no-op for those running) and wait until they serve."""
    for kafka in cluster.nodes:
        if kafka.running() is None:
            await kafka.start(timeout=180)


@dataclass
class Report:
    """What a test observed, printed at its end (pytest -s shows it; docs/reliability.md quotes it)."""

    lines: list[str]

    def add(self, line: str) -> None:
        self.lines.append(line)
        print(f"[cluster] {line}", flush=True)


# --- Persona, retrying each delivery until it gets a 2xx ----------------------------------------


async def deliver(http: aiohttp.ClientSession, url: str, delivery: Delivery, answers: list[tuple[int, str]]) -> None:
    """Attempt until accepted, as Persona does (sooner than its real back-off, to keep the test short)."""
    while True:
        try:
            status, code, retry_after = await delivery.attempt(http, url)
        except (aiohttp.ClientError, TimeoutError):
            status, code, retry_after = 0, "connection", None
        answers.append((status, code))
        if status == 200:
            return
        assert (status, code, retry_after) == (503, "kafka-unavailable", "5"), (status, code, retry_after)
        await asyncio.sleep(1)


def assert_webhooks(records: list[object], sent: list[Delivery]) -> int:
    """Every event in the topic byte for byte, repeats only of one event; how many repeats."""
    bodies = {d.event_id: d.payload for d in sent}
    seen: dict[str, int] = defaultdict(int)
    for record in records:
        event_id = dict(record.headers)[WEBHOOK_EVENT_ID_HEADER].decode()  # type: ignore[attr-defined]
        assert record.value == bodies[event_id], event_id  # type: ignore[attr-defined]
        seen[event_id] += 1
    assert set(seen) == set(bodies), set(bodies) - set(seen)
    return sum(seen.values()) - len(seen)


# --- 1. ingest: the leader dies, then two brokers ------------------------------------------------


async def test_ingest_survives_the_leader_killed_and_refuses_below_min_isr_losing_nothing(
    cluster: LocalKafkaCluster, unique: str, tokens: TokenAuthority
) -> None:
    report = Report([])
    settings = gateway_settings(
        cluster.bootstrap_servers, unique, partitions=1, replication_factor=3, produce_timeout_seconds=4.0,
        **NO_RATE_LIMIT,
    )  # fmt: skip
    gateway = await started_gateway(settings)
    topic = gateway.topics.client_events.name
    url = f"http://127.0.0.1:{gateway.http_port}/v1/webhooks/persona"
    browsers = flows(tokens, 8, unique)
    events: list[Delivery] = []
    answers: list[tuple[int, str]] = []

    def acked_after(generated: dict[str, int]) -> bool:
        return all(flow.acked >= generated[flow.session] + 3 for flow in browsers)

    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
            Traffic(f"ws://127.0.0.1:{gateway.ws_port}/v1/client", browsers, rate=5, burst=3) as traffic,
        ):
            await wait_for(lambda: all(flow.acked >= 10 for flow in browsers), timeout=60)
            await wait_for(lambda: sum(max(0, f.sent - f.acked) for f in browsers) > 0, timeout=60, interval=0.002)

            # 1a. kill -9 the leader mid-stream, with webhooks arriving
            leader, isr = await partition_state(cluster.bootstrap_servers, topic)
            assert isr == [1, 2, 3]
            batch = deliveries(f"{unique}_a", 10)
            events += batch
            killed_at = time.monotonic()
            await kill9(node(cluster, leader))
            generated_at_kill = {flow.session: flow.generated for flow in browsers}
            delivering = asyncio.gather(*(deliver(http, url, d, answers) for d in batch))
            await wait_for(lambda: acked_after(generated_at_kill), timeout=120, interval=0.05)
            report.add(
                f"leader (node {leader}) killed during ingest: acks resumed after {time.monotonic() - killed_at:.1f} s"
            )
            await delivering
            report.add(f"webhooks during the failover: answers {sorted(set(answers))}, {len(answers)} attempts")
            new_leader, isr = await partition_state(cluster.bootstrap_servers, topic)
            assert new_leader != leader
            assert leader not in isr
            assert len(isr) == 2

            restarted_at = time.monotonic()
            await restart(cluster)
            serving = time.monotonic() - restarted_at
            rejoined = await wait_in_sync(cluster, topic, 3)
            report.add(f"node {leader} restarted: serving after {serving:.1f} s, in the ISR {rejoined:.1f} s later")

            # 1b. two of three down: below min.insync.replicas
            leader, isr = await partition_state(cluster.bootstrap_servers, topic)
            followers = [n for n in isr if n != leader]
            closes_at_kill = {flow.session: len(flow.closes) for flow in browsers}
            await kill9(node(cluster, followers[0]))
            await kill9(node(cluster, followers[1]))
            down_at = time.monotonic()
            generated_at_kill = {flow.session: flow.generated for flow in browsers}

            def told_to_retry(flow: Flow) -> bool:
                return (1013, "kafka-unavailable") in flow.closes[closes_at_kill[flow.session] :]

            await wait_for(lambda: all(told_to_retry(flow) for flow in browsers), timeout=120)
            told = time.monotonic() - down_at
            report.add(f"two brokers down: every client closed 1013 kafka-unavailable within {told:.1f} s")
            assert await readyz(f"http://127.0.0.1:{gateway.http_port}") == 503
            outage = deliveries(f"{unique}_b", 4)
            events += outage
            outage_answers = [(await d.attempt(http, url)) for d in outage]
            assert outage_answers == [(503, "kafka-unavailable", "5")] * len(outage)
            acked_in_outage = {flow.session: flow.acked for flow in browsers}
            assert all(acked_in_outage[s] < generated_at_kill[s] for s in acked_in_outage), (
                f"acknowledged below min.insync.replicas: {acked_in_outage}, frames from {generated_at_kill} were sent "
                "after the kill"
            )
            unexpected = [
                close
                for flow in browsers
                for close in flow.closes[closes_at_kill[flow.session] :]
                if close not in {(1013, "kafka-unavailable"), (None, None)}
            ]
            assert unexpected == [], unexpected

            restarted_at = time.monotonic()
            await restart(cluster)
            generated_at_restart = {flow.session: flow.generated for flow in browsers}
            delivering = asyncio.gather(*(deliver(http, url, d, answers) for d in outage))
            await wait_for(lambda: acked_after(generated_at_restart), timeout=180, interval=0.05)
            report.add(
                f"both restarted: acks resumed {time.monotonic() - restarted_at:.1f} s after the restart began "
                f"({restarted_at - down_at:.1f} s below min.insync.replicas)"
            )
            await delivering
            report.add(f"ISR back to 3 after {await wait_in_sync(cluster, topic, 3):.1f} s more")
            traffic.finish()
            await traffic.settled(timeout=180)
            for delivery in events[:3]:  # Persona sometimes delivers again what was answered
                assert (await delivery.attempt(http, url))[:2] == (200, "duplicate")
    finally:
        await restart(cluster)
        await gateway.stop()

    assert all(flow.errors == [] for flow in browsers), [flow.errors for flow in browsers if flow.errors]
    records = await callbacks_in(cluster.bootstrap_servers, gateway.topics.client_events)
    assert_delivered(browsers, {flow.session: flow.acked for flow in browsers}, records)
    frames = sum(flow.generated for flow in browsers)
    repeats = assert_webhooks(await read_topic(cluster.bootstrap_servers, gateway.topics.webhooks), events)
    report.add(
        f"{frames} frames acknowledged, {len({(r.session, r.seq) for r in records})} found ({len(records)} records); "
        f"{len(events)} webhooks accepted, all found ({repeats} repeats of one event id)"
    )


# --- 2. processing: the leader of the status partition dies --------------------------------------


async def test_processing_survives_the_status_leader_killed_with_no_version_lost_or_doubled(
    cluster: LocalKafkaCluster, unique: str, tmp_path: Path
) -> None:
    report = Report([])
    await restart(cluster)
    bootstrap = cluster.bootstrap_servers
    from core.settings import Settings

    plan = TopicPlan.from_settings(
        Settings(kafka_bootstrap_servers=bootstrap, topic_prefix=unique, partitions=1, replication_factor=3)
    )
    await create_topics(bootstrap, plan.all())

    rng = random.Random(5)
    base = datetime(2026, 3, 1, tzinfo=UTC)
    deliveries_by_inquiry = {f"inq_cl{i:04d}": webhooks_for(f"inq_cl{i:04d}", rng, base) for i in range(300)}
    items = [(inq.encode(), raw) for inq, bodies in deliveries_by_inquiry.items() for raw in bodies]
    rng.shuffle(items)
    per_key: dict[bytes, list[bytes]] = defaultdict(list)
    for key, raw in items:
        per_key[key].append(raw)
    expected = expected_status({k.decode(): v for k, v in per_key.items()})
    total = sum(len(v) for v in expected.values())

    env = worker_env(bootstrap, unique, PARTITIONS=1, REPLICATION_FACTOR=3, CACHE_DIR=tmp_path)
    worker = Worker(env, tmp_path, "worker").start()
    try:
        seen = StatusCounter(bootstrap, plan.inquiry_status)
        async with seen:
            producing = asyncio.create_task(produce_all(bootstrap, plan.webhooks.name, items, rate=150))
            await wait_for(lambda: seen.count >= 50, timeout=120)
            leader, isr = await partition_state(bootstrap, plan.inquiry_status.name)
            assert isr == [1, 2, 3]
            before = seen.count
            killed_at = time.monotonic()
            await kill9(node(cluster, leader))
            await wait_for(lambda: seen.count >= before + 20, timeout=120, interval=0.05)
            report.add(
                f"status leader (node {leader}) killed during processing: new statuses after "
                f"{seen.first_after(killed_at) - killed_at:.1f} s"
            )
            restarted_at = time.monotonic()
            await restart(cluster)
            serving = time.monotonic() - restarted_at
            rejoined = await wait_in_sync(cluster, plan.inquiry_status.name, 3)
            report.add(f"node {leader} restarted: serving after {serving:.1f} s, in the ISR {rejoined:.1f} s later")
            await producing
            await wait_for(lambda: seen.count >= total, timeout=180)
        assert worker.process is not None
        assert worker.process.poll() is None, worker.log_tail()
    finally:
        worker.stop()

    await asyncio.sleep(2)  # anything extra would arrive now
    found = status_by_inquiry(await consume(bootstrap, plan.inquiry_status.name, timeout=60))
    for inquiry, versions in found.items():
        assert [v[0] for v in versions] == list(range(1, len(versions) + 1)), inquiry
    assert found == expected
    report.add(f"{len(items)} webhooks, {total} status records expected and found, versions 1..n, none twice")


class StatusCounter:
    """Counts committed status records as they arrive, and when."""

    def __init__(self, bootstrap: str, spec: TopicSpec) -> None:
        self.bootstrap, self.spec = bootstrap, spec
        self.arrivals: list[float] = []
        self.task: asyncio.Task[None] | None = None

    @property
    def count(self) -> int:
        return len(self.arrivals)

    def first_after(self, moment: float) -> float:
        return next(t for t in self.arrivals if t > moment)

    async def __aenter__(self) -> StatusCounter:
        consumer = AIOKafkaConsumer(
            self.spec.name,
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        await consumer.start()

        async def count() -> None:
            try:
                while True:
                    batch = await consumer.getmany(timeout_ms=200)
                    now = time.monotonic()
                    self.arrivals.extend(now for records in batch.values() for _ in records)
            finally:
                await consumer.stop()

        self.task = asyncio.create_task(count())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
