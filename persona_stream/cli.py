"""The ``persona-stream`` command line: the parser, and ``main``, which runs the chosen subcommand.

Every command builds :class:`~core.settings.Settings` once from the environment and
passes it down. Exit codes: 0 success, 1 failure, 2 bad usage or configuration, 3 "not running"
(``kafka status``) or stale files (``schemas export --check``), 130 interrupted (a ``reconcile
--since`` backfill: run it again to resume).

The subcommands themselves live in :mod:`persona_stream.services` and :mod:`persona_stream.operations`;
installed packages add more through the ``persona_stream.commands`` entry points (see
:mod:`persona_stream.commands`), which is how ``persona-stream bench`` arrives without the shell
importing ``bench``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from core.settings import Settings
from persona_stream import operations, services
from persona_stream.commands import Handler, Register, contributed
from persona_stream.localkafka import LocalKafkaError

BUILT_IN: tuple[Register, ...] = (
    services.add_run,
    operations.add_kafka,
    operations.add_topics,
    services.add_gateway,
    services.add_worker,
    services.add_reconciler,
    operations.add_reconcile,
    operations.add_dead_letters,
    services.add_simulate,
    operations.add_token,
    operations.add_schemas,
)
"""The shell's own subcommands, in the order ``--help`` lists them; contributed ones follow."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="persona-stream",
        description="Join Persona's client callbacks and signed webhooks into one trusted inquiry status.",
        epilog="Configuration comes from PERSONA_STREAM_* environment variables (see README.md).",
    )
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    for register in (*BUILT_IN, *contributed()):
        register(commands)
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
