"""The materialized view of one inquiry, with its provenance visible.

A view has three parts, and the separation is the point of the project:

* ``trusted`` -- set by Persona only: verified webhooks and reads of Persona's API (``source``).
  ``audit`` records every webhook event and API snapshot seen, applied or not, and why.
* ``client`` -- what the browser's callbacks claimed. Hints and analytics; never trusted state.
* ``flags`` -- derived from both: where they disagree, or look suspicious.

``version`` counts the status records published; ``published`` is what the last one carried.
``GET /v1/inquiries/{id}`` answers a :class:`ViewDocument`: the view plus its ``provenance``, a
line per part saying where it comes from.

Unlike the other wire models these are mutable: the correlation core owns exactly one view per
inquiry and updates it in place for every event (copying a nested frozen model per event would
dominate the processing cost). Everything outside the core treats a view as read-only.
"""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.records import Flags, TrustedSource


class _State(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False, revalidate_instances="never")


class ObjectResult(_State):
    """The latest known state of a verification, report or case, by its event's created-at."""

    type: str
    status: str | None = None
    event_name: str
    event_id: str
    created_at: AwareDatetime


class Stamp(_State):
    """Where a snapshot stands in snapshot order: (created-at, lifecycle rank, event id)."""

    created_at: AwareDatetime
    rank: int
    event_id: str

    def key(self) -> tuple[AwareDatetime, int, str]:
        return self.created_at, self.rank, self.event_id


class TrustedPart(_State):
    """The inquiry as the newest trusted snapshot described it (a verified ``inquiry.*`` webhook or a
    read of Persona's API), plus other objects."""

    status: str | None = None
    source: TrustedSource | None = Field(default=None, description="Where the snapshot that set the status came from.")
    event_id: str | None = Field(default=None, description="The event (or API snapshot) whose snapshot set the status.")
    event_name: str | None = None
    created_at: AwareDatetime | None = Field(default=None, description="That event's created-at.")
    reference_id: str | None = Field(
        default=None, description="From the newest snapshot that named one: a redacted snapshot does not erase it."
    )
    reference_from: Stamp | None = None
    template_id: str | None = Field(default=None, description="From the newest snapshot that named one.")
    template_from: Stamp | None = None
    decision: str | None = Field(default=None, description="approved or declined, once decided.")
    timestamps: dict[str, str | None] = Field(default_factory=dict)
    previous_step_name: str | None = None
    next_step_name: str | None = None
    tags: list[str] = Field(default_factory=list)
    redacted: bool = False
    verifications: dict[str, ObjectResult] = Field(default_factory=dict)
    reports: dict[str, ObjectResult] = Field(default_factory=dict)
    cases: dict[str, ObjectResult] = Field(default_factory=dict)


class AuditEntry(_State):
    """One webhook event or API snapshot seen for this inquiry, and what it did."""

    event_id: str
    event_name: str
    source: TrustedSource = "webhook"
    created_at: AwareDatetime
    outcome: str = Field(description="applied | stale | duplicate | recorded (no part of the view follows it)")
    note: str | None = Field(
        default=None,
        description="name-status-mismatch (the name says another status than the payload) or "
        "unexpected-transition (a change Persona's lifecycle does not allow)",
    )


class SeqSet(_State):
    """The sequence numbers of one session seen so far, compactly."""

    contiguous: int = Field(default=-1, description="Every seq up to this one has been seen.")
    above: list[int] = Field(default_factory=list, description="Seqs seen beyond the contiguous run, sorted.")

    def __contains__(self, seq: int) -> bool:
        return seq <= self.contiguous or seq in self.above

    def add(self, seq: int, limit: int = 256) -> None:
        if seq in self:
            return
        if seq == self.contiguous + 1:
            self.contiguous = seq
            while self.above and self.above[0] == self.contiguous + 1:
                self.contiguous = self.above.pop(0)
        else:
            self.above.append(seq)
            self.above.sort()
            if len(self.above) > limit:
                # a gap this long will not fill: count everything up to the oldest kept seq as seen
                self.contiguous = self.above.pop(0)
                while self.above and self.above[0] <= self.contiguous + 1:
                    self.contiguous = max(self.contiguous, self.above.pop(0))


class SessionInfo(_State):
    subject: str
    origin: str | None = None
    first_seen: AwareDatetime
    last_seen: AwareDatetime
    seqs: SeqSet = Field(default_factory=SeqSet)


class TimelineEntry(_State):
    at: AwareDatetime
    session: str
    seq: int
    kind: str
    name: str | None = None


class SubjectClaims(_State):
    """What the callbacks of one token subject claimed; no other subject sets or clears them."""

    started_at: AwareDatetime | None = None
    claimed_status: str | None = Field(default=None, description="The status this subject's onComplete claimed.")
    completed_at: AwareDatetime | None = Field(default=None, description="This subject's first onComplete.")


class ClientPart(_State):
    """What the browser's callbacks claimed -- untrusted."""

    sessions: dict[str, SessionInfo] = Field(
        default_factory=dict, description="Keyed <session>:<subject>: a session id is only unique per subject."
    )
    template_id: str | None = Field(default=None, description="The template the ingest token named.")
    subjects: list[str] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(
        default_factory=list, description="The latest callbacks, bounded, in the order the gateway received them."
    )
    steps: list[str] = Field(
        default_factory=list,
        description="Funnel steps reached, in first-reached order (when the gateway received the callback).",
    )
    step_times: dict[str, AwareDatetime] = Field(
        default_factory=dict, description="When each step was first reached (the gateway's receipt)."
    )
    claims: dict[str, SubjectClaims] = Field(default_factory=dict, description="Per token subject.")
    cancels: int = 0
    error_codes: dict[str, int] = Field(default_factory=dict)
    camera_failures: int = 0
    one_time_link: dict[str, int] = Field(default_factory=dict)


class Published(_State):
    """The content of the last status record (what decides whether a new one is due)."""

    status: str
    reference_id: str | None = None
    template_id: str | None = None
    milestones: list[str] = Field(default_factory=list)
    flags: Flags = Field(default_factory=Flags)


class InquiryView(_State):
    """Everything persona-stream knows about one inquiry."""

    inquiry_id: str
    version: int = Field(default=0, description="The version of the last status record published (0: none yet).")
    trusted: TrustedPart = Field(default_factory=TrustedPart)
    audit: list[AuditEntry] = Field(default_factory=list, description="Webhook events seen, bounded.")
    milestones: list[str] = Field(
        default_factory=list, description="Lifecycle statuses some verified event showed, in any order."
    )
    client: ClientPart = Field(default_factory=ClientPart)
    flags: Flags = Field(default_factory=Flags)
    published: Published | None = Field(default=None, description="What the last status record carried.")
    trusted_completion_seen_at: AwareDatetime | None = Field(
        default=None, description="When this pipeline first saw a trusted completion (its clock, for flags)."
    )
    trusted_completed_at: AwareDatetime | None = Field(
        default=None, description="created-at of the earliest snapshot showing a trusted completion."
    )
    start_to_trusted_completion: float | None = Field(
        default=None, description="Seconds from the client's start to the trusted completion, once both are known."
    )
    reconcile_requested_at: AwareDatetime | None = Field(
        default=None, description="When the timer last asked for this inquiry to be read from Persona's API."
    )
    reconcile_requests: int = Field(default=0, description="How often the timer asked for it.")
    updated_at: AwareDatetime | None = None


class Provenance(_State):
    """Where each part of a view comes from, in words, beside the view a client reads."""

    trusted: str = (
        "Persona only: verified webhooks and reads of Persona's API (source); version counts the status "
        "records published"
    )
    audit: str = "every webhook event and API snapshot seen for this inquiry (source), and whether it was applied"
    client: str = "the browser's callbacks as received: unverified claims, never trusted"
    flags: str = "derived from both: where the client's word and the server's disagree"


class ViewDocument(InquiryView):
    """The answer of ``GET /v1/inquiries/{id}``: the inquiry's view, and which part is which."""

    provenance: Provenance
