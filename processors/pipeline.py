"""The adapter between faust events and the pure rules: load state, call the core, write results.

One :class:`Pipeline` per worker. For every input it decodes the record, loads the state the
record's key owns (from a bounded cache of decoded objects in front of the faust table), calls
:mod:`processors.correlation`, :mod:`processors.sessions` or :mod:`processors.analytics`, and writes
what they return through :class:`~processors.output.Output`, in the input's transaction.

A record that cannot be decoded or processed goes to the dead-letter topic with a reason and its
partition moves on; its key's cached state is dropped, so a half-applied change is never kept.
A failed *write* is different: it stops the worker (see ``processors/output.py``).
"""

from __future__ import annotations

import base64
import heapq
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.topics import TopicPlan
from processors import analytics, correlation, sessions
from processors.batch import Batch, Pending
from processors.metrics import WorkerMetrics
from processors.output import Output, OutputError
from processors.store import Store
from processors.tables import partition_of
from schemas.callbacks import is_inquiry_id
from schemas.codec import decode, encode
from schemas.errors import Code, SchemaError
from schemas.internal import AnalyticsFact, AnalyticsWindow, SessionBuffer, Tick
from schemas.records import (
    WEBHOOK_RECEIVED_AT_HEADER,
    ApiSnapshot,
    CallbackRecord,
    ClientEvent,
    DeadLetter,
    ReconcileRequest,
    SessionLink,
)
from schemas.views import InquiryView
from schemas.webhooks import WebhookEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tables:
    """The faust tables (each ``.data`` is the store; each has a ``changelog_topic``)."""

    inquiries: Any
    sessions: Any
    deadlines: Any
    windows: Any


class Pipeline:
    def __init__(
        self,
        topics: TopicPlan,
        ticks_topic: str,
        tables: Tables,
        output: Output,
        config: correlation.Config,
        window_config: analytics.WindowConfig,
        cache_size: int,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.topics, self.ticks_topic, self.tables, self.output = topics, ticks_topic, tables, output
        self.config, self.window_config = config, window_config
        self.cache_size = cache_size
        self.views: OrderedDict[bytes, InquiryView] = OrderedDict()
        self.windows: dict[bytes, AnalyticsWindow] = {}
        self.deadlines: dict[int, list[tuple[datetime, bytes]]] = {}
        self.metrics = metrics if metrics is not None else WorkerMetrics()

    # --- the correlate agent ---------------------------------------------------------------------

    async def on_batch(self, events: Sequence[Any]) -> None:
        """A batch of client-events, webhooks and ticks, in the transactions of their partitions.

        Each input is applied at once to the live view of its inquiry; what the batch writes is
        gathered in a :class:`~processors.batch.Batch` and written at its end, coalesced.
        """
        batch = Batch(self.window_config.size_seconds)
        self.metrics.observe_batch(len(events))
        for event in events:
            await self._input(event.message, batch)
        await self._write_batch(batch)

    async def _input(self, message: Any, batch: Batch) -> None:
        topic = message.topic
        batch.last_key = None
        try:
            if topic == self.topics.client_events.name:
                await self._client_event(message, batch)
                self.metrics.processed("client-event")
            elif topic == self.topics.webhooks.name:
                await self._webhook(message, batch)
                self.metrics.processed("webhook")
            elif topic == self.topics.api_snapshots.name:
                self._api_snapshot(message, batch)
                self.metrics.processed("api-snapshot")
            elif topic == self.ticks_topic:
                self._deadlines_due(message, batch)
                self.metrics.processed("tick")
        except OutputError:
            raise
        except SchemaError as exc:  # rejected before it touched any state
            reason = {
                self.topics.webhooks.name: Code.WEBHOOK_UNDECODABLE,
                self.topics.api_snapshots.name: Code.API_SNAPSHOT_INVALID,
            }.get(topic, Code.CLIENT_EVENT_INVALID)
            await self.dead_letter(message, reason, str(exc))
        except Exception as exc:
            log.exception("processing failed at %s[%d]@%d", topic, message.partition, message.offset)
            if batch.last_key is not None:
                await self._replay_without(message, batch.last_key, batch)
            await self.dead_letter(message, Code.PROCESSING_FAILED, repr(exc))

    async def _replay_without(self, failed: Any, key: bytes, batch: Batch) -> None:
        """An input failed half way through ``key``'s view: the batch's other inputs for it again,
        from the state before the batch."""
        self.views.pop(key, None)
        for message in batch.discard(key):
            if message is not failed:
                await self._input(message, batch)

    async def _client_event(self, message: Any, batch: Batch) -> None:
        record = decode(ClientEvent, message.value)
        if isinstance(record, SessionLink) or record.inquiry_id is None:
            await self._session_event(message, record)
            return
        key = record.inquiry_id.encode()
        pending = batch.touch(key, message.tp, self.load_view(key, batch))
        outcome = correlation.apply_callback(pending.view, record, datetime.now(UTC), self.config)
        self._gather(pending, message, outcome, record.received_at)

    async def _session_event(self, message: Any, record: CallbackRecord | SessionLink) -> None:
        key = message.key or record.key().encode()
        raw = self.tables.sessions.data.get(key)
        buffer = decode(SessionBuffer, raw) if raw is not None else SessionBuffer(session=record.session)
        if isinstance(record, SessionLink):
            outcome = sessions.on_link(buffer, record)
        else:
            outcome = sessions.on_callback(buffer, record)
        if not outcome.changed:
            return
        await self._write_table(self.tables.sessions, message.tp, key, encode(buffer))
        for copy in outcome.forward:
            assert copy.inquiry_id is not None
            await self.output.send(
                self.topics.client_events.name, copy.inquiry_id.encode(), encode(copy), source=message.tp
            )
        if outcome.counts and isinstance(record, CallbackRecord):
            await self._fact(
                message.tp, record.template_id or correlation.UNKNOWN_TEMPLATE, record.received_at, outcome.counts, []
            )

    async def _webhook(self, message: Any, batch: Batch) -> None:
        event = decode(WebhookEvent, message.value)
        key = message.key or event.inquiry_id().encode()
        received_at = _received_at(message)
        if not is_inquiry_id(key.decode(errors="replace")):
            # an event about an object that names no inquiry: nothing to correlate it with
            await self._fact(message.tp, correlation.UNKNOWN_TEMPLATE, received_at, {"webhooks.unattached": 1}, [])
            return
        pending = batch.touch(key, message.tp, self.load_view(key, batch))
        outcome = correlation.apply_webhook(pending.view, event, datetime.now(UTC), self.config)
        self._gather(pending, message, outcome, received_at)

    def _api_snapshot(self, message: Any, batch: Batch) -> None:
        snapshot = decode(ApiSnapshot, message.value)
        key = snapshot.inquiry_id.encode()
        pending = batch.touch(key, message.tp, self.load_view(key, batch))
        outcome = correlation.apply_api_snapshot(pending.view, snapshot, datetime.now(UTC), self.config)
        self._gather(pending, message, outcome, snapshot.observed_at)

    def _gather(self, pending: Pending, message: Any, outcome: correlation.Outcome, at: datetime) -> None:
        """What one input does, kept for the end of the batch."""
        pending.inputs.append(message)
        pending.view_changed |= outcome.view_changed
        pending.reconcile |= outcome.reconcile
        if outcome.status is not None:
            pending.statuses.append(encode(outcome.status))
        if outcome.counts or outcome.durations:
            pending.facts.append((outcome.template_id, at, outcome.counts, outcome.durations))

    def _deadlines_due(self, message: Any, batch: Batch) -> None:
        decode(Tick, message.value)
        now = datetime.now(UTC)
        heap = self.deadlines.get(message.partition, [])
        while heap and heap[0][0] <= now:
            _, key = heapq.heappop(heap)
            if batch.view(key) is None and self.tables.deadlines.data.get(key) is None:
                continue  # settled meanwhile
            pending = batch.touch(key, message.tp, self.load_view(key, batch))
            self._gather(pending, message, correlation.refresh(pending.view, now, self.config), now)

    async def _write_batch(self, batch: Batch) -> None:
        """One changelog write per inquiry, every status record in order, the facts summed."""
        for key, pending in batch.changed_views():
            view = pending.view
            await self._write_table(
                self.tables.inquiries, pending.source, key, view.model_dump_json(exclude_defaults=True).encode()
            )
            await self._track_deadline(pending.source, key, view)
        status_topic = self.topics.inquiry_status.name
        for key, pending, status in batch.statuses():
            await self.output.send(status_topic, key, status, source=pending.source)
        requests_topic = self.topics.reconcile_requests.name
        for key, pending in batch.reconcile_requests():
            request = ReconcileRequest(inquiry_id=key.decode(), reason="awaiting-confirmation", at=datetime.now(UTC))
            await self.output.send(requests_topic, key, encode(request), source=pending.source)
        for fact_key, summed in batch.fact_sums().items():
            await self._fact(summed.source, fact_key.template_id, summed.at, summed.counts, summed.durations)

    async def _track_deadline(self, tp: Any, key: bytes, view: InquiryView) -> None:
        deadline = correlation.next_deadline(view, self.config)
        stored = self.tables.deadlines.data.get(key)
        wanted = deadline.isoformat().encode() if deadline is not None else None
        if stored == wanted:
            return
        await self._write_table(self.tables.deadlines, tp, key, wanted)
        if deadline is not None:
            heapq.heappush(self.deadlines.setdefault(tp.partition, []), (deadline, key))

    def rebuild_deadlines(self) -> None:
        """After recovery: the timers' index, from the (small) deadlines table."""
        partitions = self.topics.client_events.partitions
        self.deadlines.clear()
        for key, raw in self.tables.deadlines.data.items():
            if raw is None:
                continue
            partition = partition_of(key, partitions)
            heapq.heappush(self.deadlines.setdefault(partition, []), (datetime.fromisoformat(raw.decode()), key))

    # --- the analytics agent ---------------------------------------------------------------------

    async def on_analytics_batch(self, events: Sequence[Any]) -> None:
        """A batch of analytics facts and ticks: aggregate, then write each touched window once."""
        touched: dict[bytes, Any] = {}
        self.metrics.observe_batch(len(events))
        for event in events:
            message = event.message
            try:
                if message.topic == self.ticks_topic:
                    decode(Tick, message.value)
                    await self._windows_due(message.tp, datetime.now(UTC))
                    continue
                fact = decode(AnalyticsFact, message.value)
            except SchemaError as exc:
                await self.dead_letter(message, Code.ANALYTICS_FACT_INVALID, str(exc))
                continue
            start, _ = analytics.window_bounds(fact.at, self.window_config.size_seconds)
            key = analytics.window_key(fact.template_id, start).encode()
            window = self.load_window(key)
            self.windows[key] = analytics.add_fact(window, fact, message.partition, self.window_config)
            touched[key] = message.tp
            self.metrics.processed("analytics-fact")
        for key, tp in touched.items():
            await self._write_table(self.tables.windows, tp, key, encode(self.windows[key]))

    async def _windows_due(self, tp: Any, now: datetime) -> None:
        for key in [k for k, w in self.windows.items() if w.partition == tp.partition]:
            window = self.windows[key]
            result = analytics.on_tick(window, now, self.window_config)
            if result.record is not None:
                await self.output.send(
                    self.topics.analytics.name, window.template_id.encode(), encode(result.record), source=tp
                )
            if result.delete:
                del self.windows[key]
                await self._write_table(self.tables.windows, tp, key, None)
            elif result.changed:
                await self._write_table(self.tables.windows, tp, key, encode(window))

    def rebuild_windows(self) -> None:
        self.windows = {key: decode(AnalyticsWindow, raw) for key, raw in self.tables.windows.data.items() if raw}

    # --- state -----------------------------------------------------------------------------------

    def load_view(self, key: bytes, batch: Batch | None = None) -> InquiryView:
        """The live view of ``key``: the batch's, the cache's, or decoded from the store."""
        if batch is not None and (live := batch.view(key)) is not None:
            return live  # type: ignore[no-any-return]
        view = self.views.get(key)
        if view is not None:
            self.views.move_to_end(key)
            return view
        raw = self.tables.inquiries.data.get(key)
        if raw is None:
            log.debug("new view for %r", key)
        view = decode(InquiryView, raw) if raw is not None else InquiryView(inquiry_id=key.decode())
        self.views[key] = view
        if len(self.views) > self.cache_size:
            self.views.popitem(last=False)
        return view

    def view_json(self, key: bytes) -> bytes | None:
        """One view, whole, as JSON (for the view endpoint)."""
        view = self.views.get(key)
        if view is None:
            raw = self.tables.inquiries.data.get(key)
            if raw is None:
                return None
            view = decode(InquiryView, raw)
        return encode(view)

    def load_window(self, key: bytes) -> AnalyticsWindow | None:
        window = self.windows.get(key)
        if window is None and (raw := self.tables.windows.data.get(key)) is not None:
            window = decode(AnalyticsWindow, raw)
        return window

    def forget(self) -> None:
        """Partitions moved (a rebalance): cached state may now belong to another worker."""
        self.views.clear()
        self.windows.clear()
        self.deadlines.clear()

    async def _write_table(self, table: Any, tp: Any, key: bytes, value: bytes | None) -> None:
        """The store and its changelog, the changelog write in the input's transaction."""
        store = table.data
        committed_only = isinstance(store, Store)
        if committed_only:
            store.put(tp.partition, key, value)  # reaches RocksDB when the transaction commits
        elif value is None:
            store.pop(key, None)
        else:
            store[key] = value
        sent = await self.output.send(
            table.changelog_topic.get_topic_name(), key, value, source=tp, partition=tp.partition
        )
        if committed_only:
            self.output.app.committed_writes.wrote(store, tp.partition, sent)

    async def _fact(self, tp: Any, template_id: str, at: datetime, counts: Any, durations: list[float]) -> None:
        fact = AnalyticsFact(template_id=template_id, at=at, counts=dict(counts), durations=durations)
        await self.output.send(self.topics.analytics_facts.name, template_id.encode(), encode(fact), source=tp)

    async def dead_letter(self, message: Any, reason: Code, detail: str) -> None:
        self.metrics.dead_letter(reason)
        letter = DeadLetter(
            source_topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key.decode(errors="replace") if message.key else None,
            reason=reason,
            detail=detail[:2000],
            value_b64=base64.b64encode(message.value or b"").decode(),
            at=datetime.now(UTC),
        )
        await self.output.send(self.topics.dead_letters.name, message.key, encode(letter), source=message.tp)


def _received_at(message: Any) -> datetime:
    for name, value in message.headers or ():
        if name == WEBHOOK_RECEIVED_AT_HEADER:
            try:
                return datetime.fromisoformat(value.decode())
            except ValueError:
                break
    return datetime.fromtimestamp(message.timestamp, UTC) if message.timestamp else datetime.now(UTC)
