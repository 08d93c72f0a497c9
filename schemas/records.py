"""Records persona-stream writes to Kafka, one model per topic.

========================  =====================================================================
topic                     value
========================  =====================================================================
<p>.client-events         :data:`ClientEvent`: a :class:`CallbackRecord` (one callback from a
                          browser, stamped by the gateway) or a :class:`SessionLink` (a session
                          learned its inquiry)
<p>.webhooks              the webhook body exactly as Persona sent it (raw bytes, no envelope);
                          delivery metadata in Kafka headers (:data:`WEBHOOK_HEADERS`)
<p>.inquiry-status        :class:`StatusRecord`: one trusted change of one inquiry
<p>.analytics             :class:`AnalyticsRecord`: one window of funnel counts for one template
<p>.dead-letters          :class:`DeadLetter`: a record that could not be processed, and why
========================  =====================================================================

Every record carries ``schema_version``; a consumer rejects a version it does not know rather
than guessing.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from schemas.callbacks import Callback, InquiryId

SessionId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{8,64}$")]
"""A client session id: chosen by the browser bridge, 8 to 64 URL-safe characters."""

Subject = Annotated[str, StringConstraints(min_length=1, max_length=200)]

SESSION_KEY_PREFIX = "session:"
"""Key prefix of client events written before their session knows its inquiry."""

WEBHOOK_HEADERS = (
    "persona-webhook-attempts-made",
    "persona-webhook-attempts-left",
    "persona-webhook-first-attempted-at",
)
"""Persona's delivery headers, kept on each record of the webhooks topic (lower-cased)."""

WEBHOOK_RECEIVED_AT_HEADER = "persona-stream-received-at"
WEBHOOK_EVENT_ID_HEADER = "persona-stream-event-id"


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    schema_version: Literal[1] = 1


class CallbackRecord(_Record):
    """One client callback as the gateway writes it to ``<p>.client-events``.

    ``session`` and ``seq`` are the frame's identity: a resent frame carries the same pair, so
    downstream deduplication is exact. Only ``subject`` (from the verified token) and
    ``received_at`` (the gateway's clock) are vouched for; the rest is the browser's word.
    """

    kind: Literal["callback"] = "callback"
    session: SessionId
    seq: int = Field(ge=0)
    client_ts: int = Field(ge=0, description="The client's clock, milliseconds since the epoch.")
    received_at: AwareDatetime
    subject: Subject
    inquiry_id: InquiryId | None = None
    template_id: str | None = None
    origin: str | None = None
    callback: Callback
    relinked: bool = Field(
        default=False,
        description="True on the copy a worker re-keys by inquiry once the session learns it.",
    )

    def key(self) -> str:
        """The Kafka key: the inquiry ID, or ``session:<id>`` while the inquiry is unknown."""
        return self.inquiry_id if self.inquiry_id is not None else SESSION_KEY_PREFIX + self.session


class SessionLink(_Record):
    """A session learned its inquiry ID; keyed by ``session:<id>`` like its earlier callbacks."""

    kind: Literal["link"] = "link"
    session: SessionId
    inquiry_id: InquiryId
    subject: Subject
    received_at: AwareDatetime

    def key(self) -> str:
        return SESSION_KEY_PREFIX + self.session


ClientEvent = Annotated[CallbackRecord | SessionLink, Field(discriminator="kind")]


class Cause(BaseModel):
    """The webhook event that caused a trusted change."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str
    event_name: str
    created_at: AwareDatetime


class Flags(BaseModel):
    """Derived flags: where the client's word and the server's disagree, or look suspicious."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    claimed_complete_but_rejected: bool = Field(
        default=False, description="The client claimed completion; the trusted status is failed or declined."
    )
    awaiting_confirmation: bool = Field(
        default=False, description="The client completed; no trusted completion arrived within the window."
    )
    left_early: bool = Field(
        default=False, description="A trusted completion, but the client's session never reported completing."
    )
    subject_mismatch: bool = Field(
        default=False, description="The token subject that sent callbacks differs from the trusted reference-id."
    )

    def raised(self) -> list[str]:
        return [name for name, value in self if value]


class StatusRecord(_Record):
    """One trusted change of one inquiry, published once, in version order, keyed by inquiry ID."""

    inquiry_id: InquiryId
    version: int = Field(ge=1, description="Increases by one with every trusted change of this inquiry.")
    status: str | None = Field(description="None only while no inquiry event has arrived yet.")
    previous_status: str | None
    reference_id: str | None = None
    template_id: str | None = None
    cause: Cause
    flags: Flags = Field(default_factory=Flags)


class Percentiles(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    count: int = 0
    p50_seconds: float | None = None
    p90_seconds: float | None = None


class AnalyticsRecord(_Record):
    """Funnel counts of one template over one tumbling window.

    ``final`` is False on the live partial updates published while the window is open and True on
    the one record published when it closes; the final record replaces every partial one.
    """

    template_id: str
    window_start: AwareDatetime
    window_end: AwareDatetime
    final: bool
    counts: dict[str, int] = Field(default_factory=dict)
    start_to_trusted_completion: Percentiles = Field(default_factory=Percentiles)


class DeadLetter(_Record):
    """A record that could not be processed, set aside so its partition keeps flowing."""

    source_topic: str
    partition: int
    offset: int
    key: str | None
    reason: str = Field(description="A stable code, listed in docs/protocol.md.")
    detail: str
    value_b64: str = Field(description="The original value, base64.")
    at: AwareDatetime
