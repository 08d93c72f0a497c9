"""The correlation core: how webhooks and client callbacks shape one inquiry's view and its records.

Pure and synchronous: no faust, no Kafka, no clock -- time is passed in. The faust agents in
``processors/app.py`` only load a view, call one function here, and write what it returns.

Trusted part (from verified webhooks only)
==========================================

=====================================  ===============================================================
rule                                   why
=====================================  ===============================================================
Every ``inquiry.*`` event carrying     Persona sends the whole inquiry with every inquiry event, so the
an inquiry object is a *snapshot*.     newest snapshot is the truth; nothing is replayed step by step.
The snapshot applied is the newest     Order is ``(created-at, lifecycle rank of its status, event id)``:
by ``created-at``.                     equal timestamps are broken first by lifecycle progress
                                       (created < pending < completed = failed = expired <
                                       needs_review < approved = declined), then by event id -- any
                                       arrival order gives the same result.
An older snapshot arriving late        It never rolls the status back; it is recorded in the audit trail
changes nothing but milestones.        as ``stale``. Its status still counts as a milestone reached.
A repeated event id changes nothing.   Recorded as ``duplicate``.
Unknown ``inquiry.*`` names are        The vendor's list grows; an unknown event carrying the inquiry is
snapshots like the others.             still the inquiry as it was at that moment.
A name that says another status than   Audited (note ``name-status-mismatch``); the payload is the
its payload (``inquiry.approved``      inquiry, so its status is applied -- the event never counts as a
carrying ``completed``)                decision it does not carry.
A change the lifecycle does not allow  Applied (the newest snapshot is the truth) and audited (note
(``expired`` after ``completed``)      ``unexpected-transition``); a transition is allowed when the
                                       lifecycle can reach it, skipped events included.
Reference id and template id come      Order-independent: a late older snapshot cannot override a newer
from the newest snapshot that names    one, and a redacted snapshot (reference id null) does not erase
one.                                   the evidence.
The trusted completion time is the     Order-independent; the view's start-to-completion time follows
earliest completion snapshot's         it (and the subject's earliest ``start``); analytics count the
``created-at``.                        first measure, once both ends are known.
``verification.*``, ``report/*``,      Each updates its own map (by object id), newest ``(created-at,
``case.*`` events                      progress of its status, event id)`` first (``passed`` over
                                       ``submitted`` at the same millisecond); never the status.
Any other event (``document.*``,       Kept in the audit trail as ``recorded``.
``account.*``, unknown families)
=====================================  ===============================================================

Status records
==============

A record carries the trusted ``status``, ``reference_id``, ``template_id`` and ``milestones``, and
the ``flags``. One is published whenever any of these changes -- on a webhook, a callback or the
timer -- and only then; ``version`` is +1 per record and ``changed`` names what changed. So no
record follows an event that changes nothing carried: a duplicate, the same snapshot under another
event id, a verification, report, case or tags-only event. No record is published before the first
inquiry snapshot (``status`` is never null): flags raised earlier ride on the first record.
(:mod:`processors.publication` makes the records, :mod:`processors.flags` derives the flags.)

For the webhooks of one inquiry, whatever the delivery order and however often each is repeated,
the number of records and the last record's content are the same (a property test draws the sets
from Persona's lifecycle: statuses in lifecycle order, snapshots repeated under other ids, objects).

Client part (from callbacks: hints, never trusted)
==================================================

Callbacks are deduplicated by ``(subject, session, seq)``: a session id is the browser's word, so
one subject's frames never shadow another's. Each updates the sessions, a bounded timeline, the
funnel steps reached, cancels, error codes, camera failures and one-time-link use. What a callback
*claims* (the ``start`` time, the status ``onComplete`` claimed and when) is kept per subject.
The timeline and the steps are in the order the gateway received the callbacks (``received_at``),
not the order they reach the view: a session's callbacks from before it knew its inquiry are
re-keyed to the inquiry only at the link, after later ones, and still take their place.

Derived flags
=============

The claims that count are those of the trusted reference id's subject; while the trusted part names
no reference id, every subject's (the earliest completion claim wins). A callback from another
subject never sets or clears them: it only raises ``subject_mismatch``.

======================================  ==========================================================
flag                                    raised when
======================================  ==========================================================
``claimed_complete_but_rejected``       onComplete claimed a success (``completed`` or
                                        ``approved``); the trusted status is ``failed`` or
                                        ``declined``
``awaiting_confirmation``               onComplete arrived; no trusted completion was ever seen
                                        within ``awaiting_confirmation_seconds`` (a timer raises
                                        it; a later non-completion status does not clear it away)
``left_early``                          a trusted completion was seen, the subject's sessions were
                                        seen, no onComplete within the same window after it
``subject_mismatch``                    a token subject that sent callbacks differs from the
                                        trusted reference id (possible spoofing); it stays raised
                                        when a later snapshot is redacted
======================================  ==========================================================

A trusted completion is a milestone of ``completed``, ``failed``, ``needs_review``, ``approved`` or
``declined``.

Analytics facts
===============

Each applied input yields counts for the analytics windows (see ``processors/analytics.py``):
callbacks by kind, event names, error codes, funnel steps, each lifecycle milestone the first time
an inquiry shows it, flags the moment they rise, and the time from the client's ``start`` to the
trusted completion. Repeats yield nothing, so retries and replays are never counted twice.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from processors import flags, publication
from processors.flags import TRUSTED_COMPLETION, counted_claims
from schemas.callbacks import (
    EventName,
    OnCancel,
    OnComplete,
    OnError,
    OnEvent,
    known_error,
    known_event,
)
from schemas.records import ApiSnapshot, CallbackRecord, Flags, StatusRecord, Trigger, TrustedSource
from schemas.views import (
    AuditEntry,
    ClientPart,
    InquiryView,
    ObjectResult,
    SessionInfo,
    Stamp,
    SubjectClaims,
    TimelineEntry,
    TrustedPart,
)
from schemas.webhooks import InquiryObject, WebhookEvent

LIFECYCLE_RANK = {
    "created": 0,
    "pending": 1,
    "completed": 2,
    "failed": 2,
    "expired": 2,
    "needs_review": 3,
    "approved": 4,
    "declined": 4,
}
LIFECYCLE_NEXT = {
    "created": {"pending", "expired"},
    "pending": {"completed", "failed", "expired"},
    "completed": {"approved", "declined", "needs_review"},
    "failed": {"approved", "declined", "needs_review"},
    "expired": {"approved", "declined", "needs_review"},
    "needs_review": {"approved", "declined"},
}
NAME_STATUS = {
    "inquiry.created": "created",
    "inquiry.started": "pending",
    "inquiry.completed": "completed",
    "inquiry.failed": "failed",
    "inquiry.expired": "expired",
    "inquiry.marked-for-review": "needs_review",
    "inquiry.approved": "approved",
    "inquiry.declined": "declined",
}
OBJECT_PROGRESS = {
    "created": 0,
    "initiated": 0,
    "open": 0,
    "pending": 1,
    "submitted": 1,
    "requires-retry": 2,
    "requires_retry": 2,
    "ready": 3,
    "errored": 3,
    "matched": 3,
    "passed": 3,
    "failed": 3,
    "canceled": 3,
    "confirmed": 3,
    "resolved": 4,
    "approved": 4,
    "declined": 4,
}
DECISIONS = frozenset({"approved", "declined"})
UNKNOWN_TEMPLATE = "unknown"
TIMESTAMP_ATTRIBUTES = (
    "created_at",
    "started_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "expires_at",
    "marked_for_review_at",
    "decisioned_at",
    "redacted_at",
)


@dataclass(frozen=True)
class Config:
    awaiting_confirmation_seconds: float = 120.0
    timeline_limit: int = 50
    audit_limit: int = 100
    sessions_limit: int = 20
    steps_limit: int = 40
    seen_above_limit: int = 256
    reconcile_interval_seconds: float | None = None  # None: no reconcile requests
    reconcile_max_requests: int = 60  # per inquiry: then the flag stays raised for a person to look


@dataclass
class Outcome:
    """What one input did to a view."""

    view_changed: bool = False
    status: StatusRecord | None = None
    counts: Counter[str] = field(default_factory=Counter)
    durations: list[float] = field(default_factory=list)
    template_id: str = UNKNOWN_TEMPLATE
    reconcile: bool = False  # ask the reconciler to read this inquiry from Persona's API


def reachable(before: str, after: str) -> bool:
    """Whether Persona's lifecycle can go from ``before`` to ``after`` (events in between skipped)."""
    seen, frontier = {before}, [before]
    while frontier:
        for status in LIFECYCLE_NEXT.get(frontier.pop(), ()):
            if status == after:
                return True
            if status not in seen:
                seen.add(status)
                frontier.append(status)
    return before == after


# --- webhooks --------------------------------------------------------------------------------


def _stamp(created_at: datetime, status: str | None, event_id: str) -> Stamp:
    return Stamp(created_at=created_at, rank=LIFECYCLE_RANK.get(status or "", -1), event_id=event_id)


def apply_webhook(view: InquiryView, event: WebhookEvent, now: datetime, config: Config) -> Outcome:
    """Apply one verified webhook event to the view (in place)."""
    outcome = Outcome()
    event_id, name = event.event_id, event.name
    created_at = event.data.attributes.created_at
    if any(entry.event_id == event_id for entry in view.audit):
        _audit(view, event_id, name, created_at, "duplicate", config)
        outcome.view_changed = True
        outcome.template_id = template_of(view)
        return outcome

    obj = event.object
    note: str | None = None
    if isinstance(obj, InquiryObject):
        expected = NAME_STATUS.get(name)
        if expected is not None and expected != obj.attributes.status:
            note = "name-status-mismatch"
        result, transition = _apply_inquiry(view, event_id, name, created_at, obj, "webhook", now, outcome)
        note = note or transition
    else:
        family = _object_family(name, obj.type)
        if family is None:
            result = "recorded"
        else:
            target = getattr(view.trusted, family)
            existing = target.get(obj.id)
            reported = obj.attributes.get("status")
            candidate = ObjectResult(
                type=obj.type,
                status=reported if isinstance(reported, str) else name.rsplit(".", 1)[-1],
                event_name=name,
                event_id=event_id,
                created_at=created_at,
            )
            if existing is None or _object_key(candidate) > _object_key(existing):
                target[obj.id] = candidate
                result = "applied"
            else:
                result = "stale"
    _audit(view, event_id, name, created_at, result, config, note)
    outcome.view_changed = True
    outcome.template_id = template_of(view)
    _measure_start_to_completion(view, outcome)
    _refresh_flags(view, now, config, outcome)
    _publish(view, outcome, Trigger(source="webhook", at=created_at, event_id=event_id))
    view.updated_at = now
    return outcome


API_EVENT_NAME = "api.inquiry"
"""The event name an API snapshot goes by in the audit trail and a record's cause."""


def apply_api_snapshot(view: InquiryView, snapshot: ApiSnapshot, now: datetime, config: Config) -> Outcome:
    """Apply one read of Persona's API to the view (in place): a trusted snapshot like a webhook's.

    It is ordered with the webhooks' snapshots by ``observed_at`` (the same key, the snapshot id in
    the place of the event id), so it never rolls back a newer webhook; a repeated snapshot id changes
    nothing. Audit entry, trusted part and record say ``source: api``.
    """
    outcome = Outcome()
    event_id, created_at = snapshot.snapshot_id, snapshot.observed_at
    if any(entry.event_id == event_id for entry in view.audit):
        _audit(view, event_id, API_EVENT_NAME, created_at, "duplicate", config, source="api")
        outcome.view_changed = True
        outcome.template_id = template_of(view)
        return outcome
    attributes = snapshot.inquiry.attributes
    finished = parse_timestamp(attributes.completed_at) or parse_timestamp(attributes.failed_at)
    completed = finished if finished is not None and finished <= created_at else None
    result, note = _apply_inquiry(
        view, event_id, API_EVENT_NAME, created_at, snapshot.inquiry, "api", now, outcome, completed
    )
    _audit(view, event_id, API_EVENT_NAME, created_at, result, config, note, source="api")
    outcome.view_changed = True
    outcome.template_id = template_of(view)
    _measure_start_to_completion(view, outcome)
    _refresh_flags(view, now, config, outcome)
    _publish(view, outcome, Trigger(source="api", at=created_at, event_id=event_id))
    view.updated_at = now
    return outcome


def _apply_inquiry(
    view: InquiryView,
    event_id: str,
    name: str,
    created_at: datetime,
    obj: InquiryObject,
    source: TrustedSource,
    now: datetime,
    outcome: Outcome,
    completed: datetime | None = None,
) -> tuple[str, str | None]:
    """One trusted inquiry snapshot: milestones, identity, completion, and the status if it is the newest.

    ``completed`` is when the inquiry completed, if the snapshot says (an API read: its
    ``completed-at``); else the snapshot's own time (a webhook's ``created-at``)."""
    status = obj.attributes.status
    note: str | None = None
    if status not in view.milestones:
        view.milestones.append(status)
        view.milestones.sort(key=lambda s: (LIFECYCLE_RANK.get(s, 99), s))
        outcome.counts[f"trusted.{status}"] += 1
    stamp = _stamp(created_at, status, event_id)
    trusted = view.trusted
    newer = trusted.created_at is None or trusted.event_id is None
    if not newer:
        assert trusted.created_at is not None
        assert trusted.event_id is not None
        newer = stamp.key() > _stamp(trusted.created_at, trusted.status, trusted.event_id).key()
    if newer:
        if trusted.status is not None and not reachable(trusted.status, status):
            note = "unexpected-transition"
        _apply_snapshot(trusted, event_id, name, created_at, obj, source)
    _take_identity(trusted, obj, stamp)
    if status in TRUSTED_COMPLETION:
        if view.trusted_completion_seen_at is None:
            view.trusted_completion_seen_at = now
        completed = completed or created_at
        if view.trusted_completed_at is None or completed < view.trusted_completed_at:
            view.trusted_completed_at = completed
    return ("applied" if newer else "stale"), note


def parse_timestamp(value: str | None) -> datetime | None:
    """An ISO 8601 time with its offset (``Z`` too) from Persona's attributes; None if absent or naive."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _apply_snapshot(
    trusted: TrustedPart, event_id: str, name: str, created_at: datetime, obj: InquiryObject, source: TrustedSource
) -> None:
    attributes = obj.attributes
    trusted.status = attributes.status
    trusted.source = source
    trusted.event_id = event_id
    trusted.event_name = name
    trusted.created_at = created_at
    trusted.decision = attributes.status if attributes.status in DECISIONS else None
    trusted.timestamps = {
        name.replace("_", "-"): value
        for name in TIMESTAMP_ATTRIBUTES
        if (value := getattr(attributes, name)) is not None
    }
    trusted.previous_step_name = attributes.previous_step_name
    trusted.next_step_name = attributes.next_step_name
    trusted.tags = list(attributes.tags)
    trusted.redacted = attributes.redacted_at is not None or name == "inquiry.redacted"


def _take_identity(trusted: TrustedPart, obj: InquiryObject, stamp: Stamp) -> None:
    """Reference and template id from the newest snapshot naming one, whatever the arrival order."""
    reference, template = obj.attributes.reference_id, obj.template_id()
    if reference is not None and (trusted.reference_from is None or stamp.key() > trusted.reference_from.key()):
        trusted.reference_id, trusted.reference_from = reference, stamp
    if template is not None and (trusted.template_from is None or stamp.key() > trusted.template_from.key()):
        trusted.template_id, trusted.template_from = template, stamp


def _object_key(result: ObjectResult) -> tuple[datetime, int, str]:
    return result.created_at, OBJECT_PROGRESS.get(result.status or "", -1), result.event_id


def _object_family(name: str, object_type: str) -> str | None:
    if name.startswith("verification.") or object_type.startswith("verification"):
        return "verifications"
    if name.startswith("report/") or object_type.startswith("report/"):
        return "reports"
    if name.startswith("case.") or object_type == "case":
        return "cases"
    return None


def _audit(
    view: InquiryView,
    event_id: str,
    name: str,
    created_at: datetime,
    outcome: str,
    config: Config,
    note: str | None = None,
    source: TrustedSource = "webhook",
) -> None:
    view.audit.append(
        AuditEntry(event_id=event_id, event_name=name, created_at=created_at, outcome=outcome, note=note, source=source)
    )
    if len(view.audit) > config.audit_limit:
        del view.audit[: len(view.audit) - config.audit_limit]


def _measure_start_to_completion(view: InquiryView, outcome: Outcome) -> None:
    """Once both the client's start and the trusted completion are known -- in either order.

    The view's value follows the earliest of each, whatever the arrival order; analytics get the
    first measure only (a count cannot be taken back).
    """
    started, completed = counted_claims(view).started_at, view.trusted_completed_at
    if started is None or completed is None:
        return
    seconds = (completed - started).total_seconds()
    if seconds >= 0 and seconds != view.start_to_trusted_completion:
        if view.start_to_trusted_completion is None:
            outcome.durations.append(seconds)
        view.start_to_trusted_completion = seconds
        outcome.view_changed = True


# --- callbacks -------------------------------------------------------------------------------


def session_key(session: str, subject: str) -> str:
    """A session id is the browser's word: it is unique only together with the token's subject."""
    return f"{session}:{subject}"


def apply_callback(view: InquiryView, record: CallbackRecord, now: datetime, config: Config) -> Outcome:
    """Apply one client callback to the view (in place); a repeat of (subject, session, seq) changes nothing."""
    outcome = Outcome()
    client = view.client
    key = session_key(record.session, record.subject)
    session = client.sessions.get(key)
    if session is None:
        session = SessionInfo(
            subject=record.subject, origin=record.origin, first_seen=record.received_at, last_seen=record.received_at
        )
        client.sessions[key] = session
        if len(client.sessions) > config.sessions_limit:
            oldest = min(client.sessions, key=lambda k: client.sessions[k].last_seen)
            del client.sessions[oldest]
    elif record.seq in session.seqs:
        outcome.template_id = template_of(view, record)
        return outcome
    session.seqs.add(record.seq, config.seen_above_limit)
    session.last_seen = max(session.last_seen, record.received_at)
    if record.subject not in client.subjects:
        client.subjects.append(record.subject)
    if record.template_id is not None:
        client.template_id = record.template_id

    callback = record.callback
    name = callback.name if isinstance(callback, OnEvent) else None
    bisect.insort(
        client.timeline,
        TimelineEntry(at=record.received_at, session=record.session, seq=record.seq, kind=callback.kind, name=name),
        key=_timeline_order,
    )
    if len(client.timeline) > config.timeline_limit:
        del client.timeline[: len(client.timeline) - config.timeline_limit]

    step = _step_of(callback)
    if step is not None:
        _reach(client, step, record.received_at, config.steps_limit)
    claims = client.claims.setdefault(record.subject, SubjectClaims())
    if isinstance(callback, OnEvent):
        if callback.name == EventName.START and (claims.started_at is None or record.received_at < claims.started_at):
            claims.started_at = record.received_at
        if callback.name == EventName.LOAD_CAMERA_FAILED:
            client.camera_failures += 1
        if callback.name.startswith("one-time-link-"):
            client.one_time_link[callback.name] = client.one_time_link.get(callback.name, 0) + 1
    elif isinstance(callback, OnComplete):
        # the earliest claim of this subject stands: a later repeat cannot rewrite it
        if claims.completed_at is None or record.received_at < claims.completed_at:
            claims.claimed_status, claims.completed_at = callback.status, record.received_at
    elif isinstance(callback, OnCancel):
        client.cancels += 1
    elif isinstance(callback, OnError):
        client.error_codes[callback.code] = client.error_codes.get(callback.code, 0) + 1

    outcome.view_changed = True
    outcome.template_id = template_of(view, record)
    if not record.relinked:  # a relinked copy was counted when its session first saw it
        outcome.counts.update(callback_counts(record))
    _measure_start_to_completion(view, outcome)
    _refresh_flags(view, now, config, outcome)
    _publish(view, outcome, Trigger(source="callback", at=record.received_at, session=record.session, seq=record.seq))
    view.updated_at = now
    return outcome


def _timeline_order(entry: TimelineEntry) -> tuple[datetime, str, int]:
    return entry.at, entry.session, entry.seq


def _reach(client: ClientPart, step: str, at: datetime, limit: int) -> None:
    """Record that ``step`` was reached at ``at``: the steps stay in first-reached order."""
    reached = client.step_times
    if step in client.steps:
        first = reached.get(step)
        if first is None or first <= at:
            return
        client.steps.remove(step)  # a callback re-keyed late reached it earlier: move it
    elif len(client.steps) >= limit:
        return
    reached[step] = at
    later = (i for i, known in enumerate(client.steps) if known in reached and reached[known] > at)
    client.steps.insert(next(later, len(client.steps)), step)


def callback_counts(record: CallbackRecord) -> Counter[str]:
    """Analytics counts of one callback, with bounded cardinality (unknown names pooled)."""
    callback = record.callback
    counts: Counter[str] = Counter({f"callbacks.{callback.kind}": 1})
    if isinstance(callback, OnEvent):
        counts[f"events.{callback.name if known_event(callback.name) else 'unknown'}"] += 1
        if callback.name == EventName.LOAD_CAMERA_FAILED:
            counts["camera_failures"] += 1
    elif isinstance(callback, OnError):
        counts[f"errors.{callback.code if known_error(callback.code) else 'unknown'}"] += 1
    step = _step_of(callback)
    if step in FUNNEL_STEPS:
        counts[f"funnel.{step}"] += 1
    return counts


FUNNEL_STEPS = ("loaded", "ready", "started", "client_completed", "cancelled")


def _step_of(callback: object) -> str | None:
    if isinstance(callback, OnEvent):
        return {"start": "started"}.get(callback.name, callback.name if known_event(callback.name) else None)
    return {
        "onLoad": "loaded",
        "onReady": "ready",
        "onComplete": "client_completed",
        "onCancel": "cancelled",
    }.get(getattr(callback, "kind", ""))


# --- flags, timers and records -----------------------------------------------------------------


def derive_flags(view: InquiryView, now: datetime, config: Config) -> Flags:
    return flags.derive(view, now, config.awaiting_confirmation_seconds)


def next_deadline(view: InquiryView, config: Config) -> datetime | None:
    """When the flags may change with time alone, or a reconcile request is due (for the timer);
    None if neither can happen."""
    if _reconciling(view, config):
        assert config.reconcile_interval_seconds is not None
        last = view.reconcile_requested_at
        if last is not None:
            return last + timedelta(seconds=config.reconcile_interval_seconds)
        return view.updated_at or datetime.min.replace(tzinfo=UTC)  # due at once
    return flags.next_deadline(view, config.awaiting_confirmation_seconds)


def reconcile_due(view: InquiryView, now: datetime, config: Config) -> bool:
    """Whether the timer should ask for a read of Persona's API: ``awaiting_confirmation`` is raised
    and no request was made in the last reconcile interval (at most ``reconcile_max_requests``)."""
    if not _reconciling(view, config):
        return False
    assert config.reconcile_interval_seconds is not None
    last = view.reconcile_requested_at
    return last is None or now - last >= timedelta(seconds=config.reconcile_interval_seconds)


def _reconciling(view: InquiryView, config: Config) -> bool:
    return (
        config.reconcile_interval_seconds is not None
        and view.flags.awaiting_confirmation
        and view.reconcile_requests < config.reconcile_max_requests
    )


def refresh(view: InquiryView, now: datetime, config: Config) -> Outcome:
    """Re-derive the flags at ``now`` (the timer's entry point); a record if that changed them, and
    a reconcile request while the trusted completion is overdue (each reconcile interval)."""
    outcome = Outcome(template_id=template_of(view))
    _refresh_flags(view, now, config, outcome)
    _publish(view, outcome, Trigger(source="timer", at=now))
    if reconcile_due(view, now, config):
        view.reconcile_requested_at = now
        view.reconcile_requests += 1
        outcome.reconcile = True
        outcome.view_changed = True
    return outcome


def _refresh_flags(view: InquiryView, now: datetime, config: Config, outcome: Outcome) -> None:
    derived = derive_flags(view, now, config)
    if derived != view.flags:
        for name in derived.raised():
            if not getattr(view.flags, name):
                outcome.counts[f"disagreements.{name}"] += 1
        view.flags = derived
        outcome.view_changed = True


def _publish(view: InquiryView, outcome: Outcome, trigger: Trigger) -> None:
    record = publication.next_record(view, trigger)
    if record is not None:
        outcome.status = record
        outcome.view_changed = True


def template_of(view: InquiryView, record: CallbackRecord | None = None) -> str:
    return (
        view.trusted.template_id
        or (record.template_id if record else None)
        or view.client.template_id
        or UNKNOWN_TEMPLATE
    )
