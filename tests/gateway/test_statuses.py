from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.tokens import Claims
from gateway.statuses import StatusCache
from gateway.subscriptions import Channel, may_see, plan, refusal
from schemas.codec import encode
from schemas.records import Cause, StatusRecord

AT = datetime(2026, 3, 1, tzinfo=UTC)


def record(inquiry: str, version: int, reference: str | None = "user-1", status: str = "pending") -> StatusRecord:
    return StatusRecord(
        inquiry_id=inquiry,
        version=version,
        status=status,
        previous_status=None,
        reference_id=reference,
        cause=Cause(event_id=f"evt_{version}", event_name="inquiry.started", created_at=AT),
    )


def put(cache: StatusCache, status: StatusRecord) -> bool:
    return cache.apply(status, encode(status))


def cache_with(*records: StatusRecord, capacity: int = 100, history: int = 4) -> StatusCache:
    cache = StatusCache(capacity=capacity, history=history)
    for r in records:
        put(cache, r)
    return cache


def test_the_cache_keeps_the_newest_and_ignores_repeats() -> None:
    cache = cache_with(record("inq_a", 1), record("inq_a", 2))
    assert not put(cache, record("inq_a", 2))
    assert not put(cache, record("inq_a", 1))
    latest = cache.latest("inq_a")
    assert latest is not None
    assert latest.version == 2


def test_history_replays_what_was_missed_or_says_it_cannot() -> None:
    cache = cache_with(*(record("inq_a", v) for v in range(1, 8)), history=4)
    assert [r.version for r in cache.after("inq_a", 5) or []] == [6, 7]
    assert cache.after("inq_a", 7) == []
    assert cache.after("inq_a", 2) is None  # versions 3 and earlier are gone
    assert cache.after("inq_unknown", 0) == []
    assert cache.after("inq_unknown", 3) is None


def test_a_gap_in_versions_restarts_the_history() -> None:
    cache = cache_with(record("inq_a", 1), record("inq_a", 4))
    assert cache.after("inq_a", 1) is None
    assert [r.version for r in cache.after("inq_a", 3) or []] == [4]


def test_the_reference_index_follows_the_trusted_reference_and_eviction() -> None:
    cache = cache_with(record("inq_a", 1, "user-1"), record("inq_b", 1, "user-1"), capacity=2)
    assert cache.of_reference("user-1") == ["inq_a", "inq_b"]
    put(cache, record("inq_a", 2, "user-2"))
    assert cache.of_reference("user-1") == ["inq_b"]
    put(cache, record("inq_c", 1, "user-3"))  # evicts inq_b, the least recently updated
    assert cache.of_reference("user-1") == []
    assert len(cache) == 2


SUBSCRIBER = Claims("user-1", "subscribe", 2_000_000_000)
FIREHOSE = Claims("service", "firehose", 2_000_000_000)


@pytest.mark.parametrize(
    ("claims", "channel", "refused"),
    [
        (SUBSCRIBER, "inquiry:inq_mine", None),
        (SUBSCRIBER, "inquiry:inq_theirs", None),  # answered like an unknown one; may_see filters it
        (SUBSCRIBER, "inquiry:inq_not_yet_known", None),
        (SUBSCRIBER, "mine", None),
        (SUBSCRIBER, "all", "channel-forbidden"),
        (Claims("user-1", "subscribe", 2_000_000_000, inquiry_id="inq_theirs"), "inquiry:inq_theirs", None),
        (Claims("user-1", "subscribe", 2_000_000_000, inquiry_id="inq_other"), "inquiry:inq_mine", "channel-forbidden"),
        (FIREHOSE, "all", None),
        (FIREHOSE, "inquiry:inq_theirs", None),
        (Claims("user-1", "ingest", 2_000_000_000), "mine", "channel-forbidden"),
    ],
)
def test_who_may_follow_what(claims: Claims, channel: str, refused: str | None) -> None:
    assert refusal(claims, Channel.parse(channel)) == refused


def test_a_foreign_inquiry_gets_the_same_start_as_an_unknown_one() -> None:
    cache = cache_with(record("inq_theirs", 3, "user-2"))
    for channel in ("inquiry:inq_theirs", "inquiry:inq_nobody_knows"):
        start = plan(SUBSCRIBER, Channel.parse(channel), None, cache)
        assert (refusal(SUBSCRIBER, Channel.parse(channel)), start.recovered, start.snapshot, start.replay) == (
            None,
            False,
            [],
            [],
        )
        resumed = plan(SUBSCRIBER, Channel.parse(channel), {channel.removeprefix("inquiry:"): 1}, cache)
        assert resumed.replay == []


def test_records_are_checked_again_on_delivery() -> None:
    pending = Channel.parse("inquiry:inq_new")
    assert may_see(SUBSCRIBER, pending, record("inq_new", 1, "user-1"))
    assert not may_see(SUBSCRIBER, pending, record("inq_new", 1, "user-2"))
    assert not may_see(SUBSCRIBER, Channel.parse("mine"), record("inq_x", 1, "user-2"))
    assert not may_see(FIREHOSE, pending, record("inq_other", 1))


def test_a_fresh_subscription_gets_a_snapshot() -> None:
    cache = cache_with(record("inq_a", 1), record("inq_a", 2), record("inq_b", 1), record("inq_c", 1, "user-2"))
    start = plan(SUBSCRIBER, Channel.parse("mine"), None, cache)
    assert not start.recovered
    assert sorted((r.inquiry_id, r.version) for r in start.snapshot) == [("inq_a", 2), ("inq_b", 1)]
    assert start.versions == {"inq_a": 2, "inq_b": 1}


def test_a_resumed_subscription_gets_exactly_what_it_missed() -> None:
    cache = cache_with(*(record("inq_a", v) for v in (1, 2, 3)), record("inq_b", 1))
    start = plan(SUBSCRIBER, Channel.parse("mine"), {"inq_a": 1}, cache)
    assert start.recovered
    assert [(r.inquiry_id, r.version) for r in start.replay] == [("inq_a", 2), ("inq_a", 3), ("inq_b", 1)]
    assert start.snapshot == []


def test_a_resume_beyond_the_history_falls_back_to_a_snapshot() -> None:
    cache = cache_with(*(record("inq_a", v) for v in range(1, 10)), history=2)
    start = plan(SUBSCRIBER, Channel.parse("inquiry:inq_a"), {"inq_a": 3}, cache)
    assert not start.recovered
    assert [r.version for r in start.snapshot] == [9]
    assert start.versions == {"inq_a": 9}


def test_the_firehose_has_no_snapshot() -> None:
    cache = cache_with(record("inq_a", 1))
    assert plan(FIREHOSE, Channel.parse("all"), None, cache).snapshot == []
