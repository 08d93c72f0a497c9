"""What one batch of inputs writes, coalesced: pure bookkeeping, no Kafka.

The workers process a partition's inputs in batches, inside the partition's transaction (see
:mod:`processors.pipeline`). Every input is applied to the live view at once -- so each input sees
the ones before it -- but what the batch *writes* is gathered here and written once at its end:

* one changelog write per inquiry, of its final view;
* each status record, in the order the inputs produced them (one per change, versions in order);
* analytics facts summed per (input partition, template, window): a batch of 1,000 inputs of one
  template in one window is one fact, not 1,000.

Should an input fail (a bug, not bad input: bad input is rejected before it touches a view), the
inquiry it touched is taken out of the batch whole -- its pending view, records and facts -- so that
the caller can load its committed view again and replay the inputs of the batch that succeeded
for it (:meth:`Batch.discard` returns them), then dead-letter the failed one. Nothing of the failed
input is written and nothing of the others is lost or doubled.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from processors.analytics import window_bounds


@dataclass(frozen=True)
class FactKey:
    partition: int
    template_id: str
    window_start: datetime


@dataclass
class FactSum:
    """The facts of a batch in one window of one template, summed."""

    source: Any  # the input partition (a faust TP): the fact is written in its transaction
    at: datetime  # the first input's time; every input summed here falls in the same window
    counts: Counter[str] = field(default_factory=Counter)
    durations: list[float] = field(default_factory=list)


@dataclass
class Pending:
    """One inquiry's part of a batch."""

    source: Any  # the input partition (a faust TP)
    view: Any  # the live view (an InquiryView), changed in place by each input
    view_changed: bool = False
    statuses: list[bytes] = field(default_factory=list)
    facts: list[tuple[str, datetime, Mapping[str, int], list[float]]] = field(default_factory=list)
    reconcile: bool = False  # a reconcile request is due for this inquiry
    inputs: list[Any] = field(default_factory=list)  # applied so far, in order (for a replay)


class Batch:
    def __init__(self, window_seconds: int) -> None:
        self.window_seconds = window_seconds
        self.pending: dict[bytes, Pending] = {}
        self.last_key: bytes | None = None  # the inquiry the current input touched last

    def view(self, key: bytes) -> Any | None:
        """The live view of ``key`` if an input of this batch touched it."""
        found = self.pending.get(key)
        return found.view if found is not None else None

    def touch(self, key: bytes, source: Any, view: Any) -> Pending:
        self.last_key = key
        found = self.pending.get(key)
        if found is None:
            found = self.pending[key] = Pending(source, view)
        return found

    def discard(self, key: bytes) -> list[Any]:
        """Take ``key`` out of the batch; the inputs that had been applied to it, in order."""
        found = self.pending.pop(key, None)
        return found.inputs if found is not None else []

    def changed_views(self) -> Iterator[tuple[bytes, Pending]]:
        return ((key, pending) for key, pending in self.pending.items() if pending.view_changed)

    def statuses(self) -> Iterator[tuple[bytes, Pending, bytes]]:
        for key, pending in self.pending.items():
            for status in pending.statuses:
                yield key, pending, status

    def reconcile_requests(self) -> Iterator[tuple[bytes, Pending]]:
        return ((key, pending) for key, pending in self.pending.items() if pending.reconcile)

    def fact_sums(self) -> dict[FactKey, FactSum]:
        sums: dict[FactKey, FactSum] = {}
        for pending in self.pending.values():
            for template_id, at, counts, durations in pending.facts:
                start, _ = window_bounds(at, self.window_seconds)
                key = FactKey(pending.source.partition, template_id, start)
                found = sums.get(key)
                if found is None:
                    found = sums[key] = FactSum(pending.source, at)
                found.counts.update(counts)
                found.durations.extend(durations)
        return sums
