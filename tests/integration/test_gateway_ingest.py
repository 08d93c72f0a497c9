"""The ingest websocket against the real broker: what goes in comes out, keyed and acknowledged."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import pytest

from core.tokens import TokenAuthority
from gateway.app import Gateway
from schemas.codec import decode
from schemas.records import ClientEvent
from tests.kafkautil import consume
from tests.wsclient import Client

pytestmark = pytest.mark.integration

INQ = "inq_zEx4jL84ShbUyuwX6AzPSqt6"
SESSION = "sess_ingest_0001"

FLOW: list[dict[str, Any]] = [
    {"kind": "onLoad"},
    {"kind": "onReady"},
    {"kind": "onError", "status": 400, "code": "invalid_config", "message": "early"},
    {"kind": "onEvent", "name": "start", "metadata": {"inquiryId": INQ}},
    {"kind": "onEvent", "name": "document-upload", "metadata": {"side": "front"}},
    {"kind": "onEvent", "name": "a-name-from-the-future"},
    {
        "kind": "onComplete",
        "inquiryId": INQ,
        "status": "completed",
        "fields": {"name-first": {"type": "string", "value": "J"}},
    },
    {"kind": "onCancel", "inquiryId": INQ, "sessionToken": "must-not-be-stored"},
]


def url(gateway: Gateway, path: str = "/v1/client") -> str:
    return f"ws://127.0.0.1:{gateway.ws_port}{path}"


async def test_every_callback_goes_in_and_comes_out_under_its_key(gateway: Gateway, tokens: TokenAuthority) -> None:
    client = await Client.open(url(gateway), tokens.mint("user-42", "ingest", 600, template_id="itmpl_1"))
    ready = await client.ready()
    assert (ready["subject"], ready["scope"], ready["protocol"]) == ("user-42", "ingest", 1)
    for seq, callback in enumerate(FLOW):
        await client.callback(SESSION, seq, callback)
    await client.until_acked(SESSION, len(FLOW) - 1)
    await client.close()

    records = await consume(
        gateway.settings.bootstrap_servers(), gateway.topics.client_events.name, count=len(FLOW) + 1
    )
    decoded = [(r.key.decode(), decode(ClientEvent, r.value)) for r in records]
    links = [event for _, event in decoded if event.kind == "link"]
    callbacks = sorted((event.seq, key, event) for key, event in decoded if event.kind == "callback")
    assert [link.inquiry_id for link in links] == [INQ]
    assert [seq for seq, _, _ in callbacks] == list(range(len(FLOW)))
    assert {event.callback.kind for _, _, event in callbacks} == {
        "onLoad",
        "onReady",
        "onEvent",
        "onComplete",
        "onCancel",
        "onError",
    }
    for seq, key, event in callbacks:
        assert key == (f"session:{SESSION}:user-42" if seq < 3 else INQ)
        assert (event.subject, event.template_id, event.session) == ("user-42", "itmpl_1", SESSION)
    raw = b"".join(r.value for r in records)
    assert b"must-not-be-stored" not in raw  # sessionToken never reaches Kafka
    assert b'"value":"J"' not in raw  # nor field values, by default


async def test_bad_input_is_answered_with_codes_and_the_connection_stays_open(
    gateway: Gateway, tokens: TokenAuthority, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    client = await Client.open(url(gateway), tokens.mint("user-42", "ingest", 600))
    await client.ready()
    bad = [
        ("{not json", "invalid-json"),
        (orjson.dumps({"type": "telemetry"}).decode(), "unknown-frame-type"),
        (
            orjson.dumps({"type": "callback", "session": SESSION, "callback": {"kind": "onLoad"}, "ts": 1}).decode(),
            "seq-missing",
        ),
        (
            orjson.dumps(
                {"type": "callback", "session": SESSION, "seq": 1, "ts": 1, "callback": {"kind": "onWhat"}}
            ).decode(),
            "invalid-frame",
        ),
    ]
    for message, code in bad:
        await client.connection.send(message)
        frame = await client.recv()
        assert (frame["type"], frame["code"]) == ("error", code)
    await client.callback(SESSION, 5, {"kind": "onLoad"})
    await client.callback(SESSION, 5, {"kind": "onLoad"})
    await client.until_acked(SESSION, 5)
    repeated = [e for e in client.errors if e["code"] == "seq-repeated"] or [await client.recv()]
    assert repeated[0]["code"] == "seq-repeated"
    assert repeated[0]["seq"] == 5
    await client.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "auth-timeout"),
        ("not-a-token", "token-invalid"),
        ("EXPIRED", "token-expired"),
        ("SUBSCRIBE", "token-scope"),
    ],
)
async def test_bad_tokens_close_with_1008_and_a_reason(
    kafka_bootstrap: str, unique: str, tokens: TokenAuthority, token: str | None, reason: str
) -> None:
    from tests.integration.conftest import gateway_settings, started_gateway

    gateway = await started_gateway(gateway_settings(kafka_bootstrap, unique, auth_timeout_seconds=0.5))
    try:
        if token == "EXPIRED":
            token = tokens.mint("user-42", "ingest", 1, now=1_700_000_000)
        elif token == "SUBSCRIBE":
            token = tokens.mint("user-42", "subscribe", 600)
        client = await Client.open(url(gateway), token)
        assert await client.closed() == (1008, reason)
    finally:
        await gateway.stop()


async def test_the_first_frame_must_be_auth(gateway: Gateway) -> None:
    client = await Client.open(url(gateway), None)
    await client.callback(SESSION, 1, {"kind": "onLoad"})
    assert await client.closed() == (1008, "auth-required")


@pytest.mark.parametrize("frame", [{"type": "auth"}, {"type": "auth", "token": None}, {"type": "auth", "token": ""}])
async def test_an_auth_frame_without_a_token_closes_with_token_missing(gateway: Gateway, frame: dict[str, Any]) -> None:
    client = await Client.open(url(gateway), None)
    await client.send(frame, checked=False)  # not a valid auth frame: its token is required
    assert await client.closed() == (1008, "token-missing")


async def test_an_oversized_frame_closes_with_1009(gateway: Gateway, tokens: TokenAuthority) -> None:
    client = await Client.open(url(gateway), tokens.mint("user-42", "ingest", 600))
    await client.ready()
    await client.callback(SESSION, 1, {"kind": "onEvent", "name": "x", "metadata": {"pad": "x" * 70_000}})
    code, _ = await client.closed()
    assert code == 1009


async def test_a_flood_is_rate_limited_and_nothing_past_the_limit_is_acknowledged(
    kafka_bootstrap: str, unique: str, tokens: TokenAuthority
) -> None:
    from tests.integration.conftest import gateway_settings, started_gateway

    gateway = await started_gateway(gateway_settings(kafka_bootstrap, unique, rate_per_second=5, rate_burst=5))
    try:
        client = await Client.open(url(gateway), tokens.mint("user-42", "ingest", 600))
        await client.ready()
        for seq in range(100):
            await client.callback(SESSION, seq, {"kind": "onLoad"})
        # the frames past the limit were never read; the TCP connection still ends with the close
        # handshake, not after websockets' 10 s close timeout (a browser's onclose would fire late)
        async with asyncio.timeout(3):
            assert await client.closed() == (1013, "rate-limited")
        assert [(e["code"], e["retriable"]) for e in client.errors] == [("rate-limited", True)]
        assert client.acks[SESSION] == 4  # the burst was written; the rest is the client's to resend
    finally:
        await gateway.stop()


async def test_unknown_path_and_forbidden_origin_are_refused_at_the_handshake(
    kafka_bootstrap: str, unique: str
) -> None:
    from websockets.exceptions import InvalidStatus

    from tests.integration.conftest import gateway_settings, started_gateway

    gateway = await started_gateway(gateway_settings(kafka_bootstrap, unique, allowed_origins=["https://app.example"]))
    try:
        with pytest.raises(InvalidStatus) as raised:
            await Client.open(url(gateway, "/v2/nothing"), None)
        assert raised.value.response.status_code == 404
        with pytest.raises(InvalidStatus) as raised:
            await Client.open(url(gateway), None, origin="https://evil.example")
        assert raised.value.response.status_code == 403
        assert raised.value.response.body == b"origin-forbidden\n"
        allowed = await Client.open(url(gateway), None, origin="https://app.example")
        await allowed.close()
    finally:
        await gateway.stop()
