"""API snapshots in the correlation core, and the reconciler's pure parts (records, dead letters, checkpoints)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from persona_stream.webhook_bodies import INQUIRY_ID
from processors.correlation import Config, apply_api_snapshot, apply_callback, apply_webhook, next_deadline, refresh
from processors.persona_api import InquirySnapshot
from processors.reconcile import Checkpoint, CheckpointError, dead_letter_inquiry, to_record
from schemas.codec import decode, encode, validate
from schemas.records import ApiSnapshot, DeadLetter, ReconcileReason
from schemas.webhooks import InquiryObject
from tests.fixtures.persona_api import inquiry
from tests.processors.test_correlation import NOW, callback, complete, new_view, snapshot

CONFIG = Config(awaiting_confirmation_seconds=60, reconcile_interval_seconds=30)


def api(
    status: str, observed: datetime, updated: str | None = None, reason: ReconcileReason = "on-demand"
) -> ApiSnapshot:
    document = inquiry(INQUIRY_ID, status)
    document["attributes"]["updated-at"] = updated or observed.isoformat().replace("+00:00", "Z")
    document["attributes"]["reference-id"] = "user-42"  # the subject of the callbacks
    return to_record(InquirySnapshot(validate(InquiryObject, document), observed), reason)


def test_an_api_snapshot_is_a_trusted_snapshot_marked_source_api() -> None:
    view = new_view()
    outcome = apply_api_snapshot(view, api("completed", NOW), NOW, CONFIG)
    assert view.trusted.status == "completed"
    assert view.trusted.source == "api"
    assert view.audit[-1].source == "api"
    assert view.audit[-1].outcome == "applied"
    record = outcome.status
    assert record is not None
    assert record.source == "api"
    assert record.cause.source == "api"
    assert record.cause.event_name == "api.inquiry"
    assert record.trigger is not None
    assert record.trigger.source == "api"
    assert record.reference_id == "user-42"
    assert record.template_id == "itmpl_1"


def test_an_older_api_snapshot_never_rolls_back_a_newer_webhook() -> None:
    view = new_view()
    apply_webhook(view, snapshot("evt_approved", "approved", 5), NOW, CONFIG)  # created 11:05
    outcome = apply_api_snapshot(view, api("completed", datetime(2026, 3, 1, 11, 3, tzinfo=UTC)), NOW, CONFIG)
    assert view.trusted.status == "approved"
    assert view.trusted.source == "webhook"
    assert view.audit[-1].outcome == "stale"
    assert outcome.status is None or outcome.status.status == "approved"


def test_a_newer_api_snapshot_applies_over_an_older_webhook_and_a_late_webhook_does_not_undo_it() -> None:
    view = new_view()
    apply_webhook(view, snapshot("evt_started", "pending", 1), NOW, CONFIG)
    apply_api_snapshot(view, api("approved", datetime(2026, 3, 1, 11, 10, tzinfo=UTC)), NOW, CONFIG)
    assert view.trusted.status == "approved"
    assert view.trusted.source == "api"
    apply_webhook(view, snapshot("evt_completed", "completed", 4), NOW, CONFIG)  # older than the read
    assert view.trusted.status == "approved"
    assert view.audit[-1].outcome == "stale"
    assert view.milestones == ["pending", "completed", "approved"]


def test_the_same_state_read_twice_is_one_snapshot() -> None:
    view = new_view()
    first = api("completed", NOW, updated="2026-03-01T11:59:00.000Z")
    again = api("completed", NOW + timedelta(minutes=1), updated="2026-03-01T11:59:00.000Z")
    assert first.snapshot_id == again.snapshot_id
    apply_api_snapshot(view, first, NOW, CONFIG)
    version = view.version
    outcome = apply_api_snapshot(view, again, NOW, CONFIG)
    assert outcome.status is None
    assert view.version == version
    assert view.audit[-1].outcome == "duplicate"
    assert api("approved", NOW, updated="2026-03-01T11:59:00.000Z").snapshot_id != first.snapshot_id


def test_observed_at_is_the_later_of_the_date_header_and_updated_at() -> None:
    date = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)  # Date has whole seconds
    assert api("completed", date, updated="2026-03-01T12:00:00.700Z").observed_at == date + timedelta(milliseconds=700)
    assert api("completed", date, updated="2026-03-01T11:00:00.000Z").observed_at == date


def test_an_api_snapshot_round_trips_through_its_record() -> None:
    record = api("completed", NOW, reason="backfill")
    assert decode(ApiSnapshot, encode(record)) == record


def test_awaiting_confirmation_asks_for_a_read_each_interval_and_the_api_completion_clears_it() -> None:
    view = new_view()
    apply_callback(view, complete(), NOW, CONFIG)
    deadline = next_deadline(view, CONFIG)
    assert deadline == NOW + timedelta(seconds=60)
    raised = refresh(view, deadline, CONFIG)
    assert view.flags.awaiting_confirmation
    assert raised.reconcile
    assert next_deadline(view, CONFIG) == deadline + timedelta(seconds=30)
    assert not refresh(view, deadline + timedelta(seconds=29), CONFIG).reconcile
    assert refresh(view, deadline + timedelta(seconds=30), CONFIG).reconcile
    read = deadline + timedelta(seconds=31)
    pending = apply_api_snapshot(view, api("pending", read), read, CONFIG)
    assert view.flags.awaiting_confirmation  # not a completion: still overdue
    assert pending.status is not None
    assert pending.status.flags.awaiting_confirmation
    later = deadline + timedelta(seconds=62)
    outcome = apply_api_snapshot(view, api("completed", later), later, CONFIG)
    assert not view.flags.awaiting_confirmation
    assert outcome.status is not None
    assert outcome.status.source == "api"
    assert "flags.awaiting_confirmation" in outcome.status.changed
    assert next_deadline(view, CONFIG) is None
    assert not refresh(view, later + timedelta(seconds=60), CONFIG).reconcile


def test_no_reconcile_requests_when_reconciling_is_off() -> None:
    config = Config(awaiting_confirmation_seconds=60)
    view = new_view()
    apply_callback(view, complete(), NOW, config)
    outcome = refresh(view, NOW + timedelta(seconds=60), config)
    assert view.flags.awaiting_confirmation
    assert not outcome.reconcile
    assert next_deadline(view, config) is None


def letter(source_topic: str, key: str | None, value: bytes) -> DeadLetter:
    return DeadLetter(
        source_topic=source_topic,
        partition=0,
        offset=0,
        key=key,
        reason="webhook-invalid-shape",
        detail="",
        value_b64=base64.b64encode(value).decode(),
        at=NOW,
    )


def test_a_dead_lettered_webhook_names_its_inquiry() -> None:
    body = json.dumps({"data": {"attributes": {"payload": {"data": {"type": "inquiry", "id": INQUIRY_ID}}}}})
    assert dead_letter_inquiry(letter("p.webhooks", INQUIRY_ID, b"x"), "p.webhooks") == INQUIRY_ID
    assert dead_letter_inquiry(letter("p.webhooks", None, body.encode()), "p.webhooks") == INQUIRY_ID
    assert dead_letter_inquiry(letter("p.webhooks", None, b'{"broken": "inq_abc123"'), "p.webhooks") == "inq_abc123"
    assert dead_letter_inquiry(letter("p.webhooks", None, b"not json"), "p.webhooks") is None
    assert dead_letter_inquiry(letter("p.client-events", INQUIRY_ID, b"x"), "p.webhooks") is None


def test_a_checkpoint_of_another_backfill_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.json"
    Checkpoint("2026-11-01T00:00:00+00:00", None, cursor="inq_9", done=["inq_8"]).save(path)
    resumed = Checkpoint.load(path, "2026-11-01T00:00:00+00:00", None)
    assert resumed.cursor == "inq_9"
    assert resumed.done == ["inq_8"]
    with pytest.raises(CheckpointError) as refused:
        Checkpoint.load(path, "2026-10-01T00:00:00+00:00", None)
    assert refused.value.code == "reconcile-checkpoint-mismatch"
    path.write_text("{not json")
    with pytest.raises(CheckpointError):
        Checkpoint.load(path, "2026-11-01T00:00:00+00:00", None)


def test_reconcile_requests_stop_after_the_most_allowed() -> None:
    config = Config(awaiting_confirmation_seconds=60, reconcile_interval_seconds=30, reconcile_max_requests=2)
    view = new_view()
    apply_callback(view, complete(), NOW, config)
    at = NOW + timedelta(seconds=60)
    asked = []
    for step in range(4):
        asked.append(refresh(view, at + timedelta(seconds=30 * step), config).reconcile)
    assert asked == [True, True, False, False]
    assert view.reconcile_requests == 2
    assert view.flags.awaiting_confirmation  # still raised: for a person to look at
    assert next_deadline(view, config) is None


def test_an_api_read_dates_the_trusted_completion_by_its_completed_at() -> None:
    view = new_view()
    apply_callback(view, callback(0, {"kind": "onEvent", "name": "start"}, minute=0), NOW, CONFIG)  # 11:30
    document = inquiry(INQUIRY_ID, "approved")
    document["attributes"].update({"reference-id": "user-42", "completed-at": "2026-03-01T11:40:00.000Z"})
    read = to_record(InquirySnapshot(validate(InquiryObject, document), NOW), "on-demand")
    apply_api_snapshot(view, read, NOW, CONFIG)
    assert view.trusted_completed_at == datetime(2026, 3, 1, 11, 40, tzinfo=UTC)
    assert view.start_to_trusted_completion == 600.0
