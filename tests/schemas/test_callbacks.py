from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.callbacks import (
    Callback,
    ErrorCode,
    EventName,
    OnCancel,
    OnComplete,
    OnError,
    OnEvent,
    OnLoad,
    OnReady,
    inquiry_id_of,
)
from schemas.codec import decode, encode, to_jsonable
from schemas.errors import SchemaError

INQ = "inq_zEx4jL84ShbUyuwX6AzPSqt6"

# The SDK's enum (persona 5.9.0) and the two names the documentation adds.
SDK_EVENT_NAMES = [
    "exit", "complete", "error", "fail", "load", "ready", "start", "success",
    "document-camera-select", "document-camera-capture", "document-upload",
    "one-time-link-sent", "one-time-link-start", "one-time-link-exit",
    "selfie-camera-select", "selfie-camera-capture", "selfie-record-upload",
    "load-camera-failed", "camera-permissions-check-result", "page-change", "inquiry-load",
    "country-select", "verification-change", "step-transitioning", "click", "form-update",
    "documents-save-successful", "documents-save-fail",
]  # fmt: skip
DOCUMENTED_ERRORS = [
    ("application_error", 0),
    ("invalid_config", 400),
    ("unauthenticated", 409),
    ("inactive_template", 422),
    ("unknown", 500),
]


def parse(document: dict[str, Any]) -> Any:
    return decode(Callback, orjson.dumps(document))


def test_on_load_and_on_ready_take_no_argument() -> None:
    assert parse({"kind": "onLoad"}) == OnLoad()
    assert parse({"kind": "onReady"}) == OnReady()


@pytest.mark.parametrize("name", SDK_EVENT_NAMES)
def test_every_sdk_event_name_is_known(name: str) -> None:
    callback = parse({"kind": "onEvent", "name": name, "metadata": {"a": 1}})
    assert isinstance(callback, OnEvent)
    assert callback.event == EventName(name)
    assert callback.metadata == {"a": 1}


def test_the_enum_holds_exactly_the_reference_names() -> None:
    assert sorted(e.value for e in EventName) == sorted(SDK_EVENT_NAMES)


def test_an_unknown_event_name_is_kept() -> None:
    callback = parse({"kind": "onEvent", "name": "liveness-check-started", "metadata": None})
    assert isinstance(callback, OnEvent)
    assert callback.name == "liveness-check-started"
    assert callback.event is None


def test_start_event_reveals_the_inquiry_id() -> None:
    callback = parse({"kind": "onEvent", "name": "start", "metadata": {"inquiryId": INQ}})
    assert inquiry_id_of(callback) == INQ


def test_a_malformed_inquiry_id_in_metadata_is_not_taken() -> None:
    callback = parse({"kind": "onEvent", "name": "start", "metadata": {"inquiryId": "drop table"}})
    assert inquiry_id_of(callback) is None


@pytest.mark.parametrize(
    "fields",
    [
        {"name-first": {"type": "string", "value": "Jane"}, "birthdate": {"type": "date", "value": None}},
        {"name-first": "Jane"},  # legacy format: a map of strings
        {"name-first": {"type": "string"}},  # value withheld by the bridge
        {},
    ],
    ids=["typed", "legacy", "redacted", "empty"],
)
def test_on_complete_in_both_field_formats(fields: dict[str, Any]) -> None:
    callback = parse({"kind": "onComplete", "inquiryId": INQ, "status": "completed", "fields": fields})
    assert isinstance(callback, OnComplete)
    assert callback.inquiry_id == INQ
    assert inquiry_id_of(callback) == INQ
    assert set(callback.fields) == set(fields)


def test_on_cancel_before_an_inquiry_exists() -> None:
    callback = parse({"kind": "onCancel"})
    assert isinstance(callback, OnCancel)
    assert callback.inquiry_id is None
    assert inquiry_id_of(callback) is None


def test_on_cancel_session_token_is_secret_and_never_serialized() -> None:
    callback = parse({"kind": "onCancel", "inquiryId": INQ, "sessionToken": "tok-secret-123"})
    assert isinstance(callback, OnCancel)
    assert "tok-secret-123" not in repr(callback)
    assert b"tok-secret" not in encode(callback)
    assert callback.redacted().session_token is None


@pytest.mark.parametrize(("code", "status"), DOCUMENTED_ERRORS)
def test_every_documented_error_code_is_known(code: str, status: int) -> None:
    callback = parse({"kind": "onError", "status": status, "code": code, "message": "m"})
    assert isinstance(callback, OnError)
    assert callback.error == ErrorCode(code)


def test_an_unknown_error_code_is_kept() -> None:
    callback = parse({"kind": "onError", "status": 503, "code": "rate_limited"})
    assert isinstance(callback, OnError)
    assert (callback.code, callback.error, callback.message) == ("rate_limited", None, None)


@dataclass
class Malformed:
    id: str
    document: Any
    field: str
    code: str = "invalid-shape"


MALFORMED = [
    Malformed("not-an-object", [], ""),
    Malformed("no-kind", {"name": "start"}, "kind"),
    Malformed("unknown-kind", {"kind": "onSuccess"}, "kind"),
    Malformed("event-without-name", {"kind": "onEvent"}, "name"),
    Malformed("event-empty-name", {"kind": "onEvent", "name": ""}, "name"),
    Malformed("event-name-not-text", {"kind": "onEvent", "name": 7}, "name"),
    Malformed("metadata-not-object", {"kind": "onEvent", "name": "start", "metadata": [1]}, "metadata"),
    Malformed("complete-without-inquiry", {"kind": "onComplete", "status": "completed"}, "inquiryId"),
    Malformed("complete-bad-inquiry", {"kind": "onComplete", "inquiryId": "x", "status": "completed"}, "inquiryId"),
    Malformed("complete-without-status", {"kind": "onComplete", "inquiryId": INQ}, "status"),
    Malformed(
        "complete-fields-not-map",
        {"kind": "onComplete", "inquiryId": INQ, "status": "completed", "fields": ["a"]},
        "fields",
    ),
    Malformed(
        "complete-field-without-type",
        {"kind": "onComplete", "inquiryId": INQ, "status": "completed", "fields": {"a": {"value": 1}}},
        "fields.a.type",
    ),
    Malformed("cancel-inquiry-not-text", {"kind": "onCancel", "inquiryId": 5}, "inquiryId"),
    Malformed("error-without-code", {"kind": "onError", "status": 400}, "code"),
    Malformed("error-status-not-number", {"kind": "onError", "status": "bad", "code": "unknown"}, "status"),
    Malformed("error-without-status", {"kind": "onError", "code": "unknown"}, "status"),
    Malformed("load-with-extra-key", {"kind": "onLoad", "surprise": True}, "surprise"),
]


@pytest.mark.parametrize("case", MALFORMED, ids=[case.id for case in MALFORMED])
def test_malformed_callbacks_are_rejected_naming_the_field(case: Malformed) -> None:
    with pytest.raises(SchemaError) as raised:
        parse(case.document)
    assert raised.value.code == case.code
    assert raised.value.field == case.field


def test_bytes_that_are_not_json() -> None:
    with pytest.raises(SchemaError) as raised:
        decode(Callback, b"{not json")
    assert raised.value.code == "invalid-json"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
inquiry_ids = st.from_regex(r"inq_[A-Za-z0-9_-]{1,30}", fullmatch=True)
short_text = st.text(min_size=1, max_size=40)
callback_documents = st.one_of(
    st.just({"kind": "onLoad"}),
    st.just({"kind": "onReady"}),
    st.fixed_dictionaries(
        {"kind": st.just("onEvent"), "name": short_text},
        optional={"metadata": st.none() | st.dictionaries(st.text(max_size=8), json_values, max_size=4)},
    ),
    st.fixed_dictionaries(
        {
            "kind": st.just("onComplete"),
            "inquiryId": inquiry_ids,
            "status": short_text,
            "fields": st.dictionaries(
                st.text(max_size=8),
                st.none()
                | st.text(max_size=8)
                | st.fixed_dictionaries({"type": short_text}, optional={"value": json_values}),
                max_size=4,
            ),
        }
    ),
    st.fixed_dictionaries({"kind": st.just("onCancel")}, optional={"inquiryId": inquiry_ids}),
    st.fixed_dictionaries(
        {"kind": st.just("onError"), "status": st.integers(-1, 999), "code": short_text},
        optional={"message": st.text(max_size=50)},
    ),
)


@given(callback_documents)
def test_model_json_model_round_trip(document: dict[str, Any]) -> None:
    callback = parse(document)
    again = decode(Callback, encode(callback))
    assert again == callback
    assert to_jsonable(again) == to_jsonable(callback)
