from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from persona_stream.webhook_bodies import DOCUMENTED_EXAMPLE, INQUIRY_ID, body, example, object_event
from schemas.codec import decode
from schemas.errors import SchemaError
from schemas.webhooks import InquiryObject, OtherObject, WebhookEvent


def test_the_documented_example_parses() -> None:
    event = decode(WebhookEvent, body(DOCUMENTED_EXAMPLE))
    assert event.event_id == "evt_o9byQRbjygu76Jbtea9wuJ1boP7a"
    assert event.name == "inquiry.completed"
    assert event.data.attributes.created_at == datetime(2024, 2, 15, 23, 48, 17, 732000, tzinfo=UTC)
    assert isinstance(event.object, InquiryObject)
    assert event.object.attributes.status == "completed"
    assert event.object.attributes.reference_id == "abc-123"
    assert event.object.template_id() == "itmpl_Ygs16MKTkA6obnF8C3Rb17dm"
    assert event.inquiry_id() == INQUIRY_ID


def test_unknown_event_names_and_extra_attributes_are_kept() -> None:
    document = example(data__attributes__name="inquiry.something-new")
    document["data"]["attributes"]["payload"]["data"]["attributes"]["brand-new"] = {"x": 1}
    event = decode(WebhookEvent, body(document))
    assert event.name == "inquiry.something-new"
    assert isinstance(event.object, InquiryObject)
    assert event.object.attributes.model_extra == {"brand-new": {"x": 1}}


def test_null_timestamps_are_tolerated() -> None:
    document = example()
    document["data"]["attributes"]["payload"]["data"]["attributes"]["completed-at"] = None
    event = decode(WebhookEvent, body(document))
    assert isinstance(event.object, InquiryObject)
    assert event.object.attributes.completed_at is None


def verification(relationships: dict[str, Any]) -> dict[str, Any]:
    return example(
        data__attributes__name="verification.passed",
        data__attributes__payload__data={
            "type": "verification/government-id",
            "id": "ver_ZMoPBKDuhZZQz7ozBELmhKXL",
            "attributes": {"status": "passed"},
            "relationships": relationships,
        },
    )


def test_an_event_about_another_object_is_keyed_by_its_inquiry() -> None:
    event = decode(WebhookEvent, body(verification({"inquiry": {"data": {"type": "inquiry", "id": INQUIRY_ID}}})))
    assert isinstance(event.object, OtherObject)
    assert event.inquiry_id() == INQUIRY_ID


def test_an_object_naming_no_inquiry_is_keyed_by_its_own_id() -> None:
    event = decode(WebhookEvent, body(verification({})))
    assert event.inquiry_id() == "ver_ZMoPBKDuhZZQz7ozBELmhKXL"


@pytest.mark.parametrize(
    ("document", "field"),
    [
        (example(data__id=None), "data.id"),
        (example(data__id=""), "data.id"),
        (example(data__attributes__created___at=None), "data.attributes.created-at"),
        (example(data__attributes__payload__data=None), "data.attributes.payload.data"),
        (example(data__attributes__payload=None), "data.attributes.payload"),
        (example(data__attributes__name=None), "data.attributes.name"),
        (example(data__type="inquiry"), "data.type"),
        (example(data__attributes__created___at="yesterday"), "data.attributes.created-at"),
        (example(data__attributes__created___at="2024-02-15T23:48:17"), "data.attributes.created-at"),
        (example(data__attributes__payload__data__id=None), "data.attributes.payload.data.id"),
        (example(data__attributes__payload__data__type=None), "data.attributes.payload.data.type"),
        (
            example(data__attributes__payload__data__attributes__status=None),
            "data.attributes.payload.data.attributes.status",
        ),
        (example(data__attributes__payload__data__id="not-an-inquiry-id"), "data.attributes.payload.data.id"),
    ],
    ids=[
        "no-event-id",
        "empty-event-id",
        "no-created-at",
        "no-payload-object",
        "no-payload",
        "no-name",
        "not-an-event",
        "created-at-not-a-time",
        "created-at-without-zone",
        "object-without-id",
        "object-without-type",
        "inquiry-without-status",
        "inquiry-with-bad-id",
    ],
)
def test_envelopes_missing_what_the_pipeline_relies_on_are_rejected(document: dict[str, Any], field: str) -> None:
    with pytest.raises(SchemaError) as raised:
        decode(WebhookEvent, body(document))
    assert raised.value.code == "invalid-shape"
    assert raised.value.field == field


def test_a_case_linked_to_several_inquiries_is_about_each() -> None:
    document = object_event("evt_1", "case.created", "case", "case_1", "2026-03-01T11:00:00.000Z")
    document["data"]["attributes"]["payload"]["data"]["relationships"] = {
        "inquiries": {"data": [{"type": "inquiry", "id": "inq_a"}, {"type": "inquiry", "id": "inq_b"}]},
        "inquiry": {"data": {"type": "inquiry", "id": "inq_a"}},
    }
    event = decode(WebhookEvent, body(document))
    assert event.inquiry_ids() == ["inq_a", "inq_b"]
    assert event.inquiry_id() == "inq_a"
    document["data"]["attributes"]["payload"]["data"]["relationships"] = {}
    assert decode(WebhookEvent, body(document)).inquiry_ids() == ["case_1"]
