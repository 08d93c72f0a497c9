"""Websocket frames of the gateway's protocol (``docs/protocol.md`` is the prose version).

Client → server (:data:`ClientFrame`)::

    auth         {"type": "auth", "token": "<JWT>"}                      always the first frame
    callback     {"type": "callback", "session", "seq", "ts", "inquiry"?, "callback": {...}}
    subscribe    {"type": "subscribe", "id", "channel", "since"?}         /v1/subscribe only
    unsubscribe  {"type": "unsubscribe", "id"}                            /v1/subscribe only
    refresh      {"type": "refresh", "token": "<JWT>"}                   a new token before ``exp``

Server → client (:data:`ServerFrame`)::

    ready        authenticated; the connection's limits and its token's expiry
    refreshed    a refresh frame was accepted: the connection now expires at ``expires_at``
    ack          every frame of ``session`` up to ``seq`` sent on this connection is durable
                 in Kafka (or was answered with an error frame)
    error        one frame was refused; ``code`` is stable, ``seq`` names the frame
    subscribed   a subscription's snapshot: the current state, with ``recovered``
    update       one status record (a trusted change or a flag), or one analytics record
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from schemas.callbacks import INQUIRY_ID_PATTERN, Callback, InquiryId
from schemas.records import AnalyticsRecord, SessionId, StatusRecord

PROTOCOL_VERSION = 1

Token = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
RequestId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Channel = Annotated[str, StringConstraints(pattern=rf"^(inquiry:{INQUIRY_ID_PATTERN[1:-1]}|mine|all)$")]


class _Frame(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class AuthFrame(_Frame):
    type: Literal["auth"] = "auth"
    token: Token


class CallbackFrame(_Frame):
    """One SDK callback, with its identity: (``session``, ``seq``) is unique per flow."""

    type: Literal["callback"] = "callback"
    session: SessionId
    seq: int = Field(ge=0, le=2**53 - 1)
    ts: int = Field(ge=0, le=2**53 - 1, description="The client's clock, milliseconds since the epoch.")
    inquiry: InquiryId | None = Field(
        default=None, description="The inquiry, once the session knows it (or opened the flow with it)."
    )
    callback: Callback


class SubscribeFrame(_Frame):
    """Follow a channel: ``inquiry:<id>``, ``mine`` (inquiries whose reference-id is the token's
    subject) or ``all`` (firehose scope). Analytics has its own endpoint, ``/v1/analytics``."""

    type: Literal["subscribe"] = "subscribe"
    id: RequestId
    channel: Channel
    since: dict[str, int] | None = Field(
        default=None, description="Last version seen per inquiry, to resume without a gap or a duplicate."
    )


class UnsubscribeFrame(_Frame):
    type: Literal["unsubscribe"] = "unsubscribe"
    id: RequestId


class RefreshFrame(_Frame):
    """A new token for an open connection (same subject, scope, inquiry and template), sent before
    the current one expires; otherwise the gateway closes the connection at ``exp`` (4001)."""

    type: Literal["refresh"] = "refresh"
    token: Token


ClientFrame = Annotated[
    AuthFrame | CallbackFrame | SubscribeFrame | UnsubscribeFrame | RefreshFrame, Field(discriminator="type")
]


class _Limits(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ClientLimits(_Limits):
    """The limits of an ingest connection (``/v1/client``)."""

    max_frame_bytes: int = Field(description="The largest message accepted; a larger one closes with 1009.")
    rate_per_second: float = Field(description="Frames per second, sustained, before `rate-limited`.")
    rate_burst: int = Field(description="Frames accepted at once above the sustained rate.")
    max_sessions: int = Field(description="Sessions on one connection before `too-many-sessions`.")


class SubscribeLimits(_Limits):
    """The limits of a subscription connection (``/v1/subscribe``)."""

    max_subscriptions: int = Field(description="Subscriptions on one connection before `too-many-subscriptions`.")
    queue_size: int = Field(description="Frames queued for a slow reader before `slow-consumer`.")


class AnalyticsLimits(_Limits):
    """The limits of an analytics connection (``/v1/analytics``)."""

    queue_size: int = Field(description="Frames queued for a slow reader before `slow-consumer`.")


class ReadyFrame(_Frame):
    type: Literal["ready"] = "ready"
    protocol: int = PROTOCOL_VERSION
    connection: str
    subject: str
    scope: str
    limits: ClientLimits | SubscribeLimits | AnalyticsLimits = Field(description="The endpoint's limits.")
    expires_at: int | None = Field(
        default=None, description="When the token expires (seconds since the epoch): refresh before then."
    )


class RefreshedFrame(_Frame):
    type: Literal["refreshed"] = "refreshed"
    expires_at: int = Field(description="The connection's new expiry, seconds since the epoch.")


class AckFrame(_Frame):
    type: Literal["ack"] = "ack"
    session: str
    seq: int


class ErrorFrame(_Frame):
    type: Literal["error"] = "error"
    code: str
    message: str
    seq: int | None = None
    session: str | None = None
    id: str | None = Field(default=None, description="The subscription request this error answers.")
    field: str | None = None
    retriable: bool = False


class SubscribedFrame(_Frame):
    type: Literal["subscribed"] = "subscribed"
    id: str
    channel: str
    recovered: bool = Field(
        description="True: every missed update since `since` follows. False: `snapshot` replaces history."
    )
    snapshot: list[StatusRecord] = Field(
        default_factory=list, description="The current status record of each inquiry the channel covers."
    )


class UpdateFrame(_Frame):
    type: Literal["update"] = "update"
    id: str
    channel: str
    data: StatusRecord | AnalyticsRecord = Field(
        description="A status record (channels inquiry:<id>, mine, all) or an analytics record (channel analytics)."
    )


ServerFrame = Annotated[
    ReadyFrame | RefreshedFrame | AckFrame | ErrorFrame | SubscribedFrame | UpdateFrame, Field(discriminator="type")
]
