"""The topic plan: every topic persona-stream reads or writes, in one place.

=======================  ==========================  ==========  ===============================
topic                    key                         partitions  configuration
=======================  ==========================  ==========  ===============================
<p>.client-events        inquiry id, or              N           delete, 7 days
                         ``session:<id>:<sub>``
                         before the inquiry is known
<p>.webhooks             inquiry id                  N           delete, 30 days
<p>.api-snapshots        inquiry id                  N           delete, 30 days
<p>.inquiry-status       inquiry id                  N           compact (latest per inquiry)
<p>.analytics            template id                 1           delete, 30 days
<p>.dead-letters         key of the failed record    1           delete, 30 days
<p>.analytics-facts      template id (internal)      N           delete, 1 day
<p>.processor-ticks      none (internal)             N           delete, 1 hour
<p>.reconcile-requests   inquiry id (internal)       N           delete, 1 day
=======================  ==========================  ==========  ===============================

``client-events``, ``webhooks`` and ``api-snapshots`` have the same partition count and the same
key, so they are co-partitioned: the signals about one inquiry land on the same partition number
and are joined by the worker that owns it. ``reconcile-requests`` carries the workers' requests
to the reconciler (``persona-stream reconciler``), a consumer group of its own. ``inquiry-status``
has the same count so a status record travels in the transaction of the partition that produced
it. Analytics and dead letters are low-volume and read whole, so one partition keeps them totally
ordered. The internal ticks and facts carry the workers' own traffic: facts re-keyed by template
for the analytics windows, and the ticks that drive timers inside each partition's transaction.
Every other topic with N partitions is consumed by the workers as one co-partitioned group.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Literal

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from core.settings import Settings
from schemas.errors import PersonaStreamError

DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True)
class TopicSpec:
    """One topic of the plan."""

    name: str
    key: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)
    internal: bool = False


@dataclass(frozen=True)
class TopicPlan:
    """The names and specifications of every topic, derived from the settings."""

    client_events: TopicSpec
    webhooks: TopicSpec
    api_snapshots: TopicSpec
    inquiry_status: TopicSpec
    analytics: TopicSpec
    dead_letters: TopicSpec
    analytics_facts: TopicSpec
    processor_ticks: TopicSpec
    reconcile_requests: TopicSpec

    @classmethod
    def from_settings(cls, settings: Settings) -> TopicPlan:
        prefix, n, rf = settings.topic_prefix, settings.partitions, settings.replication_factor
        min_isr = str(min(2, rf))

        def delete(days: int) -> dict[str, str]:
            return {"cleanup.policy": "delete", "retention.ms": str(days * DAY_MS), "min.insync.replicas": min_isr}

        return cls(
            client_events=TopicSpec(
                f"{prefix}.client-events", "inquiry id or session:<id>:<subject>", n, rf, delete(7)
            ),
            webhooks=TopicSpec(f"{prefix}.webhooks", "inquiry id", n, rf, delete(30)),
            api_snapshots=TopicSpec(f"{prefix}.api-snapshots", "inquiry id", n, rf, delete(30)),
            inquiry_status=TopicSpec(
                f"{prefix}.inquiry-status",
                "inquiry id",
                n,
                rf,
                {"cleanup.policy": "compact", "min.insync.replicas": min_isr, "min.compaction.lag.ms": str(DAY_MS)},
            ),
            analytics=TopicSpec(f"{prefix}.analytics", "template id", 1, rf, delete(30)),
            dead_letters=TopicSpec(f"{prefix}.dead-letters", "key of the failed record", 1, rf, delete(30)),
            analytics_facts=TopicSpec(f"{prefix}.analytics-facts", "template id", n, rf, delete(1), internal=True),
            processor_ticks=TopicSpec(
                f"{prefix}.processor-ticks",
                "none",
                n,
                rf,
                {"cleanup.policy": "delete", "retention.ms": str(60 * 60 * 1000)},
                internal=True,
            ),
            reconcile_requests=TopicSpec(f"{prefix}.reconcile-requests", "inquiry id", n, rf, delete(1), internal=True),
        )

    def all(self) -> list[TopicSpec]:
        return [
            self.client_events,
            self.webhooks,
            self.api_snapshots,
            self.inquiry_status,
            self.analytics,
            self.dead_letters,
            self.analytics_facts,
            self.processor_ticks,
            self.reconcile_requests,
        ]


class TopicError(PersonaStreamError):
    """The cluster refused to create a topic (bad configuration, not enough brokers, ...)."""

    def __init__(self, topic: str, error_code: int, message: str) -> None:
        super().__init__(f"cannot create {topic}: Kafka error {error_code} {message}")
        self.topic = topic
        self.error_code = error_code


TopicOutcome = Literal["created", "exists", "mismatch"]


@dataclass(frozen=True)
class TopicReport:
    spec: TopicSpec
    outcome: TopicOutcome
    partitions: int
    detail: str = ""


async def create_topics(bootstrap_servers: str, specs: list[TopicSpec]) -> list[TopicReport]:
    """Create the topics that are missing; report each one. Idempotent.

    An existing topic whose partition count differs from the plan is reported as ``mismatch``
    (co-partitioning would silently break), never altered.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = await _partition_counts(admin, [spec.name for spec in specs])
        missing = [spec for spec in specs if spec.name not in existing]
        if missing:
            response = await admin.create_topics(
                [NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=s.config) for s in missing]
            )
            raced = []
            for name, code, *rest in response.topic_errors:
                if code == TopicAlreadyExistsError.errno:
                    raced.append(name)  # created meanwhile, or not yet in the metadata we read
                elif code != 0:
                    raise TopicError(name, code, str(rest[0]) if rest else "")
            existing.update(await _partition_counts(admin, raced, wait=True) if raced else {})
        reports = []
        for spec in specs:
            if spec.name not in existing:
                reports.append(TopicReport(spec, "created", spec.partitions))
            elif existing[spec.name] != spec.partitions:
                reports.append(
                    TopicReport(
                        spec,
                        "mismatch",
                        existing[spec.name],
                        f"has {existing[spec.name]} partitions, the plan says {spec.partitions}",
                    )
                )
            else:
                reports.append(TopicReport(spec, "exists", existing[spec.name]))
        return reports
    finally:
        await admin.close()


async def _partition_counts(admin: AIOKafkaAdminClient, names: list[str], *, wait: bool = False) -> dict[str, int]:
    """Partition counts of the named topics that exist.

    With ``wait``, retry for a few seconds until each one shows up: metadata lags a creation.
    """
    counts: dict[str, int] = {}
    for _ in range(50 if wait else 1):
        for topic in await admin.describe_topics(names):
            if topic["error_code"] == 0 and topic["partitions"]:
                counts[topic["topic"]] = len(topic["partitions"])
        names = [name for name in names if name not in counts]
        if not names:
            break
        await asyncio.sleep(0.1)
    return counts


async def ensure_topic(bootstrap_servers: str, name: str, partitions: int, replication_factor: int) -> None:
    """Create one plain topic if it is missing."""
    await create_topics(bootstrap_servers, [TopicSpec(name, "-", partitions, replication_factor)])
