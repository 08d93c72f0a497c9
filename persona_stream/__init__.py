"""The shell: what runs and assembles the gateway and the workers, and nothing they depend on.

The ``persona-stream`` command line (:mod:`persona_stream.cli`; its long-running commands in
:mod:`persona_stream.services`, the one-shot ones in :mod:`persona_stream.operations`, what they
share in :mod:`persona_stream.commands`), the whole pipeline on one machine
(:mod:`persona_stream.runner`, :mod:`persona_stream.gateways`), the Kafka it starts itself
(:mod:`persona_stream.localkafka`, :mod:`persona_stream.localcluster`, :mod:`persona_stream.kafkaconfig`),
the simulator, its flows and the webhook bodies it sends (:mod:`persona_stream.simulator`,
:mod:`persona_stream.scenarios`, :mod:`persona_stream.webhook_bodies`), and the generators of
docs/asyncapi.yaml, docs/protocol.md's code tables and README.md's configuration table.

May import: third-party libraries, :mod:`gateway`, :mod:`processors`, :mod:`core` and :mod:`schemas`.
Never :mod:`bench`: the command line finds its ``bench`` subcommand through an entry point, not an
import (``lint-imports`` checks it; see docs/architecture.md).
"""
