from __future__ import annotations

import pytest

from core.settings import Settings
from core.topics import TopicPlan, TopicSpec, create_topics

pytestmark = pytest.mark.integration


async def test_create_is_idempotent_and_reports_what_exists(settings: Settings) -> None:
    plan = TopicPlan.from_settings(settings)
    first = await create_topics(settings.bootstrap_servers(), plan.all())
    assert [r.outcome for r in first] == ["created"] * len(plan.all())
    second = await create_topics(settings.bootstrap_servers(), plan.all())
    assert [r.outcome for r in second] == ["exists"] * len(plan.all())
    assert {r.spec.name: r.partitions for r in second}[plan.webhooks.name] == settings.partitions


def test_the_two_inputs_are_co_partitioned_and_status_is_compacted(settings: Settings) -> None:
    plan = TopicPlan.from_settings(settings)
    assert plan.client_events.partitions == plan.webhooks.partitions == plan.inquiry_status.partitions
    assert plan.inquiry_status.config["cleanup.policy"] == "compact"
    assert len({spec.name for spec in plan.all()}) == len(plan.all())


async def test_a_partition_count_that_differs_from_the_plan_is_reported(settings: Settings, unique: str) -> None:
    spec = TopicSpec(f"{unique}.drift", "inquiry id", 2, 1)
    await create_topics(settings.bootstrap_servers(), [spec])
    [report] = await create_topics(settings.bootstrap_servers(), [TopicSpec(spec.name, spec.key, 4, 1)])
    assert report.outcome == "mismatch"
    assert report.partitions == 2
