"""Tokens on open websockets, against the real gateway and broker: a connection lives as long as
its token unless the client refreshes it (``refresh`` frame), then closes with 4001 ``token-expired``."""

from __future__ import annotations

import asyncio
import time

import pytest

from core.tokens import TokenAuthority
from gateway.app import Gateway
from tests.wsclient import Client

pytestmark = pytest.mark.integration

TTL = 2  # seconds: the shortest token the test can hand out and still refresh in time


async def opened(gateway: Gateway, path: str, token: str) -> tuple[Client, dict[str, object]]:
    client = await Client.open(f"ws://127.0.0.1:{gateway.ws_port}{path}", token)
    return client, await client.ready()


@pytest.mark.parametrize(
    ("path", "scope"), [("/v1/client", "ingest"), ("/v1/subscribe", "subscribe"), ("/v1/analytics", "analytics")]
)
async def test_an_open_connection_closes_when_its_token_expires(
    gateway: Gateway, tokens: TokenAuthority, path: str, scope: str
) -> None:
    token = tokens.mint("user-42", scope, TTL)  # type: ignore[arg-type]
    client, ready = await opened(gateway, path, token)
    assert isinstance(ready["expires_at"], int)
    assert ready["expires_at"] <= time.time() + TTL + 1
    assert await client.closed(timeout=TTL + 10) == (4001, "token-expired")


@pytest.mark.parametrize(
    ("path", "scope"), [("/v1/client", "ingest"), ("/v1/subscribe", "subscribe"), ("/v1/analytics", "analytics")]
)
async def test_a_refreshed_connection_outlives_its_first_token(
    gateway: Gateway, tokens: TokenAuthority, path: str, scope: str
) -> None:
    client, _ = await opened(gateway, path, tokens.mint("user-42", scope, TTL))  # type: ignore[arg-type]
    # refused refreshes leave the old expiry standing: another subject, another scope, garbage
    for bad, code in (
        (tokens.mint("mallory", scope, 600), "token-mismatch"),  # type: ignore[arg-type]
        (tokens.mint("user-42", "ingest" if scope == "analytics" else "analytics", 600), "token-scope"),
        ("not-a-jwt", "token-invalid"),
    ):
        await client.send({"type": "refresh", "token": bad})
        answer = await client.recv()
        assert (answer["type"], answer["code"]) == ("error", code), answer
    await client.send({"type": "refresh", "token": tokens.mint("user-42", scope, 600)})  # type: ignore[arg-type]
    answer = await client.recv()
    while answer["type"] == "update":  # the analytics feed may interleave its records
        answer = await client.recv()
    assert answer["type"] == "refreshed"
    assert answer["expires_at"] > time.time() + 500
    # past the first token's expiry the connection still works
    await asyncio.sleep(TTL + 1)
    if scope == "ingest":
        await client.callback("sess_refresh0001", 0, {"kind": "onLoad"})
        await client.until_acked("sess_refresh0001", 0)
    elif scope == "subscribe":
        await client.send({"type": "subscribe", "id": "s1", "channel": "mine"})
        assert (await client.recv())["type"] == "subscribed"
    else:
        await client.send({"type": "refresh", "token": tokens.mint("user-42", scope, 600)})  # type: ignore[arg-type]
        assert (await client.recv())["type"] == "refreshed"  # still open and answering
    await client.close()


async def test_an_expired_ingest_connection_acknowledges_what_it_wrote_before_closing(
    gateway: Gateway, tokens: TokenAuthority
) -> None:
    client, _ = await opened(gateway, "/v1/client", tokens.mint("user-42", "ingest", TTL))
    await client.callback("sess_expiring01", 0, {"kind": "onLoad"})
    await client.until_acked("sess_expiring01", 0)
    assert await client.closed(timeout=TTL + 10) == (4001, "token-expired")
