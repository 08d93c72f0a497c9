"""faust's own per-event floor: the workers' runtime with an agent that does nothing.

The same app class, transport driver, guarantee, batching, commit gate and commit interval as a
worker, reading the same inputs, but every batch is dropped unprocessed. What it sustains is the
most a worker could do inside faust on this machine, whatever the pipeline costs; the processing
benchmark reports it beside the worker, measured in the same run. Run as ``python -m bench.floor``
with the workers' environment.
"""

from __future__ import annotations

from typing import Any

from core.settings import Settings
from core.topics import TopicPlan
from processors.runtime import Worker, WorkerApp

FLOOR_SUFFIX = "-floor"


def create_floor_app(settings: Settings) -> WorkerApp:
    plan = TopicPlan.from_settings(settings)
    app = WorkerApp(
        settings.processors_id + FLOOR_SUFFIX,
        brokers=[host.strip() for host in settings.bootstrap_servers().split(",")],
        processing_guarantee=settings.processing_guarantee,
        topic_partitions=settings.partitions,
        key_serializer="raw",
        value_serializer="raw",
        broker_commit_interval=settings.commit_interval_seconds,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_enabled=False,
        autodiscover=False,
    )
    inputs = app.topic(plan.client_events.name, plan.webhooks.name, key_serializer="raw", value_serializer="raw")
    gate = app.commit_gate

    async def drop(stream: Any) -> None:
        async for _batch in stream.take_events(settings.worker_batch_size, within=settings.worker_batch_seconds):
            async with gate.input():
                pass

    app.agent(inputs, name="drop")(drop)
    return app


def main() -> None:
    app = create_floor_app(Settings())
    Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False).execute_from_commandline()


if __name__ == "__main__":
    main()
