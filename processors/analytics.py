"""Tumbling analytics windows per template: pure aggregation of facts, timed by ticks.

Every input the correlation core applies yields a fact (counts, durations) for the window that
contains the moment the input entered the pipeline. Facts are keyed by template, so one window of
one template is aggregated in one place. On each tick (a worker's clock, once a second):

==================================================  =============================================
state                                               published
==================================================  =============================================
window still open, changed since the last tick      a partial record (``final: false``)
window closed (``now ≥ end + grace``), not final    the final record (``final: true``)
final sent, then a late fact arrived                the final record again, corrected
final sent and ``retention`` windows old            nothing; the window is deleted
==================================================  =============================================

A consumer keeps the latest record per (template, window start): a final record replaces every
partial one, and a corrected final replaces the final.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from schemas.internal import AnalyticsFact, AnalyticsWindow
from schemas.records import AnalyticsRecord, Percentiles

MAX_DURATIONS = 5000


@dataclass(frozen=True)
class WindowConfig:
    size_seconds: int = 60
    grace_seconds: int = 5
    retention_windows: int = 10


def window_bounds(at: datetime, size_seconds: int) -> tuple[datetime, datetime]:
    epoch = int(at.timestamp())
    start = epoch - epoch % size_seconds
    return datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(start + size_seconds, UTC)


def window_key(template_id: str, start: datetime) -> str:
    return f"{template_id}|{start.isoformat()}"


def add_fact(
    window: AnalyticsWindow | None, fact: AnalyticsFact, partition: int, config: WindowConfig
) -> AnalyticsWindow:
    if window is None:
        start, end = window_bounds(fact.at, config.size_seconds)
        window = AnalyticsWindow(template_id=fact.template_id, partition=partition, window_start=start, window_end=end)
    for name, count in fact.counts.items():
        window.counts[name] = window.counts.get(name, 0) + count
    room = MAX_DURATIONS - len(window.durations)
    window.durations.extend(fact.durations[:room])
    window.dirty = True
    return window


@dataclass(frozen=True)
class TickResult:
    record: AnalyticsRecord | None
    delete: bool
    changed: bool


def on_tick(window: AnalyticsWindow, now: datetime, config: WindowConfig) -> TickResult:
    closed = now >= window.window_end + timedelta(seconds=config.grace_seconds)
    if closed and (not window.final_sent or window.dirty):
        window.final_sent, window.dirty = True, False
        return TickResult(to_record(window, final=True), delete=False, changed=True)
    if window.dirty and not closed:
        window.dirty = False
        return TickResult(to_record(window, final=False), delete=False, changed=True)
    expired = now >= window.window_end + timedelta(seconds=config.size_seconds * config.retention_windows)
    return TickResult(None, delete=window.final_sent and expired, changed=False)


def to_record(window: AnalyticsWindow, *, final: bool) -> AnalyticsRecord:
    return AnalyticsRecord(
        template_id=window.template_id,
        window_start=window.window_start,
        window_end=window.window_end,
        final=final,
        counts=dict(sorted(window.counts.items())),
        start_to_trusted_completion=percentiles(window.durations),
    )


def percentiles(durations: list[float]) -> Percentiles:
    if not durations:
        return Percentiles()
    ordered = sorted(durations)

    def rank(p: float) -> float:
        return ordered[max(0, math.ceil(p * len(ordered)) - 1)]

    return Percentiles(count=len(ordered), p50_seconds=rank(0.5), p90_seconds=rank(0.9))
