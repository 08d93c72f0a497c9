"""Hostile requests against the webhook endpoint over HTTP (aiohttp on 127.0.0.1, a publisher in
memory that may fail, no Kafka): a documented status and code, no 5xx but 503 when Kafka fails,
nothing unverified reaches Kafka. The inputs are in tests/hostile.py, which lists where the fuzzing
of the pure units (ingest rules, signatures, the codec, tokens) sits.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import json
import string
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import event, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from core.settings import Settings
from core.topics import TopicPlan
from gateway.app import Gateway, create_gateway
from gateway.publisher import Message, PublishError
from gateway.signatures import sign
from gateway.webhook_receiver import PATH
from persona_stream.webhook_bodies import DOCUMENTED_EXAMPLE
from schemas.codec import decode
from schemas.errors import SchemaError
from schemas.records import DeadLetter
from schemas.webhooks import WebhookEvent
from tests.hostile import (
    CLOSES,
    CURRENT,
    DEAD_LETTER_REASONS,
    FUZZ,
    INDEX,
    INGEST_ERRORS,
    NOW,
    PREVIOUS,
    SIGNATURE_CODES,
    TOKEN_CODES,
    WEBHOOK_ANSWERS,
    Header,
    Webhook,
    envelopes,
    fresh,
    random_headers,
    webhook_bodies,
    webhooks,
)

OVER_HTTP = settings(FUZZ, max_examples=500)


def test_the_documented_codes_are_found() -> None:
    assert {"invalid-json", "invalid-frame", "seq-repeated", "rate-limited"} <= INGEST_ERRORS
    assert {(1008, "too-many-errors"), (1013, "rate-limited")} <= CLOSES
    assert {(503, "kafka-unavailable"), (202, "dead-lettered")} <= WEBHOOK_ANSWERS
    assert {"signature-missing", "signature-malformed", "signature-mismatch", "signature-expired"} == SIGNATURE_CODES
    assert {"token-missing", "token-invalid", "token-expired", "token-scope"} == TOKEN_CODES
    assert {"webhook-invalid-json", "webhook-invalid-shape"} <= DEAD_LETTER_REASONS


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


# --- inputs that once got past the rules (each was a bug; kept as regressions) -----------------

SIGNED_BODY = json.dumps(DOCUMENTED_EXAMPLE).encode()


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
