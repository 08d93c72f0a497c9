"""What one input did to an inquiry's view, and the steps every input ends with.

:class:`Outcome` is what :mod:`processors.correlation`'s entry points return to the pipeline;
:class:`Config` their limits and timings. After an input is applied, :func:`conclude` measures the
start-to-completion time, re-derives the flags, publishes a status record if something it carries
changed, and stamps the view. The timer's questions live here too: when the flags may change with
time alone (:func:`next_deadline`) and when Persona's API should be asked (:func:`reconcile_due`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from processors import flags, publication
from processors.flags import counted_claims
from schemas.records import CallbackRecord, Flags, StatusRecord, Trigger, TrustedSource
from schemas.views import AuditEntry, InquiryView

UNKNOWN_TEMPLATE = "unknown"


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


def audit(
    view: InquiryView,
    event_id: str,
    name: str,
    created_at: datetime,
    outcome: str,
    config: Config,
    note: str | None = None,
    source: TrustedSource = "webhook",
) -> None:
    """An entry in the view's audit trail; the oldest dropped beyond the limit."""
    view.audit.append(
        AuditEntry(event_id=event_id, event_name=name, created_at=created_at, outcome=outcome, note=note, source=source)
    )
    if len(view.audit) > config.audit_limit:
        del view.audit[: len(view.audit) - config.audit_limit]


def conclude(view: InquiryView, outcome: Outcome, trigger: Trigger, now: datetime, config: Config) -> Outcome:
    """The end of every applied input: the measure, the flags, the record if one is due, the view's time."""
    outcome.view_changed = True
    _measure_start_to_completion(view, outcome)
    refresh_flags(view, now, config, outcome)
    publish(view, outcome, trigger)
    view.updated_at = now
    return outcome


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


def refresh_flags(view: InquiryView, now: datetime, config: Config, outcome: Outcome) -> None:
    """Re-derive the flags; each one newly raised is counted as a disagreement."""
    derived = derive_flags(view, now, config)
    if derived != view.flags:
        for name in derived.raised():
            if not getattr(view.flags, name):
                outcome.counts[f"disagreements.{name}"] += 1
        view.flags = derived
        outcome.view_changed = True


def publish(view: InquiryView, outcome: Outcome, trigger: Trigger) -> None:
    """The next status record, if anything it carries changed."""
    record = publication.next_record(view, trigger)
    if record is not None:
        outcome.status = record
        outcome.view_changed = True


def template_of(view: InquiryView, record: CallbackRecord | None = None) -> str:
    """The template an input is counted under in the analytics: the trusted one if known."""
    return (
        view.trusted.template_id
        or (record.template_id if record else None)
        or view.client.template_id
        or UNKNOWN_TEMPLATE
    )
