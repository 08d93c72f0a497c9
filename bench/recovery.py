"""Recovery: a worker holding S inquiries is killed (``kill -9``); how long until it serves again.

The S views are written straight into the inquiries changelog (the bytes a worker writes: one
realistic view per inquiry, on the partition its key hashes to), so that building the state does
not take as long as the measurement. A worker then recovers them and is killed; a new worker
starts, and "serves again" is the moment a new webhook for one of the S inquiries comes out as its
next status version -- state recovered, group rebalanced, processing resumed.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import murmur2

from bench.harness import Bench, Result, rss
from persona_stream.scenarios import webhook_body
from processors.correlation import Config, apply_callback, apply_webhook
from schemas.codec import decode, validate
from schemas.records import CallbackRecord, StatusRecord
from schemas.views import InquiryView
from schemas.webhooks import WebhookEvent

MODEL = "inq_recoverymodel000000"


def model_view() -> bytes:
    """A realistic view: four trusted changes, a dozen callbacks."""
    view, now = InquiryView(inquiry_id=MODEL), datetime.now(UTC)
    for step, (name, status) in enumerate(
        (
            ("inquiry.created", "created"),
            ("inquiry.started", "pending"),
            ("inquiry.completed", "completed"),
            ("inquiry.approved", "approved"),
        )
    ):
        body = webhook_body(f"evt_model_{step}", name, status, now, MODEL, "user-00001")
        apply_webhook(view, decode(WebhookEvent, body), now, Config())
    for seq, payload in enumerate(
        [
            {"kind": "onLoad"},
            {"kind": "onReady"},
            {"kind": "onEvent", "name": "start", "metadata": {"inquiryId": MODEL}},
        ]
        + [{"kind": "onEvent", "name": "document-upload"}] * 8
        + [{"kind": "onComplete", "inquiryId": MODEL, "status": "completed"}]
    ):
        record = validate(
            CallbackRecord,
            {
                "session": "sessionmodel0001",
                "seq": seq,
                "client_ts": 0,
                "received_at": now,
                "subject": "user-00001",
                "inquiry_id": MODEL,
                "callback": payload,
            },
        )
        apply_callback(view, record, now, Config())
    return view.model_dump_json(exclude_defaults=True).encode()


def inquiry(n: int) -> str:
    return f"inq_recovery{n:011d}"


async def write_changelog(bench: Bench, inquiries: int) -> tuple[str, int]:
    topic = f"{bench.settings.processors_id}-inquiries-changelog"
    admin = AIOKafkaAdminClient(bootstrap_servers=bench.bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, bench.partitions, 1, topic_configs={"cleanup.policy": "compact"})])
    await admin.close()
    template = model_view()
    producer = AIOKafkaProducer(
        bootstrap_servers=bench.bootstrap, acks=1, linger_ms=50, max_batch_size=1 << 20, compression_type=None
    )
    await producer.start()
    try:
        for n in range(inquiries):
            key = inquiry(n).encode()
            value = template.replace(MODEL.encode(), key)
            await producer.send(topic, value, key=key, partition=(murmur2(key) & 0x7FFFFFFF) % bench.partitions)
        await producer.flush()
    finally:
        await producer.stop()
    return topic, len(template)


async def wait_status(bench: Bench, inquiry_id: str, version: int, timeout: float = 600) -> float:
    consumer = AIOKafkaConsumer(bootstrap_servers=bench.bootstrap, isolation_level="read_committed")
    await consumer.start()
    try:
        tps = [TopicPartition(bench.topics.inquiry_status.name, p) for p in range(bench.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    status = decode(StatusRecord, record.value)
                    if status.inquiry_id == inquiry_id and status.version >= version:
                        return time.monotonic()
        raise TimeoutError(f"no status {version} for {inquiry_id}")
    finally:
        await consumer.stop()


async def probe(bench: Bench, inquiry_id: str, step: int) -> None:
    # a change a status record carries (a tags-only event would publish nothing): review, then a decision
    name, status = (("inquiry.marked-for-review", "needs_review"), ("inquiry.approved", "approved"))[(step - 1) % 2]
    body = webhook_body(f"evt_probe_{step}", name, status, datetime.now(UTC), inquiry_id, "user-00001")
    producer = AIOKafkaProducer(bootstrap_servers=bench.bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    await producer.send_and_wait(bench.topics.webhooks.name, body, key=inquiry_id.encode())
    await producer.stop()


async def read_back(bench: Bench, topic: str) -> float:
    """The raw limit of a restore: a bare read-committed consumer reading the whole changelog, records/s."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bench.bootstrap,
        isolation_level="read_committed",
        enable_auto_commit=False,
        fetch_max_bytes=64 << 20,
        max_partition_fetch_bytes=16 << 20,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, partition) for partition in range(bench.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        started, records = time.monotonic(), 0
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            for batch in (await consumer.getmany(*remaining, timeout_ms=500, max_records=50_000)).values():
                records += len(batch)
            for tp in list(remaining):  # the position passes the transactions' markers too
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return records / (time.monotonic() - started)
    finally:
        await consumer.stop()


def restore_rate(log: Path) -> float:
    """records/s of the bulk restore of the inquiries, as the worker logged it."""
    for line in log.read_text(errors="replace").splitlines():
        if "restored " in line and "inquiries-changelog" in line:
            return float(line.rsplit(": ", 1)[1].split()[0])
    return 0.0


async def run(bench: Bench, inquiries: int = 1_000_000) -> Result:
    bench.extra_env["PERSONA_STREAM_WORKER_SESSION_TIMEOUT_SECONDS"] = "6"
    await bench.create_topics()
    written_at = time.monotonic()
    topic, view_bytes = await write_changelog(bench, inquiries)
    write_seconds = time.monotonic() - written_at
    target = inquiry(inquiries // 2)
    try:
        first = bench.start_worker(timeout=600)
        started = time.monotonic()
        await probe(bench, target, 1)
        await wait_status(bench, target, 5)  # the model view is at version 4
        first_recovery = time.monotonic() - started
        memory = rss(first.pid)
        restored_per_second = restore_rate(bench.logs[first.pid])
        first.kill()  # SIGKILL
        first.wait()
        killed = time.monotonic()
        bench.processes.remove(first)
        bench.start_worker(timeout=600)
        await probe(bench, target, 2)
        served = await wait_status(bench, target, 6)
    finally:
        bench.stop()
    raw_read = await read_back(bench, topic)
    result = Result("recovery")
    result.figures = {
        "inquiries": inquiries,
        "view bytes": view_bytes,
        "changelog write s": write_seconds,
        "first start to serving s": first_recovery,
        "bulk restore records/s": restored_per_second,
        "raw: bare consumer over the changelog records/s": raw_read,
        "kill -9 to serving again s": served - killed,
        "worker RSS with the state MB": memory / 2**20,
    }
    result.targets = {
        "first start to serving s": "<= 60 for 1,000,000 inquiries (no local state)",
        "bulk restore records/s": ">= 50,000",
        "kill -9 to serving again s": "<= 30 for 1,000,000 inquiries",
        "worker RSS with the state MB": "<= 600",
    }
    result.notes.append("includes the group's failure detection (session timeout 6 s, the broker's minimum)")
    return result
