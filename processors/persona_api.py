"""A client of Persona's REST API: the second trusted source of an inquiry's status.

Reads ``GET /inquiries/{id}`` (one snapshot) and ``GET /inquiries`` (cursor-paginated list) over
aiohttp, with the ``Authorization: Bearer`` key (a :class:`~pydantic.SecretStr`, never logged) and a
pinned ``Persona-Version``.

Behaviour:

* at most ``persona_api_max_concurrency`` calls in flight (a semaphore);
* a client-side cap of ``persona_api_rate_per_minute`` calls in any window (a sliding window);
* ``RateLimit-Remaining: 0`` makes the next call wait ``RateLimit-Reset`` seconds;
* 429 waits ``Retry-After`` (else ``RateLimit-Reset``, else backoff); 5xx, timeouts and connection
  errors are retried with exponential backoff and full jitter, capped, up to
  ``persona_api_max_retries`` times; other 4xx are never retried.

The decisions (:func:`backoff_delay`, :func:`retry_delay`, :func:`ratelimit_wait`,
:class:`RateWindow`) are pure functions of their arguments; the clock, ``sleep`` and the random source
are injected so they are tested without waiting.

Errors (``code`` is stable, ``retriable`` says whether a later call may succeed)::

    PersonaApiError                      base: code, retriable, status
    ├── PersonaApiNotFound               persona-api-not-found      404
    ├── PersonaApiAuthError              persona-api-auth           401, 403
    ├── PersonaApiRejected               persona-api-rejected       other 4xx
    ├── PersonaApiRateLimited            persona-api-rate-limited   429 after every retry (retriable)
    ├── PersonaApiUnavailable            persona-api-unavailable    5xx, timeout, connection (retriable)
    └── PersonaApiBadResponse            persona-api-bad-response   a body that is not the expected JSON
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
from pydantic import SecretStr, ValidationError

from core.settings import Settings
from schemas.errors import Code, PersonaStreamError
from schemas.webhooks import InquiryObject

log = logging.getLogger(__name__)

BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 30.0
PAGE_SIZE = 100


class PersonaApiError(PersonaStreamError):
    """Base of the client's errors."""

    code: Code = Code.PERSONA_API_ERROR
    retriable: bool = code.retriable

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status!r}, message={str(self)!r})"


class PersonaApiNotFound(PersonaApiError):
    code = Code.PERSONA_API_NOT_FOUND


class PersonaApiAuthError(PersonaApiError):
    code = Code.PERSONA_API_AUTH


class PersonaApiRejected(PersonaApiError):
    code = Code.PERSONA_API_REJECTED


class PersonaApiRateLimited(PersonaApiError):
    code = Code.PERSONA_API_RATE_LIMITED
    retriable = code.retriable


class PersonaApiUnavailable(PersonaApiError):
    code = Code.PERSONA_API_UNAVAILABLE
    retriable = code.retriable


class PersonaApiBadResponse(PersonaApiError):
    code = Code.PERSONA_API_BAD_RESPONSE


# --- pure decisions ---------------------------------------------------------------------------


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if number >= 0 else None


def backoff_delay(
    attempt: int, rand: float, base: float = BACKOFF_BASE_SECONDS, cap: float = BACKOFF_CAP_SECONDS
) -> float:
    """Full jitter: a uniform share (``rand`` in [0, 1)) of ``min(cap, base * 2**attempt)``."""
    return rand * min(cap, base * 2.0**attempt)


def retry_delay(status: int, headers: Mapping[str, str], attempt: int, rand: float) -> float:
    """How long to wait before retrying an answer with ``status`` (429 or 5xx), capped."""
    if status == 429:
        for name in ("Retry-After", "RateLimit-Reset"):
            seconds = _seconds(headers.get(name))
            if seconds is not None:
                return min(seconds, BACKOFF_CAP_SECONDS)
    return backoff_delay(attempt, rand)


def ratelimit_wait(headers: Mapping[str, str]) -> float:
    """Seconds to hold the next call: ``RateLimit-Reset`` once ``RateLimit-Remaining`` is 0, else 0."""
    remaining = _seconds(headers.get("RateLimit-Remaining"))
    if remaining is None or remaining > 0:
        return 0.0
    return min(_seconds(headers.get("RateLimit-Reset")) or 0.0, BACKOFF_CAP_SECONDS * 2)


class RateWindow:
    """At most ``limit`` calls in any ``window`` seconds (times come from the caller's clock)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._times: collections.deque[float] = collections.deque()

    def delay(self, now: float) -> float:
        """Seconds until one more call fits."""
        while self._times and self._times[0] <= now - self.window:
            self._times.popleft()
        if len(self._times) < self.limit:
            return 0.0
        return self._times[0] + self.window - now

    def record(self, now: float) -> None:
        self._times.append(now)


# --- results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class InquirySnapshot:
    """An inquiry as Persona's API answered it, and when that answer was observed."""

    inquiry: InquiryObject
    observed_at: datetime

    @property
    def inquiry_id(self) -> str:
        return str(self.inquiry.id)

    @property
    def status(self) -> str:
        return str(self.inquiry.attributes.status)

    @property
    def reference_id(self) -> str | None:
        return self.inquiry.attributes.reference_id

    @property
    def template_id(self) -> str | None:
        return self.inquiry.template_id()

    @property
    def updated_at(self) -> str | None:
        return self.inquiry.attributes.updated_at


@dataclass(frozen=True)
class InquiryPage:
    """One page of the list: its inquiry ids and the cursor to resume after it (None: last page)."""

    ids: tuple[str, ...]
    next_cursor: str | None


# --- the client -------------------------------------------------------------------------------


class PersonaApiClient:
    """Async client of Persona's API; use as ``async with PersonaApiClient(settings) as api``."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        rate_window_seconds: float = 60.0,
    ) -> None:
        self._key: SecretStr | None = settings.persona_api_key
        self._url = settings.persona_api_url.rstrip("/")
        self._version = settings.persona_api_version
        self._timeout = settings.persona_api_timeout_seconds
        self._max_retries = settings.persona_api_max_retries
        self._semaphore = asyncio.Semaphore(settings.persona_api_max_concurrency)
        self._window = RateWindow(settings.persona_api_rate_per_minute, rate_window_seconds)
        self._window_lock = asyncio.Lock()
        self._hold_until = 0.0
        self._clock = clock
        self._sleep = sleep
        self._rand = rand
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        key = "**********" if self._key is not None else None
        return f"PersonaApiClient(url={self._url!r}, version={self._version!r}, key={key!r})"

    async def __aenter__(self) -> PersonaApiClient:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get_inquiry(self, inquiry_id: str) -> InquirySnapshot:
        """The inquiry now. Raises :class:`PersonaApiError` (see the module docstring)."""
        body, observed_at = await self._get(f"/inquiries/{inquiry_id}", {})
        data = body.get("data")
        try:
            inquiry = InquiryObject.model_validate(data)
        except ValidationError as error:
            raise PersonaApiBadResponse(f"not an inquiry object: {error.error_count()} errors", status=200) from None
        return InquirySnapshot(inquiry=inquiry, observed_at=observed_at)

    async def list_inquiries(
        self, since: datetime, template_id: str | None = None, after_cursor: str | None = None
    ) -> AsyncIterator[InquiryPage]:
        """Pages of inquiries created since ``since``; resume with a page's ``next_cursor``."""
        cursor = after_cursor
        while True:
            params = {"page[size]": str(PAGE_SIZE), "filter[created-at-start]": since.isoformat()}
            if template_id is not None:
                params["filter[inquiry-template-id]"] = template_id
            if cursor is not None:
                params["page[after]"] = cursor
            body, _ = await self._get("/inquiries", params)
            page = _parse_page(body)
            yield page
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def _get(self, path: str, params: dict[str, str]) -> tuple[dict[str, Any], datetime]:
        if self._session is None:
            raise RuntimeError("PersonaApiClient used outside 'async with'")
        headers = {"Persona-Version": self._version, "Key-Inflection": "kebab", "Accept": "application/json"}
        if self._key is not None:
            headers["Authorization"] = f"Bearer {self._key.get_secret_value()}"
        attempt = 0
        async with self._semaphore:
            while True:
                await self._admit()
                try:
                    async with self._session.get(self._url + path, params=params, headers=headers) as response:
                        status = response.status
                        answer = {k: v for k, v in response.headers.items()}
                        text = await response.text()
                except (TimeoutError, aiohttp.ClientError) as error:
                    kind = type(error).__name__
                    if attempt >= self._max_retries:
                        raise PersonaApiUnavailable(f"GET {path}: {kind}") from None
                    delay = backoff_delay(attempt, self._rand())
                    log.warning("persona api GET %s failed (%s); retry in %.2fs", path, kind, delay)
                    attempt += 1
                    await self._sleep(delay)
                    continue
                log.debug("persona api GET %s -> %d", path, status)
                self._hold(ratelimit_wait(answer))
                if status == 429 or status >= 500:
                    if attempt >= self._max_retries:
                        error_type = PersonaApiRateLimited if status == 429 else PersonaApiUnavailable
                        raise error_type(f"GET {path}: HTTP {status}", status=status)
                    delay = retry_delay(status, answer, attempt, self._rand())
                    log.warning("persona api GET %s -> %d; retry in %.2fs", path, status, delay)
                    attempt += 1
                    await self._sleep(delay)
                    continue
                if status == 404:
                    raise PersonaApiNotFound(f"GET {path}: not found", status=status)
                if status in (401, 403):
                    raise PersonaApiAuthError(f"GET {path}: HTTP {status} (check the API key)", status=status)
                if status >= 400 or status < 200:
                    raise PersonaApiRejected(f"GET {path}: HTTP {status}", status=status)
                return _parse_json(path, text, status), _observed_at(answer)

    def _hold(self, seconds: float) -> None:
        if seconds > 0:
            self._hold_until = max(self._hold_until, self._clock() + seconds)

    async def _admit(self) -> None:
        async with self._window_lock:
            while True:
                now = self._clock()
                wait = max(self._hold_until - now, self._window.delay(now))
                if wait <= 0:
                    self._window.record(now)
                    return
                await self._sleep(wait)


def _parse_json(path: str, text: str, status: int) -> dict[str, Any]:
    try:
        body = json.loads(text)
    except ValueError:
        raise PersonaApiBadResponse(f"GET {path}: body is not JSON", status=status) from None
    if not isinstance(body, dict):
        raise PersonaApiBadResponse(f"GET {path}: body is not a JSON object", status=status)
    return body


def _parse_page(body: dict[str, Any]) -> InquiryPage:
    data = body.get("data")
    if not isinstance(data, list) or not all(
        isinstance(item, dict) and isinstance(item.get("id"), str) for item in data
    ):
        raise PersonaApiBadResponse("GET /inquiries: data is not a list of objects with ids", status=200)
    ids = tuple(str(item["id"]) for item in data)
    links = body.get("links")
    following = links.get("next") if isinstance(links, dict) else None
    cursor: str | None = None
    if isinstance(following, str) and following and ids:
        cursor = parse_qs(urlsplit(following).query).get("page[after]", [ids[-1]])[0]
    return InquiryPage(ids=ids, next_cursor=cursor)


def _observed_at(headers: Mapping[str, str]) -> datetime:
    date = headers.get("Date")
    if date is not None:
        try:
            return email.utils.parsedate_to_datetime(date).astimezone(UTC)
        except (TypeError, ValueError):
            pass
    return datetime.now(UTC)
