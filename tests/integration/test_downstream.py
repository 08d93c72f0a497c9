"""Downstream, end to end with the real broker: the simulator, subscriptions per reference id,
resume after a reconnect, inquiry queries, and the dashboard in headless Chromium."""

from __future__ import annotations

import asyncio
import io
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from websockets.asyncio.client import connect

from core.tokens import TokenAuthority
from gateway.app import Gateway
from gateway.signatures import sign
from persona_stream.simulator import Report, SimulationConfig, Simulator
from persona_stream.webhook_bodies import body, inquiry_event
from schemas.codec import decode
from schemas.records import StatusRecord
from tests.contract import check, check_client_frame, check_server_frame, check_view
from tests.integration.conftest import WEBHOOK_SECRET, gateway_settings, started_gateway
from tests.integration.workers import Worker, worker_env
from tests.kafkautil import consume, wait_for
from tests.nodejs import run_node

pytestmark = pytest.mark.integration


@dataclass
class Stack:
    gateway: Gateway
    worker: Worker
    tokens: TokenAuthority

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.gateway.ws_port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.gateway.http_port}"


@pytest.fixture
async def stack(kafka_bootstrap: str, unique: str, tmp_path: Path, tokens: TokenAuthority) -> AsyncIterator[Stack]:
    env = worker_env(kafka_bootstrap, unique)
    worker = Worker(env, tmp_path).start()
    gateway = await started_gateway(
        gateway_settings(kafka_bootstrap, unique, worker_url=f"http://127.0.0.1:{worker.port}")
    )
    yield Stack(gateway, worker, tokens)
    await gateway.stop()
    worker.stop()


class Follower:
    """One websocket subscription, recording every status record it receives."""

    def __init__(self, url: str, token: str, channel: str, since: dict[str, int] | None = None) -> None:
        self.url, self.token, self.channel, self.since = url, token, channel, since
        self.frames: list[dict[str, Any]] = []
        self.subscribed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> Follower:
        self.task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.subscribed.wait(), 15)
        return self

    async def _run(self) -> None:
        async with connect(f"{self.url}/v1/subscribe") as ws:
            auth = {"type": "auth", "token": self.token}
            request: dict[str, Any] = {"type": "subscribe", "id": "s1", "channel": self.channel}
            if self.since is not None:
                request["since"] = self.since
            for frame in (auth, request):
                check_client_frame(frame)
                await ws.send(orjson.dumps(frame).decode())
            async for message in ws:
                frame = orjson.loads(message)
                check_server_frame(frame)
                self.frames.append(frame)
                if frame["type"] in ("subscribed", "error"):
                    self.subscribed.set()

    def records(self) -> list[dict[str, Any]]:
        out = []
        for frame in self.frames:
            if frame["type"] == "subscribed":
                out.extend(frame["snapshot"])
            elif frame["type"] == "update":
                out.append(frame["data"])
        return out

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


def simulation(stack: Stack, inquiries: int, *, chaos: bool) -> SimulationConfig:
    return SimulationConfig(
        ws_url=stack.ws,
        http_url=stack.http,
        tokens=stack.tokens,
        webhook_secret=WEBHOOK_SECRET.encode(),
        inquiries=inquiries,
        rate=40,
        chaos=chaos,
        seed=5,
        timeout=90,
        progress=None,
    )


async def test_chaos_simulation_and_one_subscriber_per_reference_id(stack: Stack) -> None:
    inquiries = 200
    references = [f"user-{n:05d}" for n in range(inquiries // 4)]
    followers = {
        ref: await Follower(stack.ws, stack.tokens.mint(ref, "subscribe", 600), "mine").start() for ref in references
    }
    report: Report = await Simulator(simulation(stack, inquiries, chaos=True)).run()
    assert report.ok, report.summary()
    assert report.counters["connections dropped"] > 0
    assert (
        report.counters["webhooks duplicate"] + report.counters["webhooks accepted"]
        > sum(len(p.webhooks) for p in report.plans) - 1
    )

    await asyncio.sleep(2)
    published = defaultdict(list)
    for record in await consume(
        stack.gateway.settings.bootstrap_servers(), stack.gateway.topics.inquiry_status.name, quiet=2
    ):
        status = decode(StatusRecord, record.value)
        published[status.inquiry_id].append((status.version, status.status, status.reference_id))
    for inquiry, versions in published.items():
        assert [v for v, _, _ in versions] == list(range(1, len(versions) + 1)), inquiry
    for ref, follower in followers.items():
        received = defaultdict(list)
        for data in follower.records():
            received[data["inquiry_id"]].append((data["version"], data["status"], data["reference_id"]))
        expected = {inquiry: versions for inquiry, versions in published.items() if versions[-1][2] == ref}
        assert received == expected, ref  # exactly its inquiries, every version once, in order
    for follower in followers.values():
        await follower.stop()

    # someone else's inquiry is answered exactly like one that does not exist, and shows nothing
    theirs = next(plan.inquiry_id for plan in report.plans if plan.expected and plan.reference_id != references[0])
    answers = []
    for inquiry in (theirs, "inq_nobodyhasthis"):
        token = stack.tokens.mint(references[0], "subscribe", 600)
        intruder = await Follower(stack.ws, token, f"inquiry:{inquiry}").start()
        answers.append({k: v for k, v in intruder.frames[-1].items() if k != "channel"})
        await intruder.stop()
    assert answers[0] == answers[1] == {"type": "subscribed", "id": "s1", "recovered": False, "snapshot": []}

    # the dashboard, in headless Chromium, shows the simulated funnel
    funnel = simulated_counts(report)
    dashboard = f"{stack.http}/dashboard#token={stack.tokens.mint('ops', 'analytics', 600)}"
    screenshot = Path(stack.worker.log_path).with_name("dashboard.png")
    code, output = await asyncio.to_thread(
        run_node,
        "dashboard.mjs",
        "--url",
        dashboard,
        "--expect",
        orjson.dumps(funnel).decode(),
        "--screenshot",
        str(screenshot),
        "--timeout",
        "90",
    )
    assert code == 0, output
    assert isinstance(output, dict)
    assert {name: output["metrics"][name] for name in funnel} == funnel
    assert screenshot.stat().st_size > 10_000


def simulated_counts(report: Report) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for plan in report.plans:
        for _, callbacks, _ in plan.sessions:
            for callback in callbacks:
                if callback["kind"] == "onLoad":
                    counts["funnel.loaded"] += 1
                elif callback["kind"] == "onComplete":
                    counts["funnel.client_completed"] += 1
                elif callback["kind"] == "onEvent" and callback["name"] == "start":
                    counts["funnel.started"] += 1
        if plan.expected in ("approved", "declined", "expired"):
            counts[f"trusted.{plan.expected}"] += 1
    return dict(counts)


async def post_webhook(stack: Stack, document: dict[str, Any]) -> int:
    check("webhook-event", document)  # what Persona sends, as the published schema describes it
    payload = body(document)
    headers = {"Persona-Signature": sign(WEBHOOK_SECRET.encode(), int(time.time()), payload)}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{stack.http}/v1/webhooks/persona", data=io.BytesIO(payload), headers=headers) as answer,
    ):
        return answer.status


async def wait_until(follower: Follower, count: int, timeout: float = 30) -> None:
    await wait_for(lambda: len(follower.records()) >= count, timeout=timeout)


async def test_a_subscriber_resumes_with_exactly_the_updates_it_missed(stack: Stack) -> None:
    inquiry, ref = "inq_resume0001", "user-resume"
    token = stack.tokens.mint(ref, "subscribe", 600)
    stamps = ["2026-03-01T10:00:00Z", "2026-03-01T10:01:00Z", "2026-03-01T10:02:00Z", "2026-03-01T10:03:00Z"]
    statuses = [
        ("inquiry.created", "created"),
        ("inquiry.started", "pending"),
        ("inquiry.completed", "completed"),
        ("inquiry.approved", "approved"),
    ]

    def event(step: int) -> dict[str, Any]:
        name, status = statuses[step]
        return inquiry_event(f"evt_resume_{step}", name, status, stamps[step], inquiry_id=inquiry, reference_id=ref)

    first = await Follower(stack.ws, token, f"inquiry:{inquiry}").start()
    assert await post_webhook(stack, event(0)) == 200
    await wait_until(first, 1)
    await first.stop()  # the subscriber goes away, having seen version 1
    for step in (1, 2, 3):
        assert await post_webhook(stack, event(step)) == 200
    await asyncio.sleep(1)  # (the versions are produced meanwhile; whether or not they all are, resume must be exact)

    again = await Follower(stack.ws, token, f"inquiry:{inquiry}", since={inquiry: 1}).start()
    await wait_until(again, 3)
    await asyncio.sleep(1)
    subscribed = next(f for f in again.frames if f["type"] == "subscribed")
    assert subscribed["recovered"] is True
    assert subscribed["snapshot"] == []
    assert [(r["version"], r["status"]) for r in again.records()] == [(2, "pending"), (3, "completed"), (4, "approved")]
    await again.stop()

    fresh = await Follower(stack.ws, token, f"inquiry:{inquiry}").start()
    subscribed = next(f for f in fresh.frames if f["type"] == "subscribed")
    assert (subscribed["recovered"], [r["version"] for r in subscribed["snapshot"]]) == (False, [4])
    await fresh.stop()

    # and the inquiry can be read, with its provenance, by its owner only
    async with aiohttp.ClientSession() as session:
        async with session.get(
            f"{stack.http}/v1/inquiries/{inquiry}", headers={"Authorization": f"Bearer {token}"}
        ) as answer:
            assert answer.status == 200
            view = await answer.json()
        check_view(view)
        assert (view["version"], view["trusted"]["status"], view["trusted"]["reference_id"]) == (4, "approved", ref)
        assert set(view["provenance"]) == {"trusted", "audit", "client", "flags"}
        other = stack.tokens.mint("user-other", "subscribe", 600)
        async with session.get(
            f"{stack.http}/v1/inquiries/{inquiry}", headers={"Authorization": f"Bearer {other}"}
        ) as answer:
            assert (answer.status, (await answer.json())["code"]) == (404, "not-found")
        async with session.get(f"{stack.http}/v1/inquiries/{inquiry}") as answer:
            assert (answer.status, (await answer.json())["code"]) == (401, "token-missing")
