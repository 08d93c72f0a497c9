"""Fixtures for tests that run the gateway (in this process) against the real broker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from core.settings import Settings
from core.tokens import TokenAuthority
from core.topics import TopicPlan, create_topics
from gateway.app import Gateway, create_gateway

TOKEN_SECRET = "t" * 48
WEBHOOK_SECRET = "wbhsec_test_current"
OLD_WEBHOOK_SECRET = "wbhsec_test_previous"


def gateway_settings(kafka_bootstrap: str, prefix: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "kafka_bootstrap_servers": kafka_bootstrap,
        "topic_prefix": prefix,
        "partitions": 3,
        "ws_port": 0,
        "http_port": 0,
        "token_secret": TOKEN_SECRET,
        "webhook_secrets": [WEBHOOK_SECRET, OLD_WEBHOOK_SECRET],
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def tokens() -> TokenAuthority:
    return TokenAuthority(TOKEN_SECRET.encode())


async def started_gateway(settings: Settings) -> Gateway:
    await create_topics(settings.bootstrap_servers(), TopicPlan.from_settings(settings).all())
    gateway = create_gateway(settings)
    await gateway.start()
    assert await gateway.wait_ready(30)
    return gateway


@pytest.fixture
async def gateway(kafka_bootstrap: str, unique: str) -> AsyncIterator[Gateway]:
    gateway = await started_gateway(gateway_settings(kafka_bootstrap, unique))
    yield gateway
    await gateway.stop()
