"""The correlation core: how webhooks and client callbacks shape one inquiry's view and its records.

Pure and synchronous: no faust, no Kafka, no clock -- time is passed in. The faust agents in
``processors/app.py`` only load a view, call one function here, and write what it returns.

The entry points are here with the rules below; what they share is beside them:
:mod:`processors.lifecycle` (the orders of Persona's statuses), :mod:`processors.funnel` (the
client part's bookkeeping) and :mod:`processors.outcome` (what an input did, and the steps every
input ends with: flags, records, the timer).

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

from datetime import datetime

from processors.flags import TRUSTED_COMPLETION
from processors.funnel import add_to_timeline, callback_counts, note_claims, reach, step_of, track_session
from processors.lifecycle import (
    DECISIONS,
    LIFECYCLE_RANK,
    NAME_STATUS,
    TIMESTAMP_ATTRIBUTES,
    object_family,
    object_key,
    parse_timestamp,
    reachable,
    snapshot_stamp,
)
from processors.outcome import (
    UNKNOWN_TEMPLATE,
    Config,
    Outcome,
    audit,
    conclude,
    next_deadline,
    publish,
    reconcile_due,
    refresh_flags,
    template_of,
)
from schemas.records import ApiSnapshot, CallbackRecord, Trigger, TrustedSource
from schemas.views import InquiryView, ObjectResult, Stamp, TrustedPart
from schemas.webhooks import InquiryObject, OtherObject, WebhookEvent

__all__ = [
    "API_EVENT_NAME",
    "UNKNOWN_TEMPLATE",
    "Config",
    "Outcome",
    "apply_api_snapshot",
    "apply_callback",
    "apply_webhook",
    "next_deadline",
    "refresh",
]

API_EVENT_NAME = "api.inquiry"
"""The event name an API snapshot goes by in the audit trail and a record's cause."""


# --- webhooks --------------------------------------------------------------------------------


def apply_webhook(view: InquiryView, event: WebhookEvent, now: datetime, config: Config) -> Outcome:
    """Apply one verified webhook event to the view (in place)."""
    event_id, name = event.event_id, event.name
    created_at = event.data.attributes.created_at
    if _seen(view, event_id):
        return _duplicate(view, event_id, name, created_at, "webhook", config)
    outcome = Outcome()
    obj = event.object
    note: str | None = None
    if isinstance(obj, InquiryObject):
        expected = NAME_STATUS.get(name)
        if expected is not None and expected != obj.attributes.status:
            note = "name-status-mismatch"
        result, transition = _apply_inquiry(view, event_id, name, created_at, obj, "webhook", now, outcome)
        note = note or transition
    else:
        result = _apply_object(view, event_id, name, created_at, obj)
    audit(view, event_id, name, created_at, result, config, note)
    outcome.template_id = template_of(view)
    return conclude(view, outcome, Trigger(source="webhook", at=created_at, event_id=event_id), now, config)


def _seen(view: InquiryView, event_id: str) -> bool:
    return any(entry.event_id == event_id for entry in view.audit)


def _duplicate(
    view: InquiryView, event_id: str, name: str, created_at: datetime, source: TrustedSource, config: Config
) -> Outcome:
    """A repeated event id: audited as ``duplicate``, nothing else changes."""
    audit(view, event_id, name, created_at, "duplicate", config, source=source)
    return Outcome(view_changed=True, template_id=template_of(view))


def _apply_object(view: InquiryView, event_id: str, name: str, created_at: datetime, obj: OtherObject) -> str:
    """A verification, report or case into its map if it is the newest of its id; the audit outcome."""
    family = object_family(name, obj.type)
    if family is None:
        return "recorded"
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
    if existing is None or object_key(candidate) > object_key(existing):
        target[obj.id] = candidate
        return "applied"
    return "stale"


def apply_api_snapshot(view: InquiryView, snapshot: ApiSnapshot, now: datetime, config: Config) -> Outcome:
    """Apply one read of Persona's API to the view (in place): a trusted snapshot like a webhook's.

    It is ordered with the webhooks' snapshots by ``observed_at`` (the same key, the snapshot id in
    the place of the event id), so it never rolls back a newer webhook; a repeated snapshot id changes
    nothing. Audit entry, trusted part and record say ``source: api``.
    """
    event_id, created_at = snapshot.snapshot_id, snapshot.observed_at
    if _seen(view, event_id):
        return _duplicate(view, event_id, API_EVENT_NAME, created_at, "api", config)
    outcome = Outcome()
    attributes = snapshot.inquiry.attributes
    finished = parse_timestamp(attributes.completed_at) or parse_timestamp(attributes.failed_at)
    completed = finished if finished is not None and finished <= created_at else None
    result, note = _apply_inquiry(
        view, event_id, API_EVENT_NAME, created_at, snapshot.inquiry, "api", now, outcome, completed
    )
    audit(view, event_id, API_EVENT_NAME, created_at, result, config, note, source="api")
    outcome.template_id = template_of(view)
    return conclude(view, outcome, Trigger(source="api", at=created_at, event_id=event_id), now, config)


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
    stamp = snapshot_stamp(created_at, status, event_id)
    trusted = view.trusted
    newer = trusted.created_at is None or trusted.event_id is None
    if not newer:
        assert trusted.created_at is not None
        assert trusted.event_id is not None
        newer = stamp.key() > snapshot_stamp(trusted.created_at, trusted.status, trusted.event_id).key()
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


# --- callbacks -------------------------------------------------------------------------------


def apply_callback(view: InquiryView, record: CallbackRecord, now: datetime, config: Config) -> Outcome:
    """Apply one client callback to the view (in place); a repeat of (subject, session, seq) changes nothing."""
    client = view.client
    if not track_session(client, record, config.sessions_limit, config.seen_above_limit):
        return Outcome(template_id=template_of(view, record))
    add_to_timeline(client, record, config.timeline_limit)
    step = step_of(record.callback)
    if step is not None:
        reach(client, step, record.received_at, config.steps_limit)
    note_claims(client, record)
    outcome = Outcome(template_id=template_of(view, record))
    if not record.relinked:  # a relinked copy was counted when its session first saw it
        outcome.counts.update(callback_counts(record))
    trigger = Trigger(source="callback", at=record.received_at, session=record.session, seq=record.seq)
    return conclude(view, outcome, trigger, now, config)


# --- the timer -------------------------------------------------------------------------------


def refresh(view: InquiryView, now: datetime, config: Config) -> Outcome:
    """Re-derive the flags at ``now`` (the timer's entry point); a record if that changed them, and
    a reconcile request while the trusted completion is overdue (each reconcile interval)."""
    outcome = Outcome(template_id=template_of(view))
    refresh_flags(view, now, config, outcome)
    publish(view, outcome, Trigger(source="timer", at=now))
    if reconcile_due(view, now, config):
        view.reconcile_requested_at = now
        view.reconcile_requests += 1
        outcome.reconcile = True
        outcome.view_changed = True
    return outcome
