"""Dead letters: list them, show one, and replay verified webhooks once their cause is fixed.

``<p>.dead-letters`` has one partition, so a letter's id is its offset. Replay re-feeds what came
from ``<p>.webhooks`` or was refused by the webhook receiver -- only verified bodies are ever
dead-lettered there -- to ``<p>.webhooks``, keyed by each inquiry the event names, as the gateway
writes them (with ``persona-stream-replayed-from: <offset>``). A body that still does not decode is
left where it is (``dead-letter-still-invalid``); a letter of another topic is not a webhook
(``dead-letter-not-a-webhook``).

Replay is idempotent by event id: the workers apply an event id once, so a webhook replayed again
(or one Persona delivered meanwhile) changes nothing.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from core.settings import Settings
from core.topics import TopicPlan
from schemas.codec import decode
from schemas.errors import Code, PersonaStreamError, SchemaError
from schemas.records import WEBHOOK_EVENT_ID_HEADER, WEBHOOK_RECEIVED_AT_HEADER, DeadLetter
from schemas.webhooks import WebhookEvent

REPLAYED_FROM_HEADER = "persona-stream-replayed-from"


class DeadLetterNotFound(PersonaStreamError):
    """No retained dead letter has the id asked for."""

    code = Code.DEAD_LETTER_NOT_FOUND


@dataclass(frozen=True)
class Letter:
    offset: int
    letter: DeadLetter


async def read_letters(settings: Settings) -> list[Letter]:
    """Every dead letter still retained, in order (the committed ones)."""
    topic = TopicPlan.from_settings(settings).dead_letters.name
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers(), enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        end = (await consumer.end_offsets([partition]))[partition]
        letters: list[Letter] = []
        while await consumer.position(partition) < end:
            batches = await consumer.getmany(partition, timeout_ms=1000)
            for record in batches.get(partition, []):
                try:
                    letters.append(Letter(record.offset, decode(DeadLetter, record.value)))
                except SchemaError:
                    continue  # not a dead letter of ours; nothing to show or replay
        return letters
    finally:
        await consumer.stop()


async def find_letter(settings: Settings, offset: int) -> Letter:
    for letter in await read_letters(settings):
        if letter.offset == offset:
            return letter
    raise DeadLetterNotFound(f"no dead letter {offset} (ids are offsets of the dead-letters topic)")


@dataclass
class ReplayReport:
    replayed: list[tuple[int, str]] = field(default_factory=list)  # (offset, event id)
    skipped: list[tuple[int, Code]] = field(default_factory=list)  # (offset, code)


async def replay(settings: Settings, reason: str | None = None, offsets: list[int] | None = None) -> ReplayReport:
    """Re-feed the verified webhooks among the dead letters (those of ``reason``, or ``offsets``)."""
    plan = TopicPlan.from_settings(settings)
    report = ReplayReport()
    chosen = [
        found
        for found in await read_letters(settings)
        if (reason is None or found.letter.reason == reason) and (offsets is None or found.offset in offsets)
    ]
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers(), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for found in chosen:
            letter = found.letter
            if letter.source_topic != plan.webhooks.name:
                report.skipped.append((found.offset, Code.DEAD_LETTER_NOT_A_WEBHOOK))
                continue
            body = base64.b64decode(letter.value_b64)
            try:
                event = decode(WebhookEvent, body)
            except SchemaError:
                report.skipped.append((found.offset, Code.DEAD_LETTER_STILL_INVALID))
                continue
            headers = [
                (WEBHOOK_RECEIVED_AT_HEADER, datetime.now(UTC).isoformat().encode()),
                (WEBHOOK_EVENT_ID_HEADER, event.event_id.encode()),
                (REPLAYED_FROM_HEADER, str(found.offset).encode()),
            ]
            for inquiry_id in event.inquiry_ids():
                await producer.send_and_wait(plan.webhooks.name, body, key=inquiry_id.encode(), headers=headers)
            report.replayed.append((found.offset, event.event_id))
    finally:
        await producer.stop()
    return report
