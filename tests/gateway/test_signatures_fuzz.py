"""Hostile signature headers against ``signatures.verify`` (tests/hostile.py has the inputs)."""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from gateway.signatures import SignatureError, verify
from persona_stream.webhook_bodies import DOCUMENTED_EXAMPLE
from tests.hostile import (
    CURRENT,
    FUZZ,
    NOW,
    ROTATIONS,
    SIGNATURE_CODES,
    TOLERANCE,
    Header,
    Webhook,
    fresh,
    random_headers,
    webhook_bodies,
    webhooks,
)


@FUZZ
@given(
    webhook=webhooks(
        webhook_bodies,
        rotations=st.sampled_from(ROTATIONS),
        kinds=st.sampled_from(["none", "persona", "groups", "groups", "random"]),
        separators=st.sampled_from([" ", "  ", "\t", " \n "]),
        random=random_headers(string.printable + "\x00\x85"),
    )
)
def test_any_webhook_signature_is_verified_with_documented_codes(webhook: Webhook) -> None:
    """What WebhookReceiver.handle does first: verify the signature (tests/schemas/test_codec_fuzz.py
    decodes the same bodies)."""
    header = webhook.header or Header("")
    try:
        outcome: int | str = verify(
            None if webhook.header is None else header.text,
            webhook.body,
            list(webhook.configured),
            now=NOW,
            tolerance=TOLERANCE,
        )
    except SignatureError as exc:
        outcome = exc.code
    if isinstance(outcome, int):
        assert outcome in fresh(header.genuine), "accepted without a fresh signature of a configured secret"
    else:
        assert outcome in SIGNATURE_CODES
        assert not fresh(header.persona), "a fresh group of a configured secret was refused"
        if header.genuine and header.genuine == header.persona:
            assert outcome == "signature-expired"  # a replay: genuine, but too old (or from the future)
        if not header.genuine and header.foreign:
            assert outcome == "signature-mismatch"  # signed, but not with a configured secret
    event("accepted" if isinstance(outcome, int) else outcome)


# --- inputs that once got past the rules (each was a bug; kept as regressions) -----------------

SIGNED_BODY = json.dumps(DOCUMENTED_EXAMPLE).encode()


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(
            "t=²,v1=" + "0" * 64,
            id="superscript-timestamp",
        ),
        pytest.param(
            f"t={NOW},v1=" + "é" * 64,
            id="non-ascii-v1",
        ),
    ],
)
def test_unicode_in_a_signature_header_is_refused_with_a_code(header: str) -> None:
    with pytest.raises(SignatureError) as refused:
        verify(header, SIGNED_BODY, [CURRENT], now=NOW, tolerance=TOLERANCE)
    assert refused.value.code in SIGNATURE_CODES
