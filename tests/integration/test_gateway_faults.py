"""Faults at the edge: resends, a broker outage, a gateway shutdown. Nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import io
import time
from collections import defaultdict

import aiohttp
import pytest
from websockets.exceptions import ConnectionClosed

from core.tokens import TokenAuthority
from gateway.app import Gateway
from gateway.signatures import sign
from persona_stream.localkafka import LocalKafka
from persona_stream.webhook_bodies import DOCUMENTED_EXAMPLE, body
from schemas.codec import decode
from schemas.records import CallbackRecord, ClientEvent
from tests.integration.conftest import WEBHOOK_SECRET, gateway_settings, started_gateway
from tests.kafkautil import consume
from tests.wsclient import Client

pytestmark = pytest.mark.integration

SESSION = "sess_faults_0001"
INQ = "inq_faults0001"


def url(gateway: Gateway) -> str:
    return f"ws://127.0.0.1:{gateway.ws_port}/v1/client"


async def callbacks_in_kafka(gateway: Gateway) -> list[CallbackRecord]:
    records = await consume(gateway.settings.bootstrap_servers(), gateway.topics.client_events.name, quiet=2.0)
    events = [decode(ClientEvent, r.value) for r in records]
    return [e for e in events if isinstance(e, CallbackRecord)]


async def test_resent_frames_reach_kafka_only_as_repeats_of_the_same_identity(
    kafka_bootstrap: str, unique: str, tokens: TokenAuthority
) -> None:
    settings = gateway_settings(kafka_bootstrap, unique)
    first, second = await started_gateway(settings), await started_gateway(settings)
    try:
        token = tokens.mint("user-42", "ingest", 600)
        client = await Client.open(url(first), token)
        await client.ready()
        for seq in range(10):
            await client.callback(SESSION, seq, {"kind": "onEvent", "name": f"step-{seq}"}, inquiry=INQ)
        await client.until_acked(SESSION, 9)
        await client.close()
        # the acks were "lost": the client resends everything, to the same gateway and to another
        for gateway in (first, second):
            again = await Client.open(url(gateway), token)
            await again.ready()
            for seq in range(10):
                await again.callback(SESSION, seq, {"kind": "onEvent", "name": f"step-{seq}"}, inquiry=INQ)
            await again.until_acked(SESSION, 9)
            await again.close()
        assert first.metrics.frames_deduplicated._value.get() == 10  # the same gateway wrote nothing twice

        by_identity: dict[tuple[str, int], list[CallbackRecord]] = defaultdict(list)
        for record in await callbacks_in_kafka(first):
            by_identity[(record.session, record.seq)].append(record)
        assert sorted(by_identity) == [(SESSION, seq) for seq in range(10)]
        for copies in by_identity.values():
            assert 1 <= len(copies) <= 2
            assert len({c.model_copy(update={"received_at": None}) for c in copies}) == 1  # repeats, nothing else
    finally:
        await first.stop()
        await second.stop()


async def post_webhook(gateway: Gateway) -> int:
    payload = body(DOCUMENTED_EXAMPLE)
    headers = {"Persona-Signature": sign(WEBHOOK_SECRET.encode(), int(time.time()), payload)}
    async with aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{gateway.http_port}/v1/webhooks/persona"
        async with session.post(url, data=io.BytesIO(payload), headers=headers) as response:
            return response.status


async def metrics_text(gateway: Gateway) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{gateway.http_port}/metrics") as answer,
    ):
        return await answer.text()


async def test_with_the_broker_down_nothing_is_acknowledged_and_nothing_acknowledged_is_lost(
    session_broker: LocalKafka, unique: str, tokens: TokenAuthority
) -> None:
    broker = session_broker
    gateway = await started_gateway(gateway_settings(broker.address, unique, produce_timeout_seconds=2.0))
    try:
        token = tokens.mint("user-42", "ingest", 600)
        client = await Client.open(url(gateway), token)
        await client.ready()
        for seq in range(5):
            await client.callback(SESSION, seq, {"kind": "onLoad"}, inquiry=INQ)
        await client.until_acked(SESSION, 4)

        await asyncio.to_thread(broker.stop)
        for seq in range(5, 10):
            await client.callback(SESSION, seq, {"kind": "onReady"}, inquiry=INQ)
        assert await client.closed(timeout=30) == (1013, "kafka-unavailable")
        assert client.acks[SESSION] == 4  # nothing sent during the outage was acknowledged
        assert await post_webhook(gateway) == 503
        metrics = await metrics_text(gateway)  # what the alerts of deploy/prometheus/alerts.yml read
        assert "persona_stream_gateway_ready 0.0" in metrics
        assert 'persona_stream_webhook_responses_total{status="503"} 1.0' in metrics
        late = await Client.open(url(gateway), token)
        assert await late.closed() == (1013, "kafka-unavailable")

        await broker.start(timeout=120)
        assert await gateway.publisher.wait_healthy(60)  # type: ignore[attr-defined]
        await resend_until_acked(gateway, token, range(5, 10))  # as a client does: reconnect, resend
        for _ in range(30):  # and Persona retries until it gets a 2xx
            if await post_webhook(gateway) == 200:
                break
            await asyncio.sleep(1)
        else:
            raise AssertionError("the webhook was never accepted after the broker came back")
        assert "persona_stream_gateway_ready 1.0" in await metrics_text(gateway)
    finally:
        await broker.start(timeout=120)
        await gateway.stop()
    seqs = {r.seq for r in await callbacks_in_kafka(gateway)}
    assert seqs == set(range(10))


async def resend_until_acked(gateway: Gateway, token: str, seqs: range, timeout: float = 90) -> None:
    """Reconnect and resend the unacknowledged frames, with backoff, until all are acknowledged."""
    deadline = time.monotonic() + timeout
    acked = seqs.start - 1
    while acked < seqs.stop - 1:
        assert time.monotonic() < deadline, "never acknowledged"
        client = await Client.open(url(gateway), token)
        try:
            if (await client.recv())["type"] != "ready":
                raise ConnectionError
            for seq in range(acked + 1, seqs.stop):
                await client.callback(SESSION, seq, {"kind": "onReady"}, inquiry=INQ)
            await client.until_acked(SESSION, seqs.stop - 1, timeout=10)
        except (ConnectionError, ConnectionClosed, TimeoutError):
            await asyncio.sleep(1)
        finally:
            acked = max(acked, client.acks.get(SESSION, acked))
            await client.close()


async def test_shutdown_flushes_and_acknowledges_then_closes_1001(
    kafka_bootstrap: str, unique: str, tokens: TokenAuthority
) -> None:
    gateway = await started_gateway(gateway_settings(kafka_bootstrap, unique))
    client = await Client.open(url(gateway), tokens.mint("user-42", "ingest", 600))
    await client.ready()
    for seq in range(40):
        await client.callback(SESSION, seq, {"kind": "onEvent", "name": "click"}, inquiry=INQ)
    await asyncio.sleep(0.05)
    stopping = asyncio.create_task(gateway.stop())
    code = await client.closed(timeout=20)
    await stopping
    assert code == (1001, "shutdown")
    acked = client.acks.get(SESSION, -1)
    assert acked >= 0
    in_kafka = {r.seq for r in await callbacks_in_kafka(gateway)}
    assert set(range(acked + 1)) <= in_kafka
