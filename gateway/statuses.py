"""What a gateway knows of trusted statuses: the latest record per inquiry, a short history for
resuming subscribers, and who may follow what. Pure: records in, answers out.

The gateway fills it from ``<p>.inquiry-status`` (read-committed, every partition, from the start;
the topic is compacted, so a restart reads about one record per inquiry). It holds at most
``capacity`` inquiries, least recently updated dropped first, each with its last ``history``
records. The records are kept as the bytes they came in (about 0.4 KB each) and decoded only when
a subscription starts or resumes: a long-lived cache of models is what the cycle collector's full
collections scan, and with a model per record they stalled every delivery for hundreds of
milliseconds every few seconds. The default bound (1,000,000 inquiries, 8 records) is about 3.5 GB
at full history -- size ``status_cache_size`` to the gateway's share of traffic. An inquiry evicted
from the cache is still served: a subscription to it gets updates from then on and
``recovered: false``.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from schemas.codec import decode
from schemas.records import StatusRecord


@dataclass(slots=True)
class _Entry:
    version: int
    reference_id: str | None
    history: deque[bytes]
    """The last records as they came in, oldest first, versions without a gap up to ``version``."""


@dataclass
class StatusCache:
    capacity: int = 1_000_000
    history: int = 8
    _entries: OrderedDict[str, _Entry] = field(default_factory=OrderedDict)
    _by_reference: dict[str, set[str]] = field(default_factory=dict)

    def apply(self, record: StatusRecord, raw: bytes) -> bool:
        """Take a record (and ``raw``, its bytes); False if it is not newer than what is known."""
        inquiry = record.inquiry_id
        entry = self._entries.get(inquiry)
        if entry is not None:
            if record.version <= entry.version:
                return False
            if entry.reference_id != record.reference_id:
                self._unindex(inquiry, entry.reference_id)
            if record.version != entry.version + 1:
                entry.history.clear()  # a gap (compaction, eviction): history restarts here
            entry.version, entry.reference_id = record.version, record.reference_id
            entry.history.append(raw)
            self._entries.move_to_end(inquiry)
        else:
            self._entries[inquiry] = _Entry(record.version, record.reference_id, deque([raw], maxlen=self.history))
            while len(self._entries) > self.capacity:
                evicted_inquiry, evicted = self._entries.popitem(last=False)
                self._unindex(evicted_inquiry, evicted.reference_id)
        if record.reference_id is not None:
            self._by_reference.setdefault(record.reference_id, set()).add(inquiry)
        return True

    def _unindex(self, inquiry_id: str, reference_id: str | None) -> None:
        if reference_id is None:
            return
        inquiries = self._by_reference.get(reference_id)
        if inquiries is not None:
            inquiries.discard(inquiry_id)
            if not inquiries:
                del self._by_reference[reference_id]

    def latest(self, inquiry_id: str) -> StatusRecord | None:
        entry = self._entries.get(inquiry_id)
        return decode(StatusRecord, entry.history[-1]) if entry else None

    def raw(self, inquiry_id: str) -> bytes | None:
        entry = self._entries.get(inquiry_id)
        return entry.history[-1] if entry else None

    def after(self, inquiry_id: str, version: int) -> list[StatusRecord] | None:
        """Every record after ``version``, or None if the history no longer reaches back that far."""
        entry = self._entries.get(inquiry_id)
        if entry is None:
            return None if version > 0 else []
        if version >= entry.version:
            return []
        first = entry.version - len(entry.history) + 1  # the version of the oldest record held
        if version + 1 < first:
            return None
        return [decode(StatusRecord, raw) for raw in list(entry.history)[version + 1 - first :]]

    def of_reference(self, reference_id: str) -> list[str]:
        return sorted(self._by_reference.get(reference_id, ()))

    def __len__(self) -> int:
        return len(self._entries)
