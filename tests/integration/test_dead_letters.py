"""``persona-stream dead-letters list | show | replay`` against the real broker, the real gateway and a
real worker process: a dead-lettered verified webhook, replayed once its cause is fixed, changes the
status once; replayed again it changes nothing."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer

from core.tokens import TokenAuthority
from gateway.signatures import sign
from persona_stream.webhook_bodies import body, inquiry_event
from schemas.codec import encode
from schemas.records import DeadLetter
from tests.integration.conftest import WEBHOOK_SECRET, gateway_settings, started_gateway
from tests.integration.test_downstream import Stack, post_webhook
from tests.integration.test_rules import records_of, statuses, view_of
from tests.integration.workers import Worker, worker_env

pytestmark = pytest.mark.integration

INQUIRY = "inq_deadletter0001"


@pytest.fixture
async def stack(kafka_bootstrap: str, unique: str, tmp_path: Path, tokens: TokenAuthority) -> AsyncIterator[Stack]:
    worker = Worker(worker_env(kafka_bootstrap, unique), tmp_path).start()
    gateway = await started_gateway(
        gateway_settings(kafka_bootstrap, unique, worker_url=f"http://127.0.0.1:{worker.port}")
    )
    yield Stack(gateway, worker, tokens)
    await gateway.stop()
    worker.stop()


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("PERSONA_STREAM_")}
    env["PERSONA_STREAM_KAFKA_BOOTSTRAP_SERVERS"] = stack.gateway.settings.bootstrap_servers()
    env["PERSONA_STREAM_TOPIC_PREFIX"] = stack.gateway.settings.topic_prefix
    env["PERSONA_STREAM_PARTITIONS"] = "3"
    return subprocess.run(
        [sys.executable, "-m", "persona_stream.cli", "dead-letters", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def post_raw(stack: Stack, payload: bytes) -> int:
    headers = {"Persona-Signature": sign(WEBHOOK_SECRET.encode(), int(time.time()), payload)}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{stack.http}/v1/webhooks/persona", data=io.BytesIO(payload), headers=headers) as answer,
    ):
        return answer.status


async def test_a_dead_lettered_webhook_replayed_changes_the_status_once(stack: Stack) -> None:
    settings = stack.gateway.settings
    started = inquiry_event(
        "evt_dl_started", "inquiry.started", "pending", "2026-03-01T10:00:01.000Z", inquiry_id=INQUIRY
    )
    assert await post_webhook(stack, started) == 200
    await records_of(stack, INQUIRY, 1)

    # a verified webhook a worker could not process (a bug since fixed): set aside as it would have been
    completed = inquiry_event(
        "evt_dl_completed", "inquiry.completed", "completed", "2026-03-01T10:05:00.000Z", inquiry_id=INQUIRY
    )
    letter = DeadLetter(
        source_topic=stack.gateway.topics.webhooks.name,
        partition=0,
        offset=7,
        key=INQUIRY,
        reason="processing-failed",
        detail="RuntimeError('a bug')",
        value_b64=base64.b64encode(body(completed)).decode(),
        at=datetime.now(UTC),
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers(), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(stack.gateway.topics.dead_letters.name, encode(letter), key=INQUIRY.encode())
        callback = letter.model_copy(
            update={"source_topic": stack.gateway.topics.client_events.name, "reason": "client-event-invalid"}
        )
        await producer.send_and_wait(stack.gateway.topics.dead_letters.name, encode(callback), key=INQUIRY.encode())
    finally:
        await producer.stop()
    # and a verified body that is not an envelope: the gateway dead-letters it; replaying cannot fix it
    assert await post_raw(stack, json.dumps({"data": {"type": "event", "id": "evt_x"}}).encode()) == 202

    listed = await asyncio.to_thread(cli, stack, "list")
    assert listed.returncode == 0, listed.stderr
    assert "processing-failed" in listed.stdout
    assert "webhook-invalid-shape" in listed.stdout
    assert "3 dead letters" in listed.stdout
    shown = await asyncio.to_thread(cli, stack, "show", "0")
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert document["id"] == 0
    assert document["reason"] == "processing-failed"
    assert document["value"]["data"]["id"] == "evt_dl_completed"
    missing = await asyncio.to_thread(cli, stack, "show", "99")
    assert missing.returncode == 1
    assert "[dead-letter-not-found]" in missing.stderr

    replayed = await asyncio.to_thread(cli, stack, "replay", "--reason", "processing-failed")
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed evt_dl_completed" in replayed.stdout
    assert "replayed 1, skipped 0" in replayed.stdout
    first, second = await records_of(stack, INQUIRY, 2)
    assert (first.status, second.status) == ("pending", "completed")
    assert second.cause.event_id == "evt_dl_completed"

    # again, everything: the same event id changes nothing; the invalid body stays where it is
    again = await asyncio.to_thread(cli, stack, "replay")
    assert again.returncode == 0, again.stderr
    assert "replayed evt_dl_completed" in again.stdout
    assert "skipped [dead-letter-still-invalid]" in again.stdout
    assert "skipped [dead-letter-not-a-webhook]" in again.stdout

    async def audited_twice() -> bool:
        view = await view_of(stack, INQUIRY)
        return [e.outcome for e in view.audit if e.event_id == "evt_dl_completed"] == ["applied", "duplicate"]

    deadline = time.monotonic() + 30
    while not await audited_twice():
        assert time.monotonic() < deadline, "the second replay never reached the worker"
        await asyncio.sleep(0.2)
    assert len((await statuses(stack))[INQUIRY]) == 2  # no record followed the second replay

    # an API snapshot that does not decode is set aside by the worker, with its own reason
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers(), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(stack.gateway.topics.api_snapshots.name, b'{"not": "a snapshot"}', key=b"inq_x1")
    finally:
        await producer.stop()
    deadline = time.monotonic() + 30
    while "api-snapshot-invalid" not in (await asyncio.to_thread(cli, stack, "list")).stdout:
        assert time.monotonic() < deadline, "the worker did not dead-letter the invalid snapshot"
        await asyncio.sleep(0.5)
