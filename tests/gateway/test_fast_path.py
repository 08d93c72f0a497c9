"""The gateway's fast path (msgspec, :mod:`schemas.fast`) decides every client message exactly as the
pydantic path does: the same accept or reject, the same error code and field, the same bytes written."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from core.tokens import Claims
from gateway.ingest import Decision, IngestConnection, IngestLimits, Recent, Write
from schemas import fast
from schemas.frames import CallbackFrame
from tests.gateway.test_ingest_fuzz import claims, client_messages, frames, limits, origins
from tests.hostile import FUZZ

AT = datetime(2026, 12, 6, 5, 35, 23, 123456, tzinfo=UTC)


def connection(claim: Claims, origin: str | None, rules: IngestLimits) -> IngestConnection:
    return IngestConnection(claim, origin, rules, Recent(1000), now=0.0)


def comparable(decision: Decision) -> object:
    if isinstance(decision, Write):  # the records as bytes: exactly what Kafka gets
        return ("write", decision.subject, decision.session, decision.seq, decision.messages)
    return decision


@settings(FUZZ, max_examples=600)
@given(
    st.lists(client_messages, min_size=1, max_size=12),
    claims,
    origins,
    limits,
    st.sampled_from([AT, AT.replace(microsecond=0)]),
)
def test_the_fast_path_decides_as_the_pydantic_path(
    messages: list[str | bytes], claim: Claims, origin: str | None, rules: IngestLimits, at: datetime
) -> None:
    quick, slow = connection(claim, origin, rules), connection(claim, origin, rules)
    for n, message in enumerate(messages):
        expected_decision = None
        with mock.patch.object(fast, "decode_callback_frame", return_value=None):
            expected_decision = slow.receive(message, float(n), at)
        assert comparable(quick.receive(message, float(n), at)) == comparable(expected_decision), message


@settings(FUZZ, max_examples=600)
@given(frames, st.booleans())
def test_the_fast_path_takes_every_valid_callback_frame(frame: dict[str, object], compact: bool) -> None:
    message = json.dumps(frame, separators=(",", ":") if compact else None)
    CallbackFrame.model_validate_json(message)  # the strategy makes valid frames only
    assert fast.decode_callback_frame(message) is not None
