"""Ingest: N callback frames over C websocket connections through the gateway into Kafka.

Two phases through the same gateway. Saturated: every connection keeps ``WINDOW`` frames in
flight; measures frames/s (first send to last acknowledgement), the throughput. Paced: the
connections together send ``rate`` frames a second for ``seconds``, a load the gateway sustains;
measures acknowledgement latency (a frame's send to the ack that covers it) where it is not
queueing behind an overload. Raw limit, same run: a bare aiokafka producer with the gateway's
settings (acks=all, idempotent, linger 2 ms) writing the same records.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import orjson
from aiokafka import AIOKafkaProducer
from websockets.asyncio.client import connect

from bench.harness import TOKEN_SECRET, Bench, Result, percentile
from core.tokens import TokenAuthority
from persona_stream.gateways import cores
from schemas.codec import encode
from schemas.records import CallbackRecord

WINDOW = 500  # frames a connection keeps in flight, like a browser with a backlog


def callback(seq: int) -> dict[str, object]:
    names = ("document-camera-select", "document-upload", "selfie-camera-capture", "page-change")
    return {"kind": "onEvent", "name": names[seq % len(names)], "metadata": {"step": seq, "side": "front"}}


async def client(
    url: str, token: str, session: str, inquiry: str, frames: int, latencies: list[float], rate: float | None = None
) -> None:
    """Send ``frames`` frames, at most ``WINDOW`` unacknowledged; ``rate`` a second if given, else at once."""
    sent: dict[int, float] = {}
    acked = -1
    async with connect(url, max_queue=None) as ws:
        await ws.send(orjson.dumps({"type": "auth", "token": token}).decode())
        assert orjson.loads(await ws.recv())["type"] == "ready"

        async def read() -> None:
            nonlocal acked
            async for message in ws:
                frame = orjson.loads(message)
                if frame["type"] == "ack":
                    now = time.perf_counter()
                    for seq in range(acked + 1, frame["seq"] + 1):
                        latencies.append(now - sent.pop(seq))
                    acked = frame["seq"]
                    if acked == frames - 1:
                        return
            # closed before the last ack (kafka-unavailable, say): fail the run rather than wait for ever
            raise RuntimeError(f"the gateway closed a connection ({ws.close_code} {ws.close_reason}) at ack {acked}")

        reader = asyncio.create_task(read())
        began = time.perf_counter()
        for seq in range(frames):
            if rate is not None and (due := began + seq / rate - time.perf_counter()) > 0:
                await asyncio.sleep(due)
            while seq - acked > WINDOW:  # a send window, polled like a browser's buffer
                if reader.done():
                    await reader  # it failed: raise its error
                await asyncio.sleep(0.001)
            sent[seq] = time.perf_counter()
            body = {
                "type": "callback",
                "session": session,
                "seq": seq,
                "ts": 1,
                "inquiry": inquiry,
                "callback": callback(seq),
            }
            await ws.send(orjson.dumps(body).decode())
        await reader


async def raw_producer(bench: Bench, frames: int) -> float:
    record = CallbackRecord(
        session="s" * 16, seq=0, client_ts=1, received_at=datetime.now(UTC), subject="bench-user",
        inquiry_id="inq_bench0000000000", callback=callback(0),
    )  # fmt: skip
    payload = encode(record)
    producer = AIOKafkaProducer(bootstrap_servers=bench.bootstrap, acks="all", enable_idempotence=True, linger_ms=2)
    await producer.start()
    try:
        started = time.perf_counter()
        futures = [
            await producer.send(bench.topics.client_events.name, payload, key=f"inq_raw{n % 997:07d}".encode())
            for n in range(frames)
        ]
        await asyncio.gather(*futures)
        return frames / (time.perf_counter() - started)
    finally:
        await producer.stop()


async def phase(
    url: str, tokens: TokenAuthority, name: str, frames: int, connections: int, rate: float | None = None
) -> tuple[float, list[float]]:
    """``frames`` frames over ``connections`` connections (``rate`` a second in all, if given):
    the frames/s from the first send to the last ack, and every frame's ack latency."""
    per = frames // connections
    latencies: list[float] = []
    started = time.perf_counter()
    await asyncio.gather(
        *(
            client(
                url,
                tokens.mint(f"user-{n}", "ingest", 600),
                f"bench{name}{n:06d}",
                f"inq_bench{n:07d}",
                per,
                latencies,
                None if rate is None else rate / connections,
            )
            for n in range(connections)
        )
    )
    return per * connections / (time.perf_counter() - started), latencies


async def run(
    bench: Bench, frames: int = 50_000, connections: int = 50, rate: float = 5_000.0, seconds: float = 10.0
) -> Result:
    await bench.create_topics()
    bench.start_gateway()
    tokens = TokenAuthority(TOKEN_SECRET.encode())
    url = f"ws://127.0.0.1:{bench.ws_port}/v1/client"
    try:
        throughput, latencies = await phase(url, tokens, "saturated", frames, connections)
        paced, paced_latencies = await phase(url, tokens, "paced", int(rate * seconds), connections, rate)
    finally:
        bench.stop()
    processes = int(bench.env()["PERSONA_STREAM_GATEWAY_PROCESSES"]) or cores()
    raw = await raw_producer(bench, frames // connections * connections)
    result = Result("ingest")
    result.figures = {
        "frames": frames // connections * connections,
        "connections": connections,
        "gateway processes": processes,
        "gateway frames/s": throughput,
        "raw producer records/s": raw,
        "ratio to raw": round(throughput / raw, 3),
        "ratio to raw per process": round(throughput / processes / raw, 3),
        "ack latency p50 ms (saturated)": percentile(latencies, 50) * 1000,
        "ack latency p99 ms (saturated)": percentile(latencies, 99) * 1000,
        "paced rate offered frames/s": rate,
        "paced rate achieved frames/s": paced,
        "ack latency p50 ms (paced)": percentile(paced_latencies, 50) * 1000,
        "ack latency p99 ms (paced)": percentile(paced_latencies, 99) * 1000,
    }
    result.targets = {"ratio to raw per process": ">= 0.30", "ack latency p99 ms (paced)": "<= 50"}
    return result
