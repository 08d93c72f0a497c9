"""Callbacks sent before a session knew its inquiry, joined to the inquiry once it does.

The gateway writes such callbacks keyed ``session:<id>:<subject>``, and a
:class:`~schemas.records.SessionLink` under the same key when the session learns its inquiry. Both
land on the same partition, in order. The token's subject is part of the key: a session id is the
browser's word, so another token holder using the same id has a buffer of its own -- it cannot take
a seq first (and get the real callback dropped as a repeat), nor re-point the session's link.

================================  ==============================================================
input on a session key            effect
================================  ==============================================================
callback, session not linked      kept in the session's buffer (bounded); counted for analytics
callback, session linked          forwarded at once, re-keyed by the inquiry
link                              every buffered callback is forwarded, re-keyed by the inquiry
                                  (``relinked: true``, same (session, seq)); the buffer empties
a repeat of (session, seq)        nothing
================================  ==============================================================

Forwarded copies are written back to ``<p>.client-events`` under the inquiry's key, where the
inquiry's worker applies them to the view (without counting them again). A session that never
links stays here: its loads, errors and cancels were counted when they arrived.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from processors.funnel import callback_counts
from schemas.internal import SessionBuffer
from schemas.records import CallbackRecord, SessionLink

BUFFER_LIMIT = 100


@dataclass
class SessionOutcome:
    forward: list[CallbackRecord] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    changed: bool = False


def relinked(record: CallbackRecord, inquiry_id: str) -> CallbackRecord:
    return record.model_copy(update={"inquiry_id": inquiry_id, "relinked": True})


def on_callback(buffer: SessionBuffer, record: CallbackRecord) -> SessionOutcome:
    outcome = SessionOutcome()
    if record.seq in buffer.seqs:
        return outcome
    buffer.seqs.add(record.seq)
    outcome.changed = True
    outcome.counts.update(callback_counts(record))
    if buffer.inquiry_id is not None:
        outcome.forward.append(relinked(record, buffer.inquiry_id))
    elif len(buffer.records) < BUFFER_LIMIT:
        buffer.records.append(record)
    else:
        buffer.dropped += 1
    return outcome


def on_link(buffer: SessionBuffer, link: SessionLink) -> SessionOutcome:
    outcome = SessionOutcome()
    if buffer.inquiry_id == link.inquiry_id and not buffer.records:
        return outcome
    buffer.inquiry_id = link.inquiry_id
    outcome.forward = [relinked(record, link.inquiry_id) for record in buffer.records]
    buffer.records = []
    outcome.changed = True
    return outcome
