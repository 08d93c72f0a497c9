from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.correlation import Config, apply_callback, apply_webhook, next_deadline, refresh
from schemas.codec import decode, validate
from schemas.records import CallbackRecord
from schemas.views import InquiryView
from schemas.webhooks import WebhookEvent
from tests.fixtures.webhooks import INQUIRY_ID, body, inquiry_event, object_event

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CONFIG = Config(awaiting_confirmation_seconds=60)


def at(minute: int, second: int = 0) -> str:
    return f"2026-03-01T11:{minute:02d}:{second:02d}.000Z"


def event(document: dict[str, Any]) -> WebhookEvent:
    return decode(WebhookEvent, body(document))


def snapshot(event_id: str, status: str, minute: int, name: str | None = None, **extra: Any) -> WebhookEvent:
    names = {
        "created": "inquiry.created",
        "pending": "inquiry.started",
        "completed": "inquiry.completed",
        "failed": "inquiry.failed",
        "expired": "inquiry.expired",
        "approved": "inquiry.approved",
        "declined": "inquiry.declined",
        "needs_review": "inquiry.marked-for-review",
    }
    return event(inquiry_event(event_id, name or names[status], status, at(minute), **extra))


def new_view() -> InquiryView:
    return InquiryView(inquiry_id=INQUIRY_ID)


def callback(
    seq: int,
    payload: dict[str, Any],
    *,
    session: str = "sess_0000000001",
    subject: str = "user-42",
    minute: int = 0,
    relinked: bool = False,
) -> CallbackRecord:
    return validate(
        CallbackRecord,
        {
            "session": session,
            "seq": seq,
            "client_ts": 0,
            "received_at": (NOW - timedelta(minutes=30) + timedelta(minutes=minute)).isoformat(),
            "subject": subject,
            "inquiry_id": INQUIRY_ID,
            "template_id": "itmpl_1",
            "callback": payload,
            "relinked": relinked,
        },
    )


# --- the lifecycle ----------------------------------------------------------------------------

TRANSITIONS = [
    ("created", "pending"),
    ("pending", "completed"),
    ("pending", "failed"),
    ("created", "expired"),
    ("pending", "expired"),
    ("completed", "approved"),
    ("completed", "declined"),
    ("completed", "needs_review"),
    ("failed", "approved"),
    ("failed", "declined"),
    ("failed", "needs_review"),
    ("expired", "approved"),
    ("expired", "declined"),
    ("expired", "needs_review"),
    ("needs_review", "approved"),
    ("needs_review", "declined"),
]


@pytest.mark.parametrize(("before", "after"), TRANSITIONS, ids=[f"{a}->{b}" for a, b in TRANSITIONS])
def test_every_lifecycle_transition(before: str, after: str) -> None:
    view = new_view()
    first = apply_webhook(view, snapshot("evt_1", before, 1), NOW, CONFIG)
    second = apply_webhook(view, snapshot("evt_2", after, 2), NOW, CONFIG)
    assert first.status is not None
    assert second.status is not None
    assert (first.status.version, first.status.status, first.status.previous_status) == (1, before, None)
    assert (second.status.version, second.status.status, second.status.previous_status) == (2, after, before)
    assert second.status.cause.event_id == "evt_2"
    assert view.trusted.status == after
    assert view.trusted.decision == (after if after in ("approved", "declined") else None)
    assert [a.outcome for a in view.audit] == ["applied", "applied"]


ATTRIBUTES: dict[str, Any] = {"completed-at": at(5), "tags": ["vip"], "next-step-name": "done"}


def test_the_snapshot_carries_the_inquiry_as_it_was() -> None:
    view = new_view()
    apply_webhook(
        view,
        snapshot("evt_1", "completed", 5, **ATTRIBUTES),
        NOW,
        CONFIG,
    )
    trusted = view.trusted
    assert (trusted.reference_id, trusted.template_id, trusted.tags, trusted.next_step_name) == (
        "user-42",
        "itmpl_1",
        ["vip"],
        "done",
    )
    assert trusted.timestamps["completed-at"] == at(5)
    assert trusted.created_at == datetime(2026, 3, 1, 11, 5, tzinfo=UTC)


def test_a_repeated_event_changes_nothing() -> None:
    view = new_view()
    apply_webhook(view, snapshot("evt_1", "completed", 1), NOW, CONFIG)
    again = apply_webhook(view, snapshot("evt_1", "completed", 1), NOW, CONFIG)
    assert again.status is None
    assert again.counts == {}
    assert view.version == 1
    assert [a.outcome for a in view.audit] == ["applied", "duplicate"]


def test_a_late_older_event_never_rolls_back_but_is_recorded() -> None:
    view = new_view()
    apply_webhook(view, snapshot("evt_3", "approved", 9), NOW, CONFIG)
    late = apply_webhook(view, snapshot("evt_1", "pending", 2), NOW, CONFIG)
    assert late.status is None
    assert (view.trusted.status, view.version) == ("approved", 1)
    assert [a.outcome for a in view.audit] == ["applied", "stale"]
    assert set(view.milestones) == {"approved", "pending"}
    assert late.counts == {"trusted.pending": 1}


@dataclass
class Tie:
    id: str
    first: tuple[str, str]
    second: tuple[str, str]
    winner: str


TIES = [
    Tie("progress-wins-either-order", ("evt_b", "completed"), ("evt_a", "approved"), "approved"),
    Tie("progress-wins-other-order", ("evt_a", "approved"), ("evt_b", "completed"), "approved"),
    Tie("same-rank-higher-id-wins", ("evt_z", "declined"), ("evt_a", "approved"), "declined"),
    Tie("same-rank-other-order", ("evt_a", "approved"), ("evt_z", "declined"), "declined"),
]


@pytest.mark.parametrize("tie", TIES, ids=[t.id for t in TIES])
def test_equal_timestamps_are_broken_deterministically(tie: Tie) -> None:
    view = new_view()
    for event_id, status in (tie.first, tie.second):
        apply_webhook(view, snapshot(event_id, status, 7), NOW, CONFIG)
    assert view.trusted.status == tie.winner


def test_unknown_inquiry_event_names_are_snapshots_and_kept() -> None:
    view = new_view()
    apply_webhook(view, snapshot("evt_1", "pending", 1), NOW, CONFIG)
    outcome = apply_webhook(view, snapshot("evt_2", "pending", 2, name="inquiry.reusable-persona-used"), NOW, CONFIG)
    assert outcome.status is not None
    assert view.trusted.event_name == "inquiry.reusable-persona-used"
    assert view.audit[-1].event_name == "inquiry.reusable-persona-used"


def test_other_objects_update_their_own_part_and_never_the_status() -> None:
    view = new_view()
    apply_webhook(view, snapshot("evt_1", "pending", 1), NOW, CONFIG)
    passed = event(
        object_event("evt_2", "verification.passed", "verification/government-id", "ver_1", at(3), status="passed")
    )
    older = event(
        object_event(
            "evt_0", "verification.submitted", "verification/government-id", "ver_1", at(2), status="submitted"
        )
    )
    report = event(object_event("evt_3", "report/watchlist.ready", "report/watchlist", "rep_1", at(4)))
    case = event(object_event("evt_4", "case.created", "case", "case_1", at(5), status="open"))
    document = event(object_event("evt_5", "document.created", "document/government-id", "doc_1", at(6)))
    unknown = event(object_event("evt_6", "something.new", "something", "thing_1", at(7)))
    outcomes = [apply_webhook(view, e, NOW, CONFIG) for e in (passed, older, report, case, document, unknown)]
    assert [o.status is not None for o in outcomes] == [True, False, True, True, False, False]
    assert view.trusted.status == "pending"
    assert view.trusted.verifications["ver_1"].status == "passed"
    assert view.trusted.reports["rep_1"].status == "ready"
    assert view.trusted.cases["case_1"].status == "open"
    assert [a.outcome for a in view.audit][1:] == ["applied", "stale", "applied", "applied", "recorded", "recorded"]
    assert view.version == 4


def test_redaction_keeps_the_status() -> None:
    view = new_view()
    apply_webhook(view, snapshot("evt_1", "approved", 1), NOW, CONFIG)
    outcome = apply_webhook(
        view, snapshot("evt_2", "approved", 9, name="inquiry.redacted", **{"redacted-at": at(9)}), NOW, CONFIG
    )
    assert outcome.status is not None
    assert (outcome.status.status, outcome.status.previous_status) == ("approved", "approved")
    assert view.trusted.redacted


# --- callbacks ----------------------------------------------------------------------------------


def test_callbacks_are_deduplicated_by_session_and_seq() -> None:
    view = new_view()
    first = apply_callback(view, callback(0, {"kind": "onLoad"}), NOW, CONFIG)
    again = apply_callback(view, callback(0, {"kind": "onLoad"}), NOW, CONFIG)
    other_session = apply_callback(view, callback(0, {"kind": "onLoad"}, session="sess_0000000002"), NOW, CONFIG)
    assert first.counts == {"callbacks.onLoad": 1, "funnel.loaded": 1}
    assert (again.view_changed, again.counts) == (False, {})
    assert other_session.counts == {"callbacks.onLoad": 1, "funnel.loaded": 1}
    assert len(view.client.timeline) == 2


def test_out_of_order_seqs_are_each_seen_once() -> None:
    view = new_view()
    for seq in (2, 0, 3, 1, 2, 0):
        apply_callback(view, callback(seq, {"kind": "onEvent", "name": "click"}), NOW, CONFIG)
    assert [entry.seq for entry in view.client.timeline] == [2, 0, 3, 1]
    assert view.client.sessions["sess_0000000001"].seqs.contiguous == 3


def test_the_client_part_records_what_the_client_claimed() -> None:
    view = new_view()
    records = [
        callback(0, {"kind": "onLoad"}),
        callback(1, {"kind": "onEvent", "name": "start", "metadata": {"inquiryId": INQUIRY_ID}}, minute=1),
        callback(2, {"kind": "onEvent", "name": "load-camera-failed"}),
        callback(3, {"kind": "onEvent", "name": "one-time-link-sent"}),
        callback(4, {"kind": "onError", "status": 0, "code": "application_error"}),
        callback(5, {"kind": "onError", "status": 503, "code": "rate_limited"}),
        callback(6, {"kind": "onCancel", "inquiryId": INQUIRY_ID}),
        callback(7, {"kind": "onComplete", "inquiryId": INQUIRY_ID, "status": "completed"}, minute=5),
    ]
    counts: dict[str, int] = {}
    for record in records:
        for name, n in apply_callback(view, record, NOW, CONFIG).counts.items():
            counts[name] = counts.get(name, 0) + n
    client = view.client
    assert client.claimed_status == "completed"
    assert client.started_at == NOW - timedelta(minutes=29)
    assert (client.camera_failures, client.cancels) == (1, 1)
    assert client.error_codes == {"application_error": 1, "rate_limited": 1}
    assert client.one_time_link == {"one-time-link-sent": 1}
    assert client.steps[:3] == ["loaded", "started", "load-camera-failed"]
    assert counts["errors.application_error"] == counts["errors.unknown"] == 1
    assert counts["camera_failures"] == counts["funnel.started"] == counts["funnel.client_completed"] == 1
    assert view.version == 0  # callbacks never touch the trusted part


def test_a_relinked_copy_updates_the_view_but_is_not_counted_again() -> None:
    view = new_view()
    outcome = apply_callback(view, callback(0, {"kind": "onLoad"}, relinked=True), NOW, CONFIG)
    assert outcome.view_changed
    assert outcome.counts == {}
    assert view.client.steps == ["loaded"]


# --- flags ---------------------------------------------------------------------------------------


def complete(seq: int = 9, status: str = "completed") -> CallbackRecord:
    return callback(seq, {"kind": "onComplete", "inquiryId": INQUIRY_ID, "status": status}, minute=30)  # at NOW


def test_flag_claimed_complete_but_rejected() -> None:
    view = new_view()
    apply_callback(view, complete(), NOW, CONFIG)
    outcome = apply_webhook(view, snapshot("evt_1", "failed", 1), NOW, CONFIG)
    assert view.flags.claimed_complete_but_rejected
    assert outcome.counts["disagreements.claimed_complete_but_rejected"] == 1
    assert outcome.status is not None
    assert outcome.status.flags.claimed_complete_but_rejected


def test_flag_awaiting_confirmation_is_raised_by_the_timer_and_cleared_by_the_webhook() -> None:
    view = new_view()
    apply_callback(view, complete(), NOW, CONFIG)
    assert not view.flags.awaiting_confirmation
    deadline = next_deadline(view, CONFIG)
    assert deadline == view.client.completed_at + timedelta(seconds=60)  # type: ignore[operator]
    assert not refresh(view, deadline - timedelta(seconds=1), CONFIG).view_changed
    raised = refresh(view, deadline, CONFIG)
    assert view.flags.awaiting_confirmation
    assert raised.counts == {"disagreements.awaiting_confirmation": 1}
    assert next_deadline(view, CONFIG) is None
    apply_webhook(view, snapshot("evt_1", "completed", 1), deadline, CONFIG)
    assert not view.flags.awaiting_confirmation


def test_flag_left_early() -> None:
    view = new_view()
    apply_callback(view, callback(0, {"kind": "onLoad"}), NOW, CONFIG)
    apply_webhook(view, snapshot("evt_1", "completed", 1), NOW, CONFIG)
    assert not view.flags.left_early
    assert next_deadline(view, CONFIG) == NOW + timedelta(seconds=60)
    refresh(view, NOW + timedelta(seconds=60), CONFIG)
    assert view.flags.left_early
    apply_callback(view, complete(), NOW + timedelta(seconds=61), CONFIG)
    assert not view.flags.left_early


def test_no_left_early_without_any_client_session() -> None:
    view = new_view()
    apply_webhook(view, snapshot("evt_1", "completed", 1), NOW, CONFIG)
    refresh(view, NOW + timedelta(days=1), CONFIG)
    assert not view.flags.left_early


def test_flag_subject_mismatch() -> None:
    view = new_view()
    apply_callback(view, callback(0, {"kind": "onLoad"}, subject="someone-else"), NOW, CONFIG)
    apply_webhook(view, snapshot("evt_1", "pending", 1), NOW, CONFIG)
    assert view.flags.subject_mismatch
    honest = new_view()
    apply_callback(honest, callback(0, {"kind": "onLoad"}), NOW, CONFIG)
    apply_webhook(honest, snapshot("evt_1", "pending", 1), NOW, CONFIG)
    assert not honest.flags.subject_mismatch


def test_start_to_trusted_completion_is_measured_once() -> None:
    view = new_view()
    apply_callback(view, callback(1, {"kind": "onEvent", "name": "start"}), NOW, CONFIG)  # 11:30
    first = apply_webhook(view, snapshot("evt_1", "completed", 40), NOW, CONFIG)
    second = apply_webhook(view, snapshot("evt_2", "approved", 45), NOW, CONFIG)
    assert first.durations == [600.0]
    assert second.durations == []


# --- the permutation property --------------------------------------------------------------------

LIFECYCLE = [
    snapshot("evt_1", "created", 1),
    snapshot("evt_2", "pending", 2),
    snapshot("evt_3", "completed", 3),
    snapshot("evt_4", "needs_review", 4),
    snapshot("evt_5", "approved", 5),
    event(object_event("evt_6", "verification.passed", "verification/government-id", "ver_1", at(3), status="passed")),
    event(
        object_event(
            "evt_7", "verification.submitted", "verification/government-id", "ver_1", at(2), status="submitted"
        )
    ),
    snapshot("evt_8", "approved", 5, name="inquiry.updated-tags", tags=["x"]),
]


def final_state(events: list[WebhookEvent]) -> tuple[InquiryView, list[int]]:
    view = new_view()
    versions = []
    for item in events:
        outcome = apply_webhook(view, item, NOW, CONFIG)
        if outcome.status is not None:
            versions.append(outcome.status.version)
    return view, versions


@settings(max_examples=300)
@given(st.permutations(LIFECYCLE), st.lists(st.integers(0, len(LIFECYCLE) - 1), max_size=6), st.randoms())
def test_any_order_with_duplicates_gives_the_in_order_trusted_part(
    order: list[WebhookEvent], repeats: list[int], random: Any
) -> None:
    delivered = list(order) + [LIFECYCLE[i] for i in repeats]
    random.shuffle(delivered)
    expected, _ = final_state(LIFECYCLE)
    actual, versions = final_state(delivered)
    assert actual.trusted == expected.trusted
    assert set(actual.milestones) == set(expected.milestones)
    assert versions == list(range(1, len(versions) + 1))
    assert actual.version == len(versions)


def test_start_arriving_after_the_trusted_completion_is_still_measured() -> None:
    view = new_view()
    apply_webhook(view, snapshot("evt_1", "completed", 40), NOW, CONFIG)
    late = apply_callback(view, callback(1, {"kind": "onEvent", "name": "start"}), NOW, CONFIG)  # 11:30
    assert late.durations == [600.0]
    assert view.start_to_trusted_completion == 600.0
