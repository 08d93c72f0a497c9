"""The faust app of the workers, built by :func:`create_app` (never at import time).

=========================  ==================================================================
piece                      what it does
=========================  ==================================================================
agent ``correlate``        client-events + webhooks + api-snapshots + ticks, in batches → :meth:`Pipeline.on_batch`
agent ``analytics``        analytics-facts + ticks, in batches → :meth:`Pipeline.on_analytics_batch`
timer ``tick``             once a ``tick_interval_seconds``, a tick to each ticks partition this
                           worker owns, so timers run inside that partition's transaction
table ``inquiries``        inquiry id → :class:`~schemas.views.InquiryView` (memory or RocksDB)
table ``sessions``         ``session:<id>:<subject>`` → callbacks waiting for their inquiry
table ``deadlines``        inquiry id → when its flags may change with time alone
table ``analytics``        ``template|window`` → one analytics window
page ``/metrics``          Prometheus metrics of this worker (:mod:`processors.metrics`)
page ``/v1/views/{id}``    one view as JSON, for the gateway; routed to the worker that owns the
                           inquiry's partition; bearer token of scope ``firehose`` required
=========================  ==================================================================

Every table is changelog-backed: a restarted worker, or one taking over partitions, recovers it
from ``<id>-<table>-changelog`` before processing. The input topics, the ticks and the facts all
have the same partition count, so faust assigns partition *p* of each to the same worker; several
workers form one consumer group and share the partitions. faust's own web endpoints that would
expose tables, statistics and the cluster's topology are turned off.
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import UTC, datetime
from typing import Any

from mode.utils.times import want_seconds

from core.settings import Settings
from core.tokens import TokenAuthority, TokenError, bearer_token
from core.topics import TopicPlan, TopicSpec, create_topics
from processors import retries
from processors.analytics import WindowConfig
from processors.correlation import Config
from processors.metrics import WorkerMetrics, install
from processors.output import Output, OutputError
from processors.pipeline import Pipeline, Tables
from processors.runtime import Worker, WorkerApp
from schemas.codec import encode
from schemas.errors import Code
from schemas.internal import Tick

log = logging.getLogger(__name__)

EXIT_KAFKA_WRITE_FAILED = 70


def create_app(settings: Settings) -> tuple[WorkerApp, Pipeline]:
    """The worker: its faust app with agents, timer and the view route, and the pipeline they call."""
    plan = TopicPlan.from_settings(settings)
    app = _worker_app(settings)
    pipeline, tables, metrics = _pipeline(app, settings, plan)
    _register_agents(app, pipeline, tables, settings, plan)

    tokens = TokenAuthority(settings.token_secret.get_secret_value().encode()) if settings.token_secret else None

    async def view(web: Any, request: Any, inquiry_id: str) -> Any:
        if tokens is None:
            return web.json({"code": Code.VIEWS_DISABLED, "message": "no token secret configured"}, status=503)
        header = request.headers.get("Authorization", "")
        try:
            tokens.verify(bearer_token(header), ("firehose",))
        except TokenError as exc:
            return web.json({"code": exc.code, "message": str(exc)}, status=401)
        found = pipeline.view_json(inquiry_id.encode())
        if found is None:
            return web.json({"code": Code.NOT_FOUND, "message": "no such inquiry"}, status=404)
        return web.bytes(found, content_type="application/json")

    routed = app.table_route(table=tables.inquiries, match_info="inquiry_id")(view)

    async def view_when_ready(web: Any, request: Any, inquiry_id: str) -> Any:
        if app.rebalancing or not app.tables.recovery.completed.is_set():
            # its tables are being restored: "not found" would be a lie (the gateway answers 503); and
            # before routing: the partitions and their owners are not known yet either
            return web.json({"code": Code.RECOVERING, "message": "the worker is restoring its state"}, status=503)
        return await routed(web, request, inquiry_id=inquiry_id)

    app.page("/v1/views/{inquiry_id}")(view_when_ready)
    # worker metrics (processors/metrics.py): a sensor, a sampling timer and GET /metrics
    install(app, metrics, [plan.client_events.name, plan.webhooks.name, plan.api_snapshots.name,
                           plan.processor_ticks.name, plan.analytics_facts.name], tables.inquiries)  # fmt: skip
    return app, pipeline


def _worker_app(settings: Settings) -> WorkerApp:
    """The faust app of the settings: brokers, store, guarantee, timings and the worker's web server."""
    datadir = settings.worker_state_dir()
    datadir.mkdir(parents=True, exist_ok=True)
    app = WorkerApp(
        settings.processors_id,
        brokers=[host.strip() for host in settings.bootstrap_servers().split(",")],
        store_memory_bytes=settings.store_memory_mb << 20,
        restore_checkpoint_records=settings.restore_checkpoint_records,
        processing_guarantee=settings.processing_guarantee,
        store="persona-stream://" if settings.store == "rocksdb" else "memory://",
        datadir=str(datadir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        key_serializer="raw",
        value_serializer="raw",
        broker_session_timeout=settings.worker_session_timeout_seconds,
        broker_heartbeat_interval=1.0,
        broker_commit_interval=settings.commit_interval_seconds,
        producer_linger=0.005,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_enabled=True,
        web_host=settings.worker_advertised_host or settings.worker_host,
        web_bind=settings.worker_host,
        web_port=settings.worker_port,
        web_tables_enabled=False,
        web_stats_enabled=False,
        web_graph_enabled=False,
        web_router_enabled=False,
        web_metrics_enabled=False,
        autodiscover=False,
        recovery_consistency_check=False,  # meant for RocksDB files; transactional changelogs trip it
        table_standby_replicas=0,  # faust's standby offsets can go negative after a failover and crash recovery
    )
    return app


def _pipeline(app: WorkerApp, settings: Settings, plan: TopicPlan) -> tuple[Pipeline, Tables, WorkerMetrics]:
    """The app's tables and the pipeline that reads and writes them."""
    exactly_once = settings.processing_guarantee == "exactly_once"
    # faust takes a table's own store URL only when it is truthy, and yarl's URL("memory://") is not
    # (no host): it would fall back to the app's store. A host makes it count.
    memory = "memory://tables"

    def table(name: str, store: str | None = None) -> Any:
        return app.Table(name, partitions=settings.partitions, key_type=bytes, value_type=bytes, store=store)

    tables = Tables(
        inquiries=table("inquiries"),
        sessions=table("sessions", memory),
        deadlines=table("deadlines", memory),
        windows=table("analytics", memory),
    )
    metrics = WorkerMetrics()
    pipeline = Pipeline(
        topics=plan,
        ticks_topic=plan.processor_ticks.name,
        tables=tables,
        output=Output(app, exactly_once),
        config=Config(
            awaiting_confirmation_seconds=settings.awaiting_confirmation_seconds,
            reconcile_interval_seconds=settings.reconcile_interval_seconds if settings.reconciling else None,
            reconcile_max_requests=settings.reconcile_max_requests,
        ),
        window_config=WindowConfig(
            size_seconds=settings.analytics_window_seconds, grace_seconds=settings.analytics_grace_seconds
        ),
        cache_size=settings.view_cache_size,
        metrics=metrics,
    )
    return pipeline, tables, metrics


def _register_agents(app: WorkerApp, pipeline: Pipeline, tables: Tables, settings: Settings, plan: TopicPlan) -> None:
    """The agents, the tick timer and the recovery and rebalance callbacks, each calling the pipeline."""
    raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
    inputs = app.topic(
        plan.client_events.name, plan.webhooks.name, plan.api_snapshots.name, plan.processor_ticks.name, **raw
    )
    facts = app.topic(plan.analytics_facts.name, plan.processor_ticks.name, **raw)

    gate = app.commit_gate  # each input's writes and its acknowledgement fall in one transaction

    async def correlate(stream: Any) -> None:
        async for batch in stream.take_events(settings.worker_batch_size, within=settings.worker_batch_seconds):
            async with gate.input():
                try:
                    await pipeline.on_batch(batch)
                except OutputError:
                    _stop_now()

    async def aggregate(stream: Any) -> None:
        async for batch in stream.take_events(1000, within=0.25):
            async with gate.input():
                try:
                    await pipeline.on_analytics_batch(batch)
                except OutputError:
                    _stop_now()

    async def tick() -> None:
        value = encode(Tick(at=datetime.now(UTC)))
        for tp in app.assignor.assigned_actives():
            if tp.topic == plan.processor_ticks.name:
                await app.producer.send(plan.processor_ticks.name, None, value, tp.partition, None, None)

    async def deadlines_recovered() -> None:
        pipeline.rebuild_deadlines()

    async def windows_recovered() -> None:
        pipeline.rebuild_windows()

    async def partitions_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        pipeline.forget()

    # registered by calls rather than decorators: faust is untyped, the functions above are not
    app.agent(inputs, name="correlate")(correlate)
    app.agent(facts, name="analytics")(aggregate)
    app.timer(interval=settings.tick_interval_seconds, name="tick")(tick)
    tables.deadlines.on_recover(deadlines_recovered)
    tables.windows.on_recover(windows_recovered)
    app.on_partitions_revoked.connect(partitions_revoked)


def changelog_topics(app: WorkerApp, settings: Settings) -> list[TopicSpec]:
    """The tables' changelog topics as faust would create them (same name, partitions, policy).

    Created with the topic plan before the worker starts: faust would create them itself, but its
    consumer asks for their metadata at once, and on a fresh broker each new topic then costs an
    error line ("not found in cluster metadata") before it appears.
    """
    specs = []
    for table in app.tables.values():
        topic = table.changelog_topic
        policy = [name for name, on in (("compact", topic.compacting), ("delete", topic.deleting)) if on]
        config = {str(k): str(v) for k, v in (topic.config or {}).items()}
        if policy:
            config["cleanup.policy"] = ",".join(sorted(policy))
        if topic.retention:
            config["retention.ms"] = str(int(want_seconds(topic.retention) * 1000))
        name = topic.get_topic_name()
        specs.append(TopicSpec(name, "table key", topic.partitions or settings.partitions,
                               settings.replication_factor, config, internal=True))  # fmt: skip
    return specs


def _stop_now() -> None:
    """Kafka refused a write: stop without committing anything, so that the open transaction is
    aborted and the replacement worker resumes from the last commit (crash-only, like ``kill -9``)."""
    log.critical("a write to Kafka failed; stopping so exactly-once recovery can take over")
    logging.shutdown()
    os._exit(EXIT_KAFKA_WRITE_FAILED)


def run_worker(settings: Settings, loglevel: str = "warning") -> None:
    """Run one worker until SIGINT or SIGTERM (blocking)."""
    app, pipeline = create_app(settings)
    asyncio.run(create_topics(settings.bootstrap_servers(), changelog_topics(app, settings)))
    if settings.processing_guarantee == "exactly_once":
        retries.install(pipeline.metrics.produce_retried)  # every producer here is transactional
    worker = Worker(app, loglevel=loglevel.upper(), quiet=True, redirect_stdouts=False)
    # mode warns whenever a commit takes longer than the commit interval; at 0.1 s that is routine
    logging.getLogger("mode.timers").setLevel(logging.ERROR)
    worker.execute_from_commandline()
