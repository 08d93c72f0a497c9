"""`persona-stream gateway --processes 2` as a real process on real ports: both children serve,
every acknowledgement is in Kafka exactly once, SIGTERM drains them all."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import signal
import time
import urllib.request
from collections import Counter
from pathlib import Path

import aiohttp
import pytest
from websockets.exceptions import ConnectionClosed

from core.settings import Settings
from core.tokens import TokenAuthority
from core.topics import TopicPlan, create_topics
from gateway.signatures import sign
from persona_stream.webhook_bodies import body, inquiry_event
from schemas.codec import decode
from schemas.records import WEBHOOK_EVENT_ID_HEADER, CallbackRecord, ClientEvent
from tests.integration.conftest import WEBHOOK_SECRET
from tests.integration.workers import worker_env
from tests.kafkautil import consume
from tests.processes import GatewayProcess
from tests.wsclient import Client

pytestmark = pytest.mark.integration

CLIENTS = 8
FRAMES = 20
WEBHOOKS = 24
LISTENING = re.compile(r"gateway: ws://127\.0\.0\.1:(\d+)/v1/client  http://127\.0\.0\.1:(\d+) .*pids (\d+) (\d+)")
SERVED = re.compile(r"gateway pid (\d+): served (\d+) websocket connections, (\d+) webhooks accepted; drained")


def get_json(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def post_webhook(http_port: int, event_id: str, inquiry: str) -> int:
    payload = body(
        inquiry_event(event_id, "inquiry.started", "pending", "2026-01-01T00:00:00.000Z", inquiry_id=inquiry)
    )
    headers = {"Persona-Signature": sign(WEBHOOK_SECRET.encode(), int(time.time()), payload), "Connection": "close"}
    async with aiohttp.ClientSession() as session:  # a new connection each: the kernel picks a child each time
        url = f"http://127.0.0.1:{http_port}/v1/webhooks/persona"
        async with session.post(url, data=io.BytesIO(payload), headers=headers) as response:
            return response.status


async def send_until_closed(client: Client, session: str, first: int) -> int:
    """Send frames (within the rate limit) and read acks until the gateway closes; the close code."""
    reading = asyncio.create_task(client.closed(timeout=30))
    seq = first
    with contextlib.suppress(ConnectionClosed):
        while not reading.done():
            await client.callback(session, seq, {"kind": "onEvent", "name": f"step-{seq}"}, inquiry=f"inq_{session}")
            seq += 1
            await asyncio.sleep(0.04)
    code, _ = await reading
    assert code is not None, client.errors
    return code


async def test_two_processes_share_the_ports_lose_nothing_and_drain_on_sigterm(
    kafka_bootstrap: str, unique: str, tokens: TokenAuthority, tmp_path: Path
) -> None:
    env = worker_env(kafka_bootstrap, unique, WS_PORT=0, HTTP_PORT=0, WEBHOOK_SECRETS=WEBHOOK_SECRET)
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=unique, partitions=3)
    plan = TopicPlan.from_settings(settings)
    await create_topics(kafka_bootstrap, plan.all())
    log_path = tmp_path / "gateway.log"
    gateway = GatewayProcess(env, log_path, args=["--processes", "2"], log_level="warning")
    try:
        await asyncio.to_thread(gateway.start)
        process = gateway.process
        assert process is not None
        deadline = time.monotonic() + 60
        match = gateway.wait_for_log(LISTENING)
        ws_port, http_port = int(match.group(1)), int(match.group(2))
        children = {int(match.group(3)), int(match.group(4))}
        assert process.pid not in children

        ready: set[int] = set()  # each child's own readiness, reached through the shared port
        while ready != children:
            assert time.monotonic() < deadline, log_path.read_text()
            status, document = await asyncio.to_thread(get_json, f"http://127.0.0.1:{http_port}/readyz")
            if status == 200:
                ready.add(int(str(document["pid"])))
            await asyncio.sleep(0.05)

        # websocket clients and webhooks, each acknowledged only once in Kafka
        url = f"ws://127.0.0.1:{ws_port}/v1/client"
        clients = [await Client.open(url, tokens.mint(f"user-{n}", "ingest", 600)) for n in range(CLIENTS)]
        for client in clients:
            await client.ready()
        for n, client in enumerate(clients):
            for seq in range(FRAMES):
                await client.callback(
                    f"sess_{n:04d}", seq, {"kind": "onEvent", "name": f"step-{seq}"}, inquiry=f"inq_{n}"
                )
        for n, client in enumerate(clients):
            await client.until_acked(f"sess_{n:04d}", FRAMES - 1)
        statuses = [await post_webhook(http_port, f"evt_{unique}_{n:03d}", f"inq_wh{n}") for n in range(WEBHOOKS)]
        assert statuses == [200] * WEBHOOKS

        # SIGTERM while every client keeps sending: each child drains its own connections
        sending = [
            asyncio.create_task(send_until_closed(client, f"sess_{n:04d}", FRAMES)) for n, client in enumerate(clients)
        ]
        await asyncio.sleep(1.0)
        process.send_signal(signal.SIGTERM)
        codes = await asyncio.gather(*sending)
        assert codes == [1001] * CLIENTS
        assert await asyncio.to_thread(process.wait, 45) == 0, log_path.read_text()
    finally:
        gateway.kill9()

    output = log_path.read_text()
    served = {int(pid): (int(ws), int(webhooks)) for pid, ws, webhooks in SERVED.findall(output)}
    assert set(served) == children, output  # each child drained and said so
    assert sum(ws for ws, _ in served.values()) == CLIENTS
    assert sum(webhooks for _, webhooks in served.values()) == WEBHOOKS
    assert all(ws + webhooks > 0 for ws, webhooks in served.values()), served  # both served connections
    assert "Traceback" not in output, output

    records = await consume(kafka_bootstrap, plan.client_events.name, quiet=2.0)
    callbacks = [e for e in (decode(ClientEvent, r.value) for r in records) if isinstance(e, CallbackRecord)]
    copies = Counter((c.session, c.seq) for c in callbacks)
    assert max(copies.values()) == 1  # nothing twice
    for n, client in enumerate(clients):
        session = f"sess_{n:04d}"
        acked = client.acks[session]
        assert acked >= FRAMES - 1
        assert all((session, seq) in copies for seq in range(acked + 1)), session  # nothing acknowledged lost
    webhooks = await consume(kafka_bootstrap, plan.webhooks.name, quiet=2.0)
    ids = Counter(dict(r.headers)[WEBHOOK_EVENT_ID_HEADER].decode() for r in webhooks)
    assert ids == Counter({f"evt_{unique}_{n:03d}": 1 for n in range(WEBHOOKS)})


REPLACED = re.compile(r"gateway: process (\d+) replaces (\d+)")


def gone(pid: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_a_child_that_dies_is_replaced_and_children_outlive_no_parent(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    env = worker_env(kafka_bootstrap, unique, WS_PORT=0, HTTP_PORT=0, WEBHOOK_SECRETS=WEBHOOK_SECRET)
    asyncio.run(create_topics(kafka_bootstrap, TopicPlan.from_settings(Settings(
        kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=unique, partitions=3)).all()))  # fmt: skip
    log_path = tmp_path / "gateway.log"
    gateway = GatewayProcess(env, log_path, args=["--processes", "2"], log_level="warning")
    try:
        gateway.start()
        match = gateway.wait_for_log(LISTENING)
        http_port, first, second = int(match.group(2)), int(match.group(3)), int(match.group(4))
        os.kill(first, signal.SIGKILL)
        replaced = gateway.wait_for_log(REPLACED)
        assert int(replaced.group(2)) == first
        replacement = int(replaced.group(1))
        assert f"gateway process {first} exited with -9; starting another" in log_path.read_text()
        status, document = get_json(f"http://127.0.0.1:{http_port}/healthz")  # the port is still served
        assert status == 200
        assert document["pid"] in (second, replacement)

        gateway.kill9()  # the parent dies: its children notice and drain themselves
        assert gone(second), log_path.read_text()
        assert gone(replacement), log_path.read_text()
        assert len(SERVED.findall(log_path.read_text())) == 2, log_path.read_text()
    finally:
        gateway.kill9()
