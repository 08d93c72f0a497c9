"""The published JSON Schemas say what the models accept and write, strictly (tests/contract.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from persona_stream.webhook_bodies import DOCUMENTED_EXAMPLE, object_event
from schemas.codec import encode, to_jsonable
from schemas.export import INPUTS, OUTPUTS
from schemas.frames import (
    AckFrame,
    AnalyticsLimits,
    AuthFrame,
    CallbackFrame,
    ClientLimits,
    ErrorFrame,
    ReadyFrame,
    RefreshedFrame,
    RefreshFrame,
    SubscribedFrame,
    SubscribeFrame,
    SubscribeLimits,
    UnsubscribeFrame,
)
from schemas.records import Cause, StatusRecord
from schemas.views import InquiryView, Provenance, ViewDocument
from tests.contract import ContractError, check, check_view, check_worker_view, closed, published

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
INQ = "inq_zEx4jL84ShbUyuwX6AzPSqt6"


@pytest.mark.parametrize("name", sorted({*INPUTS, *OUTPUTS}))
def test_every_published_schema_is_a_valid_draft_2020_12_schema(name: str) -> None:
    schema = published(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(closed(schema))


def branch_matches(document: dict[str, Any]) -> list[str]:
    schema = published("webhook-event")
    matches = []
    for name in ("InquiryObject", "OtherObject"):
        branch = {**schema["$defs"][name], "$defs": schema["$defs"]}
        if Draft202012Validator(closed(branch)).is_valid(document["data"]["attributes"]["payload"]["data"]):
            matches.append(name)
    return matches


def test_a_real_inquiry_event_matches_exactly_one_payload_branch() -> None:
    check("webhook-event", DOCUMENTED_EXAMPLE)
    assert branch_matches(DOCUMENTED_EXAMPLE) == ["InquiryObject"]


def test_an_event_about_another_object_matches_the_other_branch() -> None:
    document = object_event(
        "evt_1", "verification.passed", "verification/government-id", "ver_1", "2026-01-01T00:00:00Z"
    )
    check("webhook-event", document)
    assert branch_matches(document) == ["OtherObject"]


def test_an_inquiry_that_is_not_an_inquiry_object_is_refused() -> None:
    document = orjson.loads(orjson.dumps(DOCUMENTED_EXAMPLE))
    del document["data"]["attributes"]["payload"]["data"]["attributes"]["status"]
    with pytest.raises(ContractError):
        check("webhook-event", document)  # the other branch does not take it in instead


LIMITS = [
    ClientLimits(max_frame_bytes=65536, rate_per_second=2.5, rate_burst=10, max_sessions=8),
    SubscribeLimits(max_subscriptions=100, queue_size=1000),
    AnalyticsLimits(queue_size=1000),
]

FRAMES: list[tuple[str, Any]] = [
    ("client-frame", AuthFrame(token="t")),
    ("client-frame", CallbackFrame(session="s_4Jd0kQ2mVZ8", seq=1, ts=1, callback={"kind": "onLoad"})),
    ("client-frame", SubscribeFrame(id="s1", channel="mine")),
    ("client-frame", UnsubscribeFrame(id="s1")),
    ("client-frame", RefreshFrame(token="t")),
    *[("server-frame", ReadyFrame(connection="c", subject="u", scope="ingest", limits=limits)) for limits in LIMITS],
    ("server-frame", RefreshedFrame(expires_at=1)),
    ("server-frame", AckFrame(session="s", seq=1)),
    ("server-frame", ErrorFrame(code="invalid-frame", message="m")),
    (
        "server-frame",
        SubscribedFrame(
            id="s1",
            channel="mine",
            recovered=False,
            snapshot=[
                StatusRecord(
                    inquiry_id=INQ,
                    version=1,
                    status="pending",
                    previous_status=None,
                    cause=Cause(event_id="evt_1", event_name="inquiry.started", created_at=NOW),
                )
            ],
        ),
    ),
]


@pytest.mark.parametrize(("schema", "frame"), FRAMES, ids=lambda value: getattr(value, "type", value))
def test_every_frame_validates_and_its_type_is_required(schema: str, frame: Any) -> None:
    document = orjson.loads(encode(frame))
    check(schema, document)
    assert published(schema)["$defs"][type(frame).__name__]["required"][0] == "type"
    del document["type"]
    with pytest.raises(ContractError):
        check(schema, document)


def test_ready_announces_a_fractional_rate_as_it_is() -> None:
    frame = orjson.loads(encode(ReadyFrame(connection="c", subject="u", scope="ingest", limits=LIMITS[0])))
    assert frame["limits"]["rate_per_second"] == 2.5
    check("server-frame", frame)
    frame["limits"]["unknown_limit"] = 1
    with pytest.raises(ContractError):
        check("server-frame", frame)


def test_the_view_schema_describes_the_provenance_the_gateway_adds() -> None:
    view = InquiryView(inquiry_id=INQ, updated_at=NOW)
    document = to_jsonable(ViewDocument(**view.model_dump(), provenance=Provenance()))
    check_view(document)
    stored = orjson.loads(view.model_dump_json(exclude_defaults=True))  # as a worker serves it
    check_worker_view(stored)
    with pytest.raises(ContractError, match="'provenance' is a required property"):
        check_view(stored)
    with pytest.raises(ContractError, match="Additional properties"):
        check_view({**document, "unlisted": True})


def test_strict_means_closed_objects_and_checked_date_times() -> None:
    open_schema = {"type": "object", "properties": {"a": {"type": "string", "format": "date-time"}}}
    strict = Draft202012Validator(closed(open_schema), format_checker=Draft202012Validator.FORMAT_CHECKER)
    assert not strict.is_valid({"a": "2026-01-02T03:04:05Z", "b": 1})
    from tests.contract import FORMATS

    checked = Draft202012Validator(closed(open_schema), format_checker=FORMATS)
    assert checked.is_valid({"a": "2026-01-02T03:04:05.123+01:00"})
    assert not checked.is_valid({"a": "2026-01-02 03:04:05"})  # no offset, no T
    assert not checked.is_valid({"a": "2026-13-02T03:04:05Z"})  # no such month
    tolerant = {**open_schema, "additionalProperties": True}
    assert Draft202012Validator(closed(tolerant)).is_valid({"a": "2026-01-02T03:04:05Z", "b": 1})
