"""Fan-out: K concurrent subscribers receiving the same updates.

K websocket connections subscribe to the firehose; webhooks are then posted one at a time and
every subscriber's delivery latency is measured (webhook posted → update received). Memory per
connection is the gateway's resident memory with the K subscribers, minus before, divided by K.
"""

from __future__ import annotations

import asyncio
import resource
import time
from datetime import UTC, datetime

import aiohttp
import orjson
from websockets.asyncio.client import ClientConnection, connect

from bench.harness import TOKEN_SECRET, WEBHOOK_SECRET, Bench, Result, percentile, rss
from core.tokens import TokenAuthority
from gateway.signatures import sign
from persona_stream.scenarios import webhook_body


async def subscriber(url: str, token: str) -> ClientConnection:
    ws = await connect(url, max_queue=64, compression=None, ping_interval=None)
    await ws.send(orjson.dumps({"type": "auth", "token": token}).decode())
    await ws.send(orjson.dumps({"type": "subscribe", "id": "all", "channel": "all"}).decode())
    while orjson.loads(await ws.recv())["type"] != "subscribed":
        pass
    return ws


async def receive(ws: ClientConnection, inquiry: str, posted: float, latencies: list[float]) -> None:
    while True:
        frame = orjson.loads(await ws.recv())
        if frame["type"] == "update" and frame["data"]["inquiry_id"] == inquiry:
            latencies.append(time.perf_counter() - posted)
            return


async def run(bench: Bench, subscribers: int = 10_000, updates: int = 10) -> Result:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    await bench.create_topics()
    bench.start_worker()
    gateway = bench.start_gateway()
    tokens = TokenAuthority(TOKEN_SECRET.encode())
    token = tokens.mint("bench", "firehose", 3600)
    url = f"ws://127.0.0.1:{bench.ws_port}/v1/subscribe"
    connections: list[ClientConnection] = []
    latencies: list[float] = []
    try:
        await asyncio.sleep(1)
        before = rss(gateway.pid)
        for start in range(0, subscribers, 500):
            connections += await asyncio.gather(*(subscriber(url, token) for _ in range(min(500, subscribers - start))))
        await asyncio.sleep(1)
        after = rss(gateway.pid)

        async with aiohttp.ClientSession() as http:
            for n in range(updates):
                inquiry = f"inq_fan{n:05d}"
                body = webhook_body(
                    f"evt_fan{n:05d}", "inquiry.created", "created", datetime.now(UTC), inquiry, "bench"
                )
                headers = {"Persona-Signature": sign(WEBHOOK_SECRET.encode(), int(time.time()), body)}
                posted = time.perf_counter()
                async with http.post(
                    f"http://127.0.0.1:{bench.http_port}/v1/webhooks/persona", data=body, headers=headers
                ) as answer:
                    await answer.read()

                await asyncio.wait_for(
                    asyncio.gather(*(receive(ws, inquiry, posted, latencies) for ws in connections)), 120
                )
    finally:
        for start in range(0, len(connections), 1000):
            await asyncio.gather(*(ws.close() for ws in connections[start : start + 1000]), return_exceptions=True)
        bench.stop()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    per_connection = (after - before) / max(1, subscribers)
    result = Result("fanout")
    result.figures = {
        "subscribers": subscribers,
        "updates each": updates,
        "deliveries": len(latencies),
        "delivery latency p50 ms": percentile(latencies, 50) * 1000,
        "delivery latency p99 ms": percentile(latencies, 99) * 1000,
        "delivery latency max ms": max(latencies) * 1000,
        "gateway RSS before MB": before / 2**20,
        "gateway RSS with subscribers MB": after / 2**20,
        "RSS per subscriber KB": per_connection / 1024,
    }
    result.targets = {"RSS per subscriber KB": "<= 30 with 10,000 subscribers"}
    return result
