"""Persona API client: pure decisions in tables, then the client against a stand-in over real HTTP."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from core.settings import Settings
from processors.persona_api import (
    BACKOFF_CAP_SECONDS,
    PersonaApiAuthError,
    PersonaApiBadResponse,
    PersonaApiClient,
    PersonaApiError,
    PersonaApiNotFound,
    PersonaApiRateLimited,
    PersonaApiRejected,
    PersonaApiUnavailable,
    RateWindow,
    backoff_delay,
    ratelimit_wait,
    retry_delay,
)
from tests.fixtures.persona_api import Fault, PersonaStandIn, inquiry, persona_api

__all__ = ["persona_api"]

KEY = "persona_sandbox_do-not-leak-3f9a1c"


@dataclass
class Case:
    name: str
    status: int
    headers: dict[str, str]
    attempt: int
    rand: float
    expected: float


RETRY_CASES = [
    Case("429 Retry-After", 429, {"Retry-After": "3"}, 0, 0.5, 3.0),
    Case("429 RateLimit-Reset", 429, {"RateLimit-Reset": "7"}, 0, 0.5, 7.0),
    Case("429 Retry-After wins", 429, {"Retry-After": "2", "RateLimit-Reset": "9"}, 0, 0.5, 2.0),
    Case("429 capped", 429, {"Retry-After": "9999"}, 0, 0.5, BACKOFF_CAP_SECONDS),
    Case("429 bad header -> backoff", 429, {"Retry-After": "soon"}, 2, 0.5, 1.0),
    Case("503 backoff attempt 0", 503, {}, 0, 1.0, 0.5),
    Case("503 backoff attempt 3", 503, {"Retry-After": "5"}, 3, 0.25, 1.0),
    Case("500 backoff capped", 500, {}, 20, 1.0, BACKOFF_CAP_SECONDS),
    Case("500 jitter zero", 500, {}, 4, 0.0, 0.0),
]


@pytest.mark.parametrize("case", RETRY_CASES, ids=lambda c: c.name)
def test_retry_delay(case: Case) -> None:
    assert retry_delay(case.status, case.headers, case.attempt, case.rand) == pytest.approx(case.expected)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, 0.0),
        ({"RateLimit-Remaining": "5", "RateLimit-Reset": "30"}, 0.0),
        ({"RateLimit-Remaining": "0", "RateLimit-Reset": "12"}, 12.0),
        ({"RateLimit-Remaining": "0"}, 0.0),
        ({"RateLimit-Remaining": "x", "RateLimit-Reset": "12"}, 0.0),
    ],
)
def test_ratelimit_wait(headers: dict[str, str], expected: float) -> None:
    assert ratelimit_wait(headers) == expected


def test_backoff_grows_and_caps() -> None:
    assert [backoff_delay(a, 1.0) for a in range(4)] == [0.5, 1.0, 2.0, 4.0]
    assert backoff_delay(100, 1.0) == BACKOFF_CAP_SECONDS


def test_rate_window() -> None:
    window = RateWindow(limit=2, window=10.0)
    assert window.delay(0.0) == 0.0
    window.record(0.0)
    window.record(1.0)
    assert window.delay(2.0) == pytest.approx(8.0)
    assert window.delay(10.0) == 0.0


@dataclass
class FakeTime:
    """A clock that moves only when the client sleeps."""

    now: float = 0.0
    slept: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def make_client(api: PersonaStandIn, fake: FakeTime | None = None, **overrides: object) -> PersonaApiClient:
    values: dict[str, object] = {
        "persona_api_key": SecretStr(KEY),
        "persona_api_url": api.url,
        "persona_api_version": "2025-12-08",
        "persona_api_timeout_seconds": 0.5,
        "persona_api_max_retries": 3,
    }
    values.update(overrides)
    settings = Settings.model_validate(values)
    if fake is None:
        return PersonaApiClient(settings, rand=lambda: 0.0)
    return PersonaApiClient(settings, clock=fake.clock, sleep=fake.sleep, rand=lambda: 0.5)


async def test_get_inquiry_200_sends_key_and_version(persona_api: PersonaStandIn) -> None:
    persona_api.inquiries["inq_1"] = inquiry("inq_1", "approved", "itmpl_9")
    async with make_client(persona_api) as api:
        snapshot = await api.get_inquiry("inq_1")
    assert (snapshot.inquiry_id, snapshot.status, snapshot.reference_id) == ("inq_1", "approved", "ref-inq_1")
    assert snapshot.template_id == "itmpl_9"
    assert snapshot.updated_at == "2026-12-01T10:00:00.000Z"
    assert snapshot.observed_at.tzinfo is not None
    seen = persona_api.seen[0]
    assert seen.headers["Authorization"] == f"Bearer {KEY}"
    assert seen.headers["Persona-Version"] == "2025-12-08"


@pytest.mark.parametrize(
    ("fault", "error", "code"),
    [
        (Fault(404), PersonaApiNotFound, "persona-api-not-found"),
        (Fault(401), PersonaApiAuthError, "persona-api-auth"),
        (Fault(403), PersonaApiAuthError, "persona-api-auth"),
        (Fault(422), PersonaApiRejected, "persona-api-rejected"),
        (Fault(200, body="{not json"), PersonaApiBadResponse, "persona-api-bad-response"),
        (Fault(200, body="[1, 2]"), PersonaApiBadResponse, "persona-api-bad-response"),
        (Fault(200, body='{"data": {"type": "inquiry"}}'), PersonaApiBadResponse, "persona-api-bad-response"),
    ],
)
async def test_errors_are_typed_and_not_retried(
    persona_api: PersonaStandIn, fault: Fault, error: type[PersonaApiError], code: str
) -> None:
    persona_api.inquiries["inq_1"] = inquiry("inq_1")
    persona_api.faults.append(fault)
    async with make_client(persona_api, FakeTime()) as api:
        with pytest.raises(error) as raised:
            await api.get_inquiry("inq_1")
    assert raised.value.code == code
    assert not raised.value.retriable
    assert len(persona_api.seen) == 1


async def test_unknown_inquiry_is_not_found(persona_api: PersonaStandIn) -> None:
    async with make_client(persona_api) as api:
        with pytest.raises(PersonaApiNotFound) as raised:
            await api.get_inquiry("inq_missing")
    assert raised.value.status == 404


async def test_429_waits_for_reset_then_succeeds(persona_api: PersonaStandIn) -> None:
    persona_api.inquiries["inq_1"] = inquiry("inq_1")
    persona_api.faults.append(
        Fault(429, {"RateLimit-Limit": "300", "RateLimit-Remaining": "0", "RateLimit-Reset": "4"})
    )
    fake = FakeTime()
    async with make_client(persona_api, fake) as api:
        snapshot = await api.get_inquiry("inq_1")
    assert snapshot.status == "completed"
    assert len(persona_api.seen) == 2
    assert sum(fake.slept) >= 4.0


async def test_remaining_zero_holds_the_next_call(persona_api: PersonaStandIn) -> None:
    persona_api.inquiries["inq_1"] = inquiry("inq_1")
    persona_api.faults.append(Fault(200, {"RateLimit-Remaining": "0", "RateLimit-Reset": "6"}, body='{"data": null}'))
    fake = FakeTime()
    async with make_client(persona_api, fake) as api:
        with pytest.raises(PersonaApiBadResponse):
            await api.get_inquiry("inq_1")
        assert fake.slept == []
        await api.get_inquiry("inq_1")
    assert fake.slept == [pytest.approx(6.0)]


async def test_429_forever_gives_retriable_error(persona_api: PersonaStandIn) -> None:
    persona_api.faults.extend(Fault(429, {"Retry-After": "1"}) for _ in range(10))
    async with make_client(persona_api, FakeTime()) as api:
        with pytest.raises(PersonaApiRateLimited) as raised:
            await api.get_inquiry("inq_1")
    assert raised.value.retriable
    assert raised.value.status == 429
    assert len(persona_api.seen) == 4


async def test_5xx_then_recovery(persona_api: PersonaStandIn) -> None:
    persona_api.inquiries["inq_1"] = inquiry("inq_1")
    persona_api.faults.extend([Fault(500), Fault(502), Fault(503)])
    fake = FakeTime()
    async with make_client(persona_api, fake) as api:
        assert (await api.get_inquiry("inq_1")).status == "completed"
    assert len(persona_api.seen) == 4
    assert fake.slept == [pytest.approx(0.25), pytest.approx(0.5), pytest.approx(1.0)]


async def test_timeouts_are_retried_then_unavailable(persona_api: PersonaStandIn) -> None:
    persona_api.inquiries["inq_1"] = inquiry("inq_1")
    persona_api.faults.append(Fault(delay=2.0))
    async with make_client(persona_api, FakeTime(), persona_api_timeout_seconds=0.2) as api:
        assert (await api.get_inquiry("inq_1")).status == "completed"
    persona_api.faults.extend(Fault(delay=2.0) for _ in range(2))
    async with make_client(persona_api, FakeTime(), persona_api_timeout_seconds=0.2, persona_api_max_retries=1) as api:
        with pytest.raises(PersonaApiUnavailable) as raised:
            await api.get_inquiry("inq_1")
    assert raised.value.retriable


async def test_connection_refused_is_unavailable(persona_api: PersonaStandIn) -> None:
    url = persona_api.url
    await persona_api.stop()
    persona_api.url = url
    async with make_client(persona_api, FakeTime(), persona_api_max_retries=2) as api:
        with pytest.raises(PersonaApiUnavailable):
            await api.get_inquiry("inq_1")


async def test_pagination_across_pages_and_resume(persona_api: PersonaStandIn) -> None:
    for n in range(250):
        persona_api.inquiries[f"inq_{n:04d}"] = inquiry(f"inq_{n:04d}")
    since = datetime(2026, 1, 1, tzinfo=UTC)
    async with make_client(persona_api) as api:
        pages = [page async for page in api.list_inquiries(since, template_id="itmpl_1")]
        assert [len(p.ids) for p in pages] == [100, 100, 50]
        assert pages[-1].next_cursor is None
        assert sorted(i for p in pages for i in p.ids) == sorted(persona_api.inquiries)
        resumed = [page async for page in api.list_inquiries(since, after_cursor=pages[0].next_cursor)]
    assert [i for p in resumed for i in p.ids] == [i for p in pages[1:] for i in p.ids]
    first = persona_api.seen[0].query
    assert first["filter[inquiry-template-id]"] == "itmpl_1"
    assert first["filter[created-at-start]"] == since.isoformat()


async def test_malformed_page_is_typed_error(persona_api: PersonaStandIn) -> None:
    persona_api.faults.append(Fault(200, body='{"data": [{"no": "id"}]}'))
    async with make_client(persona_api) as api:
        with pytest.raises(PersonaApiBadResponse):
            async for _ in api.list_inquiries(datetime(2026, 1, 1, tzinfo=UTC)):
                pass


async def test_burst_never_exceeds_rate(persona_api: PersonaStandIn) -> None:
    persona_api.inquiries["inq_1"] = inquiry("inq_1")
    limit, window = 50, 0.4
    settings = Settings(
        persona_api_key=SecretStr(KEY),
        persona_api_url=persona_api.url,
        persona_api_rate_per_minute=limit,
        persona_api_max_concurrency=8,
    )
    async with PersonaApiClient(settings, rate_window_seconds=window) as api:
        await asyncio.gather(*(api.get_inquiry("inq_1") for _ in range(200)))
    times = sorted(s.at for s in persona_api.seen)
    assert len(times) == 200
    # 200 calls at 50 a window take at least three windows after the first; arrival times on a loaded
    # machine only ever stretch that (a per-window count of arrivals would be at the mercy of jitter)
    assert times[-1] - times[0] >= (len(times) / limit - 1) * window * 0.95


async def test_key_never_in_logs_errors_or_reprs(persona_api: PersonaStandIn, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    persona_api.faults.extend([Fault(500), Fault(429, {"Retry-After": "1"}), Fault(401), Fault(200, body="{x")])
    texts: list[str] = []
    async with make_client(persona_api, FakeTime()) as api:
        texts.append(repr(api))
        for _ in range(2):
            try:
                await api.get_inquiry("inq_1")
            except PersonaApiError as error:
                texts.extend([str(error), repr(error), repr(error.__cause__), repr(error.__context__)])
    settings = Settings(persona_api_key=SecretStr(KEY))
    texts.extend([repr(settings), str(settings), settings.model_dump_json()])
    assert len(persona_api.seen) == 4
    assert caplog.records
    blob = "\n".join(texts) + "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    assert KEY not in blob
