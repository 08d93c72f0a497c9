"""The HTTP port under a flood of slow clients (slow-loris headers and bodies), on 127.0.0.1.

While a bounded flood (more slow connections than ``http_max_connections``) trickles request
headers and bodies, signed webhooks and ``/readyz`` keep answering 2xx within Persona's budget
(1 s here, for a 5 s delivery timeout), every slow connection is closed by the gateway -- after
the header or body timeout, or earlier when a newer connection took its place -- and the
process's memory stays bounded. The figures are printed (docs/reliability.md quotes them).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import aiohttp
import psutil
import pytest

from tests.integration.conftest import gateway_settings, started_gateway
from tests.reliability.test_faults import deliveries

pytestmark = pytest.mark.integration

HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
CAP = 300
SLOW_HEADERS = 800
SLOW_BODIES = 200
FLOOD_SECONDS = 12.0
BUDGET = 1.0


@dataclass
class Slow:
    kind: str
    opened: float = 0.0
    closed: float | None = None
    answer: bytes = b""

    @property
    def lifetime(self) -> float:
        assert self.closed is not None
        return self.closed - self.opened


async def trickle(port: int, slow: Slow) -> None:
    """Open a connection and send a request one line (or one body byte) a second until the server closes it."""
    slow.opened = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        slow.closed, slow.answer = time.monotonic(), b"connect-failed"
        return
    head = "POST /v1/webhooks/persona HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if slow.kind == "body":
        head += "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"

    async def send() -> None:
        writer.write(head.encode())
        for n in range(int(FLOOD_SECONDS * 2)):
            await asyncio.sleep(1)
            writer.write(b"{" if slow.kind == "body" else f"X-Slow-{n}: y\r\n".encode())
            await writer.drain()

    sending = asyncio.create_task(send())
    try:
        slow.answer = await asyncio.wait_for(reader.read(), FLOOD_SECONDS * 2)
    except (OSError, TimeoutError):
        pass
    finally:
        slow.closed = time.monotonic()
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def test_webhooks_and_readyz_answer_in_time_while_slow_clients_flood_the_http_port(
    kafka_bootstrap: str, unique: str
) -> None:
    settings = gateway_settings(
        kafka_bootstrap, unique, http_max_connections=CAP, http_header_timeout_seconds=HEADER_TIMEOUT,
        http_body_timeout_seconds=BODY_TIMEOUT, http_keepalive_seconds=5.0,
    )  # fmt: skip
    gateway = await started_gateway(settings)
    port = gateway.http_port
    url = f"http://127.0.0.1:{port}"
    process = psutil.Process()
    rss_before = process.memory_info().rss
    rss_peak = rss_before
    slows = [Slow("headers") for _ in range(SLOW_HEADERS)] + [Slow("body") for _ in range(SLOW_BODIES)]
    webhook_times: list[float] = []
    readyz_times: list[float] = []
    answers: list[tuple[int, str]] = []
    try:
        flood: list[asyncio.Task[None]] = []
        for n, slow in enumerate(slows):  # opened over about 2 s, interleaving the two kinds
            flood.append(asyncio.create_task(trickle(port, slow)))
            if n % 50 == 49:
                await asyncio.sleep(0.1)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            began = time.monotonic()
            for delivery in deliveries(unique, 40):
                started = time.monotonic()
                status, code, _ = await delivery.attempt(http, f"{url}/v1/webhooks/persona")
                webhook_times.append(time.monotonic() - started)
                answers.append((status, code))
                started = time.monotonic()
                async with http.get(f"{url}/readyz") as response:
                    answers.append((response.status, "readyz"))
                readyz_times.append(time.monotonic() - started)
                rss_peak = max(rss_peak, process.memory_info().rss)
                await asyncio.sleep(max(0.0, FLOOD_SECONDS / 40 - (time.monotonic() - started)))
            assert time.monotonic() - began < FLOOD_SECONDS * 2
        await asyncio.gather(*flood)
        rss_after = process.memory_info().rss
        closed = gateway.metrics.http_connections_closed
        reasons = {r: closed.labels(r)._value.get() for r in ("header-timeout", "body-timeout", "evicted")}
        reasons["too-many-connections"] = closed.labels("too-many-connections")._value.get()
    finally:
        await gateway.stop()

    assert answers == [(200, "accepted"), (200, "readyz")] * 40
    assert max(webhook_times) < BUDGET, webhook_times
    assert max(readyz_times) < BUDGET, readyz_times
    assert all(slow.closed is not None for slow in slows)
    assert all(slow.answer == b"" for slow in slows), {slow.answer[:40] for slow in slows}  # closed, not answered
    by_kind = {kind: [s.lifetime for s in slows if s.kind == kind] for kind in ("headers", "body")}
    assert max(by_kind["headers"]) < HEADER_TIMEOUT + 1.5
    assert max(by_kind["body"]) < HEADER_TIMEOUT + BODY_TIMEOUT + 1.5
    growth = (rss_peak - rss_before) / 2**20
    assert growth < 100, f"memory grew {growth:.0f} MB"
    webhook_times.sort()
    print(
        f"\n[slow-clients] {SLOW_HEADERS} slow-header + {SLOW_BODIES} slow-body connections, cap {CAP}: "
        f"webhooks 40/40 200, p50 {webhook_times[20] * 1000:.0f} ms, max {webhook_times[-1] * 1000:.0f} ms; "
        f"/readyz max {max(readyz_times) * 1000:.0f} ms; slow connections alive at most "
        f"{max(by_kind['headers']):.1f} s (headers), {max(by_kind['body']):.1f} s (body); closed by reason {reasons}; "
        f"RSS {rss_before / 2**20:.0f} -> peak {rss_peak / 2**20:.0f} -> {rss_after / 2**20:.0f} MB",
        flush=True,
    )


async def test_a_full_port_refuses_clearly_and_idle_keep_alive_connections_are_closed(
    kafka_bootstrap: str, unique: str
) -> None:
    settings = gateway_settings(
        kafka_bootstrap, unique, http_max_connections=2, http_header_timeout_seconds=30.0,
        http_body_timeout_seconds=30.0, http_keepalive_seconds=1.0,
    )  # fmt: skip
    gateway = await started_gateway(settings)
    port = gateway.http_port
    busy = []
    try:
        for _ in range(2):  # two requests whose bodies are still coming: busy, not replaceable
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /v1/webhooks/persona HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            await writer.drain()
            busy.append((reader, writer))
        await asyncio.sleep(0.2)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        refusal = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        head, _, body = refusal.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 ")
        assert b"Retry-After: 1" in head
        assert b'"code": "too-many-connections"' in body
        for _, writer in busy:
            writer.close()
        await asyncio.sleep(0.2)

        # a keep-alive connection, idle after its answer, is closed after http_keepalive_seconds
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answered = await asyncio.wait_for(reader.readuntil(b"}"), 10)  # the JSON body: status and pid
        assert answered.startswith(b"HTTP/1.1 200 ")
        assert b'"status": "ok"' in answered
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the gateway
        writer.close()
        assert gateway.metrics.http_connections_closed.labels("too-many-connections")._value.get() == 1
    finally:
        await gateway.stop()
