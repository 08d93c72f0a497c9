from __future__ import annotations

import base64
import json

import jwt
import pytest

from core.tokens import TokenAuthority, TokenError, bearer_token, parse_ttl

SECRET = b"k" * 32
NOW = 1_800_000_000


@pytest.fixture
def authority() -> TokenAuthority:
    return TokenAuthority(SECRET)


def test_a_minted_token_verifies_with_its_claims(authority: TokenAuthority) -> None:
    token = authority.mint("user-42", "ingest", 900, inquiry_id="inq_abc", template_id="itmpl_x", now=NOW)
    claims = authority.verify(token, ("ingest",), now=NOW + 10)
    assert (claims.subject, claims.scope, claims.inquiry_id, claims.template_id) == (
        "user-42",
        "ingest",
        "inq_abc",
        "itmpl_x",
    )
    assert claims.expires_at == NOW + 900


def b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def forge(header: dict[str, object], claims: dict[str, object], signature: str = "") -> str:
    return f"{b64(header)}.{b64(claims)}.{signature}"


CLAIMS = {"sub": "user-42", "scope": "ingest", "exp": NOW + 900}


@pytest.mark.parametrize(
    ("token", "code"),
    [
        (None, "token-missing"),
        ("", "token-missing"),
        ("not-a-jwt", "token-invalid"),
        (forge({"alg": "none", "typ": "JWT"}, CLAIMS), "token-invalid"),
        (jwt.encode(CLAIMS, b"w" * 32, algorithm="HS256"), "token-invalid"),
        (jwt.encode(CLAIMS, SECRET * 2, algorithm="HS512"), "token-invalid"),
        (jwt.encode({**CLAIMS, "exp": NOW - 1}, SECRET, algorithm="HS256"), "token-expired"),
        (jwt.encode({**CLAIMS, "scope": "subscribe"}, SECRET, algorithm="HS256"), "token-scope"),
        (jwt.encode({**CLAIMS, "scope": "admin"}, SECRET, algorithm="HS256"), "token-invalid"),
        (jwt.encode({"scope": "ingest", "exp": NOW + 9}, SECRET, algorithm="HS256"), "token-invalid"),
        (jwt.encode({"sub": "u", "scope": "ingest"}, SECRET, algorithm="HS256"), "token-invalid"),
        (jwt.encode({**CLAIMS, "sub": ""}, SECRET, algorithm="HS256"), "token-invalid"),
        (jwt.encode({**CLAIMS, "inq": "not-an-inquiry"}, SECRET, algorithm="HS256"), "token-invalid"),
    ],
    ids=[
        "none",
        "empty",
        "garbage",
        "alg-none",
        "wrong-key",
        "other-algorithm",
        "expired",
        "wrong-scope",
        "unknown-scope",
        "no-sub",
        "no-exp",
        "empty-sub",
        "bad-inquiry-claim",
    ],
)
def test_tokens_that_do_not_open_the_door(authority: TokenAuthority, token: str | None, code: str) -> None:
    with pytest.raises(TokenError) as raised:
        authority.verify(token, ("ingest",), now=NOW)
    assert raised.value.code == code


def test_tampered_claims_break_the_signature(authority: TokenAuthority) -> None:
    header, _, signature = authority.mint("user-42", "subscribe", 900, now=NOW).split(".")
    tampered = f"{header}.{b64({'sub': 'someone-else', 'scope': 'firehose', 'exp': NOW + 900})}.{signature}"
    with pytest.raises(TokenError) as raised:
        authority.verify(tampered, ("firehose",), now=NOW)
    assert raised.value.code == "token-invalid"


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        TokenAuthority(b"short")


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("15m", 900), ("1h", 3600), ("2d", 172800), ("45", 45)])
def test_parse_ttl(text: str, seconds: int) -> None:
    assert parse_ttl(text) == seconds


def test_parse_ttl_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_ttl("soon")


@pytest.mark.parametrize(
    ("subject", "scope", "inquiry", "code"),
    [
        ("user-42", "ingest", "inq_abc", None),
        ("mallory", "ingest", "inq_abc", "token-mismatch"),
        ("user-42", "ingest", None, "token-mismatch"),
        ("user-42", "ingest", "inq_other", "token-mismatch"),
        ("user-42", "subscribe", "inq_abc", "token-scope"),
    ],
)
def test_a_refresh_token_moves_only_the_expiry(
    authority: TokenAuthority, subject: str, scope: str, inquiry: str | None, code: str | None
) -> None:
    current = authority.verify(
        authority.mint("user-42", "ingest", 60, inquiry_id="inq_abc", now=NOW), ("ingest",), now=NOW
    )
    token = authority.mint(subject, scope, 900, inquiry_id=inquiry, now=NOW + 30)  # type: ignore[arg-type]
    if code is None:
        assert authority.refresh(current, token, ("ingest",), now=NOW + 30).expires_at == NOW + 930
    else:
        with pytest.raises(TokenError) as raised:
            authority.refresh(current, token, ("ingest",), now=NOW + 30)
        assert raised.value.code == code


def test_an_expired_refresh_token_is_refused(authority: TokenAuthority) -> None:
    current = authority.verify(authority.mint("user-42", "ingest", 60, now=NOW), ("ingest",), now=NOW)
    with pytest.raises(TokenError) as raised:
        authority.refresh(current, authority.mint("user-42", "ingest", 10, now=NOW), ("ingest",), now=NOW + 30)
    assert raised.value.code == "token-expired"


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc.def.ghi", "abc.def.ghi"), ("Bearer  abc ", "abc"), ("Bearer ", None), ("", None)],
)
def test_the_bearer_token_of_an_authorization_header(header: str, token: str | None) -> None:
    assert bearer_token(header) == token
