"""Reconciliation with Persona's REST API: reads of inquiries enter the pipeline as trusted inputs.

A read never writes state: it becomes an :class:`~schemas.records.ApiSnapshot` on
``<p>.api-snapshots`` (keyed by inquiry id, co-partitioned with the webhooks), and the worker that
owns the inquiry applies it like a verified webhook (:func:`processors.correlation.apply_api_snapshot`).

Three ways in:

* :class:`Reconciler` (``persona-stream reconciler``; ``persona-stream run`` starts one when an API
  key is configured): a consumer group over ``<p>.reconcile-requests`` -- which the workers' timer
  fills, each reconcile interval, for every inquiry whose ``awaiting_confirmation`` is raised -- and
  ``<p>.dead-letters`` (a dead-lettered webhook names an inquiry to read). Partition ownership means
  two reconcilers never make the same call; offsets are committed once the snapshots are in Kafka, so
  a crash can repeat a call, whose snapshot the workers then deduplicate.
* :func:`reconcile_ids` (``persona-stream reconcile --inquiry ID...``): on demand.
* :class:`Backfill` (``persona-stream reconcile --since DATE [--template ID]``): every inquiry of the
  API's paginated list, with a checkpoint file (the page cursor and the ids done on that page) so
  an interrupted run resumes where it stopped and reconciles each inquiry once.

Every call goes through :class:`~processors.persona_api.PersonaApiClient`, so the configured rate
and concurrency bound all of them. A failed read is logged with its stable code and left: the
timer asks again next interval while the flag stays raised.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from core.settings import Settings
from core.topics import TopicPlan
from processors.lifecycle import parse_timestamp
from processors.persona_api import InquirySnapshot, PersonaApiClient, PersonaApiError
from schemas.callbacks import INQUIRY_ID_PATTERN, is_inquiry_id
from schemas.codec import decode, encode
from schemas.errors import Code, PersonaStreamError, SchemaError
from schemas.records import ApiSnapshot, DeadLetter, ReconcileReason, ReconcileRequest

log = logging.getLogger(__name__)

_INQUIRY_IN_BODY = re.compile(rb'"(' + INQUIRY_ID_PATTERN[1:-1].encode() + rb')"')


def to_record(snapshot: InquirySnapshot, reason: ReconcileReason) -> ApiSnapshot:
    """The record of one API read.

    ``observed_at`` is the later of the answer's ``Date`` (whole seconds) and the object's
    ``updated-at`` (milliseconds): the inquiry was in this state at least then, so a webhook created
    before it is older, and one created after it is newer. ``snapshot_id`` hashes the inquiry id,
    status and ``updated-at``: reading the same state twice gives the same id.
    """
    updated = parse_timestamp(snapshot.updated_at)
    observed = max(snapshot.observed_at, updated) if updated is not None else snapshot.observed_at
    identity = f"{snapshot.inquiry_id}|{snapshot.status}|{snapshot.updated_at or observed.isoformat()}"
    return ApiSnapshot(
        inquiry_id=snapshot.inquiry_id,
        snapshot_id="api_" + hashlib.sha256(identity.encode()).hexdigest()[:32],
        observed_at=observed,
        reason=reason,
        inquiry=snapshot.inquiry,
    )


def dead_letter_inquiry(letter: DeadLetter, webhooks_topic: str) -> str | None:
    """The inquiry a dead-lettered webhook is about, if it names one (else None)."""
    if letter.source_topic != webhooks_topic:
        return None
    if letter.key is not None and is_inquiry_id(letter.key):
        return letter.key
    try:
        value = base64.b64decode(letter.value_b64)
    except ValueError:
        return None
    try:
        document = json.loads(value)
        data = document["data"]["attributes"]["payload"]["data"]
        if data.get("type") == "inquiry" and isinstance(data.get("id"), str) and is_inquiry_id(data["id"]):
            return str(data["id"])
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    found = _INQUIRY_IN_BODY.search(value)  # an envelope that did not parse may still name it
    return found.group(1).decode() if found else None


class SnapshotWriter:
    """Writes API snapshots to ``<p>.api-snapshots``: idempotent, ``acks=all``, keyed by inquiry id."""

    def __init__(self, settings: Settings) -> None:
        self.topic = TopicPlan.from_settings(settings).api_snapshots.name
        self.producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers(), acks="all", enable_idempotence=True, linger_ms=5
        )

    async def __aenter__(self) -> SnapshotWriter:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def write(self, records: Sequence[ApiSnapshot]) -> None:
        """Returns once the broker holds every record."""
        futures = [await self.producer.send(self.topic, encode(r), key=r.inquiry_id.encode()) for r in records]
        for future in futures:
            await future


@dataclass
class Result:
    """What one reconcile did: snapshots written, and the failures by inquiry (stable codes)."""

    written: list[ApiSnapshot] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


async def read_all(api: PersonaApiClient, ids: Iterable[str], reason: ReconcileReason) -> Result:
    """Read each inquiry (concurrently; the client bounds concurrency and rate)."""
    unique = list(dict.fromkeys(ids))
    answers = await asyncio.gather(*(api.get_inquiry(i) for i in unique), return_exceptions=True)
    result = Result()
    for inquiry_id, answer in zip(unique, answers, strict=True):
        if isinstance(answer, PersonaApiError):
            log.warning("reconcile %s: %s [%s]", inquiry_id, answer, answer.code)
            result.failed[inquiry_id] = answer.code
        elif isinstance(answer, BaseException):
            raise answer
        else:
            result.written.append(to_record(answer, reason))
    return result


async def reconcile_ids(settings: Settings, ids: Sequence[str], api: PersonaApiClient | None = None) -> Result:
    """On demand: read each inquiry and write its snapshot."""
    async with (
        PersonaApiClient(settings) if api is None else _borrowed(api) as client,
        SnapshotWriter(settings) as writer,
    ):
        result = await read_all(client, ids, "on-demand")
        await writer.write(result.written)
        return result


class _borrowed:
    """An already open client, used as a context manager without closing it."""

    def __init__(self, api: PersonaApiClient) -> None:
        self.api = api

    async def __aenter__(self) -> PersonaApiClient:
        return self.api

    async def __aexit__(self, *exc: object) -> None:
        return None


# --- the reconciler process --------------------------------------------------------------------


class Reconciler:
    """A member of the reconcilers' consumer group (see the module docstring)."""

    def __init__(self, settings: Settings, api: PersonaApiClient | None = None) -> None:
        self.settings = settings
        self.plan = TopicPlan.from_settings(settings)
        self.api = api
        self.stopping = asyncio.Event()
        self.started = asyncio.Event()
        self.reads = 0
        self.failures = 0

    async def run(self) -> None:
        plan = self.plan
        consumer = AIOKafkaConsumer(
            plan.reconcile_requests.name,
            plan.dead_letters.name,
            bootstrap_servers=self.settings.bootstrap_servers(),
            group_id=self.settings.reconciler_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        async with (
            PersonaApiClient(self.settings) if self.api is None else _borrowed(self.api) as api,
            SnapshotWriter(self.settings) as writer,
        ):
            await consumer.start()
            try:
                self.started.set()
                while not self.stopping.is_set():
                    batches = await consumer.getmany(timeout_ms=500, max_records=200)
                    if not batches:
                        continue
                    wanted: dict[str, ReconcileReason] = {}
                    for records in batches.values():
                        for record in records:
                            found = self._wanted(record)
                            if found is not None:
                                wanted.setdefault(*found)
                    reasons: tuple[ReconcileReason, ...] = ("dead-letter", "awaiting-confirmation")
                    for reason in reasons:
                        ids = [i for i, r in wanted.items() if r == reason]
                        if ids:
                            result = await read_all(api, ids, reason)
                            await writer.write(result.written)
                            self.reads += len(result.written)
                            self.failures += len(result.failed)
                    await consumer.commit()
            finally:
                await consumer.stop()

    def _wanted(self, record: Any) -> tuple[str, ReconcileReason] | None:
        try:
            if record.topic == self.plan.reconcile_requests.name:
                request = decode(ReconcileRequest, record.value)
                return request.inquiry_id, request.reason
            letter = decode(DeadLetter, record.value)
        except SchemaError as exc:
            log.warning("skipped %s[%d]@%d: %s [%s]", record.topic, record.partition, record.offset, exc, exc.code)
            return None
        inquiry_id = dead_letter_inquiry(letter, self.plan.webhooks.name)
        return (inquiry_id, "dead-letter") if inquiry_id is not None else None


# --- the backfill ------------------------------------------------------------------------------


class CheckpointError(PersonaStreamError):
    """The checkpoint file belongs to another backfill, or cannot be read."""

    code = Code.RECONCILE_CHECKPOINT_MISMATCH


@dataclass
class Checkpoint:
    """Where a backfill stands: the cursor of the page in hand, and the ids of it done so far."""

    since: str
    template_id: str | None
    cursor: str | None = None
    done: list[str] = field(default_factory=list)
    total: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    finished: bool = False

    @classmethod
    def load(cls, path: Path, since: str, template_id: str | None) -> Checkpoint:
        if not path.exists():
            return cls(since, template_id)
        try:
            data = json.loads(path.read_text())
            found = cls(**data)
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{path}: not a checkpoint ({exc})") from None
        if found.since != since or found.template_id != template_id:
            raise CheckpointError(
                f"{path} is the checkpoint of --since {found.since} --template {found.template_id}; "
                "remove it or pass another --checkpoint"
            )
        return found

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(path.suffix + ".tmp")
        temporary.write_text(json.dumps(self.__dict__))
        os.replace(temporary, path)


def default_checkpoint(settings: Settings, since: datetime, template_id: str | None) -> Path:
    name = f"reconcile-{settings.topic_prefix}-{since.strftime('%Y%m%dT%H%M%S')}-{template_id or 'all'}.json"
    return settings.cache_dir / name


class Backfill:
    """Reconcile every inquiry the API lists since a date; resumable (see the module docstring).

    An interrupt (:attr:`stopping`) abandons the reads in flight (nothing of them was written), lets
    a write in progress reach Kafka and records it in the checkpoint, and stops; the next run skips
    what was recorded and reads the rest.
    """

    def __init__(
        self,
        settings: Settings,
        since: datetime,
        template_id: str | None,
        checkpoint: Path,
        api: PersonaApiClient | None = None,
        progress: TextIO | None = sys.stderr,
        chunk: int | None = None,
    ) -> None:
        self.settings, self.since, self.template_id = settings, since, template_id
        self.path = checkpoint
        self.api = api
        self.progress = progress
        self.chunk = chunk or settings.persona_api_max_concurrency
        self.stopping = asyncio.Event()
        self.state = Checkpoint.load(checkpoint, since.isoformat(), template_id)

    async def run(self) -> bool:
        """True when every page was done; False when interrupted."""
        state = self.state
        if state.finished:
            self._draw(final=True)
            return True
        async with (
            PersonaApiClient(self.settings) if self.api is None else _borrowed(self.api) as api,
            SnapshotWriter(self.settings) as writer,
        ):
            async for page in api.list_inquiries(self.since, self.template_id, after_cursor=state.cursor):
                done = set(state.done)
                todo = [i for i in page.ids if i not in done]
                for start in range(0, len(todo), self.chunk):
                    if self.stopping.is_set():
                        self._draw(final=True)
                        return False
                    part = todo[start : start + self.chunk]
                    result = await self._read_unless_stopped(api, part)
                    if result is None:
                        self._draw(final=True)
                        return False
                    await writer.write(result.written)  # never interrupted: what is sent is recorded
                    state.failed.update(result.failed)
                    state.done.extend(part)
                    state.total += len(part)
                    state.save(self.path)
                    self._draw()
                state.cursor, state.done = page.next_cursor, []
                state.finished = page.next_cursor is None
                state.save(self.path)
        self._draw(final=True)
        return True

    async def _read_unless_stopped(self, api: PersonaApiClient, ids: list[str]) -> Result | None:
        """The reads of one chunk, or None if an interrupt came first (nothing of it was written, so
        the next run reads it again -- a wait for the rate limit does not hold up Ctrl-C)."""
        reads = asyncio.ensure_future(read_all(api, ids, "backfill"))
        stop = asyncio.ensure_future(self.stopping.wait())
        await asyncio.wait([reads, stop], return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if reads.done():
            return reads.result()
        reads.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reads
        return None

    def _draw(self, final: bool = False) -> None:
        if self.progress is None:
            return
        width = 30
        spin = self.state.total // max(1, self.chunk) % width
        bar = "#" * width if self.state.finished else "." * spin + "#" + "." * (width - spin - 1)
        failed = f", {len(self.state.failed)} failed" if self.state.failed else ""
        end = "\n" if final else ""
        self.progress.write(f"\rreconcile [{bar}] {self.state.total} inquiries{failed}{end}")
        self.progress.flush()
