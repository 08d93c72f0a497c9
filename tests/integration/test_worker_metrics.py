"""The workers' ``GET /metrics`` under simulated traffic: every metric present, plausible values,
and a consumer lag of 0 once the input is drained."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from core.tokens import TokenAuthority
from gateway.app import Gateway
from persona_stream.simulator import SimulationConfig, Simulator
from tests.integration.conftest import WEBHOOK_SECRET, gateway_settings, started_gateway
from tests.integration.workers import Worker, worker_env
from tests.kafkautil import wait_for

pytestmark = pytest.mark.integration

Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=5) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(v for have, v in samples.get(name, []) if all(have.get(k) == w for k, w in labels.items()))


@pytest.fixture
async def pipeline(kafka_bootstrap: str, unique: str, tmp_path: Path) -> AsyncIterator[tuple[Gateway, Worker]]:
    # the memory store counts exactly; RocksDB's key estimate counts overwrites until it compacts
    worker = Worker(worker_env(kafka_bootstrap, unique, STORE="memory"), tmp_path).start()
    gateway = await started_gateway(
        gateway_settings(kafka_bootstrap, unique, worker_url=f"http://127.0.0.1:{worker.port}")
    )
    yield gateway, worker
    await gateway.stop()
    worker.stop()


async def test_worker_metrics_under_load(pipeline: tuple[Gateway, Worker], tokens: TokenAuthority) -> None:
    gateway, worker = pipeline
    url = f"http://127.0.0.1:{worker.port}/metrics"
    config = SimulationConfig(
        ws_url=f"ws://127.0.0.1:{gateway.ws_port}",
        http_url=f"http://127.0.0.1:{gateway.http_port}",
        tokens=tokens,
        webhook_secret=WEBHOOK_SECRET.encode(),
        inquiries=150,
        rate=30,
        chaos=False,
        seed=16,
        timeout=90,
        progress=None,
    )
    lag = "persona_stream_worker_consumer_lag"

    async def assigned() -> bool:
        samples = await asyncio.to_thread(scrape, url)
        return any(labels["kind"] == "input" for labels, _ in samples.get(lag, []))

    await wait_for(assigned, timeout=60)
    async with AIOKafkaProducer(bootstrap_servers=gateway.settings.bootstrap_servers()) as producer:
        await producer.send_and_wait(gateway.topics.client_events.name, b"not json", key=b"inq_garbage")
    simulation = asyncio.create_task(Simulator(config).run())
    during: list[Samples] = []
    while not simulation.done():
        during.append(await asyncio.to_thread(scrape, url))
        await asyncio.sleep(0.5)
    report = await simulation
    assert report.ok, report.summary()
    assert during, "the simulation ended before one scrape"

    assert all(any(labels["kind"] == "input" for labels, _ in s.get(lag, [])) for s in during)

    async def drained() -> bool:
        samples = await asyncio.to_thread(scrape, url)
        inputs = [v for labels, v in samples.get(lag, []) if labels["kind"] == "input"]
        return len(inputs) == 5 * 3 and all(v == 0 for v in inputs)  # 5 input topics x 3 partitions

    await wait_for(drained, timeout=30)
    s = await asyncio.to_thread(scrape, url)

    topics = {labels["topic"] for labels, _ in s[lag] if labels["kind"] == "input"}
    assert topics == {
        gateway.topics.client_events.name,
        gateway.topics.webhooks.name,
        gateway.topics.api_snapshots.name,
        gateway.topics.processor_ticks.name,
        gateway.topics.analytics_facts.name,
    }
    changelogs = [(labels, v) for labels, v in s[lag] if labels["kind"] == "changelog"]
    assert changelogs
    assert all(v == 0 for _, v in changelogs)  # restored: nothing left to read
    assert all(labels["topic"].endswith("-changelog") for labels, _ in changelogs)

    processed = "persona_stream_worker_processed_total"
    callbacks = sum(len(cbs) for plan in report.plans for _, cbs, _ in plan.sessions)
    assert 0 < total(s, processed, kind="client-event") >= callbacks * 0.5
    assert total(s, processed, kind="webhook") >= len(report.plans)
    assert total(s, processed, kind="tick") > 0
    assert total(s, processed, kind="analytics-fact") > 0

    assert total(s, "persona_stream_worker_commit_seconds_count") > 10
    assert 0 < total(s, "persona_stream_worker_commit_seconds_sum") < 60
    batches = total(s, "persona_stream_worker_batch_size_count")
    assert batches > 0
    assert 1 <= total(s, "persona_stream_worker_batch_size_sum") / batches <= 1000

    assert total(s, "persona_stream_worker_rebalances_total") >= 1
    assert total(s, "persona_stream_worker_rebalance_seconds_count") >= 1
    assert total(s, "persona_stream_worker_restore_seconds_count") >= 1
    assert 0 <= total(s, "persona_stream_worker_restore_seconds_sum") < 120
    assert total(s, "persona_stream_worker_restoring") == 0
    assert total(s, "persona_stream_worker_restore_remaining_records") == 0

    inquiries = total(s, "persona_stream_worker_state_inquiries")
    # RocksDB's estimate, not a count: keys overwritten and not yet compacted, and each partition's
    # offset key, may count again; merged memtables can count less
    with_webhooks = len([plan for plan in report.plans if plan.webhooks])
    assert with_webhooks // 2 <= inquiries <= 2 * len(report.plans) + 12
    assert inquiries * 100 <= total(s, "persona_stream_worker_state_bytes") <= inquiries * 100_000

    assert s["persona_stream_worker_dead_letters_total"] == [({"reason": "client-event-invalid"}, 1.0)]
