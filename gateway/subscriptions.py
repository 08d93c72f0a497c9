"""Subscription rules, without I/O: who may follow which channel, and what a new subscriber gets.

Channels::

    inquiry:<id>   one inquiry
    mine           every inquiry whose trusted reference-id is the token's subject
    all            every inquiry (firehose scope only; live and resume, no snapshot)

Authorization (:func:`refusal`):

=========  ==============  ================================================================
scope      channel         allowed when
=========  ==============  ================================================================
firehose   any             always
subscribe  ``mine``        always (it only ever carries the subject's own inquiries)
subscribe  ``inquiry:X``   the token names no inquiry, or names X; refused
                           (``channel-forbidden``) when it names another
subscribe  ``all``         never
=========  ==============  ================================================================

Whether X exists, or whose it is, never changes the answer: a subscription to someone else's
inquiry is answered exactly like one to an inquiry nobody has seen yet (``subscribed``, an empty
snapshot), so subscribing cannot probe for inquiry ids. It is not a leak either: every record is
checked on delivery (:func:`may_see`), so it only ever carries records whose reference-id is the
subject.

Snapshot, then live (:func:`plan`): the I/O layer registers the subscription and calls
:func:`plan` in one step (no await in between), so every later record reaches the subscription
after the snapshot, and records at or below the versions the snapshot fixed are dropped -- no gap,
no duplicate. With ``since`` (the last version seen per inquiry), the missed records are replayed
if the cache still holds them all (``recovered: true``); otherwise the current records replace
history (``recovered: false``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from core.tokens import Claims
from gateway.statuses import StatusCache
from schemas.errors import Code
from schemas.records import StatusRecord

ChannelKind = Literal["inquiry", "mine", "all"]


@dataclass(frozen=True)
class Channel:
    kind: ChannelKind
    inquiry_id: str | None = None

    @classmethod
    def parse(cls, text: str) -> Channel:
        if text.startswith("inquiry:"):
            return cls("inquiry", text.removeprefix("inquiry:"))
        if text in ("mine", "all"):
            return cls(text)  # type: ignore[arg-type]
        raise ValueError(f"no channel {text!r}")

    def __str__(self) -> str:
        return f"inquiry:{self.inquiry_id}" if self.kind == "inquiry" else self.kind


def refusal(claims: Claims, channel: Channel) -> Code | None:
    """None if ``claims`` may subscribe to ``channel``, else the error code."""
    if claims.scope == "firehose":
        return None
    if claims.scope != "subscribe" or channel.kind == "all":
        return Code.CHANNEL_FORBIDDEN
    if channel.kind == "inquiry" and claims.inquiry_id is not None and claims.inquiry_id != channel.inquiry_id:
        return Code.CHANNEL_FORBIDDEN
    return None


def may_see(claims: Claims, channel: Channel, record: StatusRecord) -> bool:
    """Whether one record may be delivered on one subscription."""
    if channel.kind == "inquiry" and record.inquiry_id != channel.inquiry_id:
        return False
    if channel.kind == "mine" and record.reference_id != claims.subject:
        return False
    if claims.scope == "firehose":
        return True
    return record.reference_id == claims.subject or claims.inquiry_id == record.inquiry_id


@dataclass
class Plan:
    """What a new subscription starts with."""

    recovered: bool
    snapshot: list[StatusRecord] = field(default_factory=list)
    replay: list[StatusRecord] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)


def plan(claims: Claims, channel: Channel, since: dict[str, int] | None, cache: StatusCache) -> Plan:
    if channel.kind == "inquiry":
        inquiries = [channel.inquiry_id or ""]
    elif channel.kind == "mine":
        inquiries = sorted(set(cache.of_reference(claims.subject)) | set(since or ()))
    else:
        inquiries = sorted(since or ())
    current = {i: r for i in inquiries if (r := cache.latest(i)) is not None and may_see(claims, channel, r)}
    if since is None:
        versions = {i: r.version for i, r in current.items()}
        snapshot = [] if channel.kind == "all" else list(current.values())
        return Plan(recovered=False, snapshot=snapshot, versions=versions)
    replay: list[StatusRecord] = []
    versions = {}
    for inquiry in inquiries:
        seen = since.get(inquiry, 0)
        versions[inquiry] = seen
        missed = cache.after(inquiry, seen)
        if missed is None:
            return Plan(
                recovered=False, snapshot=list(current.values()), versions={i: r.version for i, r in current.items()}
            )
        visible = [r for r in missed if may_see(claims, channel, r)]
        replay.extend(visible)
        if visible:
            versions[inquiry] = visible[-1].version
    return Plan(recovered=True, replay=replay, versions=versions)
