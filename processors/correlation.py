"""The correlation core: how webhooks and client callbacks shape one inquiry's view.

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
changes nothing.                       as ``stale``. Its status still counts as a milestone reached.
A repeated event id changes nothing.   Recorded as ``duplicate``.
Unknown ``inquiry.*`` names are        The vendor's list grows; an unknown event carrying the inquiry is
snapshots like the others.             still the inquiry as it was at that moment.
``verification.*``, ``report/*``,      Each updates its own map (by object id), newest ``created-at``
``case.*`` events                      first; they never touch the status.
Any other event (``document.*``,       Kept in the audit trail as ``recorded``.
``account.*``, unknown families)
The version increases by one each      A status record is published then, and only then, with the
time the trusted part changes.         previous status and the event that caused the change.
=====================================  ===============================================================

Client part (from callbacks: hints, never trusted)
==================================================

Callbacks are deduplicated by ``(session, seq)``. Each updates the sessions (subjects, first and
last seen), a bounded timeline, the funnel steps reached, the status ``onComplete`` claimed,
cancels, error codes, camera failures and one-time-link use.

Derived flags
=============

======================================  ==========================================================
flag                                    raised when
======================================  ==========================================================
``claimed_complete_but_rejected``       onComplete claimed ``completed``; the trusted status is
                                        ``failed`` or ``declined``
``awaiting_confirmation``               onComplete arrived; no trusted completion within
                                        ``awaiting_confirmation_seconds`` (a timer raises it)
``left_early``                          a trusted completion, sessions were seen, no onComplete
                                        within the same window after the trusted completion
``subject_mismatch``                    a token subject that sent callbacks differs from the
                                        trusted reference-id (possible spoofing)
======================================  ==========================================================

A trusted completion is a trusted status of ``completed``, ``failed``, ``needs_review``,
``approved`` or ``declined``.

Analytics facts
===============

Each applied input yields counts for the analytics windows (see ``processors/analytics.py``):
callbacks by kind, event names, error codes, funnel steps, each lifecycle milestone the first time
an inquiry shows it, flags the moment they rise, and the time from the client's ``start`` to the
trusted completion. Repeats yield nothing, so retries and replays are never counted twice.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from schemas.callbacks import (
    EventName,
    OnCancel,
    OnComplete,
    OnError,
    OnEvent,
    known_error,
    known_event,
)
from schemas.records import CallbackRecord, Cause, Flags, StatusRecord
from schemas.views import AuditEntry, InquiryView, ObjectResult, SessionInfo, TimelineEntry, TrustedPart
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
TRUSTED_COMPLETION = frozenset({"completed", "failed", "needs_review", "approved", "declined"})
DECISIONS = frozenset({"approved", "declined"})
REJECTED = frozenset({"failed", "declined"})
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


@dataclass
class Outcome:
    """What one input did to a view."""

    view_changed: bool = False
    status: StatusRecord | None = None
    counts: Counter[str] = field(default_factory=Counter)
    durations: list[float] = field(default_factory=list)
    template_id: str = UNKNOWN_TEMPLATE


# --- webhooks --------------------------------------------------------------------------------


def _snapshot_key(created_at: datetime, status: str | None, event_id: str) -> tuple[datetime, int, str]:
    return created_at, LIFECYCLE_RANK.get(status or "", -1), event_id


def apply_webhook(view: InquiryView, event: WebhookEvent, now: datetime, config: Config) -> Outcome:
    """Apply one verified webhook event to the view (in place)."""
    outcome = Outcome()
    event_id, name = event.event_id, event.name
    created_at = event.data.attributes.created_at
    if any(entry.event_id == event_id for entry in view.audit):
        _audit(view, event, "duplicate", config)
        outcome.view_changed = True
        outcome.template_id = template_of(view)
        return outcome

    before_status = view.trusted.status
    obj = event.object
    changed = False
    if isinstance(obj, InquiryObject):
        status = obj.attributes.status
        if status not in view.milestones:
            view.milestones.append(status)
            outcome.counts[f"trusted.{status}"] += 1
        current = view.trusted
        if current.created_at is None or current.event_id is None:
            newer = True
        else:
            newer = _snapshot_key(created_at, status, event_id) > _snapshot_key(
                current.created_at, current.status, current.event_id
            )
        if newer:
            _apply_snapshot(view.trusted, event, obj)
            changed = True
        result = "applied" if newer else "stale"
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
            if existing is None or (created_at, event_id) > (existing.created_at, existing.event_id):
                target[obj.id] = candidate
                changed = True
                result = "applied"
            else:
                result = "stale"
    _audit(view, event, result, config)
    outcome.view_changed = True
    outcome.template_id = template_of(view)

    if changed:
        view.version += 1
        if view.trusted.status in TRUSTED_COMPLETION and view.trusted_completion_seen_at is None:
            view.trusted_completion_seen_at = now
            view.trusted_completed_at = view.trusted.created_at
        _measure_start_to_completion(view, outcome)
        _refresh_flags(view, now, config, outcome)
        outcome.status = StatusRecord(
            inquiry_id=view.inquiry_id,
            version=view.version,
            status=view.trusted.status,
            previous_status=before_status,
            reference_id=view.trusted.reference_id,
            template_id=view.trusted.template_id,
            cause=Cause(event_id=event_id, event_name=name, created_at=created_at),
            flags=view.flags,
        )
    else:
        _refresh_flags(view, now, config, outcome)
    view.updated_at = now
    return outcome


def _apply_snapshot(trusted: TrustedPart, event: WebhookEvent, obj: InquiryObject) -> None:
    attributes = obj.attributes
    trusted.status = attributes.status
    trusted.event_id = event.event_id
    trusted.event_name = event.name
    trusted.created_at = event.data.attributes.created_at
    trusted.reference_id = attributes.reference_id
    trusted.template_id = obj.template_id() or trusted.template_id
    trusted.decision = attributes.status if attributes.status in DECISIONS else None
    trusted.timestamps = {
        name.replace("_", "-"): value
        for name in TIMESTAMP_ATTRIBUTES
        if (value := getattr(attributes, name)) is not None
    }
    trusted.previous_step_name = attributes.previous_step_name
    trusted.next_step_name = attributes.next_step_name
    trusted.tags = list(attributes.tags)
    trusted.redacted = attributes.redacted_at is not None or event.name == "inquiry.redacted"


def _object_family(name: str, object_type: str) -> str | None:
    if name.startswith("verification.") or object_type.startswith("verification"):
        return "verifications"
    if name.startswith("report/") or object_type.startswith("report/"):
        return "reports"
    if name.startswith("case.") or object_type == "case":
        return "cases"
    return None


def _audit(view: InquiryView, event: WebhookEvent, outcome: str, config: Config) -> None:
    view.audit.append(
        AuditEntry(
            event_id=event.event_id,
            event_name=event.name,
            created_at=event.data.attributes.created_at,
            outcome=outcome,
        )
    )
    if len(view.audit) > config.audit_limit:
        del view.audit[: len(view.audit) - config.audit_limit]


def _measure_start_to_completion(view: InquiryView, outcome: Outcome) -> None:
    """Once both the client's start and the trusted completion are known -- in either order."""
    started, completed = view.client.started_at, view.trusted_completed_at
    if view.start_to_trusted_completion is not None or started is None or completed is None:
        return
    seconds = (completed - started).total_seconds()
    if seconds >= 0:
        view.start_to_trusted_completion = seconds
        outcome.durations.append(seconds)


# --- callbacks -------------------------------------------------------------------------------


def apply_callback(view: InquiryView, record: CallbackRecord, now: datetime, config: Config) -> Outcome:
    """Apply one client callback to the view (in place); a repeat of (session, seq) changes nothing."""
    outcome = Outcome()
    client = view.client
    session = client.sessions.get(record.session)
    if session is None:
        session = SessionInfo(
            subject=record.subject, origin=record.origin, first_seen=record.received_at, last_seen=record.received_at
        )
        client.sessions[record.session] = session
        if len(client.sessions) > config.sessions_limit:
            oldest = min(client.sessions, key=lambda key: client.sessions[key].last_seen)
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
    client.timeline.append(
        TimelineEntry(at=record.received_at, session=record.session, seq=record.seq, kind=callback.kind, name=name)
    )
    if len(client.timeline) > config.timeline_limit:
        del client.timeline[: len(client.timeline) - config.timeline_limit]

    step = _step_of(callback)
    if step is not None and step not in client.steps and len(client.steps) < config.steps_limit:
        client.steps.append(step)
    if isinstance(callback, OnEvent):
        if callback.name == EventName.START and (client.started_at is None or record.received_at < client.started_at):
            client.started_at = record.received_at
        if callback.name == EventName.LOAD_CAMERA_FAILED:
            client.camera_failures += 1
        if callback.name.startswith("one-time-link-"):
            client.one_time_link[callback.name] = client.one_time_link.get(callback.name, 0) + 1
    elif isinstance(callback, OnComplete):
        client.claimed_status = callback.status
        if client.completed_at is None or record.received_at < client.completed_at:
            client.completed_at = record.received_at
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
    view.updated_at = now
    return outcome


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


# --- flags and timers --------------------------------------------------------------------------


def derive_flags(view: InquiryView, now: datetime, config: Config) -> Flags:
    trusted, client = view.trusted, view.client
    window = timedelta(seconds=config.awaiting_confirmation_seconds)
    completed = trusted.status in TRUSTED_COMPLETION
    return Flags(
        claimed_complete_but_rejected=client.claimed_status == "completed" and trusted.status in REJECTED,
        awaiting_confirmation=client.completed_at is not None and not completed and now - client.completed_at >= window,
        left_early=(
            completed
            and bool(client.sessions)
            and client.completed_at is None
            and view.trusted_completion_seen_at is not None
            and now - view.trusted_completion_seen_at >= window
        ),
        subject_mismatch=trusted.reference_id is not None
        and any(subject != trusted.reference_id for subject in client.subjects),
    )


def next_deadline(view: InquiryView, config: Config) -> datetime | None:
    """When the flags may change with time alone (for the timer); None if they cannot."""
    window = timedelta(seconds=config.awaiting_confirmation_seconds)
    completed = view.trusted.status in TRUSTED_COMPLETION
    if view.client.completed_at is not None and not completed and not view.flags.awaiting_confirmation:
        return view.client.completed_at + window
    if (
        completed
        and view.client.sessions
        and view.client.completed_at is None
        and view.trusted_completion_seen_at is not None
        and not view.flags.left_early
    ):
        return view.trusted_completion_seen_at + window
    return None


def refresh(view: InquiryView, now: datetime, config: Config) -> Outcome:
    """Re-derive the flags at ``now`` (the timer's entry point)."""
    outcome = Outcome(template_id=template_of(view))
    _refresh_flags(view, now, config, outcome)
    return outcome


def _refresh_flags(view: InquiryView, now: datetime, config: Config, outcome: Outcome) -> None:
    flags = derive_flags(view, now, config)
    if flags != view.flags:
        for name in flags.raised():
            if not getattr(view.flags, name):
                outcome.counts[f"disagreements.{name}"] += 1
        view.flags = flags
        outcome.view_changed = True


def template_of(view: InquiryView, record: CallbackRecord | None = None) -> str:
    return (
        view.trusted.template_id
        or (record.template_id if record else None)
        or view.client.template_id
        or UNKNOWN_TEMPLATE
    )
