"""The one-shot ``persona-stream`` commands.

``kafka``, ``topics``, ``schemas``, ``token``, ``reconcile`` and ``dead-letters``: each does its work
and exits with a code that says how it went (see :mod:`persona_stream.cli`). The long-running
services are in :mod:`persona_stream.services`.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from core.settings import Settings
from core.tokens import SCOPES
from core.topics import TopicPlan, create_topics
from persona_stream.commands import Subcommands, ensure_kafka, local_kafka, no_api_key
from persona_stream.localkafka import KAFKA_VERSION
from schemas.errors import Code


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


def _since(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {value!r} (use 2026-11-01 or 2026-11-01T12:00:00Z)") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from processors.reconcile import Backfill, CheckpointError, default_checkpoint, reconcile_ids

    if settings.persona_api_key is None:
        return no_api_key("reconcile")
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


def add_kafka(commands: Subcommands) -> None:
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


def add_topics(commands: Subcommands) -> None:
    topics = commands.add_parser("topics", help="the topic plan")
    topics_commands = topics.add_subparsers(dest="action", required=True, metavar="action")
    topics_commands.add_parser("create", help="create missing topics (idempotent) and report each").set_defaults(
        handler=_topics_create
    )


def add_reconcile(commands: Subcommands) -> None:
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


def add_dead_letters(commands: Subcommands) -> None:
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


def add_token(commands: Subcommands) -> None:
    token = commands.add_parser("token", help="access tokens for the gateway")
    token_commands = token.add_subparsers(dest="action", required=True, metavar="action")
    mint = token_commands.add_parser("mint", help="mint a token (for development; backends mint their own)")
    mint.add_argument("--scope", required=True, choices=SCOPES)
    mint.add_argument("--sub", required=True, help="the subject: the app's reference id for the end user")
    mint.add_argument("--ttl", default="15m", help="lifetime: 30s, 15m, 1h, 1d (default 15m)")
    mint.add_argument("--inquiry", help="limit the token to one inquiry id")
    mint.add_argument("--template", help="the inquiry template id the flow runs")
    mint.set_defaults(handler=_token_mint)


def add_schemas(commands: Subcommands) -> None:
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
