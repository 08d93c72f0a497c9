"""``persona-stream bench [scenario]``: run the benchmarks, print each table, write its JSON.

The subcommand reaches the CLI through the ``persona_stream.commands`` entry point :func:`register`
(``pyproject.toml``): the shell lists it in ``--help`` without importing this package.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import end_to_end, fanout, ingest, processing, recovery
from bench.harness import Bench, Result
from core.settings import Settings
from persona_stream.commands import Subcommands, ensure_kafka

Scenario = Callable[..., Awaitable[Result]]

SCENARIOS: dict[str, tuple[Scenario, dict[str, Any], dict[str, Any]]] = {
    # name: (run, full sizes, smoke sizes)
    "ingest": (
        ingest.run,
        {"frames": 50_000, "connections": 50, "rate": 5_000.0, "seconds": 10.0},
        {"frames": 500, "connections": 5, "rate": 250.0, "seconds": 1.0},
    ),
    "processing": (processing.run, {"events": 50_000}, {"events": 400}),
    "end_to_end": (
        end_to_end.run,
        {"rate": 1000.0, "seconds": 30.0, "warmup": 5.0},
        {"rate": 50.0, "seconds": 1.0, "warmup": 0.5},
    ),
    "fanout": (fanout.run, {"subscribers": 10_000, "updates": 10}, {"subscribers": 20, "updates": 2}),
    "recovery": (recovery.run, {"inquiries": 1_000_000}, {"inquiries": 2000}),
}


async def run(
    bootstrap: str,
    names: list[str],
    *,
    smoke: bool,
    out: Path,
    extra_env: dict[str, str] | None = None,
    replication_factor: int = 1,
) -> list[Result]:
    results = []
    for name in names:
        scenario, full, small = SCENARIOS[name]
        bench = Bench(bootstrap, extra_env=dict(extra_env or {}), replication_factor=replication_factor)
        try:
            result = await scenario(bench, **(small if smoke else full))
        finally:
            bench.stop()
            bench.remove_state()
        if smoke:
            result.notes.append("smoke run: sizes too small for the figures to mean anything")
        print(result.table(), flush=True)
        print(f"  (written to {result.save(out)})", flush=True)
        results.append(result)
    return results


def main(
    bootstrap: str,
    names: list[str],
    *,
    smoke: bool,
    out: Path,
    guarantee: str | None,
    gateway_processes: int = 1,
    replication_factor: int = 1,
) -> int:
    extra = {"PERSONA_STREAM_PROCESSING_GUARANTEE": guarantee} if guarantee else {}
    extra["PERSONA_STREAM_GATEWAY_PROCESSES"] = str(gateway_processes)
    scenarios = names or list(SCENARIOS)
    asyncio.run(run(bootstrap, scenarios, smoke=smoke, out=out, extra_env=extra, replication_factor=replication_factor))
    return 0


def _bench(args: argparse.Namespace, settings: Settings) -> int:
    unknown = [name for name in args.scenario if name not in SCENARIOS]
    if unknown:
        print(f"persona-stream: no benchmark {', '.join(unknown)} (have: {', '.join(SCENARIOS)})", file=sys.stderr)
        return 2
    bootstrap = asyncio.run(ensure_kafka(settings))
    return main(
        bootstrap,
        args.scenario,
        smoke=args.smoke,
        out=Path(args.out),
        guarantee=args.guarantee,
        gateway_processes=args.gateway_processes,
        replication_factor=settings.replication_factor,
    )


def register(commands: Subcommands) -> None:
    """Add ``bench`` to the ``persona-stream`` command line (the ``persona_stream.commands`` entry point)."""
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
