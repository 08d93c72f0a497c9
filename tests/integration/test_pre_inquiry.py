"""Callbacks sent before the session knew its inquiry end up correlated with it (gateway + worker)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.tokens import TokenAuthority
from gateway.app import Gateway
from schemas.codec import decode
from schemas.records import CallbackRecord, ClientEvent
from tests.integration.conftest import gateway_settings, started_gateway
from tests.integration.test_processors import fetch_view
from tests.integration.workers import Worker, worker_env
from tests.kafkautil import consume, wait_for
from tests.wsclient import Client

pytestmark = pytest.mark.integration

INQ = "inq_preinquiry0001"
SESSION = "sess_preinquiry01"
ORPHAN = "sess_neverstarted"


@pytest.fixture
async def pipeline(kafka_bootstrap: str, unique: str, tmp_path: Path) -> AsyncIterator[tuple[Gateway, Worker]]:
    gateway = await started_gateway(gateway_settings(kafka_bootstrap, unique))
    worker = Worker(worker_env(kafka_bootstrap, unique), tmp_path).start()
    yield gateway, worker
    worker.stop()
    await gateway.stop()


async def test_pre_inquiry_callbacks_are_relinked_to_their_inquiry(
    pipeline: tuple[Gateway, Worker], tokens: TokenAuthority
) -> None:
    gateway, worker = pipeline
    client = await Client.open(f"ws://127.0.0.1:{gateway.ws_port}/v1/client", tokens.mint("user-42", "ingest", 600))
    await client.ready()
    await client.callback(SESSION, 0, {"kind": "onLoad"})
    await client.callback(SESSION, 1, {"kind": "onReady"})
    await client.callback(SESSION, 2, {"kind": "onError", "status": 0, "code": "application_error"})
    await client.callback(ORPHAN, 0, {"kind": "onLoad"})  # a session that never starts an inquiry
    await client.until_acked(SESSION, 2)
    await client.callback(SESSION, 3, {"kind": "onEvent", "name": "start", "metadata": {"inquiryId": INQ}})
    await client.callback(SESSION, 4, {"kind": "onEvent", "name": "document-upload"})
    await client.until_acked(SESSION, 4)
    await client.close()

    async def relinked() -> list[CallbackRecord]:
        records = await consume(gateway.settings.bootstrap_servers(), gateway.topics.client_events.name, quiet=1.0)
        events = [(r.key.decode(), decode(ClientEvent, r.value)) for r in records]
        return [e for key, e in events if isinstance(e, CallbackRecord) and e.relinked and key == INQ]

    async def all_relinked() -> bool:
        return len(await relinked()) >= 3

    await wait_for(all_relinked, timeout=60)
    copies = await relinked()
    assert sorted((c.seq, c.callback.kind) for c in copies) == [(0, "onLoad"), (1, "onReady"), (2, "onError")]
    assert all(c.session == SESSION and c.inquiry_id == INQ for c in copies)

    async def view_has_every_callback() -> bool:
        return len((await fetch_view(worker.port, INQ)).client.timeline) == 5

    await wait_for(view_has_every_callback, timeout=30)
    view = await fetch_view(worker.port, INQ)
    # the relinked copies reach the view after the start, and still come first: received first
    assert [entry.seq for entry in view.client.timeline] == [0, 1, 2, 3, 4]
    assert view.client.steps[:3] == ["loaded", "ready", "started"]
    assert view.client.error_codes == {"application_error": 1}
    assert view.version == 0  # nothing trusted yet: callbacks alone never make a status
