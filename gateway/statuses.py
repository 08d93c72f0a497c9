"""What a gateway knows of trusted statuses: the latest record per inquiry, a short history for
resuming subscribers, and who may follow what. Pure: records in, answers out.

The gateway fills it from ``<p>.inquiry-status`` (read-committed, every partition, from the start;
the topic is compacted, so a restart reads about one record per inquiry). It holds at most
``capacity`` inquiries, least recently updated dropped first, each with its last ``history``
records. Memory is roughly 0.5 KB per inquiry plus 0.4 KB per history record: the default bound
(1,000,000 inquiries, 8 records) is about 3.7 GB at full history -- size ``status_cache_size`` to
the gateway's share of traffic. An inquiry evicted from the cache is still served: a
subscription to it gets updates from then on and ``recovered: false``.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from schemas.records import StatusRecord


@dataclass
class _Entry:
    latest: StatusRecord
    history: deque[StatusRecord]
    raw: bytes


@dataclass
class StatusCache:
    capacity: int = 1_000_000
    history: int = 8
    _entries: OrderedDict[str, _Entry] = field(default_factory=OrderedDict)
    _by_reference: dict[str, set[str]] = field(default_factory=dict)

    def apply(self, record: StatusRecord, raw: bytes) -> bool:
        """Take a record; False if it is not newer than what is known (a repeat or a late copy)."""
        entry = self._entries.get(record.inquiry_id)
        if entry is not None:
            if record.version <= entry.latest.version:
                return False
            if entry.latest.reference_id != record.reference_id:
                self._unindex(entry.latest)
            if record.version != entry.latest.version + 1:
                entry.history.clear()  # a gap (compaction, eviction): history restarts here
            entry.latest, entry.raw = record, raw
            entry.history.append(record)
            self._entries.move_to_end(record.inquiry_id)
        else:
            self._entries[record.inquiry_id] = _Entry(record, deque([record], maxlen=self.history), raw)
            while len(self._entries) > self.capacity:
                _, evicted = self._entries.popitem(last=False)
                self._unindex(evicted.latest)
        if record.reference_id is not None:
            self._by_reference.setdefault(record.reference_id, set()).add(record.inquiry_id)
        return True

    def _unindex(self, record: StatusRecord) -> None:
        if record.reference_id is None:
            return
        inquiries = self._by_reference.get(record.reference_id)
        if inquiries is not None:
            inquiries.discard(record.inquiry_id)
            if not inquiries:
                del self._by_reference[record.reference_id]

    def latest(self, inquiry_id: str) -> StatusRecord | None:
        entry = self._entries.get(inquiry_id)
        return entry.latest if entry else None

    def raw(self, inquiry_id: str) -> bytes | None:
        entry = self._entries.get(inquiry_id)
        return entry.raw if entry else None

    def after(self, inquiry_id: str, version: int) -> list[StatusRecord] | None:
        """Every record after ``version``, or None if the history no longer reaches back that far."""
        entry = self._entries.get(inquiry_id)
        if entry is None:
            return None if version > 0 else []
        if version >= entry.latest.version:
            return []
        missed = [record for record in entry.history if record.version > version]
        if not missed or missed[0].version != version + 1:
            return None
        return missed

    def of_reference(self, reference_id: str) -> list[str]:
        return sorted(self._by_reference.get(reference_id, ()))

    def __len__(self) -> int:
        return len(self._entries)
