"""``POST /v1/webhooks/persona``: verify, then write to Kafka, then answer.

=====  ======================  ==============================================================
HTTP   code                    when
=====  ======================  ==============================================================
200    accepted                verified and durably written to ``<p>.webhooks``
200    duplicate               this gateway wrote the same event id lately (a retry): not rewritten
202    dead-lettered           verified, but not a webhook envelope: written to ``<p>.dead-letters``
401    signature-missing       no ``Persona-Signature`` header
401    signature-malformed     a header without a ``t=…,v1=…`` group
401    signature-mismatch      no group verifies with a configured secret
401    signature-expired       the signature's timestamp is outside the tolerance (a replay)
413    body-too-large          the body exceeds ``webhook_max_bytes``
503    kafka-unavailable       Kafka did not confirm in time: Persona retries later
=====  ======================  ==============================================================

An event about an object linked to several inquiries (a case) is written once per inquiry, keyed
by each; the answer names the first. The body is kept byte for byte: the record's value is
exactly what Persona signed. Persona's delivery headers travel as Kafka headers. The answer
comes only after Kafka's acknowledgement, bounded by ``produce_timeout_seconds`` so that it stays inside Persona's 5 s.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from core.topics import TopicPlan
from gateway.ingest import Recent
from gateway.metrics import GatewayMetrics
from gateway.publisher import Message, Publisher, PublishError
from gateway.signatures import SignatureError, verify
from schemas.codec import decode, encode
from schemas.errors import Code, SchemaError
from schemas.records import (
    WEBHOOK_EVENT_ID_HEADER,
    WEBHOOK_HEADERS,
    WEBHOOK_RECEIVED_AT_HEADER,
    DeadLetter,
)
from schemas.webhooks import WebhookEvent

PATH = "/v1/webhooks/persona"


@dataclass
class WebhookReceiver:
    topics: TopicPlan
    publisher: Publisher
    secrets: list[bytes]
    tolerance_seconds: int
    max_bytes: int
    metrics: GatewayMetrics
    recent: Recent[str]
    clock: Callable[[], float] = time.time

    async def handle(self, request: web.Request) -> web.Response:
        body = await self._read_body(request)
        if body is None:
            return self._answer(413, Code.BODY_TOO_LARGE, f"the body exceeds {self.max_bytes} bytes")
        try:
            verify(
                request.headers.get("Persona-Signature"),
                body,
                self.secrets,
                now=self.clock(),
                tolerance=self.tolerance_seconds,
            )
        except SignatureError as exc:
            return self._answer(401, exc.code, str(exc))
        received_at = datetime.now(UTC)
        try:
            event = decode(WebhookEvent, body)
        except SchemaError as exc:
            return await self._dead_letter(body, exc, received_at)
        if event.event_id in self.recent:
            return self._answer(200, Code.DUPLICATE, "already written", event_id=event.event_id)
        # bytes as received: aiohttp decodes header values with surrogateescape
        headers = [
            (name, request.headers[name].encode("utf-8", "surrogateescape"))
            for name in WEBHOOK_HEADERS
            if name in request.headers
        ]
        headers += [
            (WEBHOOK_RECEIVED_AT_HEADER, received_at.isoformat().encode()),
            (WEBHOOK_EVENT_ID_HEADER, event.event_id.encode()),
        ]
        # an object linked to several inquiries (a case) is written once under each one's key
        inquiries = event.inquiry_ids()
        messages = [Message(self.topics.webhooks.name, inquiry.encode(), body, headers) for inquiry in inquiries]
        inquiry_id = inquiries[0]
        try:
            await self.publisher.send(messages)
        except PublishError as exc:
            return self._answer(503, exc.code, "Kafka is unavailable; retry later", retry_after=True)
        self.recent.add(event.event_id)
        return self._answer(200, Code.ACCEPTED, "written", event_id=event.event_id, inquiry_id=inquiry_id)

    async def _read_body(self, request: web.Request) -> bytes | None:
        if request.content_length is not None and request.content_length > self.max_bytes:
            return None
        chunks, size = [], 0
        async for chunk in request.content.iter_chunked(65536):
            size += len(chunk)
            if size > self.max_bytes:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def _dead_letter(self, body: bytes, error: SchemaError, received_at: datetime) -> web.Response:
        reason = Code.WEBHOOK_INVALID_JSON if error.code == Code.INVALID_JSON else Code.WEBHOOK_INVALID_SHAPE
        letter = DeadLetter(
            source_topic=self.topics.webhooks.name,
            partition=-1,
            offset=-1,
            key=None,
            reason=reason,
            detail=str(error),
            value_b64=base64.b64encode(body).decode(),
            at=received_at,
        )
        try:
            await self.publisher.send([Message(self.topics.dead_letters.name, b"webhook", encode(letter))])
        except PublishError as exc:
            return self._answer(503, exc.code, "Kafka is unavailable; retry later", retry_after=True)
        return self._answer(202, Code.DEAD_LETTERED, f"{reason}: {error}", field=error.field)

    def _answer(
        self, status: int, code: Code, message: str, *, retry_after: bool = False, **extra: str
    ) -> web.Response:
        self.metrics.webhooks.labels(code).inc()
        self.metrics.webhook_responses.labels(str(status)).inc()
        headers = {"Retry-After": "5"} if retry_after else None
        return web.json_response({"code": code, "message": message, **extra}, status=status, headers=headers)
