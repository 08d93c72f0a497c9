"""What the fetch loop may hand to the streams, and where to fetch again: pure bookkeeping.

faust's fetch loop hands each fetched record to the streams. Two things can make a record unsafe to
hand over, and both lose an input if nothing is done about them:

* **A seek.** Recovery seeks every partition to its committed offset; a seek of one partition moves
  its fetch position. Records fetched from the old position and handed over afterwards would move
  the read offset past the seek's target, and the records the seek asked for would be taken for
  already read -- and committed as a gap, unprocessed. :class:`Seeks` counts seeks as they begin
  and as they end, so a batch fetched before or during one is recognised as stale.
* **A batch given up on.** The loop stops handing over a partition's records when the flow is
  suspended (a rebalance), when the consumer generation changes or when the partition is not
  active -- but the consumer's fetch position is already past the whole batch. Each partition that
  left records behind is sought back to the first of them: :func:`rewind_targets` decides which.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class SeekMark:
    """The seek counters at one moment (taken before a fetch)."""

    every: int
    each: Mapping[Hashable, int]


@dataclass
class Seeks:
    """Counts the consumer's seeks: of every partition at once, and of one partition."""

    every: int = 0  # seeks of every partition (recovery's "seek to committed"): begun + ended
    every_running: int = 0
    each: dict[Hashable, int] = field(default_factory=dict)  # seeks of one partition: begun + ended
    each_running: dict[Hashable, int] = field(default_factory=dict)

    def mark(self) -> SeekMark:
        return SeekMark(self.every, dict(self.each))

    def moved(self, tp: Hashable, since: SeekMark) -> bool:
        """Whether ``tp``'s position may have been sought since ``since`` (or is being sought now)."""
        return (
            self.every_running > 0
            or self.every != since.every
            or self.each_running.get(tp, 0) > 0
            or self.each.get(tp, 0) != since.each.get(tp, 0)
        )

    def begin_every(self) -> None:
        self.every += 1
        self.every_running += 1

    def end_every(self) -> None:
        self.every_running -= 1
        self.every += 1

    def begin(self, tp: Hashable) -> None:
        self.each[tp] = self.each.get(tp, 0) + 1
        self.each_running[tp] = self.each_running.get(tp, 0) + 1

    def end(self, tp: Hashable) -> None:
        self.each_running[tp] -= 1
        self.each[tp] += 1


def rewind_targets(left: Mapping[K, int], positions: Mapping[K, int | None]) -> dict[K, int]:
    """The partitions to seek back, and to where, after a batch left records behind.

    Args:
        left: partition -> offset of its first record not handed over.
        positions: partition -> the consumer's current fetch position (``None``: no valid
            position); a partition missing here is no longer assigned (its next owner reads it).

    Only ever backwards: a partition since sought to, or before, the record is left alone.
    """
    targets: dict[K, int] = {}
    for tp, offset in left.items():
        position = positions.get(tp)
        if position is not None and position > offset:
            targets[tp] = offset
    return targets
