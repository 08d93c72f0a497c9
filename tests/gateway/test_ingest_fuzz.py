"""Hostile client frames against ``IngestConnection.receive`` (tests/hostile.py has the inputs)."""

from __future__ import annotations

import json
import string
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from core.tokens import Claims
from gateway.ingest import Close, Duplicate, IngestConnection, IngestLimits, Recent, Reject, Write
from schemas.callbacks import EventName
from schemas.codec import decode, encode
from schemas.errors import Code
from schemas.records import ClientEvent
from tests.hostile import (
    CLOSES,
    FUZZ,
    INGEST_ERRORS,
    INQ,
    OTHER_INQ,
    json_values,
    messages,
    mutated,
    nested,
)

SEQUENCES = settings(FUZZ, max_examples=2_000)  # ~38,000 messages: most sequences are long runs

SESSIONS = ("sess_alpha_01", "sess_bravo_02", "sess_charlie_3")
AT = datetime(2026, 1, 1, tzinfo=UTC)
FINAL_FRAME = json.dumps(
    {"type": "callback", "session": "sess_final_99", "seq": 0, "ts": 1, "callback": {"kind": "onLoad"}}
)

ID_ALPHABET = string.ascii_letters + string.digits + "_-"
inquiry_ids = st.sampled_from([INQ, OTHER_INQ]) | st.text(ID_ALPHABET, min_size=1, max_size=100).map("inq_".__add__)
short_texts = st.text(min_size=1, max_size=200)
field_values = (
    st.none() | st.text(max_size=12) | st.fixed_dictionaries({"type": short_texts}, optional={"value": json_values})
)
callbacks = st.one_of(
    st.just({"kind": "onLoad"}),
    st.just({"kind": "onReady"}),
    st.fixed_dictionaries(
        {"kind": st.just("onEvent"), "name": st.sampled_from([e.value for e in EventName]) | short_texts},
        optional={
            "metadata": st.none()
            | st.dictionaries(st.text(max_size=8), json_values, max_size=4)
            | inquiry_ids.map(lambda inquiry: {"inquiryId": inquiry})
        },
    ),
    st.fixed_dictionaries(
        {"kind": st.just("onComplete"), "inquiryId": inquiry_ids, "status": short_texts},
        optional={"fields": st.dictionaries(st.text(max_size=8), field_values, max_size=4)},
    ),
    st.fixed_dictionaries(
        {"kind": st.just("onCancel")}, optional={"inquiryId": inquiry_ids, "sessionToken": st.text(min_size=1)}
    ),
    st.fixed_dictionaries(
        {"kind": st.just("onError"), "status": st.integers(-1, 999), "code": short_texts},
        optional={"message": st.none() | st.text(max_size=2000)},
    ),
)
frames = st.fixed_dictionaries(
    {
        "type": st.just("callback"),
        "session": st.sampled_from(SESSIONS),
        "seq": st.integers(0, 5) | st.integers(0, 2**53 - 1),
        "ts": st.integers(0, 2**53 - 1),
        "callback": callbacks,
    },
    optional={"inquiry": st.none() | inquiry_ids},
)
other_frames = st.fixed_dictionaries(
    {"type": st.sampled_from(["auth", "subscribe", "unsubscribe", "ack", "telemetry", "", "Callback"])},
    optional={"token": st.text(max_size=20), "id": st.text(max_size=8), "seq": st.integers()},
)
client_messages = st.one_of(
    st.binary(max_size=256),
    st.text(max_size=256),
    st.text(alphabet=st.characters(categories=["Cs", "Lu", "Nd", "Po"]), max_size=64),  # lone surrogates
    st.builds(
        lambda opener, depth: opener * depth, st.sampled_from(["[", '{"a":', '{"callback":']), st.integers(1, 5000)
    ),
    messages(json_values),
    messages(other_frames),
    messages(frames),
    messages(mutated(frames)),
)
claims = st.sampled_from(
    [Claims("user-42", "ingest", 2_000_000_000), Claims("user-42", "ingest", 2_000_000_000, INQ, "itmpl_1")]
)
origins = st.none() | st.text(st.characters(max_codepoint=0xFF), max_size=64)  # websockets reads ISO-8859-1
limits = st.builds(
    IngestLimits,
    rate_per_second=st.sampled_from([1.0, 10.0, 50.0]),
    rate_burst=st.integers(1, 100),
    max_errors=st.integers(1, 60),
    max_sessions=st.integers(1, 8),
    keep_field_values=st.booleans(),
)


def closing(decision: object) -> Close | None:
    """How client_ws closes the connection on this decision, if it does (nothing after it is read)."""
    if isinstance(decision, Reject):
        return decision.close
    return decision if isinstance(decision, Close) else None


def check_decision(decision: object, limits: IngestLimits) -> None:
    """A decision client_ws knows how to carry out, with documented codes; what it writes, a worker
    can read, and it holds no session token, and no field value unless allowed."""
    if isinstance(decision, Reject):
        assert decision.error.code in INGEST_ERRORS, decision
        if decision.close is not None:
            assert decision.error.code == "rate-limited"
            assert (decision.close.code, decision.close.reason) in CLOSES
    elif isinstance(decision, Close):
        assert (decision.code, decision.reason) in CLOSES, decision
    elif isinstance(decision, Write):
        for record in decision.records:
            raw = encode(record)
            decode(ClientEvent, raw)
            record.key().encode()
            callback = json.loads(raw).get("callback", {})
            assert "sessionToken" not in callback
            if callback.get("kind") == "onComplete" and not limits.keep_field_values:
                stored = callback["fields"].values()
                assert all(value is None or (isinstance(value, dict) and value["value"] is None) for value in stored)
    else:
        assert isinstance(decision, Duplicate), decision


@FUZZ
@given(message=client_messages, claims=claims, origin=origins, keep_field_values=st.booleans())
def test_any_client_message_gets_a_documented_decision(
    message: str | bytes, claims: Claims, origin: str | None, keep_field_values: bool
) -> None:
    rules = IngestLimits(keep_field_values=keep_field_values)
    decision = IngestConnection(claims, origin, rules, Recent(8), now=0.0).receive(message, 0.0, AT)
    event(type(decision).__name__ + (f" {decision.error.code}" if isinstance(decision, Reject) else ""))
    check_decision(decision, rules)


def frame(session: str, seq: Any, callback: dict[str, Any] | None = None, **extra: Any) -> bytes:
    document = {"type": "callback", "session": session, "seq": seq, "ts": 1, "callback": callback or {"kind": "onLoad"}}
    return json.dumps({**document, **extra}).encode()


START = {"kind": "onEvent", "name": "start", "metadata": {"inquiryId": OTHER_INQ}}
CANCEL = {"kind": "onCancel", "sessionToken": "resume-me"}
COMPLETE = {"kind": "onComplete", "inquiryId": INQ, "status": "completed", "fields": {"a": {"type": "t", "value": 1}}}
UNKNOWN_EVENT = {"kind": "onEvent", "name": "brand-new", "metadata": {}}
DEEP = {"kind": "onEvent", "name": "x", "metadata": {"a": nested(300)}}
STEPS: dict[str, Callable[[str, int], str | bytes]] = {  # what a sequence is made of, valid or not
    "valid": lambda session, seq: frame(session, seq),
    "valid-for-the-inquiry": lambda session, seq: frame(session, seq, inquiry=INQ),
    "valid-for-another-inquiry": lambda session, seq: frame(session, seq, inquiry=OTHER_INQ),
    "start-event": lambda session, seq: frame(session, seq, START),
    "cancel-with-session-token": lambda session, seq: frame(session, seq, CANCEL),
    "complete-with-values": lambda session, seq: frame(session, seq, COMPLETE),
    "unknown-event": lambda session, seq: frame(session, seq, UNKNOWN_EVENT),
    "seq-missing": lambda session, seq: json.dumps({"type": "callback", "session": session, "callback": {}}),
    "seq-negative": lambda session, seq: frame(session, -1 - seq),
    "seq-huge": lambda session, seq: frame(session, 2**64 + seq),
    "seq-text": lambda session, seq: frame(session, f"#{seq}"),
    "bad-session": lambda session, seq: frame("x", seq),
    "unknown-kind": lambda session, seq: frame(session, seq, {"kind": "onSubmit"}),
    "unexpected-key": lambda session, seq: frame(session, seq, surprise=True),
    "long-name": lambda session, seq: frame(session, seq, {"kind": "onEvent", "name": "n" * 201}),
    "deep-metadata": lambda session, seq: frame(session, seq, DEEP),
    "unknown-type": lambda session, seq: json.dumps({"type": "telemetry", "seq": seq}),
    "auth-again": lambda session, seq: json.dumps({"type": "auth", "token": "x"}),
    "not-json": lambda session, seq: b"{oops",
    "non-utf8": lambda session, seq: frame(session, seq)[:-2] + b"\xff}}",
    "cut-short": lambda session, seq: frame(session, seq)[:30],
    "not-an-object": lambda session, seq: "[1, 2]",
}
steps = st.tuples(
    st.sampled_from(sorted(STEPS)),
    st.sampled_from(SESSIONS),
    st.integers(0, 8),
    st.integers(1, 30),  # repeated, with seq counting up: long runs of refusals are cheap to draw
    st.sampled_from([0.0, 0.001, 0.02, 1.0]),  # seconds before the run
)


@SEQUENCES
@given(
    runs=st.lists(steps, max_size=12),
    rules=limits,
    claims=claims,
    written=st.sets(st.tuples(st.sampled_from(SESSIONS), st.integers(0, 8)), max_size=4),
)
def test_a_valid_frame_is_taken_after_any_refusals_unless_a_limit_closed_the_connection(
    runs: list[tuple[str, str, int, int, float]], rules: IngestLimits, claims: Claims, written: set[tuple[str, int]]
) -> None:
    recent: Recent[tuple[str, str, int]] = Recent(100)
    for session, seq in written:  # frames this gateway wrote before, on an earlier connection
        recent.add((claims.subject, session, seq))
    connection = IngestConnection(claims, None, rules, recent, now=0.0)
    now = 0.0
    for kind, session, first, repeat, pause in runs:
        now += pause
        for seq in range(first, first + repeat):
            decision = connection.receive(STEPS[kind](session, seq), now, AT)
            check_decision(decision, rules)
            if (close := closing(decision)) is not None:
                event(f"closed: {close.reason}")
                return  # client_ws closes the connection: nothing after it is read
    now += rules.rate_burst / rules.rate_per_second + 1.0  # the client paced itself: the bucket is full
    room = len(connection.sessions) < rules.max_sessions
    decision = connection.receive(FINAL_FRAME, now, AT)
    check_decision(decision, rules)
    if room:
        event("valid frame taken")
        assert isinstance(decision, Write), decision
    else:
        event("valid frame over the session limit")
        assert decision == Close(1008, Code.TOO_MANY_ERRORS) or (
            isinstance(decision, Reject) and decision.error.code == "too-many-sessions"
        )


# --- inputs that once got past the rules (each was a bug; kept as regressions) -----------------


@pytest.mark.parametrize("depth", [198, 250])
def test_metadata_nested_beyond_what_a_worker_can_decode_is_refused(depth: int) -> None:
    rules = IngestLimits()
    message = frame(SESSIONS[0], 0, {"kind": "onEvent", "name": "step", "metadata": {"a": nested(depth)}})
    connection = IngestConnection(Claims("user-42", "ingest", 2_000_000_000), None, rules, Recent(8), now=0.0)
    decision = connection.receive(message, 0.0, AT)
    check_decision(decision, rules)
    assert isinstance(decision, Reject)
    assert decision.error.code == "invalid-json"
