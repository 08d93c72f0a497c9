"""Batched processing: coalesced writes, records in order, and a failed input taken out whole.

The pipeline runs with fakes in place of faust's tables and the Kafka output (no broker); the
``kill -9`` integration test covers the same path against the real one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from faust.types import TP

from core.settings import Settings
from core.topics import TopicPlan
from persona_stream.webhook_bodies import INQUIRY_ID, body, inquiry_event
from processors.analytics import WindowConfig
from processors.batch import Batch
from processors.correlation import Config
from processors.pipeline import Pipeline, Tables
from schemas.codec import decode
from schemas.internal import AnalyticsFact
from schemas.records import StatusRecord

PLAN = TopicPlan.from_settings(Settings(topic_prefix="unit", partitions=3))


@dataclass
class FakeChangelog:
    name: str

    def get_topic_name(self) -> str:
        return self.name


@dataclass
class FakeTable:
    name: str
    data: dict[bytes, bytes] = field(default_factory=dict)

    @property
    def changelog_topic(self) -> FakeChangelog:
        return FakeChangelog(f"{self.name}-changelog")


@dataclass
class Sent:
    topic: str
    key: bytes | None
    value: bytes | None
    source: Any


@dataclass
class FakeOutput:
    sent: list[Sent] = field(default_factory=list)

    async def send(
        self, topic: str, key: bytes | None, value: bytes | None, *, source: Any, partition: int | None = None
    ) -> None:
        self.sent.append(Sent(topic, key, value, source))

    def to(self, topic: str) -> list[Sent]:
        return [s for s in self.sent if s.topic == topic]


@dataclass
class FakeMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    timestamp: float = 1_700_000_000.0

    @property
    def tp(self) -> TP:
        return TP(self.topic, self.partition)


@dataclass
class FakeEvent:
    message: FakeMessage


def pipeline(output: FakeOutput, cls: type[Pipeline] = Pipeline) -> Pipeline:
    tables = Tables(
        inquiries=FakeTable("inquiries"),
        sessions=FakeTable("sessions"),
        deadlines=FakeTable("deadlines"),
        windows=FakeTable("windows"),
    )
    return cls(
        topics=PLAN,
        ticks_topic=PLAN.processor_ticks.name,
        tables=tables,
        output=output,  # type: ignore[arg-type]
        config=Config(),
        window_config=WindowConfig(size_seconds=60, grace_seconds=5),
        cache_size=10,
    )


LIFECYCLE = [
    ("created", "inquiry.created"),
    ("pending", "inquiry.started"),
    ("completed", "inquiry.completed"),
    ("approved", "inquiry.approved"),
]


def webhooks(inquiry_id: str = INQUIRY_ID, first_offset: int = 0) -> list[FakeEvent]:
    events = []
    for n, (status, name) in enumerate(LIFECYCLE):
        document = inquiry_event(
            f"evt_{inquiry_id}_{n}", name, status, f"2026-11-01T10:00:0{n}.000Z", inquiry_id=inquiry_id
        )
        message = FakeMessage(PLAN.webhooks.name, 1, first_offset + n, inquiry_id.encode(), body(document))
        events.append(FakeEvent(message))
    return events


def statuses(output: FakeOutput, inquiry_id: str = INQUIRY_ID) -> list[StatusRecord]:
    return [
        decode(StatusRecord, s.value or b"")
        for s in output.to(PLAN.inquiry_status.name)
        if s.key == inquiry_id.encode()
    ]


async def test_a_batch_writes_one_changelog_record_per_inquiry_every_status_in_order_and_summed_facts() -> None:
    output = FakeOutput()
    other = "inq_" + "B" * 24
    await pipeline(output).on_batch(webhooks() + webhooks(other, first_offset=10))
    changelog = output.to("inquiries-changelog")
    assert sorted(s.key or b"" for s in changelog) == sorted([INQUIRY_ID.encode(), other.encode()])
    for inquiry in (INQUIRY_ID, other):
        records = statuses(output, inquiry)
        assert [r.version for r in records] == [1, 2, 3, 4]
        assert [r.status for r in records] == ["created", "pending", "completed", "approved"]
    facts = [decode(AnalyticsFact, s.value or b"") for s in output.to(PLAN.analytics_facts.name)]
    assert len(facts) == 1  # one template, one window, one partition
    one = Counter[str]()
    single = FakeOutput()
    for event in webhooks():
        await pipeline(single).on_batch([event])
    for s in single.to(PLAN.analytics_facts.name):
        one.update(decode(AnalyticsFact, s.value or b"").counts)
    assert facts[0].counts == {name: 2 * count for name, count in one.items()}  # the same counts, summed


async def test_batches_of_any_size_publish_the_same_records() -> None:
    one_batch, one_by_one = FakeOutput(), FakeOutput()
    await pipeline(one_batch).on_batch(webhooks())
    single = pipeline(one_by_one)
    for event in webhooks():
        await single.on_batch([event])
    batched, single_records = statuses(one_batch), statuses(one_by_one)
    assert [r.model_dump(exclude={"cause"}) for r in batched] == [
        r.model_dump(exclude={"cause"}) for r in single_records
    ]


class FailsOnce(Pipeline):
    """Fails half way through the third webhook, after touching its inquiry's view."""

    async def _webhook(self, message: Any, batch: Batch) -> None:
        if message.offset == 2 and not getattr(self, "failed", False):
            self.failed = True
            pending = batch.touch(message.key, message.tp, self.load_view(message.key, batch))
            pending.view.client.steps.append("half-applied")
            raise RuntimeError("a bug")
        await super()._webhook(message, batch)


async def test_an_input_that_fails_half_way_is_dead_lettered_and_the_batch_is_replayed_without_it() -> None:
    output = FakeOutput()
    await pipeline(output, FailsOnce).on_batch(webhooks())
    records = statuses(output)
    assert [r.status for r in records] == ["created", "pending", "approved"]
    assert [r.version for r in records] == [1, 2, 3]  # nothing doubled, no gap
    letters = output.to(PLAN.dead_letters.name)
    assert len(letters) == 1
    assert orjson.loads(letters[0].value or b"")["reason"] == "processing-failed"
    (written,) = output.to("inquiries-changelog")
    assert b"half-applied" not in (written.value or b"")


def test_fact_sums_keep_windows_and_partitions_apart() -> None:
    batch = Batch(window_seconds=60)
    at = datetime(2026, 11, 1, 10, 0, 5, tzinfo=UTC)
    later = datetime(2026, 11, 1, 10, 1, 5, tzinfo=UTC)
    for key, partition, when in [(b"a", 0, at), (b"b", 0, at), (b"c", 1, at), (b"d", 0, later)]:
        pending = batch.touch(key, TP("in", partition), view=None)
        pending.facts.append(("itmpl_1", when, {"callbacks": 1}, [1.5]))
    sums = batch.fact_sums()
    assert sorted((k.partition, k.window_start.minute, dict(v.counts)["callbacks"]) for k, v in sums.items()) == [
        (0, 0, 2),
        (0, 1, 1),
        (1, 0, 1),
    ]


def test_discard_returns_what_was_applied_in_order() -> None:
    batch = Batch(window_seconds=60)
    pending = batch.touch(b"a", TP("in", 0), view=None)
    pending.inputs += ["m1", "m2"]
    assert batch.discard(b"a") == ["m1", "m2"]
    assert batch.view(b"a") is None
    assert batch.discard(b"a") == []


@pytest.mark.parametrize("size", [1, 2, 3])
async def test_one_view_is_live_across_a_batch_even_past_the_cache_size(size: int) -> None:
    output = FakeOutput()
    p = pipeline(output)
    p.cache_size = size
    per_inquiry = [webhooks(f"inq_{n:024d}", first_offset=10 * n) for n in range(5)]
    events = [event for step in zip(*per_inquiry, strict=True) for event in step]  # interleaved
    await p.on_batch(events)
    for n in range(5):
        assert [r.version for r in statuses(output, f"inq_{n:024d}")] == [1, 2, 3, 4]
