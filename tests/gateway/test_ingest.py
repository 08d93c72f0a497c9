from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from core.tokens import Claims
from gateway.ingest import (
    AckTracker,
    Close,
    Duplicate,
    IngestConnection,
    IngestLimits,
    Recent,
    Refresh,
    Reject,
    TokenBucket,
    Write,
)
from schemas.callbacks import FieldValue, OnCancel, OnComplete
from schemas.errors import Code
from schemas.records import CallbackRecord, SessionLink

INQ = "inq_zEx4jL84ShbUyuwX6AzPSqt6"
SESSION = "sess_0123456789"
AT = datetime(2026, 1, 1, tzinfo=UTC)


def connection(**limits: Any) -> IngestConnection:
    claims = Claims("user-42", "ingest", 2_000_000_000, template_id="itmpl_1")
    return IngestConnection(claims, "https://app.example", IngestLimits(**limits), Recent(100), now=0.0)


def frame(seq: int | None = 1, callback: dict[str, Any] | None = None, **extra: Any) -> bytes:
    document: dict[str, Any] = {"type": "callback", "session": SESSION, "ts": 1_700_000_000_000, **extra}
    if seq is not None:
        document["seq"] = seq
    document["callback"] = callback or {"kind": "onLoad"}
    return orjson.dumps(document)


def send(conn: IngestConnection, message: bytes, at: float = 0.0) -> Any:
    return conn.receive(message, at, AT)


@dataclass
class Case:
    id: str
    message: bytes
    code: str
    field: str | None = None
    seq: int | None = None


BAD = [
    Case("not-json", b"{oops", "invalid-json"),
    Case("not-an-object", b"[1,2]", "invalid-frame", "type"),
    Case("no-type", orjson.dumps({"seq": 1}), "invalid-frame", "type"),
    Case("unknown-type", orjson.dumps({"type": "telemetry", "seq": 1}), "unknown-frame-type", seq=1),
    Case("auth-again", orjson.dumps({"type": "auth", "token": "x"}), "unknown-frame-type"),
    Case("subscribe-on-ingest", orjson.dumps({"type": "subscribe", "id": "1"}), "unknown-frame-type"),
    Case("seq-missing", frame(seq=None), "seq-missing", "seq"),
    Case("seq-negative", frame(seq=-1), "invalid-frame", "seq", seq=-1),
    Case("seq-not-int", orjson.dumps({"type": "callback", "seq": "1"}), "invalid-frame", "session"),
    Case("bad-session", frame(session="x"), "invalid-frame", "session", seq=1),
    Case("bad-callback", frame(callback={"kind": "onComplete"}), "invalid-frame", "callback.inquiryId", seq=1),
    Case("bad-inquiry", frame(inquiry="inq bad"), "invalid-frame", "inquiry", seq=1),
    Case("extra-key", frame(surprise=1), "invalid-frame", "surprise", seq=1),
]


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_bad_frames_are_rejected_with_their_code(case: Case) -> None:
    decision = send(connection(), case.message)
    assert isinstance(decision, Reject)
    assert decision.error.code == case.code
    assert decision.error.field == case.field
    assert decision.error.seq == case.seq


def test_a_valid_frame_becomes_one_record_keyed_by_session_before_the_inquiry_is_known() -> None:
    decision = send(connection(), frame(1))
    assert isinstance(decision, Write)
    [record] = decision.records
    assert isinstance(record, CallbackRecord)
    assert record.key() == f"session:{SESSION}:user-42"
    assert (record.subject, record.template_id, record.origin, record.received_at) == (
        "user-42",
        "itmpl_1",
        "https://app.example",
        AT,
    )


def test_the_start_event_links_the_session_and_later_frames_inherit_the_inquiry() -> None:
    conn = connection()
    send(conn, frame(1))
    start = send(conn, frame(2, {"kind": "onEvent", "name": "start", "metadata": {"inquiryId": INQ}}))
    assert isinstance(start, Write)
    link, record = start.records
    assert isinstance(link, SessionLink)
    assert (link.key(), link.inquiry_id) == (f"session:{SESSION}:user-42", INQ)
    assert record.key() == INQ
    later = send(conn, frame(3, {"kind": "onEvent", "name": "document-upload"}))
    assert isinstance(later, Write)
    assert [r.key() for r in later.records] == [INQ]


def test_a_flow_opened_with_an_inquiry_links_on_its_first_frame() -> None:
    decision = send(connection(), frame(0, inquiry=INQ))
    assert isinstance(decision, Write)
    assert [type(r).__name__ for r in decision.records] == ["SessionLink", "CallbackRecord"]


def test_repeated_and_backward_seqs_are_refused_on_one_connection() -> None:
    conn = connection()
    assert isinstance(send(conn, frame(5)), Write)
    for seq in (5, 4):
        decision = send(conn, frame(seq))
        assert isinstance(decision, Reject)
        assert decision.error.code == "seq-repeated"


def test_a_frame_this_gateway_already_wrote_is_a_duplicate() -> None:
    conn = connection()
    conn.recent.add(("user-42", SESSION, 7))
    assert send(conn, frame(7)) == Duplicate(SESSION, 7)
    assert isinstance(send(conn, frame(8)), Write)


def test_another_subjects_frame_with_the_same_session_and_seq_is_no_duplicate() -> None:
    conn = connection()
    conn.recent.add(("mallory", SESSION, 7))  # another token holder took (session, 7) first
    decision = send(conn, frame(7))
    assert isinstance(decision, Write)
    assert decision.subject == "user-42"


def test_a_session_key_is_the_subjects_own() -> None:
    decision = send(connection(), frame(1))
    assert isinstance(decision, Write)
    assert decision.records[0].key() == f"session:{SESSION}:user-42"


@pytest.mark.parametrize(
    ("inquiry", "callback", "code"),
    [
        ("inq_other", {"kind": "onComplete", "inquiryId": INQ, "status": "completed"}, "inquiry-mismatch"),
        ("inq_other", {"kind": "onCancel", "inquiryId": INQ}, "inquiry-mismatch"),
        ("inq_other", {"kind": "onEvent", "name": "start", "metadata": {"inquiryId": INQ}}, "inquiry-mismatch"),
        (INQ, {"kind": "onComplete", "inquiryId": INQ, "status": "completed"}, None),
        (INQ, {"kind": "onLoad"}, None),
    ],
)
def test_a_frame_whose_inquiry_differs_from_its_callbacks_is_refused(
    inquiry: str, callback: dict[str, Any], code: str | None
) -> None:
    decision = send(connection(), frame(1, callback, inquiry=inquiry))
    if code is None:
        assert isinstance(decision, Write)
    else:
        assert isinstance(decision, Reject)
        assert (decision.error.code, decision.error.field, decision.error.seq) == (code, "inquiry", 1)


def test_a_refresh_frame_is_handed_to_the_io_layer() -> None:
    assert send(connection(), orjson.dumps({"type": "refresh", "token": "abc"})) == Refresh("abc")
    refused = send(connection(), orjson.dumps({"type": "refresh"}))
    assert isinstance(refused, Reject)
    assert (refused.error.code, refused.error.field) == ("invalid-frame", "token")


def test_over_the_rate_limit_the_frame_is_kept_for_a_resend_and_the_connection_closes() -> None:
    conn = connection(rate_per_second=10, rate_burst=2)
    assert isinstance(send(conn, frame(1), 0.0), Write)
    assert isinstance(send(conn, frame(2), 0.0), Write)
    limited = send(conn, frame(3), 0.0)
    assert isinstance(limited, Reject)
    assert (limited.error.code, limited.error.retriable) == ("rate-limited", True)
    assert limited.close == Close(1013, Code.RATE_LIMITED)


def test_too_many_errors_close_the_connection() -> None:
    conn = connection(max_errors=3)
    decisions = [send(conn, b"nope") for _ in range(4)]
    assert [type(d) for d in decisions] == [Reject, Reject, Reject, Close]
    assert decisions[-1] == Close(1008, Code.TOO_MANY_ERRORS)


def test_too_many_sessions_on_one_connection() -> None:
    conn = connection(max_sessions=1)
    assert isinstance(send(conn, frame(1)), Write)
    decision = send(conn, frame(1, session="other_session_1"))
    assert isinstance(decision, Reject)
    assert decision.error.code == "too-many-sessions"


def test_a_token_for_one_inquiry_cannot_send_for_another() -> None:
    claims = Claims("user-42", "ingest", 2_000_000_000, inquiry_id="inq_mine")
    conn = IngestConnection(claims, None, IngestLimits(), Recent(10), now=0.0)
    decision = send(conn, frame(1, inquiry=INQ))
    assert isinstance(decision, Reject)
    assert decision.error.code == "inquiry-forbidden"


def test_session_tokens_are_never_stored_and_field_values_only_when_allowed() -> None:
    cancel = send(connection(), frame(1, {"kind": "onCancel", "inquiryId": INQ, "sessionToken": "secret-tok"}))
    assert isinstance(cancel, Write)
    stored = cancel.records[-1]
    assert isinstance(stored, CallbackRecord)
    assert isinstance(stored.callback, OnCancel)
    assert stored.callback.session_token is None
    complete = {
        "kind": "onComplete",
        "inquiryId": INQ,
        "status": "completed",
        "fields": {"name": {"type": "string", "value": "Jane"}},
    }
    redacted = send(connection(), frame(1, complete))
    kept = send(connection(keep_field_values=True), frame(1, complete))
    assert isinstance(redacted, Write)
    assert isinstance(kept, Write)
    redacted_callback = redacted.records[-1].callback  # type: ignore[union-attr]
    kept_callback = kept.records[-1].callback  # type: ignore[union-attr]
    assert isinstance(redacted_callback, OnComplete)
    assert isinstance(kept_callback, OnComplete)
    assert redacted_callback.fields == {"name": FieldValue(type="string")}
    assert kept_callback.fields == {"name": FieldValue(type="string", value="Jane")}


def test_acks_are_cumulative_and_wait_for_the_oldest_pending_write() -> None:
    tracker = AckTracker()
    first, second = tracker.add("a", 1), tracker.add("a", 2)
    tracker.add("a", 3, done=True)  # rejected at once
    tracker.complete(second)
    assert tracker.ready() == []
    tracker.complete(first)
    assert tracker.ready() == [("a", 3, 2)]
    assert len(tracker) == 0


def test_acks_are_per_session() -> None:
    tracker = AckTracker()
    tracker.complete(tracker.add("a", 1))
    tracker.complete(tracker.add("b", 9))
    assert sorted(tracker.ready()) == [("a", 1, 1), ("b", 9, 1)]


def test_token_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    bucket = TokenBucket(rate=2, burst=2, now=0)
    assert [bucket.take(0) for _ in range(3)] == [True, True, False]
    assert bucket.take(0.5)
    assert not bucket.take(0.5)
    assert [bucket.take(100) for _ in range(3)] == [True, True, False]


def test_recent_forgets_the_least_recent_first() -> None:
    recent: Recent[int] = Recent(2)
    for key in (1, 2, 1, 3):
        recent.add(key)
    assert (1 in recent, 2 in recent, 3 in recent) == (True, False, True)
