"""Hostile input for the fuzzing tests: the documented codes, hostile documents, and
webhooks with signature headers of every sort.

The tests that use them sit beside the units they fuzz:

==========================  ==================================  ======================================
target                      tests                               what must hold
==========================  ==================================  ======================================
``IngestConnection.         tests/gateway/test_ingest_fuzz.py   a Write, Duplicate, Reject or Close;
receive``                                                       every code listed in docs/protocol.md;
                                                                what is written decodes for a worker
``signatures.verify``       tests/gateway/                      accepted only for a configured secret
                            test_signatures_fuzz.py             within the tolerance; every refusal a
                                                                documented code
``decode(WebhookEvent)``    tests/schemas/test_codec_fuzz.py    an event with a Kafka key, or a
                                                                SchemaError (dead-lettered)
``TokenAuthority.verify``   tests/core/test_tokens_fuzz.py      only the genuine bytes open; every
                                                                refusal a documented code
``POST /v1/webhooks/        tests/reliability/                  a documented status and code; no 5xx
persona``                   test_hostile_input.py               but 503 when Kafka fails; nothing
                                                                unverified reaches Kafka
==========================  ==================================  ======================================

Examples: 10,000 client messages; 2,000 sequences (about 38,000 more messages, most runs cut short
by a limit); 10,000 webhook headers and 10,000 webhook bodies; 500 webhook requests over HTTP;
3,000 edited tokens beside the table of token attacks. The settings build on the hypothesis profile
(tests/conftest.py): under ``ci``, the default, they are derandomized with no example database, so
CI runs the same cases every time, in about a minute on two cores. Inputs that once got past the
rules are kept as regressions beside the fuzzing tests.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy as Strategy

from gateway.signatures import sign
from persona_stream.webhook_bodies import DOCUMENTED_EXAMPLE, inquiry_event, object_event
from schemas.code_docs import USES, Table
from schemas.codes import Code

FUZZ = settings(
    max_examples=10_000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
"""Many examples; the rest (derandomized or not, the example database) from the profile."""

# --- the documented codes, from the enumeration docs/protocol.md's tables are generated from ------


def documented(table: Table) -> set[tuple[int | None, Code]]:
    """(status, code) of every row of ``table`` in docs/protocol.md."""
    return {(use.status, code) for code, uses in USES.items() for use in uses if use.table == table}


INGEST_ERRORS = {code for _, code in documented(Table.CLIENT_FRAME)}
CLOSES = documented(Table.CLOSE)
WEBHOOK_ANSWERS = documented(Table.WEBHOOK)
DEAD_LETTER_REASONS = {code for _, code in documented(Table.DEAD_LETTER)}
SIGNATURE_CODES = {code for status, code in WEBHOOK_ANSWERS if status == 401}
TOKEN_CODES = {code for _, code in CLOSES if code.startswith("token-")}


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


# --- shared values -------------------------------------------------------------------------------

INQ, OTHER_INQ = "inq_zEx4jL84ShbUyuwX6AzPSqt6", "inq_someoneElse01"
CURRENT, PREVIOUS, ATTACKER = b"wbhsec_current_4f1c9e", b"wbhsec_previous_9a2b7d", b"wbhsec_attacker_00000"
NOW, TOLERANCE = 1_800_000_000, 300


# --- webhooks: signatures and bodies ------------------------------------------------------------

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
