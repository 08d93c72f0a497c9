"""Short-lived access tokens: JWT, HS256 only, minted by the app's backend.

Claims::

    sub     who the token speaks for: the app's reference id for the end user (required)
    scope   "ingest" | "subscribe" | "firehose" | "analytics" (required)
    exp     expiry, seconds since the epoch (required); iat optional
    inq     optional: the one inquiry this token may send for or follow
    tmpl    optional: the inquiry template the flow runs (labels client events for analytics)

Errors (:class:`TokenError`, ``code``)::

    token-missing   no token where one was required
    token-invalid   not a JWT, a signature that does not verify, another algorithm ("none"
                    included), a missing or malformed claim
    token-expired   ``exp`` has passed
    token-scope     a valid token whose scope does not open this endpoint
    token-mismatch  a refresh token for another subject, scope, inquiry or template than the
                    connection's (:meth:`TokenAuthority.refresh`)

An open websocket lives as long as its token: the gateway closes it with 4001 ``token-expired``
at ``exp`` unless the client sent a ``refresh`` frame with a new token for the same identity.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Literal, get_args

import jwt

from schemas.callbacks import is_inquiry_id
from schemas.errors import Code, CodedError

Scope = Literal["ingest", "subscribe", "firehose", "analytics"]
SCOPES: tuple[str, ...] = get_args(Scope)
STATUS_READERS: tuple[Scope, ...] = ("subscribe", "firehose")
"""The scopes that may read trusted statuses: ``/v1/subscribe`` and ``GET /v1/inquiries/{id}``."""
ALGORITHM = "HS256"
MIN_SECRET_BYTES = 32
LEEWAY_SECONDS = 5


class TokenError(CodedError):
    """A token that does not open the door; ``code`` is stable and documented."""


@dataclass(frozen=True)
class Claims:
    """What a verified token vouches for."""

    subject: str
    scope: Scope
    expires_at: int
    inquiry_id: str | None = None
    template_id: str | None = None


class TokenAuthority:
    """Mints and verifies tokens with one HS256 secret."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the token secret must be at least {MIN_SECRET_BYTES} bytes")
        self._secret = secret

    def mint(
        self,
        subject: str,
        scope: Scope,
        ttl_seconds: int,
        *,
        inquiry_id: str | None = None,
        template_id: str | None = None,
        now: float | None = None,
    ) -> str:
        issued = int(time.time() if now is None else now)
        claims: dict[str, object] = {"sub": subject, "scope": scope, "iat": issued, "exp": issued + ttl_seconds}
        if inquiry_id is not None:
            claims["inq"] = inquiry_id
        if template_id is not None:
            claims["tmpl"] = template_id
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str | None, allowed: tuple[Scope, ...], *, now: float | None = None) -> Claims:
        """The token's claims, if it is genuine, current, and of one of the ``allowed`` scopes."""
        if not token:
            raise TokenError(Code.TOKEN_MISSING, "a token is required")
        try:
            raw = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                # time is checked below, against the clock passed in (tests, replays of recordings)
                options={"require": ["sub", "exp", "scope"], "verify_exp": False, "verify_iat": False},
            )
        except jwt.InvalidTokenError as exc:
            raise TokenError(Code.TOKEN_INVALID, f"the token is not valid: {exc}") from None
        expires = raw["exp"]
        if not isinstance(expires, int | float) or isinstance(expires, bool) or not math.isfinite(expires):
            raise TokenError(Code.TOKEN_INVALID, "exp must be a number")
        current = time.time() if now is None else now
        if expires + (LEEWAY_SECONDS if now is None else 0) <= current:
            raise TokenError(Code.TOKEN_EXPIRED, "the token has expired")
        scope, subject = raw.get("scope"), raw.get("sub")
        if scope not in SCOPES:
            raise TokenError(Code.TOKEN_INVALID, "unknown scope")
        if scope not in allowed:
            raise TokenError(
                Code.TOKEN_SCOPE, f"scope {scope!r} does not open this endpoint (needs {' or '.join(allowed)})"
            )
        inquiry, template = raw.get("inq"), raw.get("tmpl")
        if not isinstance(subject, str) or not 0 < len(subject) <= 200:
            raise TokenError(Code.TOKEN_INVALID, "sub must be a non-empty string")
        if inquiry is not None and not (isinstance(inquiry, str) and is_inquiry_id(inquiry)):
            raise TokenError(Code.TOKEN_INVALID, "inq must be an inquiry id")
        if template is not None and not (isinstance(template, str) and 0 < len(template) <= 200):
            raise TokenError(Code.TOKEN_INVALID, "tmpl must be a string")
        return Claims(subject, scope, int(expires), inquiry, template)

    def refresh(self, current: Claims, token: str, allowed: tuple[Scope, ...], *, now: float | None = None) -> Claims:
        """The claims of a refresh token for an open connection: genuine, current, and for exactly
        the identity the connection was opened with (only the expiry may move)."""
        claims = self.verify(token, allowed, now=now)
        same = (claims.subject, claims.scope, claims.inquiry_id, claims.template_id) == (
            current.subject,
            current.scope,
            current.inquiry_id,
            current.template_id,
        )
        if not same:
            raise TokenError(
                Code.TOKEN_MISMATCH, "a refresh token must name the connection's subject, scope and inquiry"
            )
        return claims


def bearer_token(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value; None when it names none."""
    return authorization.removeprefix("Bearer ").strip() or None


def parse_ttl(text: str) -> int:
    """``"15m"``, ``"1h"``, ``"30s"``, ``"2d"`` or plain seconds, as seconds."""
    match = re.fullmatch(r"(\d+)([smhd]?)", text.strip())
    if not match:
        raise ValueError(f"not a duration: {text!r} (examples: 30s, 15m, 1h)")
    return int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
