"""Processing: M pre-produced events of a realistic mix, drained by one worker.

The mix is the simulator's: each inquiry's browser callbacks (as the gateway writes them) and
Persona's webhooks, in the proportions of its flows. Measures events/s from the worker's first
commit to the moment its committed offsets reach the end of both topics. Raw limit, same run: a
bare aiokafka consumer reading the same records, and faust's own floor: the workers' runtime with
an agent that drops every batch (:mod:`bench.floor`), reading the same records in a group of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from bench.floor import FLOOR_SUFFIX
from bench.harness import Bench, Result
from persona_stream.scenarios import plan_inquiry
from schemas.codec import encode, validate
from schemas.records import CallbackRecord


async def produce_mix(bench: Bench, events: int) -> int:
    """The records of as many simulated inquiries as it takes to reach ``events``; their count."""
    producer = AIOKafkaProducer(bootstrap_servers=bench.bootstrap, acks="all", enable_idempotence=True, linger_ms=20)
    await producer.start()
    written, number = 0, 0
    now = datetime.now(UTC)
    try:
        while written < events:
            plan = plan_inquiry(number, "bench", 3, chaos=True, users=max(1, events // 40))
            number += 1
            for session, callbacks, opened_with in plan.sessions:
                inquiry = opened_with
                for seq, payload in enumerate(callbacks):
                    inquiry = inquiry or payload.get("inquiryId") or (payload.get("metadata") or {}).get("inquiryId")
                    fields = {"session": session, "seq": seq, "client_ts": 0, "received_at": now}
                    fields |= {"subject": plan.reference_id, "inquiry_id": inquiry, "template_id": "itmpl_bench"}
                    record = validate(CallbackRecord, {**fields, "callback": payload})
                    await producer.send(bench.topics.client_events.name, encode(record), key=record.key().encode())
                    written += 1
            for body in plan.webhooks:
                await producer.send(bench.topics.webhooks.name, body, key=plan.inquiry_id.encode())
                written += 1
        await producer.flush()
    finally:
        await producer.stop()
    return written


async def committed_total(admin: AIOKafkaAdminClient, group: str, topics: set[str]) -> int:
    """The group's committed offsets on ``topics``, summed; 0 while its coordinator is not up yet."""
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    except KafkaError as exc:
        if not exc.retriable:  # a fresh broker: __consumer_offsets is created with the first group
            raise
        return 0
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic in topics and meta.offset > 0)


async def raw_consumer(bench: Bench, expected: int) -> float:
    consumer = AIOKafkaConsumer(bootstrap_servers=bench.bootstrap, enable_auto_commit=False, max_poll_records=5000)
    await consumer.start()
    try:
        tps = [
            TopicPartition(topic, p)
            for topic in (bench.topics.client_events.name, bench.topics.webhooks.name)
            for p in range(bench.partitions)
        ]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        started, read = time.perf_counter(), 0
        while read < expected:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                read += len(records)
        return read / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def drain_rate(bench: Bench, group: str, written: int, start: Callable[[], object]) -> float:
    """Start a consumer of the inputs; its events/s from its first commit to its last."""
    topics = {bench.topics.client_events.name, bench.topics.webhooks.name}
    admin = AIOKafkaAdminClient(bootstrap_servers=bench.bootstrap)
    await admin.start()
    try:
        start()
        first, first_at = 0, 0.0
        while True:
            done = await committed_total(admin, group, topics)
            if done and not first:
                first, first_at = done, time.perf_counter()
            if done >= written:
                break
            await asyncio.sleep(0.2)
        elapsed = time.perf_counter() - first_at
    finally:
        await admin.close()
        bench.stop()
    return (written - first) / elapsed if elapsed > 0 else 0.0


async def run(bench: Bench, events: int = 50_000) -> Result:
    await bench.create_topics()
    written = await produce_mix(bench, events)
    group = bench.settings.processors_id
    rate = await drain_rate(bench, group, written, bench.start_worker)
    floor = await drain_rate(bench, group + FLOOR_SUFFIX, written, lambda: bench.spawn_module("bench.floor"))
    raw = await raw_consumer(bench, written)
    result = Result("processing")
    result.figures = {
        "events": written,
        "guarantee": bench.extra_env.get("PERSONA_STREAM_PROCESSING_GUARANTEE", "exactly_once"),
        "worker events/s": rate,
        "faust floor events/s": floor,
        "raw consumer records/s": raw,
        "ratio to faust floor": round(rate / floor, 3) if floor else 0.0,
        "ratio to raw": round(rate / raw, 3),
    }
    result.targets = {"worker events/s": ">= 8,000"}
    result.notes.append("faust floor: the workers' runtime, guarantee and batching, an agent that drops every batch")
    return result
