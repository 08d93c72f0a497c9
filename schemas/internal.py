"""Records of the processors' internal topics and changelogs.

They cross Kafka, so they are typed here like every other record, but they are not a public
contract: only the workers read them, and they may change between versions together with the
workers (a changelog is rebuilt by replaying the input topics if its format changes).

=============================  ===================================================================
where                          value
=============================  ===================================================================
<p>.processor-ticks            :class:`Tick`: a worker's clock, sent to each partition it owns
<p>.analytics-facts            :class:`AnalyticsFact`: counts one input contributed to a window
<id>-sessions-changelog        :class:`SessionBuffer`: callbacks of a session before its inquiry
<id>-analytics-changelog       :class:`AnalyticsWindow`: one template's counts for one window
<id>-inquiries-changelog       :class:`~schemas.views.InquiryView`
=============================  ===================================================================
"""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.records import CallbackRecord
from schemas.views import SeqSet


class _Internal(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Tick(_Internal):
    at: AwareDatetime


class AnalyticsFact(_Internal):
    template_id: str
    at: AwareDatetime = Field(description="When the input entered the pipeline (gateway receipt).")
    counts: dict[str, int]
    durations: list[float] = Field(default_factory=list)


class AnalyticsWindow(_Internal):
    template_id: str
    partition: int
    window_start: AwareDatetime
    window_end: AwareDatetime
    counts: dict[str, int] = Field(default_factory=dict)
    durations: list[float] = Field(default_factory=list)
    dirty: bool = False
    final_sent: bool = False


class SessionBuffer(_Internal):
    """A client session before its inquiry is known, or the inquiry it was linked to."""

    session: str
    inquiry_id: str | None = None
    records: list[CallbackRecord] = Field(default_factory=list)
    seqs: SeqSet = Field(default_factory=SeqSet)
    dropped: int = Field(default=0, description="Callbacks past the buffer's bound, counted but not kept.")
