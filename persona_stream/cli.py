"""The ``persona-stream`` command line.

Every command builds :class:`~persona_stream.settings.Settings` once from the environment and
passes it down. Exit codes: 0 success, 1 failure, 2 bad usage or configuration, 3 "not running"
(``kafka status``) or stale files (``schemas export --check``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import ValidationError

from persona_stream.localkafka import KAFKA_VERSION, LocalKafka, LocalKafkaError
from persona_stream.settings import Settings
from persona_stream.topics import TopicPlan, create_topics

Handler = Callable[[argparse.Namespace, Settings], int]


def local_kafka(settings: Settings) -> LocalKafka:
    return LocalKafka.in_cache(settings.cache_dir, settings.local_kafka_port, settings.local_kafka_controller_port)


def _kafka_start(args: argparse.Namespace, settings: Settings) -> int:
    result = asyncio.run(local_kafka(settings).start(timeout=args.timeout))
    how = "reused the running broker" if result.reused else f"started pid {result.state.pid}"
    print(f"Kafka {result.state.version} ready at {result.state.address} in {result.seconds:.1f} s ({how})")
    return 0


def _kafka_stop(args: argparse.Namespace, settings: Settings) -> int:
    state = local_kafka(settings).stop()
    if state is None:
        print("no local Kafka was running")
    else:
        print(
            f"stopped Kafka {state.version} (pid {state.pid}); ports {state.port} and {state.controller_port} are free"
        )
    return 0


def _kafka_status(args: argparse.Namespace, settings: Settings) -> int:
    kafka = local_kafka(settings)
    state = kafka.running()
    if state is None:
        print(f"not running (Kafka {KAFKA_VERSION}, jars {'cached' if kafka.jars_cached() else 'not fetched yet'})")
        return 3
    uptime = time.time() - state.started_at
    print(
        f"running: Kafka {state.version} at {state.address} (pid {state.pid}, up {uptime:.0f} s, data in {kafka.home})"
    )
    return 0


async def ensure_kafka(settings: Settings) -> str:
    """The bootstrap servers to use, starting (or reusing) the local broker when none is configured."""
    if settings.uses_local_kafka:
        result = await local_kafka(settings).start()
        if not result.reused:
            print(f"started local Kafka {result.state.version} at {result.state.address} in {result.seconds:.1f} s")
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
    from schemas.export import export, stale_files

    directory = Path(args.directory)
    if args.check:
        stale = stale_files(directory)
        for name in stale:
            print(f"stale: {directory / name}")
        return 3 if stale else 0
    for path in export(directory):
        print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="persona-stream",
        description="Join Persona's client callbacks and signed webhooks into one trusted inquiry status.",
        epilog="Configuration comes from PERSONA_STREAM_* environment variables (see README.md).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    kafka = commands.add_parser("kafka", help="run the embedded single-node Apache Kafka (KRaft)")
    kafka_commands = kafka.add_subparsers(dest="action", required=True, metavar="action")
    start = kafka_commands.add_parser("start", help="start the broker, or reuse the running one; wait until ready")
    start.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for readiness (default 90)")
    start.set_defaults(handler=_kafka_start)
    kafka_commands.add_parser("stop", help="stop the broker and free its ports").set_defaults(handler=_kafka_stop)
    kafka_commands.add_parser("status", help="is it running, which version, where").set_defaults(handler=_kafka_status)

    topics = commands.add_parser("topics", help="the topic plan")
    topics_commands = topics.add_subparsers(dest="action", required=True, metavar="action")
    topics_commands.add_parser("create", help="create missing topics (idempotent) and report each").set_defaults(
        handler=_topics_create
    )

    schemas = commands.add_parser("schemas", help="JSON Schema of every public model")
    schemas_commands = schemas.add_subparsers(dest="action", required=True, metavar="action")
    export = schemas_commands.add_parser("export", help="write docs/schemas/*.schema.json")
    export.add_argument("--directory", default="docs/schemas", help="where to write (default docs/schemas)")
    export.add_argument("--check", action="store_true", help="write nothing; exit 3 if a file is stale")
    export.set_defaults(handler=_schemas_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
