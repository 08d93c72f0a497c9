"""Token attacks and tampered tokens against ``TokenAuthority.verify``."""

from __future__ import annotations

import hashlib
import hmac
import json
import string
import time
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from jwt.utils import base64url_decode, base64url_encode

from core.tokens import Claims, Scope, TokenAuthority, TokenError
from tests.hostile import FUZZ, INDEX, INQ, NOW, ONE_TO_THREE, TOKEN_CODES

TOKEN_EDITS = settings(FUZZ, max_examples=3_000)  # the table below holds the attacks; this, the rest

SECRET = b"k" * 32
AUTHORITY = TokenAuthority(SECRET)
CLAIMS: dict[str, Any] = {"sub": "user-42", "scope": "ingest", "exp": NOW + 900}
GENUINE = AUTHORITY.mint("user-42", "ingest", 900, inquiry_id=INQ, now=NOW)


def segment(data: bytes) -> str:
    return base64url_encode(data).decode()


def forge(
    header: dict[str, Any] | bytes, claims: dict[str, Any] | bytes, key: bytes = SECRET, digest: str = "sha256"
) -> str:
    """A token with any header and claims, signed with HMAC over exactly those segments."""
    head = segment(header if isinstance(header, bytes) else json.dumps(header).encode())
    body = segment(claims if isinstance(claims, bytes) else json.dumps(claims).encode())
    signature = hmac.new(key, f"{head}.{body}".encode(), getattr(hashlib, digest)).digest()
    return f"{head}.{body}.{segment(signature)}"


def resigned(token: str, header: dict[str, Any]) -> str:
    """``token`` with another header, its signature kept."""
    _, body, signature = token.split(".")
    return f"{segment(json.dumps(header).encode())}.{body}.{signature}"


HS256 = {"alg": "HS256", "typ": "JWT"}
ATTACKER_KEY = b"a" * 32


@dataclass(frozen=True)
class TokenCase:
    id: str
    token: str
    code: str
    allowed: tuple[Scope, ...] = ("ingest",)


TOKEN_CASES = [
    TokenCase("alg-none-signature-kept", forge({"alg": "none"}, CLAIMS), "token-invalid"),
    TokenCase("alg-None-unsigned", forge({"alg": "None"}, CLAIMS).rsplit(".", 1)[0] + ".", "token-invalid"),
    TokenCase("alg-missing", forge({"typ": "JWT"}, CLAIMS), "token-invalid"),
    TokenCase("hs512-header-hs256-signature", forge({"alg": "HS512"}, CLAIMS), "token-invalid"),
    TokenCase("rs256-header-hs256-signature", forge({"alg": "RS256"}, CLAIMS), "token-invalid"),
    TokenCase("hs512-right-secret", forge({"alg": "HS512"}, CLAIMS, digest="sha512"), "token-invalid"),
    TokenCase("hs384-right-secret", forge({"alg": "HS384"}, CLAIMS, digest="sha384"), "token-invalid"),
    TokenCase("header-swapped-signature-kept", resigned(GENUINE, {"alg": "HS256", "kid": "x"}), "token-invalid"),
    TokenCase(
        "jwk-of-the-attacker",
        forge({**HS256, "jwk": {"kty": "oct", "k": "YWFh"}}, CLAIMS, ATTACKER_KEY),
        "token-invalid",
    ),
    TokenCase("critical-extension", forge({**HS256, "crit": ["exp"]}, CLAIMS), "token-invalid"),
    TokenCase(
        "payload-reserialised",
        ".".join(
            [GENUINE.split(".")[0], segment(base64url_decode(GENUINE.split(".")[1]) + b" "), GENUINE.split(".")[2]]
        ),
        "token-invalid",
    ),
    TokenCase(
        "signature-of-another-token",
        GENUINE.rsplit(".", 1)[0] + "." + AUTHORITY.mint("user-42", "ingest", 901, now=NOW).split(".")[2],
        "token-invalid",
    ),
    TokenCase(
        "not-yet-valid-by-the-wall-clock", forge(HS256, {**CLAIMS, "nbf": time.time() + 86_400}), "token-invalid"
    ),
    TokenCase("other-audience", forge(HS256, {**CLAIMS, "aud": "another-service"}), "token-invalid"),
    TokenCase("expires-now", forge(HS256, {**CLAIMS, "exp": NOW}), "token-expired"),
    TokenCase("expired-long-ago", forge(HS256, {**CLAIMS, "exp": 0}), "token-expired"),
    TokenCase("exp-minus-infinity", forge(HS256, b'{"sub":"u","scope":"ingest","exp":-Infinity}'), "token-invalid"),
    TokenCase("exp-a-string", forge(HS256, {**CLAIMS, "exp": str(NOW + 900)}), "token-invalid"),
    TokenCase("exp-a-boolean", forge(HS256, {**CLAIMS, "exp": True}), "token-invalid"),
    TokenCase("exp-null", forge(HS256, {**CLAIMS, "exp": None}), "token-invalid"),
    TokenCase("sub-a-number", forge(HS256, {**CLAIMS, "sub": 42}), "token-invalid"),
    TokenCase("sub-too-long", forge(HS256, {**CLAIMS, "sub": "u" * 201}), "token-invalid"),
    TokenCase("scope-a-list", forge(HS256, {**CLAIMS, "scope": ["ingest"]}), "token-invalid"),
    TokenCase("firehose-at-ingest", forge(HS256, {**CLAIMS, "scope": "firehose"}), "token-scope"),
    TokenCase("ingest-at-subscribe", GENUINE, "token-scope", ("subscribe", "firehose")),
    TokenCase("analytics-at-subscribe", forge(HS256, {**CLAIMS, "scope": "analytics"}), "token-scope", ("subscribe",)),
    TokenCase("two-segments", GENUINE.rsplit(".", 1)[0], "token-invalid"),
    TokenCase("signature-stripped", GENUINE.rsplit(".", 1)[0] + ".", "token-invalid"),
    TokenCase("four-segments", GENUINE + ".e30", "token-invalid"),
    TokenCase("five-segments-jwe", "e30.e30.e30.e30.e30", "token-invalid"),
    TokenCase("not-base64", "!!!.@@@.###", "token-invalid"),
    TokenCase("non-ascii", "é.é.é", "token-invalid"),
    TokenCase("header-not-json", forge(b"hello", CLAIMS), "token-invalid"),
    TokenCase("header-a-json-array", forge(b"[]", CLAIMS), "token-invalid"),
    TokenCase("payload-not-json", forge(HS256, b"hello"), "token-invalid"),
    TokenCase("payload-a-json-array", forge(HS256, b'["ingest"]'), "token-invalid"),
    TokenCase("huge-garbage", "eyJ" * 400_000, "token-invalid"),
    TokenCase("huge-wrong-key", forge(HS256, {**CLAIMS, "pad": "x" * 1_000_000}, ATTACKER_KEY), "token-invalid"),
]
# Signed with the real secret, so only a faulty backend could mint them -- refused all the same:
TOKEN_NON_FINITE = [
    TokenCase("exp-nan", forge(HS256, b'{"sub":"u","scope":"ingest","exp":NaN}'), "token-invalid"),
    TokenCase("exp-infinity", forge(HS256, b'{"sub":"u","scope":"ingest","exp":Infinity}'), "token-invalid"),
]


@pytest.mark.parametrize(
    "case",
    [pytest.param(case, id=case.id) for case in TOKEN_CASES + TOKEN_NON_FINITE],
)
def test_token_attacks_are_refused_with_their_code(case: TokenCase) -> None:
    with pytest.raises(TokenError) as refused:
        AUTHORITY.verify(case.token, case.allowed, now=NOW)
    assert refused.value.code == case.code
    assert case.code in TOKEN_CODES


TOKEN_CHARACTERS = st.sampled_from(string.ascii_letters + string.digits + "-_=.+/ é\n")
EDITS = st.sampled_from(["replace", "insert", "delete", "cut", "swap", "append"])
SHORT_TEXTS = st.text(max_size=8)


@st.composite
def tampered_tokens(draw: st.DrawFn) -> str:
    """The genuine token with one to three edits: a character changed, inserted or removed, the
    token cut, two segments swapped, something appended."""
    token = GENUINE
    for _ in range(draw(ONE_TO_THREE)):
        at, action = draw(INDEX) % (len(token) + 1), draw(EDITS)
        if action == "replace":
            token = token[:at] + draw(TOKEN_CHARACTERS) + token[at + 1 :]
        elif action == "insert":
            token = token[:at] + draw(TOKEN_CHARACTERS) + token[at:]
        elif action == "delete":
            token = token[:at] + token[at + 1 :]
        elif action == "cut":
            token = token[:at]
        elif action == "swap":
            parts = token.split(".")
            i, j = draw(INDEX) % len(parts), draw(INDEX) % len(parts)
            parts[i], parts[j] = parts[j], parts[i]
            token = ".".join(parts)
        else:
            token += draw(SHORT_TEXTS)
    return token


@TOKEN_EDITS
@given(token=tampered_tokens())
def test_only_the_genuine_token_opens(token: str) -> None:
    try:
        outcome: Claims | str = AUTHORITY.verify(token, ("ingest",), now=NOW)
    except TokenError as exc:
        outcome = exc.code
    event(outcome if isinstance(outcome, str) else "accepted")
    if token in (GENUINE, GENUINE + "="):  # PyJWT takes canonical base64url, its padding optional
        assert outcome == Claims("user-42", "ingest", NOW + 900, INQ)
    else:
        assert outcome == ("token-invalid" if token else "token-missing")
