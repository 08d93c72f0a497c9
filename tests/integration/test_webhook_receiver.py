"""The webhook receiver against the real broker: verify, write byte for byte, then answer."""

from __future__ import annotations

import base64
import io
import time

import aiohttp
import orjson
import pytest

from gateway.app import Gateway
from gateway.signatures import sign
from persona_stream.webhook_bodies import DOCUMENTED_EXAMPLE, INQUIRY_ID, body, example
from schemas.codec import decode
from schemas.records import DeadLetter
from tests.integration.conftest import OLD_WEBHOOK_SECRET, WEBHOOK_SECRET
from tests.kafkautil import consume

pytestmark = pytest.mark.integration


async def post(gateway: Gateway, payload: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    async with aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{gateway.http_port}/v1/webhooks/persona"
        async with session.post(url, data=io.BytesIO(payload), headers=headers) as response:
            return response.status, await response.json()


def signed(payload: bytes, secret: str = WEBHOOK_SECRET, at: int | None = None) -> dict[str, str]:
    return {"Persona-Signature": sign(secret.encode(), int(time.time()) if at is None else at, payload)}


async def test_a_signed_webhook_is_written_byte_for_byte_with_its_headers(gateway: Gateway) -> None:
    payload = body(DOCUMENTED_EXAMPLE).replace(b",", b", ")  # odd spacing survives: no re-serialization
    headers = {**signed(payload), "Persona-Webhook-Attempts-Made": "2", "Persona-Webhook-Attempts-Left": "6"}
    status, answer = await post(gateway, payload, headers)
    assert (status, answer["code"], answer["inquiry_id"]) == (200, "accepted", INQUIRY_ID)
    [record] = await consume(gateway.settings.bootstrap_servers(), gateway.topics.webhooks.name, count=1)
    assert record.value == payload
    assert record.key == INQUIRY_ID.encode()
    kafka_headers = dict(record.headers)
    assert kafka_headers["persona-webhook-attempts-made"] == b"2"
    assert kafka_headers["persona-webhook-attempts-left"] == b"6"
    assert kafka_headers["persona-stream-event-id"] == b"evt_o9byQRbjygu76Jbtea9wuJ1boP7a"


async def test_old_and_new_secrets_and_two_signature_groups_are_accepted(gateway: Gateway) -> None:
    now = int(time.time())
    for index, secret in enumerate((WEBHOOK_SECRET, OLD_WEBHOOK_SECRET)):
        payload = body(example(data__id=f"evt_rotation_{index}"))
        status, answer = await post(gateway, payload, signed(payload, secret))
        assert (status, answer["code"]) == (200, "accepted")
    payload = body(example(data__id="evt_two_groups"))
    both = f"{sign(b'wbhsec_retired', now, payload)} {sign(WEBHOOK_SECRET.encode(), now, payload)}"
    status, answer = await post(gateway, payload, {"Persona-Signature": both})
    assert (status, answer["code"]) == (200, "accepted")


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "signature-missing"),
        ({"Persona-Signature": "t=1,v2=abc"}, 401, "signature-malformed"),
        ("WRONG", 401, "signature-mismatch"),
        ("OLD", 401, "signature-expired"),
    ],
    ids=["missing-header", "malformed", "wrong-signature", "outside-tolerance"],
)
async def test_unverified_webhooks_are_refused(
    gateway: Gateway, headers: dict[str, str] | str, status: int, code: str
) -> None:
    payload = body(DOCUMENTED_EXAMPLE)
    if headers == "WRONG":
        headers = signed(payload, "wbhsec_not_ours")
    elif headers == "OLD":
        headers = signed(payload, at=int(time.time()) - 301)
    assert isinstance(headers, dict)
    answer = await post(gateway, payload, headers)
    assert (answer[0], answer[1]["code"]) == (status, code)


async def test_an_oversized_body_is_refused(gateway: Gateway) -> None:
    payload = b"{" + b" " * gateway.settings.webhook_max_bytes + b"}"
    status, answer = await post(gateway, payload, signed(payload))
    assert (status, answer["code"]) == (413, "body-too-large")


async def test_a_verified_but_malformed_webhook_goes_to_the_dead_letters(gateway: Gateway) -> None:
    payload = body(example(data__attributes__created___at=None))
    status, answer = await post(gateway, payload, signed(payload))
    assert (status, answer["code"], answer["field"]) == (202, "dead-lettered", "data.attributes.created-at")
    not_json = b"<xml/>"
    status, answer = await post(gateway, not_json, signed(not_json))
    assert (status, answer["code"]) == (202, "dead-lettered")
    letters = [
        decode(DeadLetter, r.value)
        for r in await consume(gateway.settings.bootstrap_servers(), gateway.topics.dead_letters.name, count=2)
    ]
    assert [letter.reason for letter in letters] == ["webhook-invalid-shape", "webhook-invalid-json"]
    assert base64.b64decode(letters[0].value_b64) == payload


async def test_a_repeated_delivery_is_acknowledged_once_written(gateway: Gateway) -> None:
    payload = body(DOCUMENTED_EXAMPLE)
    first = await post(gateway, payload, signed(payload))
    again = await post(gateway, payload, signed(payload))
    assert (first[1]["code"], again[0], again[1]["code"]) == ("accepted", 200, "duplicate")


async def test_health_readiness_and_metrics(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as session:
        base = f"http://127.0.0.1:{gateway.http_port}"
        async with session.get(f"{base}/healthz") as response:
            assert response.status == 200
        async with session.get(f"{base}/readyz") as response:
            assert (response.status, (await response.json())["kafka"]) == (200, True)
        payload = orjson.dumps({"not": "signed"})
        await session.post(f"{base}/v1/webhooks/persona", data=payload)
        async with session.get(f"{base}/metrics") as response:
            text = await response.text()
    for name in (
        "persona_stream_frames_received_total",
        "persona_stream_frames_acknowledged_total",
        "persona_stream_frames_rejected_total",
        "persona_stream_produce_latency_seconds_bucket",
        "persona_stream_open_connections",
    ):
        assert name in text
    assert 'persona_stream_webhooks_total{outcome="signature-missing"} 1.0' in text
    assert 'persona_stream_webhook_responses_total{status="401"} 1.0' in text
    assert "persona_stream_gateway_ready 1.0" in text


async def test_the_dashboard_and_its_vendored_charting_library_are_served(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as session:
        base = f"http://127.0.0.1:{gateway.http_port}"
        async with session.get(f"{base}/dashboard") as response:
            page = await response.text()
            assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        for path, kind in (("uPlot.iife.min.js", "text/javascript"), ("uPlot.min.css", "text/css")):
            assert f'"/dashboard/vendor/{path}"' in page
            async with session.get(f"{base}/dashboard/vendor/{path}") as response:
                assert (response.status, response.content_type) == (200, kind)
                assert len(await response.read()) > 1000
        async with session.get(f"{base}/dashboard/vendor/LICENSE") as response:
            assert (response.status, (await response.json())["code"]) == (404, "not-found")
        async with session.get(f"{base}/dashboard/vendor/..%2Fdashboard.html") as response:
            assert (response.status, (await response.json())["code"]) == (404, "not-found")
