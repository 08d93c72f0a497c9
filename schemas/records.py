"""Records persona-stream writes to Kafka, one model per topic.

========================  =====================================================================
topic                     value
========================  =====================================================================
<p>.client-events         :data:`ClientEvent`: a :class:`CallbackRecord` (one callback from a
                          browser, stamped by the gateway) or a :class:`SessionLink` (a session
                          learned its inquiry)
<p>.webhooks              the webhook body exactly as Persona sent it (raw bytes, no envelope);
                          delivery metadata in Kafka headers (:data:`WEBHOOK_HEADERS`)
<p>.api-snapshots         :class:`ApiSnapshot`: an inquiry as Persona's REST API answered it (a
                          trusted input, like a verified webhook)
<p>.reconcile-requests    :class:`ReconcileRequest`: a worker asks the reconciler to read one
                          inquiry from Persona's API (internal)
<p>.inquiry-status        :class:`StatusRecord`: one change of what an inquiry's record carries
<p>.analytics             :class:`AnalyticsRecord`: one window of funnel counts for one template
<p>.dead-letters          :class:`DeadLetter`: a record that could not be processed, and why
========================  =====================================================================

Every record carries ``schema_version``; a consumer rejects a version it does not know rather
than guessing.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from schemas.callbacks import Callback, InquiryId
from schemas.webhooks import InquiryObject

SessionId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{8,64}$")]
"""A client session id: chosen by the browser bridge, 8 to 64 URL-safe characters."""

Subject = Annotated[str, StringConstraints(min_length=1, max_length=200)]

SESSION_KEY_PREFIX = "session:"
"""Key prefix of client events written before their session knows its inquiry.

The key is ``session:<session id>:<subject>``: a session id is the browser's word, so a session is
only ever one subject's -- another token holder who picks the same id gets a buffer of its own and
can neither take a seq first nor re-point the link."""


def session_key(session: str, subject: str) -> str:
    return f"{SESSION_KEY_PREFIX}{session}:{subject}"


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
        """The Kafka key: the inquiry ID, or ``session:<id>:<subject>`` while the inquiry is unknown."""
        return self.inquiry_id if self.inquiry_id is not None else session_key(self.session, self.subject)


class SessionLink(_Record):
    """A session learned its inquiry ID; keyed by ``session:<id>:<subject>`` like its earlier callbacks."""

    kind: Literal["link"] = "link"
    session: SessionId
    inquiry_id: InquiryId
    subject: Subject
    received_at: AwareDatetime

    def key(self) -> str:
        return session_key(self.session, self.subject)


ClientEvent = Annotated[CallbackRecord | SessionLink, Field(discriminator="kind")]


TrustedSource = Literal["webhook", "api"]
"""Where a trusted snapshot came from: a verified webhook, or a read of Persona's REST API."""


class Cause(BaseModel):
    """The trusted snapshot that set the status: a webhook event, or an API read."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str = Field(description="The webhook's event id, or the API snapshot's id (``api_...``).")
    event_name: str = Field(description="The webhook's event name, or ``api.inquiry`` for an API read.")
    created_at: AwareDatetime = Field(description="The event's created-at, or when the API read was observed.")
    source: TrustedSource = "webhook"


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


RecordField = Literal[
    "status",
    "reference_id",
    "template_id",
    "milestones",
    "flags.claimed_complete_but_rejected",
    "flags.awaiting_confirmation",
    "flags.left_early",
    "flags.subject_mismatch",
]
"""What a status record carries, by name: ``changed`` lists the ones that differ from the last record."""

RECORD_FIELDS: tuple[RecordField, ...] = get_args(RecordField)


class Trigger(BaseModel):
    """The input that made a record: a webhook, a client callback, or the timer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: Literal["webhook", "api", "callback", "timer"]
    at: AwareDatetime = Field(
        description="The webhook's created-at, the API read's observation, the callback's receipt, or the timer's "
        "clock."
    )
    event_id: str | None = Field(default=None, description="The webhook event or API snapshot (source webhook, api).")
    session: str | None = Field(default=None, description="The client session (source callback).")
    seq: int | None = Field(default=None, description="The callback's seq in its session (source callback).")


class StatusRecord(_Record):
    """One change of what persona-stream says about one inquiry, published once, in version order,
    keyed by inquiry ID.

    A record is published whenever anything it carries changes -- the trusted status, reference id,
    template or milestones, or any flag -- and only then; ``changed`` says what. ``status`` and
    ``cause`` always come from Persona -- verified webhooks or reads of its API (``source``); flags
    may also change on a callback or the timer (``trigger``). No record exists before the first inquiry snapshot.
    """

    inquiry_id: InquiryId
    version: int = Field(ge=1, description="Increases by one with every record of this inquiry.")
    status: str = Field(description="The trusted status (never null: no record precedes the first snapshot).")
    previous_status: str | None = Field(description="The status of the previous record; null on the first.")
    reference_id: str | None = Field(
        default=None, description="The trusted reference-id (the newest snapshot that named one; kept on redaction)."
    )
    template_id: str | None = Field(default=None, description="The template (the newest snapshot that named one).")
    milestones: list[str] = Field(
        default_factory=list, description="Every lifecycle status some verified snapshot showed, in lifecycle order."
    )
    cause: Cause = Field(description="The trusted snapshot that set the status.")
    source: TrustedSource = Field(
        default="webhook", description="Where the trusted status came from: a verified webhook or Persona's API."
    )
    flags: Flags = Field(default_factory=Flags)
    changed: list[RecordField] = Field(
        default_factory=list, description="What differs from the previous record (everything set, on the first)."
    )
    trigger: Trigger | None = Field(default=None, description="The input that made this record.")


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


ReconcileReason = Literal["awaiting-confirmation", "dead-letter", "on-demand", "backfill"]
"""Why an inquiry was read from Persona's API."""


class ApiSnapshot(_Record):
    """An inquiry as Persona's REST API answered ``GET /inquiries/{id}``, keyed by inquiry id.

    A trusted input like a verified webhook (the read is authenticated with the customer's own key
    over TLS). ``observed_at`` orders it against webhooks: the later of the answer's ``Date`` and the
    object's ``updated-at`` -- the inquiry was like this at least then. ``snapshot_id`` is derived
    from the inquiry id, its status and its ``updated-at``: the same state read twice is one snapshot.
    """

    inquiry_id: InquiryId
    snapshot_id: str = Field(pattern=r"^api_[0-9a-f]{32}$")
    observed_at: AwareDatetime
    reason: ReconcileReason
    inquiry: InquiryObject


class ReconcileRequest(_Record):
    """A worker asks for one inquiry to be read from Persona's API (internal; keyed by inquiry id)."""

    inquiry_id: InquiryId
    reason: ReconcileReason
    at: AwareDatetime
