from __future__ import annotations

from datetime import UTC, datetime, timedelta

from processors.analytics import WindowConfig, add_fact, on_tick, percentiles, window_bounds, window_key
from schemas.internal import AnalyticsFact

CONFIG = WindowConfig(size_seconds=60, grace_seconds=5, retention_windows=2)
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def fact(second: int, **counts: int) -> AnalyticsFact:
    return AnalyticsFact(template_id="itmpl_1", at=T0 + timedelta(seconds=second), counts=counts)


def test_windows_are_aligned_tumbling_intervals() -> None:
    assert window_bounds(T0 + timedelta(seconds=59), 60) == (T0, T0 + timedelta(seconds=60))
    assert window_bounds(T0 + timedelta(seconds=60), 60)[0] == T0 + timedelta(seconds=60)
    assert window_key("itmpl_1", T0) == "itmpl_1|2026-03-01T12:00:00+00:00"


def test_partials_while_open_then_one_final_then_deletion() -> None:
    window = add_fact(None, fact(1, **{"funnel.loaded": 1}), partition=0, config=CONFIG)
    add_fact(window, fact(30, **{"funnel.loaded": 2, "trusted.approved": 1}), partition=0, config=CONFIG)
    partial = on_tick(window, T0 + timedelta(seconds=31), CONFIG)
    assert partial.record is not None
    assert (partial.record.final, partial.record.counts) == (False, {"funnel.loaded": 3, "trusted.approved": 1})
    assert on_tick(window, T0 + timedelta(seconds=32), CONFIG).record is None  # nothing new
    final = on_tick(window, T0 + timedelta(seconds=65), CONFIG)
    assert final.record is not None
    assert final.record.final
    assert on_tick(window, T0 + timedelta(seconds=70), CONFIG).record is None
    late = add_fact(window, fact(59, **{"funnel.loaded": 1}), partition=0, config=CONFIG)
    corrected = on_tick(late, T0 + timedelta(seconds=75), CONFIG)
    assert corrected.record is not None
    assert (corrected.record.final, corrected.record.counts["funnel.loaded"]) == (True, 4)
    assert on_tick(window, T0 + timedelta(seconds=181), CONFIG).delete


def test_percentiles_by_nearest_rank() -> None:
    result = percentiles([float(x) for x in range(1, 11)])
    assert (result.count, result.p50_seconds, result.p90_seconds) == (10, 5.0, 9.0)
    assert percentiles([]).count == 0
