"""The correlation rules, end to end: webhooks and callbacks through the real gateway, a real
worker process and the real broker; records read from ``<p>.inquiry-status`` and from a
``/v1/subscribe`` subscriber, views through ``/v1/inquiries``.

Each rule has its own inquiry, so one stack (gateway, worker, topics) serves them all.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core.tokens import TokenAuthority
from persona_stream.webhook_bodies import body, inquiry_event, object_event
from processors.correlation import Config, apply_webhook
from schemas.codec import decode
from schemas.records import StatusRecord
from schemas.views import InquiryView
from schemas.webhooks import WebhookEvent
from tests.contract import check_view
from tests.integration.conftest import gateway_settings, started_gateway
from tests.integration.test_downstream import Follower, Stack, post_webhook, wait_until
from tests.integration.workers import Worker, worker_env
from tests.kafkautil import consume, wait_for
from tests.wsclient import Client

pytestmark = pytest.mark.integration

WINDOW_SECONDS = 3  # awaiting_confirmation / left_early, short so that the timer fires in the test


@pytest.fixture
async def stack(kafka_bootstrap: str, unique: str, tmp_path: Path, tokens: TokenAuthority) -> AsyncIterator[Stack]:
    worker = Worker(worker_env(kafka_bootstrap, unique, AWAITING_CONFIRMATION_SECONDS=WINDOW_SECONDS), tmp_path)
    worker.start()
    gateway = await started_gateway(
        gateway_settings(kafka_bootstrap, unique, worker_url=f"http://127.0.0.1:{worker.port}")
    )
    yield Stack(gateway, worker, tokens)
    await gateway.stop()
    worker.stop()


def at(second: int) -> str:
    return f"2026-03-01T10:00:{second:02d}.000Z"


def snapshot(inquiry: str, event_id: str, name: str, status: str, second: int, **extra: Any) -> dict[str, Any]:
    extra.setdefault("reference_id", REFERENCE[inquiry])
    return inquiry_event(f"evt_{inquiry}_{event_id}", name, status, at(second), inquiry_id=inquiry, **extra)


def obj(inquiry: str, event_id: str, name: str, kind: str, object_id: str, second: int, **attrs: Any) -> dict[str, Any]:
    return object_event(f"evt_{inquiry}_{event_id}", name, kind, object_id, at(second), inquiry_id=inquiry, **attrs)


REFERENCE = {
    "inq_rule_rejected": "user-rejected",
    "inq_rule_timer": "user-timer",
    "inq_rule_nullstatus": "user-null",
    "inq_rule_orders": "user-orders",
    "inq_rule_mismatch": "user-mismatch",
    "inq_rule_redacted": "user-redacted",
    "inq_rule_identity": "user-identity",
    "inq_rule_case_a": "user-case",
    "inq_rule_case_b": "user-case",
}


async def ingest(stack: Stack, subject: str, frames: list[dict[str, Any]]) -> Client:
    """Send callback frames with ``subject``'s token; returns once every frame is answered."""
    client = await Client.open(f"{stack.ws}/v1/client", stack.tokens.mint(subject, "ingest", 600))
    await client.ready()
    for frame in frames:
        await client.send({"type": "callback", "ts": 1_700_000_000_000, **frame})

    def answered(frame: dict[str, Any]) -> bool:
        refused = any(e["session"] == frame["session"] and e["seq"] == frame["seq"] for e in client.errors)
        return refused or client.acks.get(frame["session"], -1) >= frame["seq"]

    async with asyncio.timeout(20):
        while not all(answered(frame) for frame in frames):
            await client.recv(20)
    await client.close()
    return client


async def statuses(stack: Stack) -> dict[str, list[StatusRecord]]:
    found: dict[str, list[StatusRecord]] = defaultdict(list)
    topic = stack.gateway.topics.inquiry_status.name
    for record in await consume(stack.gateway.settings.bootstrap_servers(), topic, quiet=2):
        status = decode(StatusRecord, record.value)
        found[status.inquiry_id].append(status)
    return found


async def records_of(stack: Stack, inquiry: str, count: int) -> list[StatusRecord]:
    """Wait until ``inquiry`` has ``count`` records on the status topic; return them."""
    found: list[StatusRecord] = []

    async def arrived() -> bool:
        nonlocal found
        found = (await statuses(stack)).get(inquiry, [])
        return len(found) >= count

    await wait_for(arrived, timeout=60)
    return found


async def view_of(stack: Stack, inquiry: str) -> InquiryView:
    token = stack.tokens.mint("ops", "firehose", 600)
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{stack.http}/v1/inquiries/{inquiry}", headers={"Authorization": f"Bearer {token}"}) as answer,
    ):
        assert answer.status == 200, await answer.text()
        document = await answer.json()
    check_view(document)
    document.pop("provenance")
    return InquiryView.model_validate(document)


async def settled(stack: Stack, inquiry: str, audited: int) -> InquiryView:
    """The view once the worker has seen ``audited`` webhook events of it."""
    view: InquiryView | None = None

    async def ready() -> bool:
        nonlocal view
        try:
            view = await view_of(stack, inquiry)
        except AssertionError:
            return False
        return len(view.audit) >= audited

    await wait_for(ready, timeout=60)
    assert view is not None
    return view


def follower_records(follower: Follower) -> list[tuple[int, str, list[str]]]:
    return [(r["version"], r["status"], r["changed"]) for r in follower.records()]


async def test_flags_raised_by_a_callback_and_by_the_timer_are_published(stack: Stack) -> None:
    rejected, timer = "inq_rule_rejected", "inq_rule_timer"
    followers = {
        inquiry: await Follower(
            stack.ws, stack.tokens.mint(REFERENCE[inquiry], "subscribe", 600), f"inquiry:{inquiry}"
        ).start()
        for inquiry in (rejected, timer)
    }
    assert await post_webhook(stack, snapshot(rejected, "1", "inquiry.declined", "declined", 1)) == 200
    assert await post_webhook(stack, snapshot(timer, "1", "inquiry.started", "pending", 1)) == 200
    await records_of(stack, timer, 1)
    await records_of(stack, rejected, 1)

    # a callback claiming success against a trusted decline: published at once, by the callback
    claim = {"kind": "onComplete", "inquiryId": rejected, "status": "completed"}
    await ingest(stack, REFERENCE[rejected], [{"session": "sess_rejected01", "seq": 0, "callback": claim}])
    first, second = await records_of(stack, rejected, 2)
    assert (second.version, second.status, second.changed) == (2, "declined", ["flags.claimed_complete_but_rejected"])
    assert second.flags.claimed_complete_but_rejected
    assert second.trigger is not None
    assert (second.trigger.source, second.trigger.session, second.trigger.seq) == ("callback", "sess_rejected01", 0)
    assert second.cause == first.cause  # the status still comes from the verified webhook

    # a completion with no trusted completion behind it: the timer raises the flag, and publishes it
    claim = {"kind": "onComplete", "inquiryId": timer, "status": "completed"}
    await ingest(stack, REFERENCE[timer], [{"session": "sess_timer0001", "seq": 0, "callback": claim}])
    _, raised = await records_of(stack, timer, 2)
    assert (raised.version, raised.status, raised.changed) == (2, "pending", ["flags.awaiting_confirmation"])
    assert raised.trigger is not None
    assert raised.trigger.source == "timer"

    for inquiry, follower in followers.items():
        await wait_until(follower, 2)
        flag = "claimed_complete_but_rejected" if inquiry == rejected else "awaiting_confirmation"
        assert follower_records(follower)[1] == (2, "declined" if inquiry == rejected else "pending", [f"flags.{flag}"])
        assert follower.records()[1]["flags"][flag] is True
        await follower.stop()


async def test_the_rules_through_the_gateway(stack: Stack) -> None:
    # -- no record with a null status; none when nothing a record carries changed
    null = "inq_rule_nullstatus"
    for document in (
        obj(null, "1", "verification.submitted", "verification/government-id", "ver_1", 1, status="submitted"),
        snapshot(null, "2", "inquiry.created", "created", 2),
        snapshot(null, "3", "inquiry.transitioned", "created", 3),  # the same snapshot, another event id
        snapshot(null, "4", "inquiry.updated-tags", "created", 4, tags=["vip"]),
        obj(null, "5", "verification.passed", "verification/government-id", "ver_1", 5, status="passed"),
        obj(null, "6", "report/watchlist.ready", "report/watchlist", "rep_1", 5),
        # a tie at the same millisecond between objects: progress wins (passed over submitted)
        obj(null, "8", "verification.passed", "verification/selfie", "ver_2", 6, status="passed"),
        obj(null, "7", "verification.submitted", "verification/selfie", "ver_2", 6, status="submitted"),
    ):
        assert await post_webhook(stack, document) == 200

    # -- delivery order: the worker's records are those of the core for any order, and as many as in order
    orders = "inq_rule_orders"
    lifecycle = [
        snapshot(orders, "1", "inquiry.created", "created", 1, template_id="itmpl_old"),
        snapshot(orders, "2", "inquiry.started", "pending", 2, template_id="itmpl_old"),
        snapshot(orders, "3", "inquiry.completed", "completed", 3, template_id="itmpl_new"),
        snapshot(orders, "4", "inquiry.approved", "approved", 4, template_id="itmpl_new"),
    ]
    delivered = [lifecycle[3], lifecycle[1], lifecycle[3], lifecycle[0], lifecycle[2]]
    for document in delivered:
        assert await post_webhook(stack, document) == 200

    # -- a name that disagrees with its payload is audited; a transition the lifecycle forbids too
    mismatch = "inq_rule_mismatch"
    for document in (
        snapshot(mismatch, "1", "inquiry.approved", "completed", 1),
        snapshot(mismatch, "2", "inquiry.expired", "expired", 2),
    ):
        assert await post_webhook(stack, document) == 200

    # -- redaction keeps subject_mismatch; another subject's claim never counts
    redacted = "inq_rule_redacted"
    assert await post_webhook(stack, snapshot(redacted, "1", "inquiry.declined", "declined", 1)) == 200
    await records_of(stack, redacted, 1)
    claim = {"kind": "onComplete", "inquiryId": redacted, "status": "completed"}
    await ingest(stack, "mallory", [{"session": "sess_mallory01", "seq": 0, "callback": claim}])
    await records_of(stack, redacted, 2)
    redaction = snapshot(redacted, "2", "inquiry.redacted", "declined", 9, reference_id=None, **{"redacted-at": at(9)})
    assert await post_webhook(stack, redaction) == 200

    # -- a case linked to two inquiries reaches both
    case = obj("inq_rule_case_a", "1", "case.created", "case", "case_1", 2, status="open")
    case["data"]["attributes"]["payload"]["data"]["relationships"] = {
        "inquiries": {
            "data": [{"type": "inquiry", "id": "inq_rule_case_a"}, {"type": "inquiry", "id": "inq_rule_case_b"}]
        }
    }
    assert await post_webhook(stack, case) == 200

    # now read what the pipeline made of it all
    view = await settled(stack, null, 8)
    assert (view.version, view.trusted.status) == (1, "created")
    assert view.trusted.verifications["ver_2"].status == "passed"
    expected: list[StatusRecord] = []
    core = InquiryView(inquiry_id=orders)
    for document in delivered:
        outcome = apply_webhook(core, decode(WebhookEvent, body(document)), datetime.now(UTC), Config())
        if outcome.status is not None:
            expected.append(outcome.status)
    in_order = InquiryView(inquiry_id=orders)
    in_order_count = sum(
        apply_webhook(in_order, decode(WebhookEvent, body(d)), datetime.now(UTC), Config()).status is not None
        for d in lifecycle
    )
    await settled(stack, orders, len(lifecycle))  # the repeat is answered "duplicate" by the gateway
    found = await statuses(stack)
    assert null in found
    assert [(r.version, r.status, r.changed) for r in found[null]] == [
        (1, "created", ["status", "reference_id", "template_id", "milestones"])
    ]

    def content(r: StatusRecord) -> tuple[Any, ...]:
        return (r.version, r.status, r.template_id, r.milestones, r.flags, r.changed)

    assert [content(r) for r in found[orders]] == [content(r) for r in expected]
    assert len(found[orders]) == in_order_count == 4
    assert (found[orders][-1].status, found[orders][-1].template_id) == ("approved", "itmpl_new")
    assert found[orders][-1].milestones == ["created", "pending", "completed", "approved"]

    view = await settled(stack, mismatch, 2)
    assert [(a.event_name, a.note) for a in view.audit] == [
        ("inquiry.approved", "name-status-mismatch"),
        ("inquiry.expired", "unexpected-transition"),
    ]
    assert view.trusted.decision is None  # an "approved" that carried "completed" decided nothing
    assert [r.status for r in found[mismatch]] == ["completed", "expired"]

    view = await settled(stack, redacted, 2)
    assert view.flags.subject_mismatch
    assert not view.flags.claimed_complete_but_rejected  # mallory's claim is not the subject's
    assert view.trusted.redacted
    assert view.trusted.reference_id == REFERENCE[redacted]
    assert [r.changed for r in found[redacted]] == [
        ["status", "reference_id", "template_id", "milestones"],
        ["flags.subject_mismatch"],
    ]  # the redaction changed nothing a record carries

    for inquiry in ("inq_rule_case_a", "inq_rule_case_b"):
        view = await settled(stack, inquiry, 1)
        assert view.trusted.cases["case_1"].status == "open"
        assert inquiry not in found  # a case alone is no status


async def test_ingest_identity_is_bound_to_the_token_subject(stack: Stack) -> None:
    inquiry, subject = "inq_rule_identity", REFERENCE["inq_rule_identity"]
    session = "sess_shared0001"
    # another token holder takes (session, 0) and (session, 1) first, and links "the" session elsewhere
    intruder = await ingest(
        stack,
        "mallory",
        [
            {"session": session, "seq": 0, "callback": {"kind": "onLoad"}},
            {"session": session, "seq": 1, "inquiry": "inq_rule_elsewhere", "callback": {"kind": "onReady"}},
        ],
    )
    assert intruder.acks[session] == 1
    # the real subject's frames: written, not dropped as duplicates; its session links to its inquiry
    complete = {"kind": "onComplete", "inquiryId": inquiry, "status": "completed"}
    honest = await ingest(
        stack,
        subject,
        [
            {"session": session, "seq": 0, "callback": {"kind": "onLoad"}},
            {"session": session, "seq": 1, "callback": complete},
        ],
    )
    assert honest.acks[session] == 1
    assert honest.errors == []
    assert await post_webhook(stack, snapshot(inquiry, "1", "inquiry.declined", "declined", 1)) == 200

    view: InquiryView | None = None

    async def joined() -> bool:
        nonlocal view
        view = await settled(stack, inquiry, 1)
        return len(view.client.timeline) >= 2

    await wait_for(joined, timeout=60)
    assert view is not None
    assert view.client.claims[subject].claimed_status == "completed"
    assert sorted((e.seq, e.kind) for e in view.client.timeline) == [(0, "onLoad"), (1, "onComplete")]
    assert "mallory" not in view.client.subjects  # its session was linked to its own inquiry only
    assert view.flags.claimed_complete_but_rejected

    # a frame whose inquiry and callback disagree is refused with its code
    mismatched = {"kind": "onComplete", "inquiryId": "inq_rule_other", "status": "completed"}
    refused = await ingest(
        stack, subject, [{"session": "sess_other00001", "seq": 0, "inquiry": inquiry, "callback": mismatched}]
    )
    assert [(e["code"], e["field"], e["seq"]) for e in refused.errors] == [("inquiry-mismatch", "inquiry", 0)]
