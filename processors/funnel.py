"""The client part's bookkeeping: sessions, the timeline, the funnel steps and what callbacks claim.

Callbacks are hints, never trusted (see :mod:`processors.correlation` for the rules): these helpers
keep the bounded per-inquiry record of them that the flags and analytics read, and
:func:`callback_counts` is each callback's contribution to the analytics windows.
"""

from __future__ import annotations

import bisect
from collections import Counter
from datetime import datetime

from schemas.callbacks import EventName, OnCancel, OnComplete, OnError, OnEvent, known_error, known_event
from schemas.records import CallbackRecord
from schemas.views import ClientPart, SessionInfo, SubjectClaims, TimelineEntry

FUNNEL_STEPS = ("loaded", "ready", "started", "client_completed", "cancelled")


def session_key(session: str, subject: str) -> str:
    """A session id is the browser's word: it is unique only together with the token's subject."""
    return f"{session}:{subject}"


def track_session(client: ClientPart, record: CallbackRecord, sessions_limit: int, seen_above_limit: int) -> bool:
    """Note the callback's session (the oldest forgotten beyond the limit); False if it is a repeat."""
    key = session_key(record.session, record.subject)
    session = client.sessions.get(key)
    if session is None:
        session = SessionInfo(
            subject=record.subject, origin=record.origin, first_seen=record.received_at, last_seen=record.received_at
        )
        client.sessions[key] = session
        if len(client.sessions) > sessions_limit:
            oldest = min(client.sessions, key=lambda k: client.sessions[k].last_seen)
            del client.sessions[oldest]
    elif record.seq in session.seqs:
        return False
    session.seqs.add(record.seq, seen_above_limit)
    session.last_seen = max(session.last_seen, record.received_at)
    if record.subject not in client.subjects:
        client.subjects.append(record.subject)
    if record.template_id is not None:
        client.template_id = record.template_id
    return True


def add_to_timeline(client: ClientPart, record: CallbackRecord, limit: int) -> None:
    """The callback in the timeline, in the order the gateway received it; the oldest dropped beyond ``limit``."""
    callback = record.callback
    name = callback.name if isinstance(callback, OnEvent) else None
    bisect.insort(
        client.timeline,
        TimelineEntry(at=record.received_at, session=record.session, seq=record.seq, kind=callback.kind, name=name),
        key=timeline_order,
    )
    if len(client.timeline) > limit:
        del client.timeline[: len(client.timeline) - limit]


def note_claims(client: ClientPart, record: CallbackRecord) -> None:
    """What the callback says: the subject's claims, camera failures, one-time links, cancels, errors."""
    callback = record.callback
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


def timeline_order(entry: TimelineEntry) -> tuple[datetime, str, int]:
    return entry.at, entry.session, entry.seq


def reach(client: ClientPart, step: str, at: datetime, limit: int) -> None:
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
    step = step_of(callback)
    if step in FUNNEL_STEPS:
        counts[f"funnel.{step}"] += 1
    return counts


def step_of(callback: object) -> str | None:
    if isinstance(callback, OnEvent):
        return {"start": "started"}.get(callback.name, callback.name if known_event(callback.name) else None)
    return {
        "onLoad": "loaded",
        "onReady": "ready",
        "onComplete": "client_completed",
        "onCancel": "cancelled",
    }.get(getattr(callback, "kind", ""))
