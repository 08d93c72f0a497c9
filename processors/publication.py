"""When a view makes a status record, and what the record says (the rules are in the table of
:mod:`processors.correlation`'s docstring): one whenever anything a record carries changed since
the last one -- never before the first inquiry snapshot -- version +1, with what changed."""

from __future__ import annotations

from schemas.records import RECORD_FIELDS, Cause, Flags, RecordField, StatusRecord, Trigger
from schemas.views import InquiryView, Published


def content(view: InquiryView) -> Published | None:
    """What a record of the view would carry now; None before the first inquiry snapshot."""
    trusted = view.trusted
    if trusted.status is None:
        return None
    return Published(
        status=trusted.status,
        reference_id=trusted.reference_id,
        template_id=trusted.template_id,
        milestones=list(view.milestones),
        flags=view.flags,
    )


def changes(before: Published | None, after: Published) -> list[RecordField]:
    """The record fields that differ (on a first record: every field that is set)."""
    old, new = _values(before), _values(after)
    return [name for name in RECORD_FIELDS if old[name] != new[name]]


def _values(content: Published | None) -> dict[str, object]:
    if content is None:
        return dict.fromkeys(RECORD_FIELDS)
    return {
        "status": content.status,
        "reference_id": content.reference_id,
        "template_id": content.template_id,
        "milestones": content.milestones or None,
        **{f"flags.{name}": getattr(content.flags, name) or None for name in Flags.model_fields},
    }


def next_record(view: InquiryView, trigger: Trigger) -> StatusRecord | None:
    """The record due after an input, if any; it becomes the view's last published one."""
    current = content(view)
    if current is None or current == view.published:
        return None
    trusted = view.trusted
    assert trusted.event_id is not None
    assert trusted.event_name is not None
    assert trusted.created_at is not None
    previous = view.published
    view.version += 1
    view.published = current
    return StatusRecord(
        inquiry_id=view.inquiry_id,
        version=view.version,
        status=current.status,
        previous_status=previous.status if previous is not None else None,
        reference_id=current.reference_id,
        template_id=current.template_id,
        milestones=current.milestones,
        cause=Cause(
            event_id=trusted.event_id,
            event_name=trusted.event_name,
            created_at=trusted.created_at,
            source=trusted.source or "webhook",
        ),
        source=trusted.source or "webhook",
        flags=current.flags,
        changed=changes(previous, current),
        trigger=trigger,
    )
