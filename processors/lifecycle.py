"""Persona's lifecycles, as the correlation orders and checks the trusted snapshots by them.

The ranks and transitions of an inquiry's statuses, the status each ``inquiry.*`` event name
announces, the progress order of verification, report and case statuses, and the ordering keys
built from them (:func:`snapshot_stamp`, :func:`object_key`). Also the one parser of Persona's timestamp
attributes. The rules that use these are in :mod:`processors.correlation`'s docstring.
"""

from __future__ import annotations

from datetime import datetime

from schemas.views import ObjectResult, Stamp

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


def parse_timestamp(value: str | None) -> datetime | None:
    """An ISO 8601 time with its offset (``Z`` too) from Persona's attributes; None if absent or naive."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def snapshot_stamp(created_at: datetime, status: str | None, event_id: str) -> Stamp:
    """The ordering key of a trusted snapshot: time, then lifecycle progress, then event id."""
    return Stamp(created_at=created_at, rank=LIFECYCLE_RANK.get(status or "", -1), event_id=event_id)


def object_key(result: ObjectResult) -> tuple[datetime, int, str]:
    """The ordering key of a verification, report or case: time, then progress, then event id."""
    return result.created_at, OBJECT_PROGRESS.get(result.status or "", -1), result.event_id


def object_family(name: str, object_type: str) -> str | None:
    """The trusted part's map a non-inquiry object goes to, or None if it is only recorded."""
    if name.startswith("verification.") or object_type.startswith("verification"):
        return "verifications"
    if name.startswith("report/") or object_type.startswith("report/"):
        return "reports"
    if name.startswith("case.") or object_type == "case":
        return "cases"
    return None
