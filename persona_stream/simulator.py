"""``persona-stream simulate``: realistic traffic through the public interfaces only.

Browsers are websocket sessions on ``/v1/client`` that behave like the browser bridge: numbered
frames, resent after a dropped connection until acknowledged. Persona is signed webhooks posted to
``/v1/webhooks/persona``, retried on failure. A firehose subscription on ``/v1/subscribe`` watches
what comes out; the summary checks each inquiry's final trusted status against its flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, TextIO

import aiohttp
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from core.tokens import TokenAuthority
from gateway.signatures import sign
from persona_stream.scenarios import InquiryPlan, plan_inquiry


@dataclass
class SimulationConfig:
    ws_url: str  # ws://host:port
    http_url: str  # http://host:port
    tokens: TokenAuthority
    webhook_secret: bytes
    inquiries: int = 100
    rate: float = 20.0
    chaos: bool = False
    seed: int = 1
    timeout: float = 120.0
    forever: bool = False
    concurrency: int = 200
    progress: TextIO | None = sys.stderr


@dataclass
class Report:
    plans: list[InquiryPlan] = field(default_factory=list)
    observed: dict[str, tuple[int, str | None]] = field(default_factory=dict)
    anomalies: list[str] = field(default_factory=list)
    counters: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def mismatches(self) -> list[tuple[InquiryPlan, str | None]]:
        wrong = []
        for plan in self.plans:
            seen = self.observed.get(plan.inquiry_id)
            status = seen[1] if seen else None
            if status != plan.expected:
                wrong.append((plan, status))
        return wrong

    @property
    def ok(self) -> bool:
        return not self.mismatches() and not self.anomalies

    def summary(self) -> str:
        by_flow: dict[str, list[int]] = {}
        wrong = {plan.inquiry_id for plan, _ in self.mismatches()}
        for plan in self.plans:
            counts = by_flow.setdefault(plan.flow.name, [0, 0])
            counts[0] += 1
            counts[1] += plan.inquiry_id not in wrong
        lines = [f"{'flow':<20} {'inquiries':>9} {'as expected':>12}"]
        lines += [f"{name:<20} {total:>9} {good:>12}" for name, (total, good) in sorted(by_flow.items())]
        lines.append(f"{'total':<20} {len(self.plans):>9} {len(self.plans) - len(wrong):>12}")
        lines.append("")
        lines.append(", ".join(f"{name} {count}" for name, count in sorted(self.counters.items())))
        lines.append(f"{len(self.plans)} inquiries in {self.seconds:.1f} s")
        for plan, status in self.mismatches()[:10]:
            lines.append(f"MISMATCH {plan.inquiry_id} ({plan.flow.name}): expected {plan.expected}, saw {status}")
        lines.extend(f"ANOMALY {text}" for text in self.anomalies[:10])
        lines.append("every inquiry ended as simulated" if self.ok else "SOME INQUIRIES DID NOT END AS SIMULATED")
        return "\n".join(lines)


class Follower:
    """A firehose subscriber that records the latest trusted status of every inquiry."""

    def __init__(self, url: str, token: str, report: Report) -> None:
        self.url, self.token, self.report = url, token, report
        self.task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    async def start(self) -> None:
        self.task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.ready.wait(), 15)

    async def _run(self) -> None:
        async with connect(self.url) as ws:
            await ws.send(orjson.dumps({"type": "auth", "token": self.token}).decode())
            await ws.send(orjson.dumps({"type": "subscribe", "id": "all", "channel": "all"}).decode())
            async for message in ws:
                frame = orjson.loads(message)
                if frame["type"] == "subscribed":
                    self.ready.set()
                elif frame["type"] == "update":
                    data = frame["data"]
                    previous = self.report.observed.get(data["inquiry_id"], (0, None))
                    if data["version"] != previous[0] + 1:
                        self.report.anomalies.append(
                            f"{data['inquiry_id']}: version {data['version']} after {previous[0]}"
                        )
                    self.report.observed[data["inquiry_id"]] = (data["version"], data["status"])
                elif frame["type"] == "error":
                    self.report.anomalies.append(f"subscription error {frame['code']}")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await self.task


class Simulator:
    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self.report = Report()
        self.run_id = secrets.token_hex(3)
        self.done = 0
        self.started = 0.0

    async def run(self) -> Report:
        config = self.config
        self.started = time.monotonic()
        firehose = config.tokens.mint("simulator", "firehose", 3600)
        follower = Follower(f"{config.ws_url}/v1/subscribe", firehose, self.report)
        await follower.start()
        gate = asyncio.Semaphore(config.concurrency)
        progress = asyncio.create_task(self._progress())
        users = max(1, config.inquiries // 4)
        try:
            async with aiohttp.ClientSession() as http:
                tasks = []
                number = 0
                while config.forever or number < config.inquiries:
                    plan = plan_inquiry(number, self.run_id, config.seed, chaos=config.chaos, users=users)
                    self.report.plans.append(plan)
                    tasks.append(asyncio.create_task(self._play(plan, http, gate)))
                    number += 1
                    await asyncio.sleep(1 / config.rate)
                    if config.forever and len(self.report.plans) > 10_000:
                        self.report.plans = self.report.plans[-1000:]
                await asyncio.gather(*tasks)
            await self._settle()
        finally:
            progress.cancel()
            await follower.stop()
            self.report.seconds = time.monotonic() - self.started
            self._print_progress(final=True)
        return self.report

    async def _settle(self) -> None:
        deadline = time.monotonic() + self.config.timeout
        while self.report.mismatches() and time.monotonic() < deadline:  # noqa: ASYNC110 - polls the follower's view
            await asyncio.sleep(0.2)

    async def _play(self, plan: InquiryPlan, http: aiohttp.ClientSession, gate: asyncio.Semaphore) -> None:
        async with gate:
            rng = random.Random(f"{self.config.seed}-{plan.number}-play")
            webhooks = asyncio.create_task(self._deliver(plan, http, rng))
            for session, callbacks, opened_with in plan.sessions:
                await self._session(plan, session, callbacks, opened_with, rng)
            await webhooks
            self.done += 1

    async def _session(
        self,
        plan: InquiryPlan,
        session: str,
        callbacks: list[dict[str, Any]],
        opened_with: str | None,
        rng: random.Random,
    ) -> None:
        """One browser session: send every callback, resend until all are acknowledged."""
        token = self.config.tokens.mint(plan.reference_id, "ingest", 900, template_id="itmpl_simulatedTemplate0001")
        inquiry = opened_with
        frames = []
        for seq, callback in enumerate(callbacks):
            revealed = callback.get("inquiryId") or (callback.get("metadata") or {}).get("inquiryId")
            inquiry = inquiry or revealed
            frame: dict[str, Any] = {
                "type": "callback",
                "session": session,
                "seq": seq,
                "ts": int(time.time() * 1000),
                "callback": callback,
            }
            if inquiry:
                frame["inquiry"] = inquiry
            frames.append(orjson.dumps(frame).decode())
        acked, drop_after = -1, plan.drop_after.get(session)
        for attempt in range(20):
            try:
                async with connect(f"{self.config.ws_url}/v1/client", open_timeout=10) as ws:
                    await ws.send(orjson.dumps({"type": "auth", "token": token}).decode())
                    if orjson.loads(await asyncio.wait_for(ws.recv(), 10))["type"] != "ready":
                        raise ConnectionError("not ready")
                    if attempt:
                        self.report.counters["frames resent"] += len(frames) - acked - 1
                    acked = await self._exchange(ws, frames, acked, drop_after, rng)
                    drop_after = None
                    if acked == len(frames) - 1:
                        return
            except (ConnectionClosed, InvalidHandshake, OSError, TimeoutError, ConnectionError):
                self.report.counters["connections retried"] += 1
            await asyncio.sleep(min(2.0, 0.05 * 2**attempt) * rng.random())
        self.report.anomalies.append(f"{session}: frames never acknowledged")

    async def _exchange(
        self, ws: ClientConnection, frames: list[str], acked: int, drop_after: int | None, rng: random.Random
    ) -> int:
        highest = acked
        all_acked = asyncio.Event()

        async def read_acks() -> None:
            nonlocal highest
            async for message in ws:
                frame = orjson.loads(message)
                if frame["type"] == "ack":
                    highest = max(highest, frame["seq"])
                    if highest == len(frames) - 1:
                        all_acked.set()
                elif frame["type"] == "error":
                    self.report.anomalies.append(f"refused frame: {frame['code']} {frame.get('field')}")

        reader = asyncio.create_task(read_acks())
        try:
            for index in range(acked + 1, len(frames)):
                if drop_after is not None and index - acked - 1 == drop_after:
                    self.report.counters["connections dropped"] += 1
                    await ws.close()  # chaos: the browser's connection drops mid-flow
                    return highest
                await ws.send(frames[index])
                self.report.counters["frames sent"] += 1
                await asyncio.sleep(rng.uniform(0.005, 0.03))
            waiter = asyncio.create_task(all_acked.wait())
            try:
                await asyncio.wait({reader, waiter}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
            return highest
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await reader

    async def _deliver(self, plan: InquiryPlan, http: aiohttp.ClientSession, rng: random.Random) -> None:
        """Persona's side: each webhook posted, signed, retried until accepted."""
        await asyncio.sleep(rng.uniform(0.05, 0.3))
        for body in plan.webhooks:
            if self.config.chaos:
                await asyncio.sleep(rng.uniform(0, 0.2))
            for attempt in range(10):
                headers = {
                    "Persona-Signature": sign(self.config.webhook_secret, int(time.time()), body),
                    "Content-Type": "application/json",
                    "Persona-Webhook-Attempts-Made": str(attempt + 1),
                }
                try:
                    async with http.post(
                        f"{self.config.http_url}/v1/webhooks/persona", data=body, headers=headers
                    ) as answer:
                        code = (await answer.json()).get("code", str(answer.status))
                        self.report.counters[f"webhooks {code}"] += 1
                        if answer.status < 300:
                            break
                except (aiohttp.ClientError, TimeoutError):
                    self.report.counters["webhooks retried"] += 1
                await asyncio.sleep(min(3.0, 0.1 * 2**attempt))

    async def _progress(self) -> None:
        while True:
            self._print_progress()
            await asyncio.sleep(0.5)

    def _print_progress(self, final: bool = False) -> None:
        out = self.config.progress
        if out is None:
            return
        total = len(self.report.plans) if self.config.forever else self.config.inquiries
        done = self.done
        width = 30
        filled = int(width * done / total) if total else width
        seconds = time.monotonic() - self.started
        bar = f"[{'#' * filled}{'.' * (width - filled)}]"
        line = f"{bar} {done}/{total} inquiries, {len(self.report.observed)} with a trusted status, {seconds:.0f} s"
        end = "\n" if final else ""
        if out.isatty():
            out.write(f"\r{line}{end}")
        elif final or int(seconds * 2) % 10 == 0:
            out.write(line + "\n")
        out.flush()
