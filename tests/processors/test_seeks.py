"""The fetch loop's seek bookkeeping: what is stale, and where to fetch again."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from processors.seeks import Seeks, rewind_targets


def test_a_batch_fetched_before_a_seek_of_its_partition_is_stale_and_others_are_not() -> None:
    seeks = Seeks()
    before = seeks.mark()
    seeks.begin("p0")
    assert seeks.moved("p0", before)  # running
    seeks.end("p0")
    assert seeks.moved("p0", before)  # ended since the fetch
    assert not seeks.moved("p1", before)
    assert not seeks.moved("p0", seeks.mark())


def test_a_seek_of_every_partition_makes_every_batch_stale_while_it_runs_and_after() -> None:
    seeks = Seeks()
    seeks.begin_every()
    during = seeks.mark()
    assert seeks.moved("p1", during)  # fetched while recovery seeks: stale though the counter is unchanged
    seeks.end_every()
    assert seeks.moved("p1", during)
    assert not seeks.moved("p1", seeks.mark())


@dataclass(frozen=True)
class Case:
    name: str
    left: dict[str, int]
    positions: dict[str, int | None]
    expected: dict[str, int]


CASES = [
    Case("fetch position past what was left: back to it", {"a": 10}, {"a": 15}, {"a": 10}),
    Case("sought since to the record itself: left alone", {"a": 10}, {"a": 10}, {}),
    Case("sought since to before it: never forwards", {"a": 10}, {"a": 4}, {}),
    Case("no valid position (a seek is pending): left alone", {"a": 10}, {"a": None}, {}),
    Case("no longer assigned: the next owner's", {"a": 10}, {}, {}),
    Case("each partition on its own", {"a": 10, "b": 3}, {"a": 12, "b": 3}, {"a": 10}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_rewind_targets(case: Case) -> None:
    assert rewind_targets(case.left, case.positions) == case.expected
