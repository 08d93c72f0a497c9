"""The long-running ``persona-stream`` commands: ``run``, ``gateway``, ``worker``, ``reconciler``, ``simulate``.

Each runs until SIGINT or SIGTERM (``simulate`` until its inquiries are checked) and then stops
cleanly; :func:`run_until_signalled` is that lifecycle, :func:`run_event_loop` the choice of loop.
The services' own code lives in ``gateway/`` and ``processors/``; this module only starts them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from core.settings import Settings
from core.topics import TopicPlan, create_topics
from persona_stream.commands import Subcommands, ensure_kafka, no_api_key


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


async def prepare_topics(settings: Settings) -> None:
    """Start the local Kafka if none is configured, and create the missing topics of the plan."""
    bootstrap = await ensure_kafka(settings)
    await create_topics(bootstrap, TopicPlan.from_settings(settings).all())


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from persona_stream.runner import Runner

    return Runner(settings, demo=args.demo, log_level=args.log_level).run()


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
        asyncio.run(prepare_topics(settings))
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
    asyncio.run(prepare_topics(settings))
    run_worker(settings, loglevel=args.log_level)
    return 0


def _reconciler(args: argparse.Namespace, settings: Settings) -> int:
    from processors.reconcile import Reconciler

    if settings.persona_api_key is None:
        return no_api_key("the reconciler")

    async def run() -> None:
        await prepare_topics(settings)
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


def add_run(commands: Subcommands) -> None:
    run = commands.add_parser(
        "run", help="the whole pipeline on one machine: local Kafka, topics, gateway and worker; Ctrl-C stops all"
    )
    run.add_argument("--demo", action="store_true", help="also run the simulator, so the dashboard moves")
    run.set_defaults(handler=_run)


def add_gateway(commands: Subcommands) -> None:
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


def add_worker(commands: Subcommands) -> None:
    worker = commands.add_parser(
        "worker", help="run a worker: correlate callbacks and webhooks, publish trusted status and analytics"
    )
    worker.set_defaults(handler=_worker)


def add_reconciler(commands: Subcommands) -> None:
    reconciler = commands.add_parser(
        "reconciler",
        help="run a reconciler: read overdue or dead-lettered inquiries from Persona's API (needs an API key)",
    )
    reconciler.set_defaults(handler=_reconciler)


def add_simulate(commands: Subcommands) -> None:
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
