"""End to end: a signed webhook posted to the gateway → the update received by a websocket
subscriber (gateway → Kafka → worker → Kafka → gateway → subscriber), at a fixed rate.

The first ``warmup`` seconds (partitions being assigned, caches and connections warming) are
reported apart; the latency figures are of the ``seconds`` after them."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import aiohttp
import orjson
from websockets.asyncio.client import connect

from bench.harness import TOKEN_SECRET, WEBHOOK_SECRET, Bench, Result, percentile
from core.tokens import TokenAuthority
from gateway.signatures import sign
from persona_stream.scenarios import webhook_body


async def run(bench: Bench, rate: float = 1000.0, seconds: float = 30.0, warmup: float = 5.0) -> Result:
    await bench.create_topics()
    bench.start_worker()
    bench.start_gateway()
    tokens = TokenAuthority(TOKEN_SECRET.encode())
    posted: dict[str, float] = {}
    latencies: dict[str, float] = {}
    warming = int(rate * warmup)
    total = warming + int(rate * seconds)
    received = asyncio.Event()
    try:
        async with connect(f"ws://127.0.0.1:{bench.ws_port}/v1/subscribe", max_queue=None) as ws:
            await ws.send(orjson.dumps({"type": "auth", "token": tokens.mint("bench", "firehose", 600)}).decode())
            await ws.send(orjson.dumps({"type": "subscribe", "id": "all", "channel": "all"}).decode())

            async def read() -> None:
                async for message in ws:
                    frame = orjson.loads(message)
                    if frame["type"] == "update":
                        inquiry = frame["data"]["inquiry_id"]
                        latencies.setdefault(inquiry, time.perf_counter() - posted[inquiry])
                        if len(latencies) >= total:
                            received.set()

            reader = asyncio.create_task(read())
            connector = aiohttp.TCPConnector(limit=200)
            async with aiohttp.ClientSession(connector=connector) as http:
                url = f"http://127.0.0.1:{bench.http_port}/v1/webhooks/persona"
                now = datetime.now(UTC)
                bodies = [
                    (inquiry, webhook_body(f"evt_e2e{n:07d}", "inquiry.created", "created", now, inquiry, "bench"))
                    for n in range(total)
                    if (inquiry := f"inq_e2e{n:07d}")
                ]

                async def post(inquiry: str, body: bytes) -> None:
                    headers = {"Persona-Signature": sign(WEBHOOK_SECRET.encode(), int(time.time()), body)}
                    posted[inquiry] = time.perf_counter()
                    async with http.post(url, data=body, headers=headers) as answer:
                        await answer.read()

                started = time.perf_counter()
                tasks = []
                for index, (inquiry, body) in enumerate(bodies):
                    delay = started + index / rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    tasks.append(asyncio.create_task(post(inquiry, body)))
                await asyncio.gather(*tasks)
                achieved = total / (time.perf_counter() - started)
                await asyncio.wait_for(received.wait(), 60)
            reader.cancel()
    finally:
        bench.stop()
    order = [inquiry for inquiry, _ in bodies]
    warm = [latencies[inquiry] for inquiry in order[:warming] if inquiry in latencies]
    measured = [latencies[inquiry] for inquiry in order[warming:] if inquiry in latencies]
    guarantee = bench.extra_env.get("PERSONA_STREAM_PROCESSING_GUARANTEE", "exactly_once")
    result = Result("end_to_end")
    result.figures = {
        "updates": len(latencies),
        "guarantee": guarantee,
        "offered events/s": rate,
        "achieved events/s": achieved,
        "warm-up s": warmup,
        "warm-up latency p99 ms": percentile(warm, 99) * 1000 if warm else 0.0,
        "latency p50 ms": percentile(measured, 50) * 1000,
        "latency p99 ms": percentile(measured, 99) * 1000,
        "latency max ms": max(measured) * 1000,
    }
    limit = "150" if guarantee == "exactly_once" else "50"
    result.targets = {"latency p99 ms": f"<= {limit} at 1,000 events/s"}
    return result
