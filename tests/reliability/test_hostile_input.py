"""Hostile input against the pure cores: every answer is a documented one, and nothing escapes.

==========================  ==============================================  ======================================
target                      what is sent                                    what must hold
==========================  ==============================================  ======================================
``IngestConnection.         any bytes or text, any JSON, valid frames with  a Write, Duplicate, Reject or Close;
receive``                   one to three things broken (a key deleted or    every code listed in docs/protocol.md;
                            added, a wrong type, a huge number, a long      what is written decodes for a worker,
                            string, nested garbage), bad UTF-8, cut short,  holds no session token, and no field
                            a key repeated; sequences under drawn limits    value unless allowed; after any
                                                                            refusals a valid frame is still taken
                                                                            unless a documented limit closed
``signatures.verify``       headers of 1-4 groups: this body signed with a  accepted only for a configured secret
                            configured secret, another secret, another      within the tolerance; a fresh group
                            body, old or future timestamps, broken groups;  of a configured secret always is;
                            random ASCII headers                            every refusal a documented code
``decode(WebhookEvent)``    random bytes and JSON, Persona's envelopes      an event with a Kafka key, or a
                            mutated                                         SchemaError (dead-lettered)
``POST /v1/webhooks/        the same over HTTP (aiohttp on 127.0.0.1), a    a documented status and code; no 5xx
persona``                   publisher that may fail                         but 503 when Kafka fails; nothing
                                                                            unverified reaches Kafka
``TokenAuthority.verify``   a genuine token with characters changed,        only the genuine bytes open; every
                            inserted, removed; the attacks of the table     refusal a documented code
==========================  ==============================================  ======================================

Examples: 10,000 client messages; 2,000 sequences (about 38,000 more messages, most runs cut short
by a limit); 10,000 webhooks; 500 webhook requests over HTTP; 3,000 edited tokens beside the table of
token attacks. Derandomized, with no example database: CI runs the same cases every time, in under a
minute on two cores. Inputs that once got past the rules are kept as regressions at the end.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import copy
import hashlib
import hmac
import json
import re
import string
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy as Strategy
from jwt.utils import base64url_decode, base64url_encode
from pydantic import SecretStr

from core.settings import Settings
from core.tokens import Claims, Scope, TokenAuthority, TokenError
from core.topics import TopicPlan
from gateway.app import Gateway, create_gateway
from gateway.ingest import Close, Duplicate, IngestConnection, IngestLimits, Recent, Reject, Write
from gateway.publisher import Message, PublishError
from gateway.signatures import SignatureError, sign, verify
from gateway.webhook_receiver import PATH
from schemas.callbacks import EventName
from schemas.codec import decode, encode
from schemas.errors import Code, SchemaError
from schemas.records import ClientEvent, DeadLetter
from schemas.webhooks import InquiryObject, WebhookEvent
from tests.fixtures.webhooks import DOCUMENTED_EXAMPLE, inquiry_event, object_event

FUZZ = settings(
    max_examples=10_000,
    deadline=None,
    derandomize=True,  # the same cases on every run; no example database
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
SEQUENCES = settings(FUZZ, max_examples=2_000)  # ~38,000 messages: most sequences are long runs
TOKEN_EDITS = settings(FUZZ, max_examples=3_000)  # the table below holds the attacks; this, the rest
OVER_HTTP = settings(FUZZ, max_examples=500)

# --- what docs/protocol.md lists -----------------------------------------------------------------

PROTOCOL = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()


def table(heading: str) -> list[list[str]]:
    """The body rows of the first table after ``heading`` in docs/protocol.md, cell by cell."""
    rows: list[list[str]] = []
    for line in PROTOCOL.split(f"\n{heading}\n", 1)[1].splitlines():
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            break
    return rows[2:]


def codes(cell: str) -> list[str]:
    return re.findall(r"`([a-z0-9-]+)`", cell)


INGEST_ERRORS = {code for row in table("### Error frames") for code in codes(row[0])}
CLOSES = {(int(row[0]), code) for row in table("### Close codes") for code in codes(row[1])}
WEBHOOK_ANSWERS = {(int(row[0]), code) for row in table("## `POST /v1/webhooks/persona`") for code in codes(row[1])}
DEAD_LETTER_REASONS = {code for row in table("## Dead letters") for code in codes(row[0])}
SIGNATURE_CODES = {code for status, code in WEBHOOK_ANSWERS if status == 401}
TOKEN_CODES = {code for _, code in CLOSES if code.startswith("token-")}


def test_the_documented_codes_are_found() -> None:
    assert {"invalid-json", "invalid-frame", "seq-repeated", "rate-limited"} <= INGEST_ERRORS
    assert {(1008, "too-many-errors"), (1013, "rate-limited")} <= CLOSES
    assert {(503, "kafka-unavailable"), (202, "dead-lettered")} <= WEBHOOK_ANSWERS
    assert {"signature-missing", "signature-malformed", "signature-mismatch", "signature-expired"} == SIGNATURE_CODES
    assert {"token-missing", "token-invalid", "token-expired", "token-scope"} == TOKEN_CODES
    assert {"webhook-invalid-json", "webhook-invalid-shape"} <= DEAD_LETTER_REASONS


# --- hostile documents, shared by every target ---------------------------------------------------

leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=16)
json_values = (  # two levels at most: deeper garbage comes from nested() and raw "[[[[" text, for speed
    leaves
    | st.lists(leaves, max_size=3)
    | st.dictionaries(st.text(max_size=8), leaves | st.lists(leaves, max_size=3), max_size=3)
)
EXTREMES: list[Any] = [-1, 2**53 - 1, 2**53, 2**63, 2**64, -(2**63) - 1, 10**30, 1e308, -0.0, 0.5]
EXTREMES += [float("inf"), float("nan"), True, False, "0", "", "onSubmit", "ONLOAD", "auth", "inq_ x"]


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for level in range(depth):
        value = [value] if level % 2 else {"a": value}
    return value


hostile_values: Strategy[Any] = st.one_of(
    json_values,
    st.sampled_from(EXTREMES),
    st.builds(list) | st.builds(dict),
    st.builds(lambda char, n: char * n, st.characters(), st.integers(60, 20_000)),  # very long strings
    st.integers(1, 260).map(nested),  # nested garbage, to beyond the JSON parser's depth limit
)


def containers(document: Any) -> list[Any]:
    """Every dict and list inside a document, the document itself first."""
    found, stack = [], [document]
    while stack:
        node = stack.pop()
        if isinstance(node, dict | list):
            found.append(node)
            stack.extend(node.values() if isinstance(node, dict) else node)
    return found


# Strategies are built once, here: a strategy built inside a draw costs hypothesis a validation
# each time, and that doubled the run time. Positions are drawn as INDEX % length.
INDEX = st.integers(0, 2**16)
ONE_TO_THREE = st.integers(1, 3)
ACTIONS = st.sampled_from(["delete", "replace", "add"])
NEW_KEYS = st.text(max_size=12)
BAD_UTF8 = st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\x00"])
REPEATED_KEYS = st.sampled_from([b'"seq":-1,', b'"seq":2,', b'"type":"auth",', b'"session":"x",', b'"data":1,'])
FORMS = st.sampled_from(
    [(form, ascii) for form in ("text", "bytes", "non-utf8", "truncated", "repeated-key") for ascii in (True, False)]
)


@st.composite
def mutated(draw: st.DrawFn, documents: st.SearchStrategy[Any]) -> Any:
    """A valid document with one to three things broken: a key or item deleted, a value replaced
    by a hostile one (wrong type, extreme number, long string, nested garbage), a key added."""
    document = copy.deepcopy(draw(documents))
    for _ in range(draw(ONE_TO_THREE)):
        nodes = containers(document)
        node = nodes[draw(INDEX) % len(nodes)]
        action = draw(ACTIONS)
        value = draw(hostile_values)  # a fresh object on every draw
        if isinstance(node, dict):
            keys = sorted(node)
            key = keys[draw(INDEX) % len(keys)] if keys and action != "add" else draw(NEW_KEYS)
            if action == "delete":
                node.pop(key, None)
            else:
                node[key] = value
        elif node and action != "add":
            index = draw(INDEX) % len(node)
            if action == "delete":
                del node[index]
            else:
                node[index] = value
        else:
            node.append(value)
    return document


@st.composite
def messages(draw: st.DrawFn, documents: st.SearchStrategy[Any]) -> str | bytes:
    """A document as a message: text or bytes, sometimes with bad UTF-8 inside, cut short, or with
    a key repeated in front (NaN and huge integers are written as Python's json writes them)."""
    form, ensure_ascii = draw(FORMS)
    text = json.dumps(draw(documents), ensure_ascii=ensure_ascii)
    data = text.encode("utf-8", "surrogatepass")
    if form == "text":
        return text
    if form == "non-utf8":
        cut = draw(INDEX) % (len(data) + 1)
        return data[:cut] + draw(BAD_UTF8) + data[cut:]
    if form == "truncated":
        return data[: draw(INDEX) % (len(data) + 1)]
    if form == "repeated-key":
        return data.replace(b"{", b"{" + draw(REPEATED_KEYS), 1)
    return data


def as_bytes(message: str | bytes) -> bytes:
    return message.encode("utf-8", "surrogatepass") if isinstance(message, str) else message


# --- client frames -------------------------------------------------------------------------------

SESSIONS = ("sess_alpha_01", "sess_bravo_02", "sess_charlie_3")
INQ, OTHER_INQ = "inq_zEx4jL84ShbUyuwX6AzPSqt6", "inq_someoneElse01"
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


# --- webhooks: signatures and bodies ------------------------------------------------------------

CURRENT, PREVIOUS, ATTACKER = b"wbhsec_current_4f1c9e", b"wbhsec_previous_9a2b7d", b"wbhsec_attacker_00000"
NOW, TOLERANCE = 1_800_000_000, 300
SKEWS = [-TOLERANCE - 1, TOLERANCE + 1, -TOLERANCE, TOLERANCE, -86_400, 3_600, -NOW + 1, 10**9]
FRESH_SKEWS = st.integers(-TOLERANCE, TOLERANCE)
skews = FRESH_SKEWS | st.sampled_from(SKEWS)
VARIANTS = ["persona", "upper-case", "reordered", "extra-parts", "leading-zero"]  # still the secret's signature
BROKEN = ["no-v1", "no-t", "t-not-digits", "t-too-long", "v1-short", "v1-changed", "t-changed", "semicolons"]


@dataclass(frozen=True)
class Header:
    text: str
    genuine: frozenset[int] = frozenset()  # timestamps of groups a configured secret signed over this body
    persona: frozenset[int] = frozenset()  # ... of those, exactly as Persona writes them
    foreign: bool = False  # a group as Persona writes it, but signed with another secret or over another body


def broken(group: str, form: str) -> str:
    t, v1 = group.split(",")
    stamp, digest = t.removeprefix("t="), v1.removeprefix("v1=")
    return {
        "no-v1": t,
        "no-t": v1,
        "t-not-digits": f"t=+{stamp},{v1}",
        "t-too-long": f"t={stamp.zfill(13)},{v1}",
        "v1-short": f"{t},v1={digest[:63]}",
        "v1-changed": f"{t},v1={digest[:-1]}{'0' if digest[-1] != '0' else '1'}",
        "t-changed": f"t={int(stamp) + 1},{v1}",  # the timestamp is part of what is signed
        "semicolons": f"{t};{v1}",
    }[form]


GROUPS = [
    (secret, other, form)
    for secret in (CURRENT, PREVIOUS, ATTACKER)
    for other in (False, True)
    for form in VARIANTS + BROKEN
]


GROUP_COUNT = st.integers(1, 4)
GROUP_KINDS = st.sampled_from(GROUPS)


def signature_header(draw: st.DrawFn, body: bytes, configured: tuple[bytes, ...], separators: Strategy[str]) -> Header:
    """One to four ``t=…,v1=…`` groups (a rotation), each signed with some secret, at some time,
    over this body or another, written as Persona does or not."""
    groups, genuine, persona, foreign = [], set(), set(), False
    for _ in range(draw(GROUP_COUNT)):
        timestamp = NOW + draw(skews)
        secret, other_body, form = draw(GROUP_KINDS)
        group = sign(secret, timestamp, body + b"\n" if other_body else body)
        if form == "upper-case":
            group = f"t={timestamp},v1={group.split('v1=')[1].upper()}"
        elif form == "reordered":
            group = ",".join(reversed(group.split(",")))
        elif form == "extra-parts":
            group = f"v0={'0' * 64},{group},v1={'f' * 64},x=y"
        elif form == "leading-zero":
            group = group.replace("t=", "t=0", 1)
        elif form in BROKEN:
            group = broken(group, form)
        if form in VARIANTS and secret in configured and not other_body:
            genuine.add(timestamp)
            persona.update([timestamp] if form == "persona" else [])
        foreign = foreign or (form == "persona" and (secret not in configured or other_body))
        groups.append(group)
    return Header(draw(separators).join(groups), frozenset(genuine), frozenset(persona), foreign)


def random_headers(alphabet: str) -> Strategy[Header]:
    pieces = st.sampled_from(["t=", "v1=", ",", " ", "=", str(NOW), "0" * 64, "a" * 64]) | st.text(alphabet, max_size=8)
    return st.lists(pieces, max_size=6).map(lambda parts: Header("".join(parts)))


CREATED_AT = ["2024-02-15T23:48:17.732Z", "2024-02-15T23:48:17+02:00", "2024-02-15", "yesterday"]
ENVELOPES = [  # Persona's envelopes, built once: drawing them field by field is slow
    DOCUMENTED_EXAMPLE,
    *(
        inquiry_event(f"evt_{name}_{status}_{at[:12]}", name, status, at, inquiry_id=inquiry, reference_id=reference)
        for name in ("inquiry.created", "inquiry.completed", "inquiry.brand-new")
        for status in ("pending", "approved", "unheard-of")
        for at in CREATED_AT
        for inquiry, reference in ((INQ, "user-42"), (OTHER_INQ, None), ("inq_" + "x" * 100, ""))
    ),
    *(
        object_event(f"evt_{kind}_{at[:12]}", name, kind, f"{kind[:3]}_1", at, inquiry_id=inquiry)
        for name, kind in (("verification.passed", "verification/government-id"), ("case.created", "case"))
        for at in CREATED_AT
        for inquiry in (INQ, "not-an-inquiry")
    ),
]
envelopes = st.sampled_from(ENVELOPES)
webhook_bodies = st.one_of(
    st.binary(max_size=512),
    messages(json_values).map(as_bytes),
    messages(envelopes).map(as_bytes),
    messages(mutated(envelopes)).map(as_bytes),
)
ROTATIONS = [(CURRENT,), (CURRENT, PREVIOUS), (PREVIOUS, CURRENT)]


@dataclass(frozen=True)
class Webhook:
    body: bytes
    configured: tuple[bytes, ...]  # the webhook secrets of the gateway
    header: Header | None  # None: no Persona-Signature header at all


@st.composite
def webhooks(
    draw: st.DrawFn,
    bodies: Strategy[bytes],
    rotations: Strategy[tuple[bytes, ...]],
    kinds: Strategy[str],
    separators: Strategy[str],
    random: Strategy[Header],
) -> Webhook:
    """A body and a header: none, one group signed now as Persona does, 1-4 groups of any sort, or
    random text."""
    body, configured, kind = draw(bodies), draw(rotations), draw(kinds)
    if kind == "none":
        return Webhook(body, configured, None)
    if kind == "persona":
        timestamp = NOW + draw(FRESH_SKEWS)
        text = sign(configured[draw(INDEX) % len(configured)], timestamp, body)
        return Webhook(body, configured, Header(text, frozenset([timestamp]), frozenset([timestamp])))
    header = draw(random) if kind == "random" else signature_header(draw, body, configured, separators)
    return Webhook(body, configured, header)


def fresh(timestamps: frozenset[int]) -> set[int]:
    return {t for t in timestamps if abs(t - NOW) <= TOLERANCE}


@FUZZ
@given(
    webhook=webhooks(
        webhook_bodies,
        rotations=st.sampled_from(ROTATIONS),
        kinds=st.sampled_from(["none", "persona", "groups", "groups", "random"]),
        separators=st.sampled_from([" ", "  ", "\t", " \n "]),
        random=random_headers(string.printable + "\x00\x85"),
    )
)
def test_any_webhook_is_verified_and_classified_with_documented_codes(webhook: Webhook) -> None:
    """What WebhookReceiver.handle does before Kafka: verify the signature, then decode the body."""
    header = webhook.header or Header("")
    try:
        outcome: int | str = verify(
            None if webhook.header is None else header.text,
            webhook.body,
            list(webhook.configured),
            now=NOW,
            tolerance=TOLERANCE,
        )
    except SignatureError as exc:
        outcome = exc.code
    if isinstance(outcome, int):
        assert outcome in fresh(header.genuine), "accepted without a fresh signature of a configured secret"
    else:
        assert outcome in SIGNATURE_CODES
        assert not fresh(header.persona), "a fresh group of a configured secret was refused"
        if header.genuine and header.genuine == header.persona:
            assert outcome == "signature-expired"  # a replay: genuine, but too old (or from the future)
        if not header.genuine and header.foreign:
            assert outcome == "signature-mismatch"  # signed, but not with a configured secret
    try:
        parsed: WebhookEvent | SchemaError = decode(WebhookEvent, webhook.body)
    except SchemaError as exc:
        parsed = exc
    event(f"{'accepted' if isinstance(outcome, int) else outcome}, {getattr(parsed, 'code', 'event')}")
    if isinstance(parsed, SchemaError):  # dead-lettered
        assert parsed.code in ("invalid-json", "invalid-shape")
        assert isinstance(parsed.field, str)
        return
    key = parsed.inquiry_id()  # the Kafka key
    assert key.encode()
    assert parsed.event_id.encode()
    if isinstance(parsed.object, InquiryObject):
        assert key == parsed.object.id


# --- the webhook endpoint over HTTP --------------------------------------------------------------

MAX_BODY = 4096
DELIVERY_HEADERS = [
    "Persona-Webhook-Attempts-Made",
    "Persona-Webhook-Attempts-Left",
    "Persona-Webhook-First-Attempted-At",
]
Client = TestClient[web.Request, web.Application]


class MemoryPublisher:
    """The Publisher protocol in memory; ``failing`` makes a send fail as a Kafka timeout does."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.failing = False

    @property
    def healthy(self) -> bool:
        return not self.failing

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, messages: Sequence[Message]) -> None:
        if self.failing:
            raise PublishError("Kafka did not confirm the write (simulated)")
        self.sent.extend(messages)


@contextlib.contextmanager
def webhook_endpoint(publisher: MemoryPublisher) -> Iterator[tuple[asyncio.Runner, Client, Gateway]]:
    """The gateway's HTTP routes, as create_gateway wires them, on 127.0.0.1 (no Kafka)."""
    secrets = [SecretStr(secret.decode()) for secret in (CURRENT, PREVIOUS)]
    configuration = Settings(token_secret=SecretStr("t" * 32), webhook_secrets=secrets, webhook_max_bytes=MAX_BODY)
    gateway = create_gateway(configuration, publisher)
    gateway.receiver.clock = lambda: float(NOW)
    app = web.Application(client_max_size=MAX_BODY + 1)
    gateway.add_http_routes(app)

    async def start() -> Client:
        client: Client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        return client

    with asyncio.Runner() as runner:
        client = runner.run(start())
        try:
            yield runner, client, gateway
        finally:
            runner.run(client.close())


@dataclass(frozen=True)
class WebhookRequest:
    webhook: Webhook
    delivery: dict[str, str]  # Persona's delivery headers
    chunked: bool  # no Content-Length: the size limit is checked while reading
    kafka_down: bool


def renumbered(document: dict[str, Any], number: int) -> bytes:
    """An envelope under another event id: a new event, not a retry."""
    return json.dumps({"data": {**document["data"], "id": f"evt_http_{number}"}}).encode()


OVERSIZED = st.binary(min_size=MAX_BODY + 1, max_size=MAX_BODY + 600)
RENUMBERED = st.builds(renumbered, envelopes, INDEX)
BODY_KINDS = st.sampled_from(["fuzzed", "envelope", "envelope", "oversized"])


@st.composite
def http_bodies(draw: st.DrawFn) -> bytes:
    kind = draw(BODY_KINDS)
    return draw(webhook_bodies if kind == "fuzzed" else RENUMBERED if kind == "envelope" else OVERSIZED)


HTTP_WEBHOOKS = webhooks(
    http_bodies(),
    rotations=st.just((CURRENT, PREVIOUS)),
    kinds=st.sampled_from(["none", "persona", "persona", "persona", "groups", "random"]),  # mostly verified
    separators=st.sampled_from([" ", "  "]),
    random=random_headers(string.ascii_letters + string.digits + string.punctuation + " "),  # what HTTP carries
)
DELIVERY = st.dictionaries(
    st.sampled_from(DELIVERY_HEADERS), st.text(string.ascii_letters + string.digits + ":.-", min_size=1, max_size=30)
)
KAFKA_DOWN = st.sampled_from([False, False, False, True])
webhook_requests = st.builds(WebhookRequest, HTTP_WEBHOOKS, DELIVERY, st.booleans(), KAFKA_DOWN)


async def chunks(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), 1000):
        yield body[start : start + 1000]


@dataclass(frozen=True)
class Answer:
    status: int
    code: str | None
    retry_after: str | None


async def post(client: Client, request: WebhookRequest) -> Answer:
    webhook, headers = request.webhook, dict(request.delivery)
    if webhook.header is not None:
        headers["Persona-Signature"] = webhook.header.text
    data = chunks(webhook.body) if request.chunked else webhook.body
    async with client.post(PATH, data=data, headers=headers) as response:
        text = await response.text()
        code = json.loads(text).get("code") if response.content_type == "application/json" else None
        return Answer(response.status, code, response.headers.get("Retry-After"))


def check_answer(request: WebhookRequest, answer: Answer, sent: list[Message], topics: TopicPlan) -> None:
    """A documented answer; Kafka gets the verified body byte for byte, or a dead letter, or nothing."""
    webhook, status, code = request.webhook, answer.status, answer.code
    header = webhook.header or Header("")
    assert (status, code) in WEBHOOK_ANSWERS
    if status >= 500:
        assert (status, code, answer.retry_after) == (503, "kafka-unavailable", "5")
        assert request.kafka_down
    verified = status not in (401, 413)
    if len(webhook.body) > MAX_BODY:
        assert (status, code) == (413, "body-too-large")
    elif fresh(header.persona):
        assert verified
    if not verified:
        assert sent == []  # nothing unverified reaches Kafka
        return
    assert fresh(header.genuine)
    try:
        parsed = decode(WebhookEvent, webhook.body)
    except SchemaError:
        if request.kafka_down:
            assert (status, code) == (503, "kafka-unavailable")
            return
        assert (status, code) == (202, "dead-lettered")
        [letter] = sent
        record = decode(DeadLetter, letter.value)
        assert letter.topic == topics.dead_letters.name
        assert record.reason in DEAD_LETTER_REASONS
        assert binascii.a2b_base64(record.value_b64) == webhook.body
        return
    if code == "duplicate":  # this gateway wrote the event id before (another example sent it)
        assert (status, sent) == (200, [])
    elif request.kafka_down:
        assert (status, code) == (503, "kafka-unavailable")
    else:
        assert (status, code) == (200, "accepted")
        [message] = sent
        assert (message.topic, message.key, message.value) == (
            topics.webhooks.name,
            parsed.inquiry_id().encode(),
            webhook.body,  # byte for byte
        )
        delivered = {name.lower(): value.encode() for name, value in request.delivery.items()}
        assert delivered.items() <= dict(message.headers or []).items()


def test_the_webhook_endpoint_answers_hostile_requests_with_documented_codes() -> None:
    publisher = MemoryPublisher()
    with webhook_endpoint(publisher) as (runner, client, gateway):

        @OVER_HTTP
        @given(request=webhook_requests)
        def check(request: WebhookRequest) -> None:
            publisher.sent.clear()
            publisher.failing = request.kafka_down
            answer = runner.run(post(client, request))
            event(f"{answer.status} {answer.code}")
            check_answer(request, answer, publisher.sent, gateway.topics)

        check()


# --- tokens --------------------------------------------------------------------------------------

SECRET = b"k" * 32
AUTHORITY = TokenAuthority(SECRET)
CLAIMS: dict[str, Any] = {"sub": "user-42", "scope": "ingest", "exp": NOW + 900}
GENUINE = AUTHORITY.mint("user-42", "ingest", 900, inquiry_id=INQ, now=NOW)


def segment(data: bytes) -> str:
    return base64url_encode(data).decode()


def forge(
    header: dict[str, Any] | bytes, claims: dict[str, Any] | bytes, key: bytes = SECRET, digest: str = "sha256"
) -> str:
    """A token with any header and claims, signed with HMAC over exactly those segments."""
    head = segment(header if isinstance(header, bytes) else json.dumps(header).encode())
    body = segment(claims if isinstance(claims, bytes) else json.dumps(claims).encode())
    signature = hmac.new(key, f"{head}.{body}".encode(), getattr(hashlib, digest)).digest()
    return f"{head}.{body}.{segment(signature)}"


def resigned(token: str, header: dict[str, Any]) -> str:
    """``token`` with another header, its signature kept."""
    _, body, signature = token.split(".")
    return f"{segment(json.dumps(header).encode())}.{body}.{signature}"


HS256 = {"alg": "HS256", "typ": "JWT"}
ATTACKER_KEY = b"a" * 32


@dataclass(frozen=True)
class TokenCase:
    id: str
    token: str
    code: str
    allowed: tuple[Scope, ...] = ("ingest",)


TOKEN_CASES = [
    TokenCase("alg-none-signature-kept", forge({"alg": "none"}, CLAIMS), "token-invalid"),
    TokenCase("alg-None-unsigned", forge({"alg": "None"}, CLAIMS).rsplit(".", 1)[0] + ".", "token-invalid"),
    TokenCase("alg-missing", forge({"typ": "JWT"}, CLAIMS), "token-invalid"),
    TokenCase("hs512-header-hs256-signature", forge({"alg": "HS512"}, CLAIMS), "token-invalid"),
    TokenCase("rs256-header-hs256-signature", forge({"alg": "RS256"}, CLAIMS), "token-invalid"),
    TokenCase("hs512-right-secret", forge({"alg": "HS512"}, CLAIMS, digest="sha512"), "token-invalid"),
    TokenCase("hs384-right-secret", forge({"alg": "HS384"}, CLAIMS, digest="sha384"), "token-invalid"),
    TokenCase("header-swapped-signature-kept", resigned(GENUINE, {"alg": "HS256", "kid": "x"}), "token-invalid"),
    TokenCase(
        "jwk-of-the-attacker",
        forge({**HS256, "jwk": {"kty": "oct", "k": "YWFh"}}, CLAIMS, ATTACKER_KEY),
        "token-invalid",
    ),
    TokenCase("critical-extension", forge({**HS256, "crit": ["exp"]}, CLAIMS), "token-invalid"),
    TokenCase(
        "payload-reserialised",
        ".".join(
            [GENUINE.split(".")[0], segment(base64url_decode(GENUINE.split(".")[1]) + b" "), GENUINE.split(".")[2]]
        ),
        "token-invalid",
    ),
    TokenCase(
        "signature-of-another-token",
        GENUINE.rsplit(".", 1)[0] + "." + AUTHORITY.mint("user-42", "ingest", 901, now=NOW).split(".")[2],
        "token-invalid",
    ),
    TokenCase(
        "not-yet-valid-by-the-wall-clock", forge(HS256, {**CLAIMS, "nbf": time.time() + 86_400}), "token-invalid"
    ),
    TokenCase("other-audience", forge(HS256, {**CLAIMS, "aud": "another-service"}), "token-invalid"),
    TokenCase("expires-now", forge(HS256, {**CLAIMS, "exp": NOW}), "token-expired"),
    TokenCase("expired-long-ago", forge(HS256, {**CLAIMS, "exp": 0}), "token-expired"),
    TokenCase("exp-minus-infinity", forge(HS256, b'{"sub":"u","scope":"ingest","exp":-Infinity}'), "token-invalid"),
    TokenCase("exp-a-string", forge(HS256, {**CLAIMS, "exp": str(NOW + 900)}), "token-invalid"),
    TokenCase("exp-a-boolean", forge(HS256, {**CLAIMS, "exp": True}), "token-invalid"),
    TokenCase("exp-null", forge(HS256, {**CLAIMS, "exp": None}), "token-invalid"),
    TokenCase("sub-a-number", forge(HS256, {**CLAIMS, "sub": 42}), "token-invalid"),
    TokenCase("sub-too-long", forge(HS256, {**CLAIMS, "sub": "u" * 201}), "token-invalid"),
    TokenCase("scope-a-list", forge(HS256, {**CLAIMS, "scope": ["ingest"]}), "token-invalid"),
    TokenCase("firehose-at-ingest", forge(HS256, {**CLAIMS, "scope": "firehose"}), "token-scope"),
    TokenCase("ingest-at-subscribe", GENUINE, "token-scope", ("subscribe", "firehose")),
    TokenCase("analytics-at-subscribe", forge(HS256, {**CLAIMS, "scope": "analytics"}), "token-scope", ("subscribe",)),
    TokenCase("two-segments", GENUINE.rsplit(".", 1)[0], "token-invalid"),
    TokenCase("signature-stripped", GENUINE.rsplit(".", 1)[0] + ".", "token-invalid"),
    TokenCase("four-segments", GENUINE + ".e30", "token-invalid"),
    TokenCase("five-segments-jwe", "e30.e30.e30.e30.e30", "token-invalid"),
    TokenCase("not-base64", "!!!.@@@.###", "token-invalid"),
    TokenCase("non-ascii", "é.é.é", "token-invalid"),
    TokenCase("header-not-json", forge(b"hello", CLAIMS), "token-invalid"),
    TokenCase("header-a-json-array", forge(b"[]", CLAIMS), "token-invalid"),
    TokenCase("payload-not-json", forge(HS256, b"hello"), "token-invalid"),
    TokenCase("payload-a-json-array", forge(HS256, b'["ingest"]'), "token-invalid"),
    TokenCase("huge-garbage", "eyJ" * 400_000, "token-invalid"),
    TokenCase("huge-wrong-key", forge(HS256, {**CLAIMS, "pad": "x" * 1_000_000}, ATTACKER_KEY), "token-invalid"),
]
# Signed with the real secret, so only a faulty backend could mint them -- refused all the same:
TOKEN_NON_FINITE = [
    TokenCase("exp-nan", forge(HS256, b'{"sub":"u","scope":"ingest","exp":NaN}'), "token-invalid"),
    TokenCase("exp-infinity", forge(HS256, b'{"sub":"u","scope":"ingest","exp":Infinity}'), "token-invalid"),
]


@pytest.mark.parametrize(
    "case",
    [pytest.param(case, id=case.id) for case in TOKEN_CASES + TOKEN_NON_FINITE],
)
def test_token_attacks_are_refused_with_their_code(case: TokenCase) -> None:
    with pytest.raises(TokenError) as refused:
        AUTHORITY.verify(case.token, case.allowed, now=NOW)
    assert refused.value.code == case.code
    assert case.code in TOKEN_CODES


TOKEN_CHARACTERS = st.sampled_from(string.ascii_letters + string.digits + "-_=.+/ é\n")
EDITS = st.sampled_from(["replace", "insert", "delete", "cut", "swap", "append"])
SHORT_TEXTS = st.text(max_size=8)


@st.composite
def tampered_tokens(draw: st.DrawFn) -> str:
    """The genuine token with one to three edits: a character changed, inserted or removed, the
    token cut, two segments swapped, something appended."""
    token = GENUINE
    for _ in range(draw(ONE_TO_THREE)):
        at, action = draw(INDEX) % (len(token) + 1), draw(EDITS)
        if action == "replace":
            token = token[:at] + draw(TOKEN_CHARACTERS) + token[at + 1 :]
        elif action == "insert":
            token = token[:at] + draw(TOKEN_CHARACTERS) + token[at:]
        elif action == "delete":
            token = token[:at] + token[at + 1 :]
        elif action == "cut":
            token = token[:at]
        elif action == "swap":
            parts = token.split(".")
            i, j = draw(INDEX) % len(parts), draw(INDEX) % len(parts)
            parts[i], parts[j] = parts[j], parts[i]
            token = ".".join(parts)
        else:
            token += draw(SHORT_TEXTS)
    return token


@TOKEN_EDITS
@given(token=tampered_tokens())
def test_only_the_genuine_token_opens(token: str) -> None:
    try:
        outcome: Claims | str = AUTHORITY.verify(token, ("ingest",), now=NOW)
    except TokenError as exc:
        outcome = exc.code
    event(outcome if isinstance(outcome, str) else "accepted")
    if token in (GENUINE, GENUINE + "="):  # PyJWT takes canonical base64url, its padding optional
        assert outcome == Claims("user-42", "ingest", NOW + 900, INQ)
    else:
        assert outcome == ("token-invalid" if token else "token-missing")


# --- inputs that once got past the rules (each was a bug; kept as regressions) -----------------

SIGNED_BODY = json.dumps(DOCUMENTED_EXAMPLE).encode()


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(
            "t=²,v1=" + "0" * 64,
            id="superscript-timestamp",
        ),
        pytest.param(
            f"t={NOW},v1=" + "é" * 64,
            id="non-ascii-v1",
        ),
    ],
)
def test_unicode_in_a_signature_header_is_refused_with_a_code(header: str) -> None:
    with pytest.raises(SignatureError) as refused:
        verify(header, SIGNED_BODY, [CURRENT], now=NOW, tolerance=TOLERANCE)
    assert refused.value.code in SIGNATURE_CODES


async def raw_post(client: Client, header_lines: bytes, body: bytes) -> int:
    """POST with header bytes no HTTP client library would send; the answer's status."""
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    head = f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {len(body)}\r\n"
    writer.write(head.encode() + header_lines + b"\r\n\r\n" + body)
    status = int((await reader.readline()).split()[1])
    writer.close()
    await writer.wait_closed()
    return status


@pytest.mark.parametrize(
    "header_lines",
    [
        pytest.param(
            b"Persona-Signature: t=\xc2\xb2,v1=" + b"0" * 64,
            id="superscript-timestamp",
        ),
        pytest.param(
            f"Persona-Signature: t={NOW},v1=".encode() + "é".encode() * 64,
            id="non-ascii-v1",
        ),
        pytest.param(
            f"Persona-Signature: {sign(CURRENT, NOW, SIGNED_BODY)}\r\nPersona-Webhook-Attempts-Made: ".encode()
            + b"\xff",
            id="non-utf8-delivery-header",
        ),
    ],
)
def test_hostile_header_bytes_never_get_a_5xx(header_lines: bytes) -> None:
    with webhook_endpoint(MemoryPublisher()) as (runner, client, _):
        status = runner.run(raw_post(client, header_lines, SIGNED_BODY))
    assert status < 500


@pytest.mark.parametrize("depth", [198, 250])
def test_metadata_nested_beyond_what_a_worker_can_decode_is_refused(depth: int) -> None:
    rules = IngestLimits()
    message = frame(SESSIONS[0], 0, {"kind": "onEvent", "name": "step", "metadata": {"a": nested(depth)}})
    connection = IngestConnection(Claims("user-42", "ingest", 2_000_000_000), None, rules, Recent(8), now=0.0)
    decision = connection.receive(message, 0.0, AT)
    check_decision(decision, rules)
    assert isinstance(decision, Reject)
    assert decision.error.code == "invalid-json"
