"""Reconciliation end to end: the real gateway, a real worker process, a real reconciler process, the
real broker and the stand-in of Persona's API on 127.0.0.1.

The client says onComplete and the webhook never comes: the worker's timer raises
``awaiting_confirmation`` and asks the reconciler, which reads the inquiry from the API; the snapshot
reaches the worker through ``<p>.api-snapshots`` and the trusted status arrives on
``<p>.inquiry-status`` with ``source: api``.
"""

from __future__ import annotations

import io
import json
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from core.tokens import TokenAuthority
from core.topics import TopicPlan, create_topics
from gateway.signatures import sign
from persona_stream.webhook_bodies import inquiry_event
from schemas.codec import decode, encode
from schemas.records import ApiSnapshot, ReconcileRequest
from tests.fixtures.persona_api import Fault, PersonaStandIn, inquiry, persona_api
from tests.integration.conftest import WEBHOOK_SECRET, gateway_settings, started_gateway
from tests.integration.test_downstream import Stack, post_webhook
from tests.integration.test_rules import ingest, records_of, view_of
from tests.integration.workers import Reconciler, Worker, worker_env
from tests.kafkautil import consume, wait_for

__all__ = ["persona_api"]

pytestmark = pytest.mark.integration

WINDOW_SECONDS = 3  # awaiting_confirmation
INTERVAL_SECONDS = 2  # reconcile interval
RATE_PER_MINUTE = 40
API_KEY = "persona_sandbox_" + secrets.token_hex(16)


@dataclass
class ReconcileStack(Stack):
    reconciler: Reconciler
    api: PersonaStandIn
    log_dir: Path


@pytest.fixture
async def stack(
    kafka_bootstrap: str, unique: str, tmp_path: Path, tokens: TokenAuthority, persona_api: PersonaStandIn
) -> AsyncIterator[ReconcileStack]:
    # as `persona-stream run` does: the same environment, the key included, for worker and reconciler
    env = worker_env(
        kafka_bootstrap,
        unique,
        AWAITING_CONFIRMATION_SECONDS=WINDOW_SECONDS,
        RECONCILE_INTERVAL_SECONDS=INTERVAL_SECONDS,
        PERSONA_API_KEY=API_KEY,
        PERSONA_API_URL=persona_api.url,
        PERSONA_API_MAX_RETRIES=2,
        PERSONA_API_RATE_PER_MINUTE=RATE_PER_MINUTE,
        PERSONA_API_TIMEOUT_SECONDS=2,
    )
    worker = Worker(env, tmp_path).start()
    reconciler = Reconciler(env, tmp_path).start()
    gateway = await started_gateway(
        gateway_settings(kafka_bootstrap, unique, worker_url=f"http://127.0.0.1:{worker.port}")
    )
    yield ReconcileStack(gateway, worker, tokens, reconciler, persona_api, tmp_path)
    await gateway.stop()
    reconciler.stop()
    worker.stop()


async def pending_then_complete(stack: ReconcileStack, inquiry_id: str, subject: str) -> None:
    """A verified pending snapshot, then the client's onComplete; no completion webhook follows."""
    started = inquiry_event(
        f"evt_{inquiry_id}_1",
        "inquiry.started",
        "pending",
        "2026-03-01T10:00:01.000Z",
        inquiry_id=inquiry_id,
        reference_id=subject,
    )
    assert await post_webhook(stack, started) == 200
    await records_of(stack, inquiry_id, 1)
    claim = {"kind": "onComplete", "inquiryId": inquiry_id, "status": "completed"}
    await ingest(stack, subject, [{"session": "sess_reconcile01", "seq": 0, "callback": claim}])


def api_calls(stack: ReconcileStack, inquiry_id: str) -> list[float]:
    return [seen.at for seen in stack.api.seen if seen.path.endswith(f"/inquiries/{inquiry_id}")]


def assert_within_rate(times: list[float], limit: int, window: float = 60.0) -> None:
    for i, start in enumerate(times):
        assert len([t for t in times[i:] if t < start + window]) <= limit


def assert_no_key_in(text: str) -> None:
    assert API_KEY not in text
    assert API_KEY[len("persona_sandbox_") :] not in text


async def test_a_missing_webhook_is_reconciled_through_the_api(
    stack: ReconcileStack, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    inquiry_id, subject = "inq_reconcile_missing", "user-missing"
    completed = inquiry(inquiry_id, "completed")
    completed["attributes"]["reference-id"] = subject
    stack.api.inquiries[inquiry_id] = completed

    await pending_then_complete(stack, inquiry_id, subject)
    claimed = time.time()  # onComplete acknowledged: the gateway's clock stamped it just before
    # the timer raises the flag at the deadline; the API's answer arrives within one reconcile interval
    records = await records_of(stack, inquiry_id, 3)
    first, raised, trusted = records[:3]
    assert (first.status, first.source) == ("pending", "webhook")
    assert (raised.status, raised.changed) == ("pending", ["flags.awaiting_confirmation"])
    assert raised.trigger is not None
    assert raised.trigger.source == "timer"
    assert trusted.status == "completed"
    assert trusted.source == "api"
    assert trusted.cause.source == "api"
    assert trusted.trigger is not None
    assert trusted.trigger.source == "api"
    assert not trusted.flags.awaiting_confirmation
    assert "flags.awaiting_confirmation" in trusted.changed
    assert trusted.reference_id == subject
    # when it reached the status topic (the broker's timestamp): the deadline plus one interval,
    # plus the tick and commit intervals and a shared machine's slack
    topic = stack.gateway.topics.inquiry_status.name
    stamps = [
        r.timestamp / 1000
        for r in await consume(stack.gateway.settings.bootstrap_servers(), topic, quiet=1)
        if r.key == inquiry_id.encode()
    ]
    assert stamps[2] - claimed <= WINDOW_SECONDS + INTERVAL_SECONDS + 2.0

    view = await view_of(stack, inquiry_id)
    assert view.trusted.source == "api"
    assert not view.flags.awaiting_confirmation
    assert [(entry.source, entry.outcome) for entry in view.audit] == [("webhook", "applied"), ("api", "applied")]

    # the key went to Persona, and nowhere else: no log of the worker, the reconciler or this process
    calls = [seen for seen in stack.api.seen if seen.path.endswith(inquiry_id)]
    assert calls
    assert all(seen.headers["Authorization"] == f"Bearer {API_KEY}" for seen in calls)
    stack.reconciler.stop()
    stack.worker.stop()
    assert "persona api GET" in stack.reconciler.log_path.read_text()  # it logs every call (debug level)
    for log in (stack.worker.log_path, stack.reconciler.log_path):
        text = log.read_text(errors="replace")
        assert_no_key_in(text)
    out, err = capfd.readouterr()
    assert_no_key_in(out + err + caplog.text)


async def test_an_api_that_is_down_or_rate_limiting_is_retried_within_the_rate_and_then_reconciles(
    stack: ReconcileStack,
) -> None:
    inquiry_id, subject = "inq_reconcile_outage", "user-outage"
    completed = inquiry(inquiry_id, "completed")
    completed["attributes"]["reference-id"] = subject
    stack.api.inquiries[inquiry_id] = completed
    stack.api.outage = [
        Fault(status=503),
        Fault(status=429, headers={"RateLimit-Limit": "40", "RateLimit-Remaining": "0", "RateLimit-Reset": "1"}),
        Fault(status=200, body="<html>not json</html>"),
        Fault(status=500),
    ]

    await pending_then_complete(stack, inquiry_id, subject)
    await records_of(stack, inquiry_id, 2)  # the flag is raised

    # several reconcile intervals of failures: retried, nothing crashes, the flag stays raised
    await wait_for(lambda: len(api_calls(stack, inquiry_id)) >= 8, timeout=60)
    assert stack.reconciler.alive()
    assert stack.worker.process is not None
    assert stack.worker.process.poll() is None
    view = await view_of(stack, inquiry_id)
    assert view.flags.awaiting_confirmation
    assert view.trusted.status == "pending"

    stack.api.outage = []  # it recovers
    records = await records_of(stack, inquiry_id, 3)
    assert records[2].status == "completed"
    assert records[2].source == "api"
    assert not records[2].flags.awaiting_confirmation
    assert_within_rate(api_calls(stack, inquiry_id), RATE_PER_MINUTE)
    text = stack.reconciler.log_path.read_text(errors="replace")
    assert "persona-api-" in text  # the failures were logged with their codes
    assert_no_key_in(text)


async def test_an_inquiry_whose_webhook_was_dead_lettered_is_reconciled_through_the_api(stack: ReconcileStack) -> None:
    inquiry_id = "inq_reconcile_deadletter"
    stack.api.inquiries[inquiry_id] = inquiry(inquiry_id, "approved")
    # verified, but not an envelope (no created-at): the gateway sets it aside; it names its inquiry
    broken = {
        "data": {
            "type": "event",
            "id": "evt_broken",
            "attributes": {"name": "inquiry.approved", "payload": {"data": {"type": "inquiry", "id": inquiry_id}}},
        }
    }
    payload = json.dumps(broken).encode()
    headers = {"Persona-Signature": sign(WEBHOOK_SECRET.encode(), int(time.time()), payload)}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{stack.http}/v1/webhooks/persona", data=io.BytesIO(payload), headers=headers) as answer,
    ):
        assert answer.status == 202
        assert (await answer.json())["code"] == "dead-lettered"

    (record,) = await records_of(stack, inquiry_id, 1)
    assert record.status == "approved"
    assert record.source == "api"
    topic = stack.gateway.topics.api_snapshots.name
    (snapshot,) = [
        decode(ApiSnapshot, r.value)
        for r in await consume(stack.gateway.settings.bootstrap_servers(), topic, quiet=1)
        if r.key == inquiry_id.encode()
    ]
    assert snapshot.reason == "dead-letter"


async def group_is_stable(bootstrap: str, group: str, members: int) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group])
        _, _, state, _, _, found, *_ = response.groups[0]
        return bool(state == "Stable" and len(found) == members)
    finally:
        await admin.close()


async def test_two_reconcilers_never_make_the_same_call(
    kafka_bootstrap: str, unique: str, tmp_path: Path, persona_api: PersonaStandIn
) -> None:
    env = worker_env(kafka_bootstrap, unique, PERSONA_API_KEY=API_KEY, PERSONA_API_URL=persona_api.url)
    settings = gateway_settings(kafka_bootstrap, unique)
    await create_topics(kafka_bootstrap, TopicPlan.from_settings(settings).all())
    ids = [f"inq_pair{n:03d}" for n in range(60)]
    persona_api.inquiries.update({i: inquiry(i, "completed") for i in ids})
    first = Reconciler(env, tmp_path, "reconciler-1").start()
    second = Reconciler(env, tmp_path, "reconciler-2").start()
    try:
        await wait_for(lambda: group_is_stable(kafka_bootstrap, settings.reconciler_group, 2), timeout=60)
        requests = TopicPlan.from_settings(settings).reconcile_requests.name
        async with AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all") as producer:
            for inquiry_id in ids:
                request = ReconcileRequest(inquiry_id=inquiry_id, reason="awaiting-confirmation", at=datetime.now(UTC))
                await producer.send(requests, encode(request), key=inquiry_id.encode())
        snapshots_topic = TopicPlan.from_settings(settings).api_snapshots.name
        written = await consume(kafka_bootstrap, snapshots_topic, count=len(ids), timeout=60)
        assert sorted(decode(ApiSnapshot, r.value).inquiry_id for r in written) == ids
        calls = Counter(seen.path.rsplit("/", 1)[-1] for seen in persona_api.seen)
        assert calls == Counter(dict.fromkeys(ids, 1))  # one call per request, by one of the two
        logs = [r.log_path.read_text() for r in (first, second)]
        assert all("persona api GET" in log for log in logs)  # both took part
    finally:
        first.stop()
        second.stop()
