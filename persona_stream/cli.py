"""The ``persona-stream`` command line.

Every command builds :class:`~core.settings.Settings` once from the environment and
passes it down. Exit codes: 0 success, 1 failure, 2 bad usage or configuration, 3 "not running"
(``kafka status``) or stale files (``schemas export --check``), 130 interrupted (a ``reconcile
--since`` backfill: run it again to resume).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from core.settings import Settings
from core.topics import TopicPlan, create_topics
from persona_stream.localcluster import LocalKafkaCluster
from persona_stream.localkafka import KAFKA_VERSION, LocalKafkaError
from schemas.errors import Code

Handler = Callable[[argparse.Namespace, Settings], int]


def local_kafka(settings: Settings, brokers: int | None = None) -> LocalKafkaCluster:
    """The embedded Kafka of the settings: one broker, or a cluster of ``brokers`` nodes."""
    return LocalKafkaCluster.in_cache(
        settings.cache_dir,
        brokers or settings.local_kafka_brokers,
        settings.local_kafka_port,
        settings.local_kafka_controller_port,
    )


def _kafka_start(args: argparse.Namespace, settings: Settings) -> int:
    kafka = local_kafka(settings, args.brokers)
    result = asyncio.run(kafka.start(timeout=args.timeout))
    if kafka.size == 1:
        state = result.nodes[0].state
        how = "reused the running broker" if result.reused else f"started pid {state.pid}"
        print(f"Kafka {state.version} ready at {state.address} in {result.seconds:.1f} s ({how})")
        return 0
    how = "reused the running nodes" if result.reused else "pids " + " ".join(str(n.state.pid) for n in result.nodes)
    print(
        f"Kafka {KAFKA_VERSION} cluster of {kafka.size} brokers ready at {result.bootstrap_servers} "
        f"in {result.seconds:.1f} s ({how}); replication factor {kafka.replication_factor}, "
        f"min.insync.replicas {min(2, kafka.size)}"
    )
    if settings.local_kafka_brokers != kafka.size:
        print(f"use it with PERSONA_STREAM_LOCAL_KAFKA_BROKERS={kafka.size} (also for `kafka status` and `kafka stop`)")
    return 0


def _kafka_stop(args: argparse.Namespace, settings: Settings) -> int:
    stopped = local_kafka(settings, args.brokers).stop()
    if not stopped:
        print("no local Kafka was running")
    for state in stopped:
        print(
            f"stopped Kafka {state.version} (pid {state.pid}); ports {state.port} and {state.controller_port} are free"
        )
    return 0


def _kafka_status(args: argparse.Namespace, settings: Settings) -> int:
    kafka = local_kafka(settings, args.brokers)
    states = kafka.running()
    if all(state is None for state in states):
        print(f"not running (Kafka {KAFKA_VERSION}, jars {'cached' if kafka.jars_cached() else 'not fetched yet'})")
        return 3
    for node, state in zip(kafka.nodes, states, strict=True):
        if state is None:
            print(f"down: node {node.node_id} at {node.address} (data in {node.home})")
            continue
        uptime = time.time() - state.started_at
        print(
            f"running: Kafka {state.version} at {state.address} "
            f"(pid {state.pid}, up {uptime:.0f} s, data in {node.home})"
        )
    return 0 if all(states) else 1


async def ensure_kafka(settings: Settings) -> str:
    """The bootstrap servers to use, starting (or reusing) the local Kafka when none is configured."""
    if settings.uses_local_kafka:
        result = await local_kafka(settings).start()
        if not result.reused:
            print(f"started local Kafka {KAFKA_VERSION} at {result.bootstrap_servers} in {result.seconds:.1f} s")
    return settings.bootstrap_servers()


def _topics_create(args: argparse.Namespace, settings: Settings) -> int:
    async def run() -> int:
        bootstrap = await ensure_kafka(settings)
        reports = await create_topics(bootstrap, TopicPlan.from_settings(settings).all())
        width = max(len(r.spec.name) for r in reports)
        for report in reports:
            line = f"{report.spec.name:<{width}}  {report.outcome:<8}  {report.partitions:>3} partitions"
            print(f"{line}  key: {report.spec.key}" + (f"  ({report.detail})" if report.detail else ""))
        return 1 if any(r.outcome == "mismatch" for r in reports) else 0

    return asyncio.run(run())


def _schemas_export(args: argparse.Namespace, settings: Settings) -> int:
    from persona_stream import asyncapi, protocol_doc, settings_doc
    from schemas.export import export, stale_files

    directory = Path(args.directory)
    asyncapi_path = directory.parent / "asyncapi.yaml"
    protocol = directory.parent / "protocol.md"
    readme = Path(args.readme)
    defaults = Settings.model_construct()  # the documents describe the defaults, not this shell's environment
    if args.check:
        stale = [str(directory / name) for name in stale_files(directory)]
        if not asyncapi_path.exists() or asyncapi_path.read_text() != asyncapi.render(defaults):
            stale.append(str(asyncapi_path))
        if not settings_doc.readme_is_current(readme):
            stale.append(f"{readme} (configuration table)")
        if not protocol_doc.is_current(protocol):
            stale.append(f"{protocol} (code tables)")
        for name in stale:
            print(f"stale: {name}")
        return 3 if stale else 0
    for path in export(directory):
        print(f"wrote {path}")
    asyncapi.write(asyncapi_path, defaults)
    print(f"wrote {asyncapi_path}")
    if settings_doc.update_readme(readme):
        print(f"updated the configuration table of {readme}")
    if protocol_doc.update(protocol):
        print(f"updated the code tables of {protocol}")
    return 0


def _token_mint(args: argparse.Namespace, settings: Settings) -> int:
    from core.tokens import TokenAuthority, parse_ttl

    if settings.token_secret is None:
        print("persona-stream: set PERSONA_STREAM_TOKEN_SECRET (at least 32 bytes) to mint tokens", file=sys.stderr)
        return 2
    authority = TokenAuthority(settings.token_secret.get_secret_value().encode())
    print(authority.mint(args.sub, args.scope, parse_ttl(args.ttl), inquiry_id=args.inquiry, template_id=args.template))
    return 0


def run_event_loop(main: Coroutine[Any, Any, None], loop: str) -> None:
    """Run a service's main coroutine on asyncio's loop or uvloop (the ``event_loop`` setting)."""
    if loop == "uvloop":
        import uvloop

        uvloop.run(main)
    else:
        asyncio.run(main)


async def run_until_signalled(
    start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]], lifeline: socket.socket | None = None
) -> None:
    """Start, wait for SIGINT or SIGTERM (or for the parent's end of ``lifeline`` to close), stop."""
    signalled = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, signalled.set)
    if lifeline is not None:
        lifeline.setblocking(False)

        def parent_gone() -> None:
            with contextlib.suppress(BlockingIOError):
                if not lifeline.recv(16):
                    loop.remove_reader(lifeline.fileno())
                    signalled.set()

        loop.add_reader(lifeline.fileno(), parent_gone)
    try:
        await start()
        if lifeline is not None:
            lifeline.send(b"ready\n")
        await signalled.wait()
    finally:
        await stop()


def _gateway(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.app import create_gateway
    from persona_stream.gateways import GatewayProcesses, cores

    lifeline = None if args.lifeline is None else socket.socket(fileno=args.lifeline)
    processes = args.processes if args.processes is not None else settings.gateway_processes
    if processes < 0:
        print("persona-stream: --processes must be 0 (one per core) or more", file=sys.stderr)
        return 2
    processes = processes or cores()
    if lifeline is None and settings.uses_local_kafka:

        async def prepare() -> None:
            bootstrap = await ensure_kafka(settings)
            await create_topics(bootstrap, TopicPlan.from_settings(settings).all())

        asyncio.run(prepare())
    if processes > 1:
        return GatewayProcesses(settings, processes, log_level=args.log_level).run()

    async def run() -> None:
        gateway = create_gateway(settings, reuse_port=lifeline is not None)

        async def start() -> None:
            await gateway.start()
            if lifeline is None:
                host = settings.host
                print(
                    f"gateway: ws://{host}:{gateway.ws_port}/v1/client  http://{host}:{gateway.http_port}", flush=True
                )

        await run_until_signalled(start, gateway.stop, lifeline)
        print(f"{gateway.summary()}; drained", flush=True)

    run_event_loop(run(), settings.event_loop)
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from processors import versions
    from processors.app import run_worker

    try:
        versions.check()  # before anything starts: the runtime's classes need these exact versions
    except versions.UnsupportedVersionError as exc:
        print(f"persona-stream: {exc} [{exc.code}]", file=sys.stderr)
        return 2

    async def prepare() -> None:
        bootstrap = await ensure_kafka(settings)
        await create_topics(bootstrap, TopicPlan.from_settings(settings).all())

    asyncio.run(prepare())
    run_worker(settings, loglevel=args.log_level)
    return 0


def _simulate(args: argparse.Namespace, settings: Settings) -> int:
    from core.tokens import TokenAuthority
    from persona_stream.simulator import SimulationConfig, Simulator

    if settings.token_secret is None or not settings.webhook_secrets:
        print(
            "persona-stream: simulate needs PERSONA_STREAM_TOKEN_SECRET and PERSONA_STREAM_WEBHOOK_SECRETS "
            "(the same as the gateway's)",
            file=sys.stderr,
        )
        return 2
    config = SimulationConfig(
        ws_url=args.ws_url or f"ws://{settings.host}:{settings.ws_port}",
        http_url=args.http_url or f"http://{settings.host}:{settings.http_port}",
        tokens=TokenAuthority(settings.token_secret.get_secret_value().encode()),
        webhook_secret=settings.webhook_secrets[0].get_secret_value().encode(),
        inquiries=args.inquiries,
        rate=args.rate,
        chaos=args.chaos,
        seed=args.seed,
        timeout=args.timeout,
        forever=args.forever,
        progress=None if args.quiet else sys.stderr,
    )
    report = asyncio.run(Simulator(config).run())
    if not args.forever:
        print(report.summary())
    return 0 if report.ok or args.forever else 1


def _bench(args: argparse.Namespace, settings: Settings) -> int:
    from bench import runner

    unknown = [name for name in args.scenario if name not in runner.SCENARIOS]
    if unknown:
        print(
            f"persona-stream: no benchmark {', '.join(unknown)} (have: {', '.join(runner.SCENARIOS)})", file=sys.stderr
        )
        return 2
    bootstrap = asyncio.run(ensure_kafka(settings))
    return runner.main(
        bootstrap,
        args.scenario,
        smoke=args.smoke,
        out=Path(args.out),
        guarantee=args.guarantee,
        gateway_processes=args.gateway_processes,
        replication_factor=settings.replication_factor,
    )


def _no_api_key(command: str) -> int:
    print(
        f"persona-stream: {command} needs PERSONA_STREAM_PERSONA_API_KEY [{Code.PERSONA_API_KEY_MISSING}]",
        file=sys.stderr,
    )
    return 2


def _reconciler(args: argparse.Namespace, settings: Settings) -> int:
    from processors.reconcile import Reconciler

    if settings.persona_api_key is None:
        return _no_api_key("the reconciler")

    async def run() -> None:
        bootstrap = await ensure_kafka(settings)
        await create_topics(bootstrap, TopicPlan.from_settings(settings).all())
        reconciler = Reconciler(settings)
        task: asyncio.Task[None] | None = None

        async def start() -> None:
            nonlocal task
            task = asyncio.create_task(reconciler.run())
            await reconciler.started.wait()
            print(f"reconciler: consumer group {settings.reconciler_group}", flush=True)

        async def stop() -> None:
            # at once, even in a wait for the API: offsets are committed only after the snapshots
            # are in Kafka, so what was in hand is read again by the next owner (and deduplicated)
            reconciler.stopping.set()
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

        await run_until_signalled(start, stop)

    asyncio.run(run())
    return 0


def _since(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {value!r} (use 2026-11-01 or 2026-11-01T12:00:00Z)") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from processors.reconcile import Backfill, CheckpointError, default_checkpoint, reconcile_ids

    if settings.persona_api_key is None:
        return _no_api_key("reconcile")
    if bool(args.inquiry) == (args.since is not None):
        print(
            f"persona-stream: reconcile takes --inquiry ID... or --since DATE [{Code.RECONCILE_USAGE}]", file=sys.stderr
        )
        return 2
    if args.inquiry:
        result = asyncio.run(reconcile_ids(settings, args.inquiry))
        for snapshot in result.written:
            print(f"{snapshot.inquiry_id}  {snapshot.inquiry.attributes.status}  (observed {snapshot.observed_at})")
        for inquiry_id, code in result.failed.items():
            print(f"{inquiry_id}  failed [{code}]")
        return 1 if result.failed else 0

    checkpoint = Path(args.checkpoint) if args.checkpoint else default_checkpoint(settings, args.since, args.template)
    try:
        backfill = Backfill(settings, args.since, args.template, checkpoint, progress=sys.stderr)
    except CheckpointError as exc:
        print(f"persona-stream: {exc} [{exc.code}]", file=sys.stderr)
        return 2

    async def run() -> bool:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, backfill.stopping.set)
        return await backfill.run()

    finished = asyncio.run(run())
    state = backfill.state
    for inquiry_id, code in state.failed.items():
        print(f"{inquiry_id}  failed [{code}]")
    if not finished:
        print(f"interrupted after {state.total} inquiries; run the same command again to resume ({checkpoint})")
        return 130
    print(f"reconciled {state.total} inquiries ({len(state.failed)} failed); checkpoint {checkpoint}")
    return 1 if state.failed else 0


def _dead_letters(args: argparse.Namespace, settings: Settings) -> int:
    import base64
    import json

    from processors import dead_letters

    if args.action == "list":
        letters = asyncio.run(dead_letters.read_letters(settings))
        for found in letters:
            letter = found.letter
            detail = letter.detail.replace("\n", " ")[:70]
            print(
                f"{found.offset:>6}  {letter.at:%Y-%m-%dT%H:%M:%S}  {letter.reason:<22}  {letter.key or '-'}  {detail}"
            )
        print(f"{len(letters)} dead letters")
        return 0
    if args.action == "show":
        try:
            found = asyncio.run(dead_letters.find_letter(settings, args.id))
        except dead_letters.DeadLetterNotFound as exc:
            print(f"persona-stream: {exc} [{exc.code}]", file=sys.stderr)
            return 1
        document = found.letter.model_dump(mode="json")
        value = base64.b64decode(found.letter.value_b64)
        try:
            document["value"] = json.loads(value)
        except ValueError:
            document["value"] = value.decode(errors="replace")
        print(json.dumps({"id": found.offset, **document}, indent=2))
        return 0
    report = asyncio.run(dead_letters.replay(settings, reason=args.reason))
    for offset, event_id in report.replayed:
        print(f"{offset:>6}  replayed {event_id}")
    for offset, code in report.skipped:
        print(f"{offset:>6}  skipped [{code}]")
    print(f"replayed {len(report.replayed)}, skipped {len(report.skipped)}")
    return 0


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from persona_stream.runner import Runner

    return Runner(settings, demo=args.demo, log_level=args.log_level).run()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="persona-stream",
        description="Join Persona's client callbacks and signed webhooks into one trusted inquiry status.",
        epilog="Configuration comes from PERSONA_STREAM_* environment variables (see README.md).",
    )
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    run = commands.add_parser(
        "run", help="the whole pipeline on one machine: local Kafka, topics, gateway and worker; Ctrl-C stops all"
    )
    run.add_argument("--demo", action="store_true", help="also run the simulator, so the dashboard moves")
    run.set_defaults(handler=_run)

    kafka = commands.add_parser("kafka", help="run the embedded Apache Kafka (KRaft): one broker or a local cluster")
    kafka_commands = kafka.add_subparsers(dest="action", required=True, metavar="action")
    start = kafka_commands.add_parser("start", help="start the broker, or reuse the running one; wait until ready")
    start.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for readiness (default 90)")
    start.set_defaults(handler=_kafka_start)
    stop = kafka_commands.add_parser("stop", help="stop the broker and free its ports")
    stop.set_defaults(handler=_kafka_stop)
    status = kafka_commands.add_parser("status", help="is it running, which version, where (exit 1: a node is down)")
    status.set_defaults(handler=_kafka_status)
    for action in (start, stop, status):
        action.add_argument(
            "--brokers",
            type=int,
            choices=range(1, 10),
            metavar="N",
            help="nodes: 1, or a cluster, e.g. 3 (replication factor 3, min.insync.replicas 2); "
            "default PERSONA_STREAM_LOCAL_KAFKA_BROKERS (1)",
        )

    topics = commands.add_parser("topics", help="the topic plan")
    topics_commands = topics.add_subparsers(dest="action", required=True, metavar="action")
    topics_commands.add_parser("create", help="create missing topics (idempotent) and report each").set_defaults(
        handler=_topics_create
    )

    gateway = commands.add_parser(
        "gateway", help="run the gateway: websocket ingest, webhook receiver, health and metrics"
    )
    gateway.add_argument(
        "--processes",
        type=int,
        metavar="N",
        help="gateway processes sharing the ports through SO_REUSEPORT, each serving its own connections; "
        "a child that dies is replaced (default PERSONA_STREAM_GATEWAY_PROCESSES; 0: one per core; "
        "1: this process only)",
    )
    gateway.add_argument("--lifeline", type=int, help=argparse.SUPPRESS)  # a child's socket to its parent
    gateway.set_defaults(handler=_gateway)

    worker = commands.add_parser(
        "worker", help="run a worker: correlate callbacks and webhooks, publish trusted status and analytics"
    )
    worker.set_defaults(handler=_worker)

    reconciler = commands.add_parser(
        "reconciler",
        help="run a reconciler: read overdue or dead-lettered inquiries from Persona's API (needs an API key)",
    )
    reconciler.set_defaults(handler=_reconciler)

    reconcile = commands.add_parser(
        "reconcile",
        help="read inquiries from Persona's API now: --inquiry ID..., or a backfill --since DATE",
        description="Read inquiries from Persona's API and feed each read to the workers as a trusted input. "
        "A backfill lists the inquiries created since DATE, shows its progress, and keeps a checkpoint: after "
        "Ctrl-C (exit 130), the same command resumes and reconciles each inquiry once.",
    )
    reconcile.add_argument("--inquiry", nargs="+", metavar="ID", help="the inquiries to read")
    reconcile.add_argument("--since", type=_since, metavar="DATE", help="backfill: every inquiry created since DATE")
    reconcile.add_argument("--template", metavar="ID", help="backfill: only this inquiry template")
    reconcile.add_argument(
        "--checkpoint", metavar="PATH", help="backfill: the resume file (default: in the cache directory)"
    )
    reconcile.set_defaults(handler=_reconcile)

    letters = commands.add_parser("dead-letters", help="list, show and replay the dead letters")
    letters_commands = letters.add_subparsers(dest="action", required=True, metavar="action")
    letters_commands.add_parser("list", help="every retained dead letter: id, time, reason, key, detail").set_defaults(
        handler=_dead_letters
    )
    show = letters_commands.add_parser("show", help="one dead letter, with its original value")
    show.add_argument("id", type=int, help="its id (the offset in the dead-letters topic)")
    show.set_defaults(handler=_dead_letters)
    replay = letters_commands.add_parser(
        "replay", help="re-feed the verified webhooks among them (idempotent by event id)"
    )
    replay.add_argument("--reason", help="only letters of this reason, e.g. processing-failed")
    replay.set_defaults(handler=_dead_letters)

    simulate = commands.add_parser(
        "simulate", help="drive realistic traffic through the gateway and check every inquiry's final status"
    )
    simulate.add_argument("--inquiries", type=int, default=100, help="inquiries to simulate (default 100)")
    simulate.add_argument("--rate", type=float, default=20.0, help="inquiries started per second (default 20)")
    simulate.add_argument(
        "--chaos", action="store_true", help="reorder, repeat and delay webhooks; drop browser connections"
    )
    simulate.add_argument("--seed", type=int, default=1, help="seed of the flows and the chaos (default 1)")
    simulate.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for final statuses at the end (default 120)"
    )
    simulate.add_argument("--forever", action="store_true", help="keep going until interrupted (no final check)")
    simulate.add_argument("--quiet", action="store_true", help="no progress bar")
    simulate.add_argument("--ws-url", help="gateway websocket base URL (default from the settings)")
    simulate.add_argument("--http-url", help="gateway HTTP base URL (default from the settings)")
    simulate.set_defaults(handler=_simulate)

    bench = commands.add_parser("bench", help="the benchmarks: print each figure with its ratio to the raw limit")
    bench.add_argument(
        "scenario",
        nargs="*",
        help="which to run: ingest, processing, end_to_end, fanout, recovery (default: all, in this order)",
    )
    bench.add_argument("--smoke", action="store_true", help="tiny sizes: checks that they run, measures nothing")
    bench.add_argument("--guarantee", choices=["exactly_once", "at_least_once"], help="the workers' guarantee")
    bench.add_argument(
        "--gateway-processes",
        type=int,
        default=1,
        metavar="N",
        help="processes of the gateway under test (default 1: figures per process; 0: one per core)",
    )
    bench.add_argument("--out", default="bench/results", help="where to write the JSON results (default bench/results)")
    bench.set_defaults(handler=_bench)

    token = commands.add_parser("token", help="access tokens for the gateway")
    token_commands = token.add_subparsers(dest="action", required=True, metavar="action")
    mint = token_commands.add_parser("mint", help="mint a token (for development; backends mint their own)")
    mint.add_argument("--scope", required=True, choices=["ingest", "subscribe", "firehose", "analytics"])
    mint.add_argument("--sub", required=True, help="the subject: the app's reference id for the end user")
    mint.add_argument("--ttl", default="15m", help="lifetime: 30s, 15m, 1h, 1d (default 15m)")
    mint.add_argument("--inquiry", help="limit the token to one inquiry id")
    mint.add_argument("--template", help="the inquiry template id the flow runs")
    mint.set_defaults(handler=_token_mint)

    schemas = commands.add_parser("schemas", help="JSON Schema of every public model")
    schemas_commands = schemas.add_subparsers(dest="action", required=True, metavar="action")
    export = schemas_commands.add_parser(
        "export",
        help="write the generated documents: docs/schemas/*.schema.json, docs/asyncapi.yaml, README's settings table",
    )
    export.add_argument("--directory", default="docs/schemas", help="where to write schemas (default docs/schemas)")
    export.add_argument("--readme", default="README.md", help="the README whose configuration table to update")
    export.add_argument("--check", action="store_true", help="write nothing; exit 3 if a file is stale")
    export.set_defaults(handler=_schemas_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"persona-stream: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    handler: Handler = args.handler
    try:
        return handler(args, settings)
    except LocalKafkaError as exc:
        print(f"persona-stream: {exc} [{exc.code}]", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
