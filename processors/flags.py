"""The derived flags of a view, and when time alone may change them (the rules are in the table of
:mod:`processors.correlation`'s docstring). Pure: time is passed in."""

from __future__ import annotations

from datetime import datetime, timedelta

from schemas.records import Flags
from schemas.views import InquiryView, SubjectClaims

TRUSTED_COMPLETION = frozenset({"completed", "failed", "needs_review", "approved", "declined"})
REJECTED = frozenset({"failed", "declined"})
CLAIMED_SUCCESS = frozenset({"completed", "approved"})


def counted_claims(view: InquiryView) -> SubjectClaims:
    """The claims that count: the trusted reference id's subject's, or everyone's while none is known."""
    claims = view.client.claims
    reference = view.trusted.reference_id
    if reference is not None:
        return claims.get(reference) or SubjectClaims()
    merged = SubjectClaims()
    for subject in sorted(claims):
        claim = claims[subject]
        if claim.started_at is not None and (merged.started_at is None or claim.started_at < merged.started_at):
            merged.started_at = claim.started_at
        if claim.completed_at is not None and (merged.completed_at is None or claim.completed_at < merged.completed_at):
            merged.completed_at, merged.claimed_status = claim.completed_at, claim.claimed_status
    return merged


def _counted_sessions(view: InquiryView) -> bool:
    reference = view.trusted.reference_id
    return any(reference is None or s.subject == reference for s in view.client.sessions.values())


def derive(view: InquiryView, now: datetime, window_seconds: float) -> Flags:
    """The flags at ``now``; ``window_seconds`` is ``awaiting_confirmation_seconds``."""
    trusted, claims = view.trusted, counted_claims(view)
    window = timedelta(seconds=window_seconds)
    seen = view.trusted_completion_seen_at
    return Flags(
        claimed_complete_but_rejected=claims.claimed_status in CLAIMED_SUCCESS and trusted.status in REJECTED,
        awaiting_confirmation=claims.completed_at is not None and seen is None and now - claims.completed_at >= window,
        left_early=(
            seen is not None and _counted_sessions(view) and claims.completed_at is None and now - seen >= window
        ),
        subject_mismatch=trusted.reference_id is not None
        and any(subject != trusted.reference_id for subject in view.client.subjects),
    )


def next_deadline(view: InquiryView, window_seconds: float) -> datetime | None:
    """When the flags may change with time alone (for the timer); None if they cannot."""
    window = timedelta(seconds=window_seconds)
    claims = counted_claims(view)
    seen = view.trusted_completion_seen_at
    if claims.completed_at is not None and seen is None and not view.flags.awaiting_confirmation:
        return claims.completed_at + window
    if seen is not None and _counted_sessions(view) and claims.completed_at is None and not view.flags.left_early:
        return seen + window
    return None
