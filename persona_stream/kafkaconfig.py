"""The configuration a local Kafka node runs with: the pinned versions and the files written for it.

The Maven POM that fetches the ``kafka_2.13`` jars (and a log4j2 backend), the log4j2 configuration,
and each node's ``server.properties``: alone, one broker and controller; in a cluster
(:class:`Quorum`), one of the controller voters, with replication settings for the cluster's size.
:mod:`persona_stream.localkafka` writes them and starts the JVM.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from pathlib import Path

KAFKA_VERSION = "4.1.1"
"""The one pinned Kafka version; docker-compose.yml runs ``apache/kafka`` at the same version."""

LOG4J_VERSION = "2.24.3"
"""Kafka 4.1.1's own log4j2 version (the POM does not pull a logging backend)."""

POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>persona-stream.local</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>{kafka}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-api</artifactId><version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>{log4j}</version></dependency>
  </dependencies>
</project>
"""

LOG4J2 = """status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {logs}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.controller.name = org.apache.kafka.controller
logger.controller.level = WARN
"""


def server_properties(
    data: Path, port: int, controller_port: int, node_id: int = 1, cluster: Quorum | None = None
) -> str:
    """A node that is both broker and controller; alone, or one of the voters of ``cluster``."""
    voters = cluster.voters if cluster is not None else f"{node_id}@127.0.0.1:{controller_port}"
    replicas = str(min(3, cluster.size)) if cluster is not None else "1"
    min_isr = str(min(2, cluster.size)) if cluster is not None else "1"
    settings = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data),
        "num.partitions": "1",
        "default.replication.factor": replicas,
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": replicas,
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min_isr,
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": min_isr,
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
        "log.retention.hours": "168",
        "log.segment.bytes": str(64 * 1024 * 1024),
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


@dataclass(frozen=True)
class Quorum:
    """The nodes of a local cluster: every one is a broker and a controller voter."""

    cluster_id: str
    controller_ports: tuple[int, ...]

    @property
    def size(self) -> int:
        return len(self.controller_ports)

    @property
    def voters(self) -> str:
        return ",".join(f"{n + 1}@127.0.0.1:{port}" for n, port in enumerate(self.controller_ports))


def random_cluster_id() -> str:
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id
