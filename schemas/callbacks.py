"""The six client callbacks of Persona's browser SDK (npm ``persona`` 5.9.0), as it delivers them.

Each callback is one object with a ``kind`` discriminator and, beside it, exactly the fields of the
argument the SDK passes to that callback:

=============  ==============================================================================
kind           the SDK's argument
=============  ==============================================================================
onLoad         none
onReady        none
onEvent        ``name`` and ``metadata`` (the two arguments of ``onEvent(name, metadata)``)
onComplete     ``{inquiryId, status, fields}``; fields as ``{type, value}`` or legacy strings
onCancel       ``{inquiryId?, sessionToken?}`` (both absent when cancelled before an inquiry)
onError        ``{status, code, message?}``
=============  ==============================================================================

The vendor's lists grow: an event name or error code this module does not know is *kept* as a
plain string (``EventName`` / ``ErrorCode`` only say whether it is known). A wrong *shape* -- a
missing ``inquiryId``, a status that is not a number, an unexpected key -- is rejected.

``sessionToken`` can resume someone's inquiry: it is accepted here so that frames from an SDK
configured to send it still validate, but it is a :class:`~pydantic.SecretStr` and the gateway
never writes it to Kafka (see :meth:`OnCancel.redacted`).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, SecretStr, StringConstraints

INQUIRY_ID_PATTERN = r"^inq_[A-Za-z0-9_-]{1,100}$"
InquiryId = Annotated[str, StringConstraints(pattern=INQUIRY_ID_PATTERN)]
_INQUIRY_ID = re.compile(INQUIRY_ID_PATTERN)


def is_inquiry_id(value: str) -> bool:
    """Whether ``value`` is an inquiry id (``inq_`` and 1 to 100 URL-safe characters)."""
    return _INQUIRY_ID.fullmatch(value) is not None


ShortText = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class EventName(StrEnum):
    """Every event name in the SDK's enum, plus the two the documentation adds."""

    EXIT = "exit"
    COMPLETE = "complete"
    ERROR = "error"
    FAIL = "fail"
    LOAD = "load"
    READY = "ready"
    START = "start"
    SUCCESS = "success"
    DOCUMENT_CAMERA_SELECT = "document-camera-select"
    DOCUMENT_CAMERA_CAPTURE = "document-camera-capture"
    DOCUMENT_UPLOAD = "document-upload"
    ONE_TIME_LINK_SENT = "one-time-link-sent"
    ONE_TIME_LINK_START = "one-time-link-start"
    ONE_TIME_LINK_EXIT = "one-time-link-exit"
    SELFIE_CAMERA_SELECT = "selfie-camera-select"
    SELFIE_CAMERA_CAPTURE = "selfie-camera-capture"
    SELFIE_RECORD_UPLOAD = "selfie-record-upload"
    LOAD_CAMERA_FAILED = "load-camera-failed"
    CAMERA_PERMISSIONS_CHECK_RESULT = "camera-permissions-check-result"
    PAGE_CHANGE = "page-change"
    INQUIRY_LOAD = "inquiry-load"
    COUNTRY_SELECT = "country-select"  # deprecated by the SDK, still emitted by old flows
    VERIFICATION_CHANGE = "verification-change"  # deprecated; metadata {id, status}
    STEP_TRANSITIONING = "step-transitioning"
    CLICK = "click"
    FORM_UPDATE = "form-update"
    DOCUMENTS_SAVE_SUCCESSFUL = "documents-save-successful"
    DOCUMENTS_SAVE_FAIL = "documents-save-fail"


class ErrorCode(StrEnum):
    """The documented ``onError`` codes; the comment is the HTTP-like status the SDK pairs with it."""

    APPLICATION_ERROR = "application_error"  # 0
    INVALID_CONFIG = "invalid_config"  # 400
    UNAUTHENTICATED = "unauthenticated"  # 409
    INACTIVE_TEMPLATE = "inactive_template"  # 422
    UNKNOWN = "unknown"  # any


def known_event(name: str) -> EventName | None:
    """The enum member for a known event name, None for a name the SDK added later."""
    try:
        return EventName(name)
    except ValueError:
        return None


def known_error(code: str) -> ErrorCode | None:
    """The enum member for a documented error code, None for an unknown one."""
    try:
        return ErrorCode(code)
    except ValueError:
        return None


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class FieldValue(_Strict):
    """One inquiry field as ``onComplete`` reports it; ``value`` is absent when redacted."""

    type: ShortText
    value: JsonValue = None


class OnLoad(_Strict):
    """``onLoad()``: the iframe loaded."""

    kind: Literal["onLoad"] = "onLoad"


class OnReady(_Strict):
    """``onReady()``: the flow is ready for interaction."""

    kind: Literal["onReady"] = "onReady"


class OnEvent(_Strict):
    """``onEvent(name, metadata)``: one step of the flow; unknown names are kept."""

    kind: Literal["onEvent"] = "onEvent"
    name: ShortText
    metadata: dict[str, JsonValue] | None = None

    @property
    def event(self) -> EventName | None:
        return known_event(self.name)


class OnComplete(_Strict):
    """``onComplete({inquiryId, status, fields})``: fired for both ``complete`` and ``fail``.

    A claim, not a fact: the status may be stale and the callback may never fire.
    """

    kind: Literal["onComplete"] = "onComplete"
    inquiry_id: InquiryId = Field(alias="inquiryId")
    status: ShortText
    fields: dict[str, FieldValue | str | None] = Field(default_factory=dict)


class OnCancel(_Strict):
    """``onCancel({inquiryId?, sessionToken?})``: the user left the flow."""

    kind: Literal["onCancel"] = "onCancel"
    inquiry_id: InquiryId | None = Field(default=None, alias="inquiryId")
    session_token: SecretStr | None = Field(default=None, alias="sessionToken", exclude=True)

    def redacted(self) -> OnCancel:
        """This callback without its session token (the token is never stored)."""
        return self.model_copy(update={"session_token": None})


class OnError(_Strict):
    """``onError({status, code, message?})``: not fired for network errors."""

    kind: Literal["onError"] = "onError"
    status: int = Field(ge=-1, le=999)
    code: ShortText
    message: Annotated[str, StringConstraints(max_length=2000)] | None = None

    @property
    def error(self) -> ErrorCode | None:
        return known_error(self.code)


Callback = Annotated[OnLoad | OnReady | OnEvent | OnComplete | OnCancel | OnError, Field(discriminator="kind")]
"""Any one of the six callbacks, told apart by ``kind``."""

CallbackKind = Literal["onLoad", "onReady", "onEvent", "onComplete", "onCancel", "onError"]


def inquiry_id_of(callback: OnLoad | OnReady | OnEvent | OnComplete | OnCancel | OnError) -> str | None:
    """The inquiry ID a callback itself reveals: ``start`` metadata, onComplete, onCancel."""
    if isinstance(callback, OnComplete | OnCancel):
        return callback.inquiry_id
    if isinstance(callback, OnEvent) and callback.metadata:
        candidate: Any = callback.metadata.get("inquiryId")
        if isinstance(candidate, str) and _INQUIRY_ID.fullmatch(candidate):
            return candidate
    return None
