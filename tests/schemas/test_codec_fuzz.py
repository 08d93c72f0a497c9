"""Hostile webhook bodies against ``decode(WebhookEvent)``: an event with a Kafka key, or a
SchemaError, which the gateway dead-letters (tests/hostile.py has the inputs)."""

from __future__ import annotations

from hypothesis import event, given

from schemas.codec import decode
from schemas.errors import SchemaError
from schemas.webhooks import InquiryObject, WebhookEvent
from tests.hostile import FUZZ, webhook_bodies


@FUZZ
@given(body=webhook_bodies)
def test_any_webhook_body_decodes_to_a_keyed_event_or_a_schema_error(body: bytes) -> None:
    """What WebhookReceiver.handle does after the signature: decode the body."""
    try:
        parsed: WebhookEvent | SchemaError = decode(WebhookEvent, body)
    except SchemaError as exc:
        parsed = exc
    event(getattr(parsed, "code", "event"))
    if isinstance(parsed, SchemaError):  # dead-lettered
        assert parsed.code in ("invalid-json", "invalid-shape")
        assert isinstance(parsed.field, str)
        return
    key = parsed.inquiry_id()  # the Kafka key
    assert key.encode()
    assert parsed.event_id.encode()
    if isinstance(parsed.object, InquiryObject):
        assert key == parsed.object.id
