"""The fast path of the gateway's one hot frame: a callback frame in, its record's bytes out.

msgspec decodes and validates a :class:`~schemas.frames.CallbackFrame` into the structs below, and
the :class:`~schemas.records.CallbackRecord` is encoded from them, byte for byte what
:mod:`schemas.codec` writes for the same record. The pydantic models stay the schema (JSON Schema, docs, every other
reader); these structs mirror them and are never published.

The fast path only ever *accepts*: :func:`decode_callback_frame` returns None for anything it does
not accept (including inputs pydantic's lax mode takes, such as ``"seq": 1.0`` or the field names
``inquiry_id`` / ``session_token``), and the caller then takes the pydantic path, which gives the
answer and, for a rejection, the error code and the field. A test holds the two to the same
decision and the same bytes for any input (tests/gateway/test_fast_path.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
import orjson
from msgspec import Meta, Struct

from schemas import callbacks
from schemas.callbacks import INQUIRY_ID_PATTERN, is_inquiry_id
from schemas.codec import validate

_END = r"\Z"  # ``$`` in Python's re also matches before a final newline; pydantic's does not
_InquiryId = Annotated[str, Meta(pattern=INQUIRY_ID_PATTERN[:-1] + _END)]
_SessionId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{8,64}" + _END)]
_ShortText = Annotated[str, Meta(min_length=1, max_length=200)]
_JsonInt = Annotated[int, Meta(ge=0, le=2**53 - 1)]


class _Callback(Struct, frozen=True, forbid_unknown_fields=True, tag_field="kind"):
    pass


class OnLoad(_Callback, frozen=True, tag="onLoad"):
    pass


class OnReady(_Callback, frozen=True, tag="onReady"):
    pass


class OnEvent(_Callback, frozen=True, tag="onEvent"):
    name: _ShortText
    metadata: dict[str, Any] | None = None


class FieldValue(Struct, frozen=True, forbid_unknown_fields=True):
    type: _ShortText
    value: Any = None


class OnComplete(_Callback, frozen=True, tag="onComplete"):
    inquiryId: _InquiryId
    status: _ShortText
    fields: dict[str, FieldValue | str | None] = {}


class OnCancel(_Callback, frozen=True, tag="onCancel"):
    inquiryId: _InquiryId | None = None
    sessionToken: str | None = None  # read, never written (see StoredOnCancel)


class StoredOnCancel(_Callback, frozen=True, tag="onCancel"):
    """An onCancel as it is stored: the session token is never written."""

    inquiryId: str | None = None


class OnError(_Callback, frozen=True, tag="onError"):
    status: Annotated[int, Meta(ge=-1, le=999)]
    code: _ShortText
    message: Annotated[str, Meta(max_length=2000)] | None = None


Callback = OnLoad | OnReady | OnEvent | OnComplete | OnCancel | OnError


class CallbackFrame(Struct, frozen=True, forbid_unknown_fields=True):
    session: _SessionId
    seq: _JsonInt
    ts: _JsonInt
    callback: Callback
    type: Literal["callback"] = "callback"
    inquiry: _InquiryId | None = None


class _CallbackRecord(Struct, frozen=True):
    """The fields of :class:`~schemas.records.CallbackRecord`, in its order."""

    schema_version: int
    kind: str
    session: str
    seq: int
    client_ts: int
    received_at: datetime
    subject: str
    inquiry_id: str | None
    template_id: str | None
    origin: str | None
    callback: Any
    relinked: bool


_decoder = msgspec.json.Decoder(CallbackFrame)


_MAX_BRACKETS = 128
"""More ``{`` and ``[`` than this (strings included), and the pydantic path decides: its parser
refuses JSON nested about 200 deep (``invalid-json``), msgspec's goes deeper."""


def decode_callback_frame(message: str | bytes) -> CallbackFrame | None:
    """The frame, if the fast path accepts it; None: ask the pydantic path."""
    if isinstance(message, str):
        brackets = message.count("{") + message.count("[")
    else:
        brackets = message.count(b"{") + message.count(b"[")
    if brackets > _MAX_BRACKETS:
        return None
    try:
        return _decoder.decode(message)
    except (msgspec.DecodeError, ValueError, RecursionError):  # a lone surrogate, JSON nested too deeply
        return None


def inquiry_id_of(callback: Callback) -> str | None:
    """Like :func:`schemas.callbacks.inquiry_id_of`."""
    if isinstance(callback, OnComplete | OnCancel):
        return callback.inquiryId
    if isinstance(callback, OnEvent) and callback.metadata:
        candidate = callback.metadata.get("inquiryId")
        if isinstance(candidate, str) and is_inquiry_id(candidate):
            return candidate
    return None


def as_model(callback: Callback) -> Any:
    """The same callback as the pydantic model."""
    return validate(callbacks.Callback, msgspec.to_builtins(callback))


def stored(callback: Callback, *, keep_field_values: bool) -> Any:
    """The callback as it may be stored: never a session token; field values only if allowed."""
    if isinstance(callback, OnCancel):
        return StoredOnCancel(inquiryId=callback.inquiryId)
    if isinstance(callback, OnComplete) and not keep_field_values:
        fields: dict[str, FieldValue | str | None] = {
            name: FieldValue(v.type) if isinstance(v, FieldValue) else None for name, v in callback.fields.items()
        }
        return OnComplete(inquiryId=callback.inquiryId, status=callback.status, fields=fields)
    return callback


def encode_callback_record(
    frame: CallbackFrame,
    callback: Any,
    *,
    received_at: datetime,
    subject: str,
    inquiry_id: str | None,
    template_id: str | None,
    origin: str | None,
) -> bytes | None:
    """The :class:`~schemas.records.CallbackRecord` of ``frame``, encoded (``callback``: :func:`stored`);
    None for the rare record the pydantic path must encode (an integer beyond 64 bits).

    orjson writes the bytes, not msgspec: its numbers are pydantic's (``1e+16``; msgspec writes ``1e16``).
    """
    record = _CallbackRecord(
        1, "callback", frame.session, frame.seq, frame.ts, received_at, subject, inquiry_id, template_id, origin,
        callback, False,
    )  # fmt: skip
    try:
        return orjson.dumps(msgspec.to_builtins(record))
    except orjson.JSONEncodeError:
        return None
