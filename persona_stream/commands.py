"""What every ``persona-stream`` subcommand is made of, and how the CLI finds them.

A subcommand is registered by a function ``register(commands)`` that adds its parser to the CLI's
subparsers and sets a :data:`Handler` as the parser's ``handler`` default. The built-in ones live in
:mod:`persona_stream.services` (the long-running processes) and :mod:`persona_stream.operations`
(one-shot tools); packages installed beside this one add theirs through the entry-point group
:data:`ENTRY_POINT_GROUP` (``bench`` does), so the shell never imports them.

Also here: the embedded Kafka a command starts when no bootstrap servers are configured, shared by
the built-in commands and the plugins.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TypeAlias

from core.settings import Settings
from persona_stream.localcluster import LocalKafkaCluster
from persona_stream.localkafka import KAFKA_VERSION
from schemas.errors import Code

Handler = Callable[[argparse.Namespace, Settings], int]
"""A subcommand's body: the parsed arguments and the settings in, the exit code out."""

Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""The CLI's subparsers, which a ``register`` function adds its subcommands to."""

Register: TypeAlias = Callable[[Subcommands], None]
"""Adds one or more subcommands to the CLI's subparsers."""

ENTRY_POINT_GROUP = "persona_stream.commands"
"""The entry-point group of the subcommands other packages contribute (``pyproject.toml``)."""


def contributed() -> list[Register]:
    """The ``register`` functions of the subcommands installed packages contribute, by entry-point name."""
    found = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda point: point.name)
    return [point.load() for point in found]


def local_kafka(settings: Settings, brokers: int | None = None) -> LocalKafkaCluster:
    """The embedded Kafka of the settings: one broker, or a cluster of ``brokers`` nodes."""
    return LocalKafkaCluster.in_cache(
        settings.cache_dir,
        brokers or settings.local_kafka_brokers,
        settings.local_kafka_port,
        settings.local_kafka_controller_port,
    )


async def ensure_kafka(settings: Settings) -> str:
    """The bootstrap servers to use, starting (or reusing) the local Kafka when none is configured."""
    if settings.uses_local_kafka:
        result = await local_kafka(settings).start()
        if not result.reused:
            print(f"started local Kafka {KAFKA_VERSION} at {result.bootstrap_servers} in {result.seconds:.1f} s")
    return settings.bootstrap_servers()


def no_api_key(command: str) -> int:
    """Say that ``command`` needs Persona's API key; exit code 2."""
    print(
        f"persona-stream: {command} needs PERSONA_STREAM_PERSONA_API_KEY [{Code.PERSONA_API_KEY_MISSING}]",
        file=sys.stderr,
    )
    return 2
