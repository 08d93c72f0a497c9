from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from persona_stream.webhook_bodies import INQUIRY_ID, body, inquiry_event, object_event
from processors.correlation import Config, apply_callback, apply_webhook, next_deadline, refresh
from schemas.codec import decode, validate
from schemas.records import CallbackRecord
from schemas.views import InquiryView
from schemas.webhooks import WebhookEvent

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
    assert late.status is not None  # only its milestone is new
    assert (late.status.status, late.status.changed, late.status.milestones) == (
        "approved",
        ["milestones"],
        ["pending", "approved"],
    )
    assert (view.trusted.status, view.version) == ("approved", 2)
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
    assert outcome.status is None  # the same status: nothing a record carries changed
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
    assert [o.status is not None for o in outcomes] == [False] * 6  # a record carries none of them
    assert view.trusted.status == "pending"
    assert view.trusted.verifications["ver_1"].status == "passed"
    assert view.trusted.reports["rep_1"].status == "ready"
    assert view.trusted.cases["case_1"].status == "open"
    assert [a.outcome for a in view.audit][1:] == ["applied", "stale", "applied", "applied", "recorded", "recorded"]
    assert view.version == 1


def test_redaction_keeps_the_status_and_the_reference() -> None:
    view = new_view()
    apply_webhook(view, snapshot("evt_1", "approved", 1), NOW, CONFIG)
    outcome = apply_webhook(
        view,
        snapshot("evt_2", "approved", 9, name="inquiry.redacted", reference_id=None, **{"redacted-at": at(9)}),
        NOW,
        CONFIG,
    )
    assert outcome.status is None  # nothing a record carries changed
    assert (view.trusted.status, view.trusted.reference_id) == ("approved", "user-42")
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
    assert [entry.seq for entry in view.client.timeline] == [0, 1, 2, 3]  # received together: in seq order
    assert view.client.sessions["sess_0000000001:user-42"].seqs.contiguous == 3


def test_the_client_part_records_what_the_client_claimed() -> None:
    view = new_view()
    records = [
        callback(0, {"kind": "onLoad"}),
        callback(1, {"kind": "onEvent", "name": "start", "metadata": {"inquiryId": INQUIRY_ID}}, minute=1),
        callback(2, {"kind": "onEvent", "name": "load-camera-failed"}, minute=2),
        callback(3, {"kind": "onEvent", "name": "one-time-link-sent"}, minute=2),
        callback(4, {"kind": "onError", "status": 0, "code": "application_error"}, minute=2),
        callback(5, {"kind": "onError", "status": 503, "code": "rate_limited"}, minute=2),
        callback(6, {"kind": "onCancel", "inquiryId": INQUIRY_ID}, minute=2),
        callback(7, {"kind": "onComplete", "inquiryId": INQUIRY_ID, "status": "completed"}, minute=5),
    ]
    counts: dict[str, int] = {}
    for record in records:
        for name, n in apply_callback(view, record, NOW, CONFIG).counts.items():
            counts[name] = counts.get(name, 0) + n
    client = view.client
    assert client.claims["user-42"].claimed_status == "completed"
    assert client.claims["user-42"].started_at == NOW - timedelta(minutes=29)
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


def test_callbacks_relinked_after_the_start_take_their_place_in_the_timeline_and_the_steps() -> None:
    """Pre-inquiry callbacks reach the view only at the link, after the start; the order is the gateway's."""
    view = new_view()
    start = {"kind": "onEvent", "name": "start", "metadata": {"inquiryId": INQUIRY_ID}}
    arrivals = [
        callback(2, start, minute=2),
        callback(3, {"kind": "onEvent", "name": "document-upload"}, minute=3),
        callback(0, {"kind": "onLoad"}, minute=0, relinked=True),
        callback(1, {"kind": "onReady"}, minute=1, relinked=True),
    ]
    for record in arrivals:
        apply_callback(view, record, NOW, CONFIG)
    assert [entry.seq for entry in view.client.timeline] == [0, 1, 2, 3]
    assert view.client.steps == ["loaded", "ready", "started", "document-upload"]
    assert view.client.step_times["loaded"] == NOW - timedelta(minutes=30)


def test_a_step_reached_earlier_by_a_late_callback_moves_forward() -> None:
    view = new_view()
    apply_callback(view, callback(5, {"kind": "onReady"}, minute=5), NOW, CONFIG)
    apply_callback(view, callback(6, {"kind": "onEvent", "name": "start"}, minute=6), NOW, CONFIG)
    apply_callback(view, callback(1, {"kind": "onReady"}, minute=1, relinked=True), NOW, CONFIG)
    assert view.client.steps == ["ready", "started"]
    assert view.client.step_times["ready"] == NOW - timedelta(minutes=29)
    apply_callback(view, callback(0, {"kind": "onEvent", "name": "start"}, minute=0, relinked=True), NOW, CONFIG)
    assert view.client.steps == ["started", "ready"]


def test_the_timeline_keeps_the_latest_callbacks_by_time() -> None:
    view = new_view()
    config = Config(timeline_limit=2)
    for seq, minute in ((2, 2), (3, 3), (0, 0)):
        apply_callback(view, callback(seq, {"kind": "onLoad"}, minute=minute), NOW, config)
    assert [entry.seq for entry in view.client.timeline] == [2, 3]


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
    assert deadline == NOW + timedelta(seconds=60)
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


def test_start_arriving_after_the_trusted_completion_is_still_measured() -> None:
    view = new_view()
    apply_webhook(view, snapshot("evt_1", "completed", 40), NOW, CONFIG)
    late = apply_callback(view, callback(1, {"kind": "onEvent", "name": "start"}), NOW, CONFIG)  # 11:30
    assert late.durations == [600.0]
    assert view.start_to_trusted_completion == 600.0


# --- the rules, table-driven ----------------------------------------------------------------------


@dataclass
class Tick:
    """The timer, ``seconds`` after NOW."""

    seconds: float


Step = WebhookEvent | CallbackRecord | Tick


@dataclass
class Rule:
    id: str
    steps: list[Step]
    records: list[tuple[str, list[str]]]  # (status, changed) of each record published, in order
    flags: frozenset[str] = frozenset()
    notes: tuple[str | None, ...] | None = None  # audit notes, when the rule is about them


def run(steps: list[Step]) -> tuple[InquiryView, list[Any]]:
    view, records, clock = new_view(), [], NOW  # the clock never goes back
    for step in steps:
        if isinstance(step, WebhookEvent):
            outcome = apply_webhook(view, step, clock, CONFIG)
        elif isinstance(step, CallbackRecord):
            outcome = apply_callback(view, step, clock, CONFIG)
        else:
            clock = max(clock, NOW + timedelta(seconds=step.seconds))
            outcome = refresh(view, clock, CONFIG)
        if outcome.status is not None:
            records.append(outcome.status)
    return view, records


def verification(event_id: str, status: str, minute: int, name: str | None = None) -> WebhookEvent:
    return event(
        object_event(
            event_id, name or f"verification.{status}", "verification/government-id", "ver_1", at(minute), status=status
        )
    )


def case_event(event_id: str, minute: int) -> WebhookEvent:
    return event(object_event(event_id, "case.created", "case", "case_1", at(minute), status="open"))


FIRST = ["status", "reference_id", "template_id", "milestones"]
SUCCESS_CLAIM = callback(9, {"kind": "onComplete", "inquiryId": INQUIRY_ID, "status": "completed"}, minute=30)
APPROVED_CLAIM = callback(9, {"kind": "onComplete", "inquiryId": INQUIRY_ID, "status": "approved"}, minute=30)
FOREIGN_CLAIM = callback(
    0, {"kind": "onComplete", "inquiryId": INQUIRY_ID, "status": "completed"}, subject="mallory", minute=30
)
LOAD = callback(0, {"kind": "onLoad"})

RULES = [
    Rule(
        "claimed-completed-against-declined",
        [snapshot("evt_1", "declined", 1), SUCCESS_CLAIM],
        [("declined", FIRST), ("declined", ["flags.claimed_complete_but_rejected"])],
        frozenset({"claimed_complete_but_rejected"}),
    ),
    Rule(
        "claimed-approved-against-failed",
        [APPROVED_CLAIM, snapshot("evt_1", "failed", 1)],
        [("failed", [*FIRST, "flags.claimed_complete_but_rejected"])],
        frozenset({"claimed_complete_but_rejected"}),
    ),
    Rule(
        "claimed-failed-against-failed-is-no-disagreement",
        [
            callback(9, {"kind": "onComplete", "inquiryId": INQUIRY_ID, "status": "failed"}),
            snapshot("evt_1", "failed", 1),
        ],
        [("failed", FIRST)],
    ),
    Rule(
        "awaiting-confirmation-raised-by-the-timer-is-published",
        [snapshot("evt_1", "pending", 1), SUCCESS_CLAIM, Tick(59), Tick(60)],
        [("pending", FIRST), ("pending", ["flags.awaiting_confirmation"])],
        frozenset({"awaiting_confirmation"}),
    ),
    Rule(
        "awaiting-confirmation-needs-no-completion-ever-not-the-current-status",
        [snapshot("evt_1", "completed", 1), snapshot("evt_2", "expired", 2), SUCCESS_CLAIM, Tick(3600)],
        [("completed", FIRST), ("expired", ["status", "milestones"])],
        notes=(None, "unexpected-transition"),
    ),
    Rule(
        "unexpected-transition-is-audited-allowed-skips-are-not",
        [snapshot("evt_1", "created", 1), snapshot("evt_2", "completed", 2), snapshot("evt_3", "pending", 3)],
        [("created", FIRST), ("completed", ["status", "milestones"]), ("pending", ["status", "milestones"])],
        notes=(None, None, "unexpected-transition"),
    ),
    Rule(
        "no-record-with-a-null-status",
        [verification("evt_1", "submitted", 1), case_event("evt_2", 2), SUCCESS_CLAIM, Tick(60)],
        [],
        frozenset({"awaiting_confirmation"}),
    ),
    Rule(
        "flags-raised-before-any-snapshot-ride-on-the-first-record",
        [SUCCESS_CLAIM, Tick(60), snapshot("evt_1", "pending", 1)],
        [("pending", [*FIRST, "flags.awaiting_confirmation"])],
        frozenset({"awaiting_confirmation"}),
    ),
    Rule(
        "the-same-snapshot-under-another-event-id-publishes-nothing",
        [snapshot("evt_1", "pending", 1), snapshot("evt_2", "pending", 2, name="inquiry.transitioned")],
        [("pending", FIRST)],
    ),
    Rule(
        "verifications-reports-cases-and-tags-publish-nothing",
        [
            snapshot("evt_1", "pending", 1),
            verification("evt_2", "passed", 2),
            event(object_event("evt_3", "report/watchlist.ready", "report/watchlist", "rep_1", at(3))),
            case_event("evt_4", 4),
            snapshot("evt_5", "pending", 5, name="inquiry.updated-tags", tags=["vip"]),
        ],
        [("pending", FIRST)],
    ),
    Rule(
        "a-name-that-disagrees-with-its-payload-is-audited-and-is-no-decision",
        [snapshot("evt_1", "completed", 1, name="inquiry.approved")],
        [("completed", FIRST)],
        notes=("name-status-mismatch",),
    ),
    Rule(
        "redaction-keeps-subject-mismatch",
        [
            snapshot("evt_1", "approved", 1),
            FOREIGN_CLAIM,
            snapshot("evt_2", "approved", 9, name="inquiry.redacted", reference_id=None, **{"redacted-at": at(9)}),
        ],
        [("approved", FIRST), ("approved", ["flags.subject_mismatch"])],
        frozenset({"subject_mismatch"}),
    ),
    Rule(
        "another-subjects-claim-never-counts-it-only-raises-subject-mismatch",
        [snapshot("evt_1", "declined", 1), FOREIGN_CLAIM, Tick(3600)],
        [("declined", FIRST), ("declined", ["flags.subject_mismatch"])],
        frozenset({"subject_mismatch"}),
    ),
    Rule(
        "another-subjects-claim-cannot-clear-left-early",
        [LOAD, snapshot("evt_1", "completed", 1), Tick(60), FOREIGN_CLAIM],
        [
            ("completed", FIRST),
            ("completed", ["flags.left_early"]),
            ("completed", ["flags.subject_mismatch"]),
        ],
        frozenset({"left_early", "subject_mismatch"}),
    ),
    Rule(
        "a-foreign-session-id-does-not-shadow-the-real-one",
        [
            snapshot("evt_1", "declined", 1),
            callback(9, {"kind": "onLoad"}, subject="mallory"),  # takes (session, 9) first
            SUCCESS_CLAIM,  # the real subject's (session, 9)
        ],
        [
            ("declined", FIRST),
            ("declined", ["flags.subject_mismatch"]),
            ("declined", ["flags.claimed_complete_but_rejected"]),
        ],
        frozenset({"subject_mismatch", "claimed_complete_but_rejected"}),
    ),
]


@pytest.mark.parametrize("rule", RULES, ids=[r.id for r in RULES])
def test_rule(rule: Rule) -> None:
    view, records = run(rule.steps)
    assert [(r.status, r.changed) for r in records] == rule.records
    assert [r.version for r in records] == list(range(1, len(records) + 1))
    assert set(view.flags.raised()) == rule.flags
    if records:
        assert set(records[-1].flags.raised()) == rule.flags
    if rule.notes is not None:
        assert tuple(a.note for a in view.audit if a.outcome in ("applied", "stale")) == rule.notes
    assert view.trusted.decision in (None, "approved", "declined")
    if view.trusted.status is not None and view.trusted.status not in ("approved", "declined"):
        assert view.trusted.decision is None


@dataclass
class Race:
    id: str
    events: list[WebhookEvent]
    check: str  # the attribute path compared across both orders


RACES = [
    Race(
        "object-ties-broken-by-progress",
        [verification("evt_b", "passed", 3), verification("evt_a", "submitted", 3)],
        "trusted.verifications",
    ),
    Race(
        "template-from-the-newest-snapshot-naming-one",
        [
            snapshot("evt_1", "pending", 1, template_id="itmpl_old"),
            snapshot("evt_2", "completed", 2, template_id="itmpl_new"),
        ],
        "trusted.template_id",
    ),
    Race(
        "completion-time-from-the-earliest-completion-snapshot",
        [snapshot("evt_1", "completed", 40), snapshot("evt_2", "approved", 45)],
        "trusted_completed_at",
    ),
    Race(
        "reference-id-survives-a-redacted-snapshot",
        [
            snapshot("evt_1", "approved", 1),
            snapshot("evt_2", "approved", 9, name="inquiry.redacted", reference_id=None),
        ],
        "trusted.reference_id",
    ),
]


@pytest.mark.parametrize("race", RACES, ids=[r.id for r in RACES])
def test_derived_values_do_not_depend_on_delivery_order(race: Race) -> None:
    def value(events: list[WebhookEvent]) -> Any:
        view, _ = run(list(events))
        target: Any = view
        for part in race.check.split("."):
            target = getattr(target, part)
        return target

    assert value(race.events) == value(list(reversed(race.events)))


def test_object_ties_keep_the_further_progress() -> None:
    for order in ([verification("evt_b", "passed", 3), verification("evt_a", "submitted", 3)],):
        for events in (order, list(reversed(order))):
            view, _ = run(list(events))
            assert view.trusted.verifications["ver_1"].status == "passed"


def test_start_to_completion_uses_the_earliest_completion_snapshot() -> None:
    start = callback(1, {"kind": "onEvent", "name": "start"})  # 11:30
    view, _ = run([start, snapshot("evt_2", "approved", 45), snapshot("evt_1", "completed", 40)])
    assert view.trusted_completed_at == datetime(2026, 3, 1, 11, 40, tzinfo=UTC)
    assert view.start_to_trusted_completion == 600.0  # 11:30 to 11:40, as in delivery order
    in_order, _ = run([start, snapshot("evt_1", "completed", 40), snapshot("evt_2", "approved", 45)])
    assert in_order.start_to_trusted_completion == view.start_to_trusted_completion


def test_a_record_says_what_triggered_it() -> None:
    _, records = run([snapshot("evt_1", "pending", 1), SUCCESS_CLAIM, Tick(60)])
    assert [(r.trigger.source, r.trigger.event_id, r.trigger.seq) for r in records] == [
        ("webhook", "evt_1", None),
        ("timer", None, None),
    ]
    assert all(r.cause.event_id == "evt_1" for r in records)
    _, records = run([snapshot("evt_1", "declined", 1), SUCCESS_CLAIM])
    assert (records[-1].trigger.source, records[-1].trigger.session, records[-1].trigger.seq) == (
        "callback",
        "sess_0000000001",
        9,
    )
    assert records[-1].previous_status == "declined"


# --- the permutation property --------------------------------------------------------------------

PATHS = [
    ["created", "pending", "completed", "approved"],
    ["created", "pending", "completed", "needs_review", "declined"],
    ["created", "pending", "failed", "declined"],
    ["created", "pending", "expired"],
    ["created", "expired", "approved"],
    ["pending", "completed"],
]


@st.composite
def inquiry_webhooks(draw: st.DrawFn) -> list[WebhookEvent]:
    """The webhooks of one inquiry as Persona could send them: a lifecycle path, each status
    shown by one or more snapshots (some at the same millisecond), plus object events."""
    path = draw(st.sampled_from(PATHS))
    minute, events, number = 1, [], 0
    for status in path:
        for copy in range(draw(st.integers(1, 2))):
            number += 1
            minute += draw(st.integers(0, 1))  # 0: the same millisecond as the one before
            name = None if copy == 0 else draw(st.sampled_from(["inquiry.transitioned", "inquiry.updated-tags"]))
            events.append(snapshot(f"evt_{number:02d}", status, minute, name=name))
    for index, status in enumerate(draw(st.lists(st.sampled_from(["submitted", "passed", "failed"]), max_size=3))):
        number += 1
        events.append(verification(f"evt_{number:02d}", status, 1 + draw(st.integers(0, minute)), None))
        del index
    if draw(st.booleans()):
        number += 1
        events.append(case_event(f"evt_{number:02d}", draw(st.integers(1, minute))))
    return events


def content(record: Any) -> tuple[Any, ...]:
    return (record.status, record.reference_id, record.template_id, record.milestones, record.flags)


@settings(max_examples=600)
@given(inquiry_webhooks(), st.data())
def test_records_are_the_same_in_every_delivery_order(events: list[WebhookEvent], data: st.DataObject) -> None:
    repeats = data.draw(st.lists(st.sampled_from(events), max_size=6))
    delivered = data.draw(st.permutations([*events, *repeats]))
    expected_view, expected = run(list(events))
    actual_view, actual = run(list(delivered))
    assert len(actual) == len(expected)
    assert content(actual[-1]) == content(expected[-1])
    assert [r.version for r in actual] == list(range(1, len(actual) + 1))
    assert all(r.status is not None for r in actual)
    assert all(content(a) != content(b) for a, b in itertools.pairwise(actual))
    assert actual_view.trusted == expected_view.trusted
    assert actual_view.trusted_completed_at == expected_view.trusted_completed_at
