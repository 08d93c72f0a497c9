"""The rules of the client ingest connection, without I/O: frames in, decisions out.

After authentication, every websocket message goes through :meth:`IngestConnection.receive`,
which returns one decision for the I/O layer (``gateway/client_ws.py``) to carry out:

* :class:`Write` -- records to write to ``<p>.client-events``; acknowledge the frame once Kafka has
  them. A session's first frame that names its inquiry also writes a :class:`SessionLink`, so
  the callbacks it sent before (keyed ``session:<id>:<subject>``) can be joined to the inquiry downstream.
* :class:`Duplicate` -- this gateway already wrote (subject, session, seq) durably: acknowledge,
  write nothing (a client resending after a reconnect). The subject is part of the identity: a
  session id is the browser's word, so another token holder who takes the same (session, seq)
  first never gets the real frame dropped as its duplicate.
* :class:`Refresh` -- a refresh frame: the I/O layer verifies the new token and, if it is for the
  same subject, scope, inquiry and template, moves the connection's expiry.
* :class:`Reject` -- answer with an error frame; the connection stays open.
* :class:`Close` -- close the connection with a code and a reason (abuse crossed a limit).

Rejection codes (error frames): ``invalid-json``, ``invalid-frame`` (with the field),
``unknown-frame-type``, ``seq-missing``, ``seq-repeated``, ``too-many-sessions``,
``inquiry-forbidden``, ``inquiry-mismatch`` (the frame's ``inquiry`` and the callback's own
``inquiryId`` differ) -- final: the frame is dropped, and acknowledgements move past it. Close:
1008 ``too-many-errors`` once a connection has earned more rejections than its limit.

Over the rate limit the frame is *not* dropped: the connection answers ``rate-limited`` (retriable)
and closes with 1013 ``rate-limited``. Nothing after that frame is acknowledged, so the client
resends it, and everything after it, once it reconnects -- no frame is lost, none skipped.

The ack rule lives in :class:`AckTracker`: acknowledgements are cumulative per session and never
run ahead of a frame that is still being written.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

import orjson
from pydantic import ValidationError

from core.tokens import Claims
from schemas import fast
from schemas.callbacks import FieldValue, OnCancel, OnComplete, inquiry_id_of
from schemas.codec import decode, encode, validate
from schemas.errors import Code, SchemaError
from schemas.frames import CallbackFrame, ErrorFrame, RefreshFrame
from schemas.records import CallbackRecord, ClientEvent, SessionLink, session_key

CLIENT_FRAME_TYPES = frozenset({"callback", "refresh"})
OTHER_FRAME_TYPES = frozenset({"auth", "subscribe", "unsubscribe"})


@dataclass(frozen=True)
class IngestLimits:
    rate_per_second: float = 50.0
    rate_burst: int = 100
    max_errors: int = 50
    max_sessions: int = 8
    keep_field_values: bool = False
    max_frame_bytes: int = 65536  # enforced by the websocket server (close 1009); announced in "ready"


@dataclass(frozen=True, slots=True)
class Write:
    """``messages``: each record as its Kafka key and value, encoded once, when the frame is read."""

    subject: str
    session: str
    seq: int
    messages: tuple[tuple[bytes, bytes], ...]

    @property
    def records(self) -> tuple[CallbackRecord | SessionLink, ...]:
        """The records, decoded again (for inspection; the gateway writes :attr:`messages`)."""
        return tuple(decode(ClientEvent, value) for _, value in self.messages)


@dataclass(frozen=True)
class Duplicate:
    session: str
    seq: int


@dataclass(frozen=True)
class Reject:
    """Answer with an error frame; with ``close``, then close the connection (the frame is kept by
    the client for a resend, so it must not count as handled)."""

    error: ErrorFrame
    close: Close | None = None


@dataclass(frozen=True)
class Close:
    code: int
    reason: Code


@dataclass(frozen=True)
class Refresh:
    token: str


Decision = Write | Duplicate | Reject | Close | Refresh


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved; time is passed in (seconds)."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.updated = float(burst), now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


K = TypeVar("K", bound=Hashable)


class Recent(Generic[K]):
    """Keys this gateway wrote durably lately -- (session, seq) of frames, webhook event ids --
    bounded: the least recent is forgotten first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[K, None] = OrderedDict()

    def __contains__(self, key: K) -> bool:
        return key in self._seen

    def add(self, key: K) -> None:
        self._seen[key] = None
        self._seen.move_to_end(key)
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)


@dataclass
class _Session:
    last_seq: int = -1
    inquiry_id: str | None = None


@dataclass
class IngestConnection:
    """One authenticated ingest connection."""

    claims: Claims
    origin: str | None
    limits: IngestLimits
    recent: Recent[tuple[str, str, int]]
    now: float
    errors: int = 0
    sessions: dict[str, _Session] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.bucket = TokenBucket(self.limits.rate_per_second, self.limits.rate_burst, self.now)

    def receive(self, message: str | bytes, now: float, received_at: datetime) -> Decision:
        """Decide what to do with one websocket message (``now``: monotonic seconds)."""
        if not self.bucket.take(now):
            rejection = self._reject(Code.RATE_LIMITED, "too many frames: reconnect later and resend")
            if isinstance(rejection, Reject):
                return Reject(rejection.error, close=Close(1013, Code.RATE_LIMITED))
            return rejection
        quick = fast.decode_callback_frame(message)
        if quick is not None:  # the common case; anything else takes pydantic's path for its answer
            return self._accept(quick, received_at)
        try:
            return self._accept(CallbackFrame.model_validate_json(message), received_at)
        except ValidationError as exc:
            # not a valid callback frame: find out why, and answer with the right code -- unless
            # the JSON itself is beyond the parser every consumer uses (nested too deeply, say)
            unreadable = next((error for error in exc.errors() if error["type"] == "json_invalid"), None)
            if unreadable is not None:
                return self._reject(Code.INVALID_JSON, f"the frame is not JSON that can be read: {unreadable['msg']}")
        try:
            document: Any = orjson.loads(message)
        except orjson.JSONDecodeError:
            return self._reject(Code.INVALID_JSON, "the frame is not JSON")
        seq = document.get("seq") if isinstance(document, dict) else None
        seq = seq if isinstance(seq, int) and not isinstance(seq, bool) else None
        session_id = document.get("session") if isinstance(document, dict) else None
        session_id = session_id if isinstance(session_id, str) else None
        if not isinstance(document, dict) or not isinstance(document.get("type"), str):
            return self._reject(Code.INVALID_FRAME, "a frame is an object with a type", field="type")
        if document["type"] not in CLIENT_FRAME_TYPES:
            return self._reject(Code.UNKNOWN_FRAME_TYPE, f"no frame type {document['type']!r} here", seq, session_id)
        if document["type"] == "refresh":
            try:
                return Refresh(validate(RefreshFrame, document).token)
            except SchemaError as exc:
                return self._reject(Code.INVALID_FRAME, str(exc), field=exc.field)
        if "seq" not in document:
            return self._reject(Code.SEQ_MISSING, "a callback frame needs a seq", None, session_id, field="seq")
        try:
            frame = validate(CallbackFrame, document)
        except SchemaError as exc:
            return self._reject(Code.INVALID_FRAME, str(exc), seq, session_id, field=exc.field)
        return self._accept(frame, received_at)

    def _accept(self, frame: CallbackFrame | fast.CallbackFrame, received_at: datetime) -> Decision:
        state = self.sessions.get(frame.session)
        if state is None:
            if len(self.sessions) >= self.limits.max_sessions:
                return self._reject(
                    Code.TOO_MANY_SESSIONS, "too many sessions on one connection", frame.seq, frame.session
                )
            state = self.sessions[frame.session] = _Session()
        if frame.seq <= state.last_seq:
            return self._reject(
                Code.SEQ_REPEATED,
                f"seq {frame.seq} is not after {state.last_seq} on this connection",
                frame.seq,
                frame.session,
            )
        if (self.claims.subject, frame.session, frame.seq) in self.recent:
            state.last_seq = frame.seq
            return Duplicate(frame.session, frame.seq)
        own = (
            fast.inquiry_id_of(frame.callback)
            if isinstance(frame, fast.CallbackFrame)
            else inquiry_id_of(frame.callback)
        )
        if frame.inquiry is not None and own is not None and frame.inquiry != own:
            return self._reject(
                Code.INQUIRY_MISMATCH,
                f"the frame names {frame.inquiry} but its callback names {own}",
                frame.seq,
                frame.session,
                field="inquiry",
            )
        inquiry_id = frame.inquiry or own or state.inquiry_id
        if inquiry_id and self.claims.inquiry_id and inquiry_id != self.claims.inquiry_id:
            return self._reject(Code.INQUIRY_FORBIDDEN, "the token is for another inquiry", frame.seq, frame.session)
        state.last_seq = frame.seq
        subject = self.claims.subject
        key = (inquiry_id or session_key(frame.session, subject)).encode()
        messages: list[tuple[bytes, bytes]] = []
        # every part was validated already (the frame, the token's claims): construct, don't revalidate
        if inquiry_id is not None and inquiry_id != state.inquiry_id:
            state.inquiry_id = inquiry_id
            link = SessionLink.model_construct(
                session=frame.session, inquiry_id=inquiry_id, subject=subject, received_at=received_at
            )
            messages.append((session_key(frame.session, subject).encode(), encode(link)))
        value = None
        if isinstance(frame, fast.CallbackFrame):
            value = fast.encode_callback_record(
                frame,
                fast.stored(frame.callback, keep_field_values=self.limits.keep_field_values),
                received_at=received_at,
                subject=subject,
                inquiry_id=inquiry_id,
                template_id=self.claims.template_id,
                origin=self.origin,
            )
        if value is None:
            callback = frame.callback
            if isinstance(callback, fast.Callback):  # the fast path could not encode it: pydantic's path does
                callback = fast.as_model(callback)
            record = CallbackRecord.model_construct(
                session=frame.session,
                seq=frame.seq,
                client_ts=frame.ts,
                received_at=received_at,
                subject=subject,
                inquiry_id=inquiry_id,
                template_id=self.claims.template_id,
                origin=self.origin,
                callback=self._stored(callback),
            )
            value = encode(record)
        messages.append((key, value))
        return Write(subject, frame.session, frame.seq, tuple(messages))

    def _stored(self, callback: Any) -> Any:
        """The callback as it may be stored: never a session token; field values only if allowed."""
        if isinstance(callback, OnCancel) and callback.session_token is not None:
            return callback.redacted()
        if isinstance(callback, OnComplete) and not self.limits.keep_field_values:
            return callback.model_copy(
                update={"fields": {name: _without_value(v) for name, v in callback.fields.items()}}
            )
        return callback

    def _reject(
        self,
        code: Code,
        message: str,
        seq: int | None = None,
        session: str | None = None,
        *,
        field: str | None = None,
    ) -> Decision:
        self.errors += 1
        if self.errors > self.limits.max_errors:
            return Close(1008, Code.TOO_MANY_ERRORS)
        return Reject(
            ErrorFrame(code=code, message=message, seq=seq, session=session, field=field, retriable=code.retriable)
        )


def _without_value(value: Any) -> Any:
    if isinstance(value, FieldValue):
        return FieldValue(type=value.type)
    return None


class AckTracker:
    """Cumulative acknowledgements that never run ahead of a pending write.

    Frames enter in arrival order; each is completed when Kafka has it (or when it was rejected).
    :meth:`ready` pops the completed prefix and returns, per session, the highest seq in it:
    every frame of that session up to that seq, sent on this connection, is done.
    """

    def __init__(self) -> None:
        self._entries: deque[list[Any]] = deque()  # [session, seq, done, durable]

    def add(self, session: str, seq: int, *, done: bool = False) -> list[Any]:
        """Track a frame; ``done`` for one answered at once (a rejection or a known duplicate)."""
        entry = [session, seq, done, False]
        self._entries.append(entry)
        return entry

    @staticmethod
    def complete(entry: list[Any]) -> None:
        """Kafka has the frame."""
        entry[2] = entry[3] = True

    def ready(self) -> list[tuple[str, int, int]]:
        """(session, highest seq, frames written) for each session in the completed prefix."""
        highest: dict[str, tuple[int, int]] = {}
        while self._entries and self._entries[0][2]:
            session, seq, _, durable = self._entries.popleft()
            top, count = highest.get(session, (-1, 0))
            highest[session] = (max(seq, top), count + int(durable))
        return [(session, seq, count) for session, (seq, count) in highest.items()]

    def __len__(self) -> int:
        return len(self._entries)
