"""A local Apache Kafka cluster of several KRaft nodes, for tests and benchmarks of replication.

Each node is a :class:`~persona_stream.localkafka.LocalKafka` JVM that is both broker and
controller voter, started from the same cached jars. With three nodes the cluster runs what a
production cluster runs: replication factor 3 (``default.replication.factor``, the offsets and
transaction logs) and ``min.insync.replicas`` 2, so one broker may die without refusing writes
and a second one makes ``acks=all`` writes fail with ``NotEnoughReplicas`` until it is back.

Ports: node ``i`` (from 0) listens on ``port + 2 i`` for clients and ``controller_port + 2 i``
for the quorum, so the defaults 19092/19093 give 19092, 19094, 19096 and 19093, 19095, 19097.
A one-node "cluster" is exactly the single broker of :mod:`persona_stream.localkafka`, in the same
directory. Readiness is a produce/consume round trip on a topic replicated to every node.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from persona_stream.kafkaconfig import Quorum, random_cluster_id
from persona_stream.localkafka import BrokerState, LocalKafka, LocalKafkaError, StartResult, wait_ready
from schemas.errors import Code


@dataclass(frozen=True)
class ClusterStartResult:
    nodes: tuple[StartResult, ...]
    seconds: float

    @property
    def reused(self) -> bool:
        return all(node.reused for node in self.nodes)

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.state.address for node in self.nodes)


class LocalKafkaCluster:
    """The nodes of one local cluster, started and stopped together."""

    def __init__(self, nodes: Sequence[LocalKafka]) -> None:
        if not nodes:
            raise ValueError("a cluster has at least one node")
        self.nodes = tuple(nodes)

    @classmethod
    def in_directory(cls, jars: Path, home: Path, brokers: int, port: int, controller_port: int) -> LocalKafkaCluster:
        """``brokers`` nodes under ``home`` (``home/node-<i>``); one node lives in ``home`` itself."""
        if brokers == 1:
            return cls([LocalKafka(jars, home, port, controller_port)])
        ports = [port + 2 * n for n in range(brokers)]
        controller_ports = [controller_port + 2 * n for n in range(brokers)]
        if len(set(ports + controller_ports)) != 2 * brokers or max(ports + controller_ports) > 65535:
            raise LocalKafkaError(
                Code.PORT_CLASH,
                f"the ports of {brokers} nodes overlap (client {ports}, controller {controller_ports}): "
                "node i uses PERSONA_STREAM_LOCAL_KAFKA_PORT + 2i and PERSONA_STREAM_LOCAL_KAFKA_CONTROLLER_PORT + 2i",
            )
        quorum = Quorum(_cluster_id(home), tuple(controller_ports))
        return cls(
            [
                LocalKafka(jars, home / f"node-{n}", ports[n], controller_ports[n], node_id=n + 1, cluster=quorum)
                for n in range(brokers)
            ]
        )

    @classmethod
    def in_cache(cls, cache_dir: Path, brokers: int, port: int, controller_port: int) -> LocalKafkaCluster:
        """The cluster of a cache directory: ``broker/`` for one node, ``cluster-<n>/`` for more."""
        jars = LocalKafka.in_cache(cache_dir, port, controller_port).jars
        home = cache_dir / ("broker" if brokers == 1 else f"cluster-{brokers}")
        return cls.in_directory(jars, home, brokers, port, controller_port)

    @property
    def size(self) -> int:
        return len(self.nodes)

    @property
    def replication_factor(self) -> int:
        """What the cluster replicates to: 3 on three nodes or more."""
        return min(3, self.size)

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.address for node in self.nodes)

    @property
    def jars(self) -> Path:
        return self.nodes[0].jars

    def running(self) -> list[BrokerState | None]:
        """Each node's state, None for a node that is not running."""
        return [node.running() for node in self.nodes]

    def jars_cached(self) -> bool:
        return self.nodes[0].jars_cached()

    async def start(self, timeout: float = 90.0) -> ClusterStartResult:
        """Start the nodes that are not running; return once a replicated round trip works."""
        if self.size == 1:
            result = await self.nodes[0].start(timeout)
            return ClusterStartResult((result,), result.seconds)
        began = time.monotonic()
        self.nodes[0].fetch_jars()
        launched: list[tuple[BrokerState, bool]] = []
        try:
            for node in self.nodes:
                launched.append(node.launch())
            deadline = began + timeout
            serving = (n.wait_serving(s, deadline) for n, (s, _) in zip(self.nodes, launched, strict=True))
            await asyncio.gather(*serving)
            await wait_ready(self.bootstrap_servers, max(1.0, deadline - time.monotonic()), self.replication_factor)
        except BaseException:
            self._stop_launched(launched)
            raise
        seconds = time.monotonic() - began
        return ClusterStartResult(
            tuple(StartResult(state, reused, seconds) for state, reused in launched),
            seconds,
        )

    def _stop_launched(self, launched: list[tuple[BrokerState, bool]]) -> None:
        for node, (state, reused) in zip(self.nodes, launched, strict=False):
            if not reused:
                node.wait_stopped(state, timeout=10)

    def stop(self, timeout: float = 30.0) -> list[BrokerState]:
        """Stop every running node and wait until their ports are free; the states of those that ran.

        All are signalled at once: a node stopped after the others would wait for a quorum that is gone.
        """
        signalled = [(node, node.signal_stop()) for node in self.nodes]
        stopped = []
        for node, state in signalled:
            if state is None:
                node.state_file.unlink(missing_ok=True)
            else:
                node.wait_stopped(state, timeout)
                stopped.append(state)
        return stopped


def _cluster_id(home: Path) -> str:
    """The cluster id every node is formatted with, kept beside the nodes so a restart reuses it."""
    path = home / "cluster.json"
    try:
        return str(json.loads(path.read_text())["cluster_id"])
    except (OSError, ValueError, KeyError, TypeError):
        home.mkdir(parents=True, exist_ok=True)
        cluster_id = random_cluster_id()
        path.write_text(json.dumps({"cluster_id": cluster_id}))
        return cluster_id
