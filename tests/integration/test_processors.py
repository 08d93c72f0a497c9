"""Workers against the real broker: exactly the expected status records, recovery after kill -9,
analytics per window, dead letters that never stall a partition."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from core.settings import Settings
from core.topics import TopicPlan, create_topics
from persona_stream.webhook_bodies import body, inquiry_event
from processors.correlation import Config, apply_webhook
from schemas.codec import decode, encode, validate
from schemas.records import WEBHOOK_RECEIVED_AT_HEADER, AnalyticsRecord, CallbackRecord, DeadLetter, StatusRecord
from schemas.views import InquiryView
from schemas.webhooks import WebhookEvent
from tests.contract import check_worker_view
from tests.integration.workers import Worker, worker_env
from tests.kafkautil import consume

pytestmark = pytest.mark.integration

LIFECYCLE = ["created", "pending", "completed", "approved"]
NAMES = {
    "created": "inquiry.created",
    "pending": "inquiry.started",
    "completed": "inquiry.completed",
    "approved": "inquiry.approved",
}


def webhooks_for(inquiry: str, rng: random.Random, base: datetime) -> list[bytes]:
    """One inquiry's lifecycle as Persona delivers it: reordered and with repeats."""
    events = [
        body(
            inquiry_event(
                f"evt_{inquiry[4:]}_{i}",
                NAMES[status],
                status,
                (base + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
                inquiry_id=inquiry,
            )
        )
        for i, status in enumerate(LIFECYCLE)
    ]
    delivered = events + [rng.choice(events) for _ in range(rng.randint(0, 2))]
    rng.shuffle(delivered)
    return delivered


def expected_status(deliveries: dict[str, list[bytes]]) -> dict[str, list[tuple[int, str, str | None, str]]]:
    """What the pure core says each inquiry's status records must be, in the delivered order."""
    expected = {}
    for inquiry, bodies in deliveries.items():
        view, records = InquiryView(inquiry_id=inquiry), []
        for raw in bodies:
            outcome = apply_webhook(view, decode(WebhookEvent, raw), datetime.now(UTC), Config())
            if outcome.status is not None:
                s = outcome.status
                records.append((s.version, s.status, s.previous_status, s.cause.event_id))
        expected[inquiry] = records
    return expected


def status_by_inquiry(records: list[Any]) -> dict[str, list[tuple[int, str, str | None, str]]]:
    found: dict[str, list[tuple[int, str, str | None, str]]] = defaultdict(list)
    for record in records:
        s = decode(StatusRecord, record.value)
        assert record.key == s.inquiry_id.encode()
        found[s.inquiry_id].append((s.version, s.status, s.previous_status, s.cause.event_id))
    return dict(found)


async def produce_all(
    bootstrap: str, topic: str, items: list[tuple[bytes, bytes]], *, rate: float | None = None
) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        for index, (key, value) in enumerate(items):
            await producer.send(topic, value, key=key)
            if rate is not None and index % 50 == 0:
                await producer.flush()
                await asyncio.sleep(50 / rate)
        await producer.flush()
    finally:
        await producer.stop()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop()


async def prepared(kafka_bootstrap: str, unique: str) -> TopicPlan:
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=unique, partitions=3)
    plan = TopicPlan.from_settings(settings)
    await create_topics(kafka_bootstrap, plan.all())
    return plan


@pytest.mark.parametrize(
    ("guarantee", "store"),
    [("exactly_once", "memory"), ("at_least_once", "memory"), ("exactly_once", "rocksdb")],
)
async def test_inputs_produce_exactly_the_expected_status_records(
    kafka_bootstrap: str, unique: str, tmp_path: Path, workers: list[Worker], guarantee: str, store: str
) -> None:
    plan = await prepared(kafka_bootstrap, unique)
    rng = random.Random(7)
    base = datetime(2026, 3, 1, tzinfo=UTC)
    deliveries = {f"inq_exact{i:04d}": webhooks_for(f"inq_exact{i:04d}", rng, base) for i in range(20)}
    items = [(inq.encode(), raw) for inq, bodies in deliveries.items() for raw in bodies]
    await produce_all(kafka_bootstrap, plan.webhooks.name, items)
    env = worker_env(kafka_bootstrap, unique, PROCESSING_GUARANTEE=guarantee, STORE=store, CACHE_DIR=tmp_path)
    workers.append(Worker(env, tmp_path).start())

    expected = expected_status(deliveries)
    total = sum(len(v) for v in expected.values())
    records = await consume(kafka_bootstrap, plan.inquiry_status.name, count=total, timeout=90)
    await asyncio.sleep(2)  # anything extra would arrive now
    records = await consume(kafka_bootstrap, plan.inquiry_status.name, timeout=20)
    assert status_by_inquiry(records) == expected


@pytest.mark.parametrize("store", ["rocksdb", "memory"])
async def test_kill_9_mid_stream_recovers_the_view_with_no_duplicate_version_and_no_gap(
    kafka_bootstrap: str, unique: str, tmp_path: Path, workers: list[Worker], store: str
) -> None:
    """Two workers; one is killed twice mid-batch and restarted -- with RocksDB on the same state
    directory, so that it resumes from its committed local state and replays only the tail."""
    plan = await prepared(kafka_bootstrap, unique)
    rng = random.Random(11)
    base = datetime(2026, 3, 1, tzinfo=UTC)
    deliveries = {f"inq_crash{i:04d}": webhooks_for(f"inq_crash{i:04d}", rng, base) for i in range(600)}
    items = [(inq.encode(), raw) for inq, bodies in deliveries.items() for raw in bodies]
    rng.shuffle(items)  # interleave inquiries; each inquiry keeps its relative order per partition
    per_key: dict[bytes, list[bytes]] = defaultdict(list)
    for key, raw in items:
        per_key[key].append(raw)
    expected = expected_status({k.decode(): v for k, v in per_key.items()})
    total = sum(len(v) for v in expected.values())

    env = worker_env(kafka_bootstrap, unique, STORE=store, WORKER_BATCH_SIZE=200)
    first, second = Worker(env, tmp_path, "first").start(), Worker(env, tmp_path, "second").start()
    workers.extend([first, second])
    producing = asyncio.create_task(produce_all(kafka_bootstrap, plan.webhooks.name, items, rate=400))
    for kill in range(2):
        await asyncio.sleep(3)
        first.kill9()  # twice, in the middle of the stream
        await asyncio.sleep(2)
        first = Worker(env, tmp_path, f"first-{kill}", state="first").start()
        workers.append(first)
    await producing

    records = await consume(kafka_bootstrap, plan.inquiry_status.name, count=total, timeout=180)
    await asyncio.sleep(3)
    records = await consume(kafka_bootstrap, plan.inquiry_status.name, timeout=30)
    found = status_by_inquiry(records)
    for inquiry, versions in found.items():
        assert [v[0] for v in versions] == list(range(1, len(versions) + 1)), inquiry
    assert found == expected

    # the view was recovered from the changelog: the worker that restarted serves it in full
    inquiry = next(iter(expected))

    async def served() -> bool:  # once the group has settled and the worker has restored its tables
        try:
            await fetch_view(first.port, inquiry)
        except AssertionError:
            return False
        return True

    from tests.kafkautil import wait_for

    await wait_for(served, timeout=120)
    view = await fetch_view(first.port, inquiry)
    assert view.version == len(expected[inquiry])
    assert view.trusted.status == "approved"


async def fetch_view(port: int, inquiry: str) -> InquiryView:
    import aiohttp

    from core.tokens import TokenAuthority
    from tests.integration.conftest import TOKEN_SECRET

    token = TokenAuthority(TOKEN_SECRET.encode()).mint("gateway", "firehose", 60)
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"http://127.0.0.1:{port}/v1/views/{inquiry}", headers={"Authorization": f"Bearer {token}"}
        ) as response,
    ):
        assert response.status == 200, await response.text()
        document = await response.read()
    check_worker_view(orjson.loads(document))
    return decode(InquiryView, document)


def callback_record(
    seq: int, payload: dict[str, Any], at: datetime, inquiry: str | None = "inq_analytics01", template: str = "itmpl_A"
) -> bytes:
    return encode(
        validate(
            CallbackRecord,
            {
                "session": "sess_analytics_1" if inquiry else "sess_orphan_0001",
                "seq": seq,
                "client_ts": 0,
                "received_at": at.isoformat(),
                "subject": "user-42",
                "inquiry_id": inquiry,
                "template_id": template,
                "callback": payload,
            },
        )
    )


async def test_analytics_records_carry_the_expected_counts_per_window(
    kafka_bootstrap: str, unique: str, tmp_path: Path, workers: list[Worker]
) -> None:
    plan = await prepared(kafka_bootstrap, unique)
    window_start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    at = window_start + timedelta(seconds=10)
    inquiry = "inq_analytics01"
    callbacks = [
        (b"session:sess_orphan_0001", callback_record(0, {"kind": "onLoad"}, at, inquiry=None)),
        (
            b"session:sess_orphan_0001",
            callback_record(1, {"kind": "onError", "status": 422, "code": "inactive_template"}, at, inquiry=None),
        ),
        (inquiry.encode(), callback_record(0, {"kind": "onLoad"}, at)),
        (inquiry.encode(), callback_record(1, {"kind": "onReady"}, at)),
        (inquiry.encode(), callback_record(2, {"kind": "onEvent", "name": "start"}, at)),
        (inquiry.encode(), callback_record(3, {"kind": "onEvent", "name": "load-camera-failed"}, at)),
        (inquiry.encode(), callback_record(3, {"kind": "onEvent", "name": "load-camera-failed"}, at)),  # a resend
        (inquiry.encode(), callback_record(4, {"kind": "onComplete", "inquiryId": inquiry, "status": "completed"}, at)),
    ]
    hooks = [
        body(
            inquiry_event(
                f"evt_an_{i}",
                NAMES[s],
                s,
                (at + timedelta(seconds=i)).isoformat(),
                inquiry_id=inquiry,
                template_id="itmpl_A",
            )
        )
        for i, s in enumerate(["created", "completed", "approved"])
    ]
    await produce_all(kafka_bootstrap, plan.client_events.name, callbacks)
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    for raw in [*hooks, hooks[1]]:  # and one redelivery
        await producer.send_and_wait(
            plan.webhooks.name,
            raw,
            key=inquiry.encode(),
            headers=[(WEBHOOK_RECEIVED_AT_HEADER, at.isoformat().encode())],
        )
    await producer.stop()

    workers.append(Worker(worker_env(kafka_bootstrap, unique, ANALYTICS_WINDOW_SECONDS=60), tmp_path).start())
    finals: list[AnalyticsRecord] = []
    for _ in range(60):
        records = [
            decode(AnalyticsRecord, r.value) for r in await consume(kafka_bootstrap, plan.analytics.name, timeout=5)
        ]
        finals = [r for r in records if r.final and r.template_id == "itmpl_A"]
        if finals:
            break
        await asyncio.sleep(1)
    assert finals, "no final analytics record"
    final = finals[-1]
    assert (final.window_start, final.window_end) == (window_start, window_start + timedelta(seconds=60))
    assert final.counts == {
        "callbacks.onComplete": 1,
        "callbacks.onError": 1,
        "callbacks.onEvent": 2,
        "callbacks.onLoad": 2,
        "callbacks.onReady": 1,
        "camera_failures": 1,
        "errors.inactive_template": 1,
        "events.load-camera-failed": 1,
        "events.start": 1,
        "funnel.client_completed": 1,
        "funnel.loaded": 2,
        "funnel.ready": 1,
        "funnel.started": 1,
        "trusted.approved": 1,
        "trusted.completed": 1,
        "trusted.created": 1,
    }
    assert final.start_to_trusted_completion.count == 1


async def test_a_poison_message_goes_to_the_dead_letters_and_the_partition_keeps_flowing(
    kafka_bootstrap: str, unique: str, tmp_path: Path, workers: list[Worker]
) -> None:
    plan = await prepared(kafka_bootstrap, unique)
    inquiry = "inq_poison01"
    good = body(inquiry_event("evt_p1", "inquiry.created", "created", "2026-03-01T12:00:00Z", inquiry_id=inquiry))
    later = body(inquiry_event("evt_p2", "inquiry.started", "pending", "2026-03-01T12:01:00Z", inquiry_id=inquiry))
    await produce_all(
        kafka_bootstrap,
        plan.webhooks.name,
        [
            (inquiry.encode(), good),
            (inquiry.encode(), b"\x00 not json"),
            (inquiry.encode(), orjson.dumps({"data": 1})),
            (inquiry.encode(), later),
        ],
    )
    await produce_all(kafka_bootstrap, plan.client_events.name, [(inquiry.encode(), b'{"kind": "callback"}')])
    workers.append(Worker(worker_env(kafka_bootstrap, unique), tmp_path).start())

    statuses = [
        decode(StatusRecord, r.value)
        for r in await consume(kafka_bootstrap, plan.inquiry_status.name, count=2, timeout=60)
    ]
    assert [(s.version, s.status) for s in statuses] == [(1, "created"), (2, "pending")]
    letters = [
        decode(DeadLetter, r.value) for r in await consume(kafka_bootstrap, plan.dead_letters.name, count=3, timeout=30)
    ]
    assert sorted(letter.reason for letter in letters) == [
        "client-event-invalid",
        "webhook-undecodable",
        "webhook-undecodable",
    ]
    assert {letter.key for letter in letters} == {inquiry}
    assert all(letter.offset >= 0 for letter in letters)


async def test_the_timer_raises_awaiting_confirmation_without_another_event(
    kafka_bootstrap: str, unique: str, tmp_path: Path, workers: list[Worker]
) -> None:
    from tests.kafkautil import wait_for

    plan = await prepared(kafka_bootstrap, unique)
    inquiry = "inq_awaiting01"
    worker = Worker(worker_env(kafka_bootstrap, unique, AWAITING_CONFIRMATION_SECONDS=10), tmp_path).start()
    workers.append(worker)

    async def serving() -> bool:  # the worker answers (404: no such inquiry yet)
        import aiohttp

        try:
            async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{worker.port}/") as answer:
                return answer.status < 500
        except aiohttp.ClientError:
            return False

    await wait_for(serving, timeout=60)
    # the deadline runs from the gateway's receipt time: stamp it now, once the worker is up
    complete = {"kind": "onComplete", "inquiryId": inquiry, "status": "completed"}
    await produce_all(
        kafka_bootstrap,
        plan.client_events.name,
        [(inquiry.encode(), callback_record(0, complete, datetime.now(UTC), inquiry=inquiry))],
    )

    async def seen() -> bool:
        try:
            claims = (await fetch_view(worker.port, inquiry)).client.claims
            return any(claim.claimed_status == "completed" for claim in claims.values())
        except AssertionError:
            return False

    await wait_for(seen, timeout=60)
    assert not (await fetch_view(worker.port, inquiry)).flags.awaiting_confirmation

    async def raised() -> bool:
        return (await fetch_view(worker.port, inquiry)).flags.awaiting_confirmation

    await wait_for(raised, timeout=20)  # no input arrived meanwhile: a timer raised it


async def test_kill_9_during_a_bulk_restore_resumes_it_and_loses_nothing(
    kafka_bootstrap: str, unique: str, tmp_path: Path, workers: list[Worker]
) -> None:
    """A worker with no local state restores 60,000 views in bulk, is killed in the middle, and
    its successor on the same state directory resumes the restore where it was cut off."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from processors.tables import partition_of

    plan = await prepared(kafka_bootstrap, unique)
    changelog = f"{Settings(topic_prefix=unique).processors_id}-inquiries-changelog"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(changelog, 3, 1, topic_configs={"cleanup.policy": "compact"})])
    await admin.close()
    model = "inq_restoremodel000000000"
    view = InquiryView(inquiry_id=model)
    created = inquiry_event("evt_model", "inquiry.created", "created", "2026-03-01T10:00:00.000Z", inquiry_id=model)
    apply_webhook(view, decode(WebhookEvent, body(created)), datetime.now(UTC), Config())
    template = view.model_dump_json(exclude_defaults=True).encode()
    inquiries = [f"inq_restore{n:014d}" for n in range(60_000)]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    for inquiry in inquiries:
        key = inquiry.encode()
        await producer.send(changelog, template.replace(model.encode(), key), key=key, partition=partition_of(key, 3))
    await producer.stop()

    env = worker_env(kafka_bootstrap, unique, STORE="rocksdb", RESTORE_CHECKPOINT_RECORDS=20_000)
    first = Worker(env, tmp_path, "restorer")
    workers.append(first.start())
    from tests.kafkautil import wait_for

    async def part_restored() -> bool:  # a first checkpoint of the restore is durable
        return "records so far, durable" in first.log_path.read_text(errors="replace")

    await wait_for(part_restored, timeout=90, interval=0.02)
    first.kill9()
    assert "restored " not in first.log_path.read_text(errors="replace")  # killed in the middle

    second = Worker(env, tmp_path, "restorer-again", state="restorer")
    workers.append(second.start())
    sample = inquiries[::3000]
    items = [
        (
            inquiry.encode(),
            body(
                inquiry_event(
                    f"evt_{inquiry[4:]}_done",
                    "inquiry.completed",
                    "completed",
                    "2026-03-01T10:05:00.000Z",
                    inquiry_id=inquiry,
                )
            ),
        )
        for inquiry in sample
    ]
    await produce_all(kafka_bootstrap, plan.webhooks.name, items)
    await consume(kafka_bootstrap, plan.inquiry_status.name, count=len(sample), timeout=180)
    await asyncio.sleep(2)
    found = status_by_inquiry(await consume(kafka_bootstrap, plan.inquiry_status.name, timeout=20))
    assert {inquiry: [v[:2] for v in versions] for inquiry, versions in found.items()} == {
        inquiry: [(2, "completed")] for inquiry in sample
    }  # each view restored (version 1 before), each change published once
    log = second.log_path.read_text(errors="replace")
    restored = [int(line.split("restored ")[1].split()[0]) for line in log.splitlines() if "restored " in line]
    assert restored
    assert sum(restored) < len(inquiries)  # resumed from what the first worker had restored
