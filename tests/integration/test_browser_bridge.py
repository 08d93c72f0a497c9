"""The browser bridge with the real `persona` SDK in headless Chromium, the gateway, a worker and
the real broker: callbacks reach Kafka under the inquiry's key, the page receives the trusted
decision, and a gateway restart in the middle of the flow loses nothing and counts nothing twice."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core.tokens import TokenAuthority
from gateway.app import Gateway
from gateway.signatures import sign
from persona_stream.webhook_bodies import body, inquiry_event
from schemas.codec import decode
from schemas.records import AnalyticsRecord, CallbackRecord, ClientEvent
from tests.integration.conftest import WEBHOOK_SECRET, gateway_settings, started_gateway
from tests.integration.test_processors import fetch_view
from tests.integration.workers import Worker, worker_env
from tests.kafkautil import consume, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CLIENTS_JS = Path(__file__).resolve().parents[2] / "clients" / "js"
TEMPLATE = "itmpl_e2eTemplate00000000"
REFERENCE = "user-e2e"
LIFECYCLE = [
    ("inquiry.created", "created"),
    ("inquiry.started", "pending"),
    ("inquiry.completed", "completed"),
    ("inquiry.approved", "approved"),
]


@pytest.fixture
async def parts(kafka_bootstrap: str, unique: str, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    assert (CLIENTS_JS / "dist" / "index.js").exists(), "build the bridge first: npm --prefix clients/js run build"
    worker = Worker(worker_env(kafka_bootstrap, unique), tmp_path).start()
    settings = gateway_settings(kafka_bootstrap, unique, worker_url=f"http://127.0.0.1:{worker.port}")
    gateway = await started_gateway(settings)  # on port 0: a restart takes the ports it got
    settings = settings.model_copy(update={"ws_port": gateway.ws_port, "http_port": gateway.http_port})
    state: dict[str, Any] = {"settings": settings, "worker": worker, "gateway": gateway}
    yield state
    await state["gateway"].stop()
    worker.stop()


async def bridge_run(gateway: Gateway, tokens: TokenAuthority, inquiry: str, *extra: str) -> asyncio.subprocess.Process:
    ws = f"ws://127.0.0.1:{gateway.ws_port}"
    return await asyncio.create_subprocess_exec(
        "node", "e2e/run.mjs",
        "--ws", f"{ws}/v1/client", "--token", tokens.mint(REFERENCE, "ingest", 900, template_id=TEMPLATE),
        "--subscribe", f"{ws}/v1/subscribe", "--subscribe-token", tokens.mint(REFERENCE, "subscribe", 900),
        "--inquiry", inquiry, "--reference-id", REFERENCE, "--expect-status", "approved", "--timeout", "120",
        *extra,
        cwd=CLIENTS_JS, stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def next_event(process: asyncio.subprocess.Process, name: str, timeout: float = 120) -> dict[str, Any]:
    assert process.stdout is not None
    async with asyncio.timeout(timeout):
        while True:
            line = await process.stdout.readline()
            assert line, f"the browser run ended before {name!r}"
            event: dict[str, Any] = json.loads(line)
            if event.get("event") == name:
                return event


async def post_lifecycle(gateway: Gateway, inquiry: str) -> None:
    base = time.time()
    async with aiohttp.ClientSession() as session:
        for step, (name, status) in enumerate(LIFECYCLE):
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(base + step))
            payload = body(
                inquiry_event(
                    f"evt_{inquiry}_{step}",
                    name,
                    status,
                    stamp,
                    inquiry_id=inquiry,
                    reference_id=REFERENCE,
                    template_id=TEMPLATE,
                )
            )
            headers = {"Persona-Signature": sign(WEBHOOK_SECRET.encode(), int(time.time()), payload)}
            url = f"http://127.0.0.1:{gateway.http_port}/v1/webhooks/persona"
            async with session.post(url, data=io.BytesIO(payload), headers=headers) as answer:
                assert answer.status == 200, await answer.text()


async def callbacks_of(gateway: Gateway) -> list[tuple[str, CallbackRecord]]:
    records = await consume(gateway.settings.bootstrap_servers(), gateway.topics.client_events.name, quiet=1.5)
    events = [(r.key.decode(), decode(ClientEvent, r.value)) for r in records]
    return [(key, event) for key, event in events if isinstance(event, CallbackRecord)]


async def test_the_real_sdk_in_chromium_feeds_kafka_and_receives_the_trusted_decision(
    parts: dict[str, Any], tokens: TokenAuthority
) -> None:
    gateway: Gateway = parts["gateway"]
    inquiry = "inq_e2eBrowser0001"
    run = await bridge_run(gateway, tokens, inquiry)

    async def started() -> bool:
        return any(
            key == inquiry and e.callback.kind == "onEvent" and getattr(e.callback, "name", "") == "start"
            for key, e in await callbacks_of(gateway)
        )

    await wait_for(started, timeout=90)
    await post_lifecycle(gateway, inquiry)
    result = await next_event(run, "result")
    assert await run.wait() == 0, result
    assert result["ok"], result
    assert [s["status"] for s in result["statuses"]][-1] == "approved"
    assert [s["version"] for s in result["statuses"]] == sorted({s["version"] for s in result["statuses"]})

    written = await callbacks_of(gateway)
    originals = [(key, e) for key, e in written if not e.relinked and e.session == result["session"]]
    kinds = Counter(e.callback.kind for _, e in originals)
    assert kinds == Counter(c["callback"] for c in result["callbacks"])  # every callback the app saw, once each
    assert {"onLoad", "onReady", "onEvent", "onComplete"} <= set(kinds)
    for key, e in originals:
        assert key == (inquiry if e.inquiry_id else f"session:{e.session}:{REFERENCE}")
        assert e.subject == REFERENCE
        assert e.template_id == TEMPLATE
    assert all(key == inquiry for key, e in written if e.relinked)  # pre-inquiry callbacks joined the inquiry
    assert {e.seq for key, e in written if e.relinked} == {e.seq for key, e in originals if key != inquiry}


async def test_a_gateway_restart_mid_flow_loses_nothing_and_counts_nothing_twice(
    parts: dict[str, Any], tokens: TokenAuthority, tmp_path: Path
) -> None:
    gateway: Gateway = parts["gateway"]
    inquiry = "inq_e2eRestart0001"
    resume = tmp_path / "resume"
    run = await bridge_run(gateway, tokens, inquiry, "--pause-after", "start", "--resume-file", str(resume))
    await next_event(run, "paused")
    await gateway.stop()  # the gateway goes away in the middle of the flow...
    resume.touch()  # ...while the flow goes on in the browser
    await asyncio.sleep(2)
    parts["gateway"] = gateway = await started_gateway(parts["settings"])  # and comes back
    await post_lifecycle(gateway, inquiry)
    result = await next_event(run, "result")
    assert await run.wait() == 0, result
    assert result["ok"], result
    assert result["connections"] >= 2, result

    written = [e for _, e in await callbacks_of(gateway) if not e.relinked and e.session == result["session"]]
    seqs = Counter(e.seq for e in written)
    assert sorted(seqs) == list(range(len(result["callbacks"])))  # nothing lost
    worker: Worker = parts["worker"]

    async def view_complete() -> bool:
        try:
            return len((await fetch_view(worker.port, inquiry)).client.timeline) == len(result["callbacks"])
        except AssertionError:
            return False

    await wait_for(view_complete, timeout=30)
    view = await fetch_view(worker.port, inquiry)
    assert sorted(entry.seq for entry in view.client.timeline) == sorted(seqs)  # each callback once in the view

    async def counted() -> dict[str, int]:
        latest: dict[Any, AnalyticsRecord] = {}
        for record in await consume(gateway.settings.bootstrap_servers(), gateway.topics.analytics.name, quiet=1.5):
            analytics = decode(AnalyticsRecord, record.value)
            if analytics.template_id == TEMPLATE:
                latest[analytics.window_start] = analytics
        totals: Counter[str] = Counter()
        for analytics in latest.values():
            totals.update(analytics.counts)
        return {k: v for k, v in totals.items() if k.startswith("callbacks.")}

    expected = dict(Counter(f"callbacks.{c['callback']}" for c in result["callbacks"]))

    async def counted_once() -> bool:
        return await counted() == expected

    await wait_for(counted_once, timeout=30)  # each callback counted once in the analytics, despite resends


async def test_the_bridge_refreshes_its_tokens_on_open_connections(
    parts: dict[str, Any], tokens: TokenAuthority, tmp_path: Path
) -> None:
    """Short-lived tokens from an app backend: the bridge and the status subscription ask their
    token() again before expiry and send refresh frames; the connections outlive several tokens."""
    from aiohttp import web

    gateway: Gateway = parts["gateway"]
    inquiry = "inq_e2eRefresh0001"
    ttl = 4  # seconds: each connection refreshes after about 3.2 s
    minted: Counter[str] = Counter()

    async def mint(request: web.Request) -> web.Response:
        scope = request.match_info["scope"]
        minted[scope] += 1
        extra = {"template_id": TEMPLATE} if scope == "ingest" else {}
        token = tokens.mint(REFERENCE, scope, ttl, **extra)  # type: ignore[arg-type]
        return web.Response(text=token, headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "no-store"})

    backend = web.Application()
    backend.router.add_get("/token/{scope}", mint)
    runner = web.AppRunner(backend)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    resume = tmp_path / "resume"
    ws = f"ws://127.0.0.1:{gateway.ws_port}"
    try:
        run = await asyncio.create_subprocess_exec(
            "node", "e2e/run.mjs",
            "--ws", f"{ws}/v1/client", "--token-url", f"http://127.0.0.1:{port}/token/ingest",
            "--subscribe", f"{ws}/v1/subscribe", "--subscribe-token-url", f"http://127.0.0.1:{port}/token/subscribe",
            "--inquiry", inquiry, "--reference-id", REFERENCE, "--expect-status", "approved", "--timeout", "120",
            "--pause-after", "start", "--resume-file", str(resume),
            cwd=CLIENTS_JS, stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await next_event(run, "paused")
        # both connections live past two token lifetimes: each asked for at least two fresh tokens
        await wait_for(lambda: minted["ingest"] >= 3 and minted["subscribe"] >= 3, timeout=60)
        resume.touch()
        await post_lifecycle(gateway, inquiry)
        result = await next_event(run, "result")
        assert await run.wait() == 0, result
    finally:
        await runner.cleanup()
    assert result["ok"], result
    assert [s["status"] for s in result["statuses"]][-1] == "approved"
    assert result["connections"] == 1, result["connection"]  # the ingest socket was never replaced
    assert sum(s["state"] == "refreshed" for s in result["connection"]) >= 2, result["connection"]
    assert sum(s["state"] == "refreshed" for s in result["subscription"]) >= 2, result["subscription"]
    closes = [s for s in result["connection"] + result["subscription"] if s.get("code") == 4001]
    assert closes == []  # no connection ran out of token
