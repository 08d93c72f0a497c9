from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from processors.sessions import BUFFER_LIMIT, on_callback, on_link
from schemas.codec import validate
from schemas.internal import SessionBuffer
from schemas.records import CallbackRecord, SessionLink

SESSION = "sess_0000000001"
INQ = "inq_linked01"
AT = datetime(2026, 3, 1, tzinfo=UTC)


def record(seq: int, kind: str = "onLoad") -> CallbackRecord:
    payload: dict[str, Any] = {"kind": kind}
    return validate(
        CallbackRecord,
        {"session": SESSION, "seq": seq, "client_ts": 0, "received_at": AT, "subject": "u", "callback": payload},
    )


LINK = SessionLink(session=SESSION, inquiry_id=INQ, subject="u", received_at=AT)


def test_callbacks_wait_for_the_link_then_move_to_the_inquiry() -> None:
    buffer = SessionBuffer(session=SESSION)
    first = on_callback(buffer, record(0))
    second = on_callback(buffer, record(1, "onReady"))
    assert (first.forward, second.forward) == ([], [])
    assert first.counts == {"callbacks.onLoad": 1, "funnel.loaded": 1}
    linked = on_link(buffer, LINK)
    assert [(r.seq, r.inquiry_id, r.relinked, r.key()) for r in linked.forward] == [
        (0, INQ, True, INQ),
        (1, INQ, True, INQ),
    ]
    assert buffer.records == []
    later = on_callback(buffer, record(2))
    assert [(r.seq, r.inquiry_id) for r in later.forward] == [(2, INQ)]


def test_repeats_and_a_second_link_change_nothing() -> None:
    buffer = SessionBuffer(session=SESSION)
    on_callback(buffer, record(0))
    assert not on_callback(buffer, record(0)).changed
    on_link(buffer, LINK)
    again = on_link(buffer, LINK)
    assert (again.changed, again.forward) == (False, [])
    assert not on_callback(buffer, record(0)).changed  # a late resend of a forwarded callback


def test_the_buffer_is_bounded_but_everything_is_counted() -> None:
    buffer = SessionBuffer(session=SESSION)
    counted = sum(on_callback(buffer, record(seq)).counts["callbacks.onLoad"] for seq in range(BUFFER_LIMIT + 5))
    assert counted == BUFFER_LIMIT + 5
    assert (len(buffer.records), buffer.dropped) == (BUFFER_LIMIT, 5)


def test_a_session_belongs_to_one_subject() -> None:
    """Another token holder with the same session id writes under another key: a buffer of its own."""
    mallory = record(0).model_copy(update={"subject": "mallory"})
    assert record(0).key() == LINK.key() == f"session:{SESSION}:u"
    assert mallory.key() != record(0).key()
    assert SessionLink(session=SESSION, inquiry_id="inq_elsewhere", subject="mallory", received_at=AT).key() == (
        mallory.key()
    )
