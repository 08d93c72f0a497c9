"""Update frames: the record encoded once, embedded in each subscription's frame as its model says."""

from __future__ import annotations

import pytest

from gateway.subscribe_ws import update_frame
from schemas.codec import decode, encode
from schemas.frames import ServerFrame, UpdateFrame
from tests.gateway.test_statuses import record


@pytest.mark.parametrize(
    ("request_id", "channel"),
    [("s1", "inquiry:inq_a"), ("analytics", "analytics"), ('a "quoted" \\ id', "mine"), ("ünï", "all")],
)
def test_an_update_frame_decodes_as_the_model_around_the_same_record(request_id: str, channel: str) -> None:
    status = record("inq_a", 3)
    frame = decode(ServerFrame, update_frame(request_id, channel, encode(status)))
    assert frame == UpdateFrame(id=request_id, channel=channel, data=status)
