"""Prometheus metrics of one worker, on a registry of its own, served at ``GET /metrics``.

=====================================================  ==========================================
metric                                                 what
=====================================================  ==========================================
``persona_stream_worker_consumer_lag``                 records behind, per topic and partition
                                                       (``kind``: ``input`` or ``changelog``)
``persona_stream_worker_processed_total``              inputs processed, by ``kind``
``persona_stream_worker_commit_seconds``               one commit (offsets + transactions)
``persona_stream_worker_batch_size``                   inputs per analytics batch
``persona_stream_worker_restoring``                    1 while tables are being restored
``persona_stream_worker_restore_remaining_records``    changelog records still to restore
``persona_stream_worker_restore_seconds``              duration of each completed restore
``persona_stream_worker_rebalances_total``             rebalances started
``persona_stream_worker_rebalance_seconds``            rebalance, from revocation to processing
``persona_stream_worker_state_inquiries``              inquiries held in this worker's tables
``persona_stream_worker_state_bytes``                  bytes of their stored values
``persona_stream_worker_dead_letters_total``           records sent to dead letters, by ``reason``
``persona_stream_worker_produce_retries_total``        transactional writes the broker asked to
                                                       retry (``processors.retries``)
=====================================================  ==========================================

Lag is Kafka's own consumer lag (``records-lag``): the partition's end offset (the last stable
offset, under read-committed) minus the worker's position. A changelog is read only while it is
restored, so its lag is what that restore still has to read, and 0 otherwise.

:class:`WorkerMetrics` is plain bookkeeping, unit-testable without faust. :func:`install` wires
it into a faust app through faust's extension points only: a :class:`~faust.Sensor` for commits
and rebalances; the ``on_partitions_assigned`` signal and a table's ``on_recover`` callback for the
restore's start and end; a timer that samples lag, restore progress and state size; a web page.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

log = logging.getLogger(__name__)

PATH = "/metrics"
SAMPLE_INTERVAL_SECONDS = 1.0
INPUT_KINDS = ("client-event", "webhook", "tick", "analytics-fact")


class WorkerMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.lag = Gauge(
            "persona_stream_worker_consumer_lag", "Records behind the end of the partition (records-lag).",
            ["topic", "partition", "kind"], registry=r,
        )  # fmt: skip
        self._processed = Counter("persona_stream_worker_processed", "Inputs processed, by kind.", ["kind"], registry=r)
        for kind in INPUT_KINDS:
            self._processed.labels(kind)
        self.commit = Histogram(
            "persona_stream_worker_commit_seconds", "Time one commit of offsets and transactions took.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0), registry=r,
        )  # fmt: skip
        self.batch = Histogram(
            "persona_stream_worker_batch_size", "Inputs in one analytics batch.",
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000), registry=r,
        )  # fmt: skip
        self.restoring = Gauge(
            "persona_stream_worker_restoring", "1 while this worker restores its tables from changelogs.",
            registry=r,
        )  # fmt: skip
        self.restore_remaining = Gauge(
            "persona_stream_worker_restore_remaining_records", "Changelog records still to restore.", registry=r,
        )  # fmt: skip
        self.restore = Histogram(
            "persona_stream_worker_restore_seconds", "Duration of each completed restore of the tables.",
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600), registry=r,
        )  # fmt: skip
        self.rebalances = Counter("persona_stream_worker_rebalances", "Rebalances started.", registry=r)
        self.rebalance = Histogram(
            "persona_stream_worker_rebalance_seconds", "Rebalance duration, recovery included.",
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300), registry=r,
        )  # fmt: skip
        self.inquiries = Gauge(
            "persona_stream_worker_state_inquiries",
            "Inquiries held in this worker's tables (RocksDB: its estimate).",
            registry=r,
        )
        self.state_bytes = Gauge(
            "persona_stream_worker_state_bytes",
            "Bytes of the inquiries' stored values (RocksDB: its estimate).",
            registry=r,
        )
        self._dead_letters = Counter(
            "persona_stream_worker_dead_letters", "Records sent to the dead-letter topic, by reason.", ["reason"],
            registry=r,
        )  # fmt: skip
        self._produce_retries = Counter(
            "persona_stream_worker_produce_retries",
            "Transactional writes the broker asked to retry (NOT_ENOUGH_REPLICAS while verifying the transaction).",
            registry=r,
        )
        self._restore_started: float | None = None
        self._lag_labels: dict[str, set[tuple[str, int]]] = {}

    # --- what the pipeline and the sensor report ------------------------------------------------

    def processed(self, kind: str) -> None:
        self._processed.labels(kind).inc()

    def produce_retried(self) -> None:
        self._produce_retries.inc()

    def dead_letter(self, reason: str) -> None:
        self._dead_letters.labels(reason).inc()

    def observe_batch(self, size: int) -> None:
        self.batch.observe(size)

    def observe_commit(self, seconds: float) -> None:
        self.commit.observe(seconds)

    def rebalance_started(self) -> None:
        self.rebalances.inc()

    def observe_rebalance(self, seconds: float) -> None:
        self.rebalance.observe(seconds)

    def restore_started(self, now: float) -> None:
        if self._restore_started is None:
            self._restore_started = now
            self.restoring.set(1)

    def restore_finished(self, now: float) -> None:
        if self._restore_started is not None:
            self.restore.observe(now - self._restore_started)
            self._restore_started = None
        self.restoring.set(0)
        self.restore_remaining.set(0)

    def set_lag(self, kind: str, lags: Mapping[tuple[str, int], int]) -> None:
        """The lag of every partition of one kind this worker holds; partitions it lost disappear."""
        held = self._lag_labels.setdefault(kind, set())
        for topic, partition in held - set(lags):
            self.lag.remove(topic, str(partition), kind)
        held.clear()
        held.update(lags)
        for (topic, partition), lag in lags.items():
            self.lag.labels(topic, str(partition), kind).set(max(0, lag))

    def set_state(self, inquiries: int, size_bytes: int) -> None:
        self.inquiries.set(inquiries)
        self.state_bytes.set(size_bytes)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def state_size(values: Iterable[bytes | None]) -> tuple[int, int]:
    """(entries, bytes) of a table's stored values."""
    count = size = 0
    for value in values:
        if value is not None:
            count += 1
            size += len(value)
    return count, size


class MetricsSensor(faust.Sensor):  # type: ignore[misc]  # faust is untyped
    """faust's sensor interface: commits and rebalances as they happen."""

    def __init__(self, metrics: WorkerMetrics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metrics = metrics

    def on_commit_initiated(self, consumer: Any) -> Any:
        return time.monotonic()

    def on_commit_completed(self, consumer: Any, state: Any) -> None:
        self.metrics.observe_commit(time.monotonic() - state)

    def on_rebalance_start(self, app: Any) -> dict[str, float]:
        self.metrics.rebalance_started()
        return {"started": time.monotonic()}

    def on_rebalance_end(self, app: Any, state: dict[str, float]) -> None:
        self.metrics.observe_rebalance(time.monotonic() - state["started"])


def install(app: faust.App, metrics: WorkerMetrics, inputs: Iterable[str], inquiries: Any) -> None:
    """Wire ``metrics`` into ``app``: the sensor, the sampling timer and ``GET /metrics``."""
    input_topics = frozenset(inputs)
    app.sensors.add(MetricsSensor(metrics))

    async def assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        metrics.restore_started(time.monotonic())  # faust restores the tables next

    async def restored() -> None:
        metrics.restore_finished(time.monotonic())

    async def sample() -> None:
        recovery = app.tables.recovery
        if recovery.in_recovery:
            metrics.restore_started(time.monotonic())
            metrics.restore_remaining.set(recovery.active_remaining_total())
        changelogs = {(tp.topic, tp.partition): lag for tp, lag in recovery.active_remaining().items()}
        metrics.set_lag("changelog", changelogs if recovery.in_recovery else dict.fromkeys(changelogs, 0))
        store = inquiries.data
        estimate = getattr(store, "estimated_size", None)  # processors.store.Store: no scan of RocksDB
        metrics.set_state(*(estimate() if estimate is not None else state_size(store.values())))
        if app.rebalancing:
            return  # positions and assignment are in flux; keep the last sample
        held = [tp for tp in app.consumer.assignment() if tp.topic in input_topics]
        if not held:
            metrics.set_lag("input", {})
            return
        ends = await app.consumer.highwaters(*held)
        lags = {}
        for tp in held:
            position = await app.consumer.position(tp)
            if position is not None and tp in ends:
                lags[(tp.topic, tp.partition)] = ends[tp] - position
        metrics.set_lag("input", lags)

    async def page(web: Any, request: Any) -> Any:
        return web.bytes(metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.on_partitions_assigned.connect(assigned)
    inquiries.on_recover(restored)
    app.timer(interval=SAMPLE_INTERVAL_SECONDS, name="metrics-sample")(sample)
    app.page(PATH)(page)
