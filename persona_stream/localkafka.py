"""A genuine single-node Apache Kafka (KRaft mode) that persona-stream starts itself.

No Docker and no look-alike: the official ``kafka_2.13`` jars are fetched from Maven Central by
Maven, cached outside the repository, and run as one JVM that is both broker and controller.
The broker outlives the command that started it; a later ``start`` finds it through the state
file and reuses it. Readiness is a real produce/consume round trip and both coordinators (group and transaction)
answering, not an open port.

The pinned versions and the files each node is configured by are in :mod:`persona_stream.kafkaconfig`.

Layout under ``Settings.cache_dir``::

    jars/kafka-<version>/pom.xml, libs/*.jar    the runtime classpath, shared by every broker
    broker/server.properties, log4j2.properties
    broker/data/                                 the KRaft log directory
    broker/logs/server.log, broker/stdout.log
    broker/state.json                            pid, ports and version of the running broker
    cluster-<n>/node-<i>/...                     the same, per node of an n-broker cluster
                                                 (:mod:`persona_stream.localcluster`)

Errors (all :class:`LocalKafkaError`, each with a stable ``code``)::

    LocalKafkaError
    ├── code "java-missing"     no ``java`` on PATH
    ├── code "maven-missing"    no ``mvn`` on PATH and the jars are not cached
    ├── code "fetch-failed"     Maven could not resolve the jars
    ├── code "port-in-use"      something that is not our broker holds a port
    ├── code "port-clash"       the ports of a cluster's nodes overlap
    ├── code "exited"           the JVM died while starting (the log tail is attached)
    └── code "not-ready"        no round trip within the timeout
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.client import AIOKafkaClient, CoordinationType

from core.topics import ensure_topic
from persona_stream.kafkaconfig import KAFKA_VERSION as KAFKA_VERSION  # re-exported: the version callers report
from persona_stream.kafkaconfig import LOG4J2, LOG4J_VERSION, POM, Quorum, random_cluster_id, server_properties
from schemas.errors import Code, CodedError

READY_TOPIC = "__persona_stream_ready"
READY_KEY = "persona-stream-ready"
"""The group id and the transactional id whose coordinators ``wait_ready`` looks up."""


class LocalKafkaError(CodedError):
    """The embedded broker could not be fetched, started or reached."""


@dataclass(frozen=True)
class BrokerState:
    """What ``state.json`` records about a running broker."""

    pid: int
    port: int
    controller_port: int
    version: str
    started_at: float

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass(frozen=True)
class StartResult:
    state: BrokerState
    reused: bool
    seconds: float


def _port_is_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) is not a broker
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return True


class LocalKafka:
    """The embedded broker living under one cache directory."""

    def __init__(
        self, jars: Path, home: Path, port: int, controller_port: int, node_id: int = 1, cluster: Quorum | None = None
    ) -> None:
        self.jars = jars
        self.home = home
        self.port = port
        self.controller_port = controller_port
        self.node_id = node_id
        self.cluster = cluster
        """Set for a node of a cluster (:mod:`persona_stream.localcluster`); None for a lone broker."""
        self.state_file = home / "state.json"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @classmethod
    def in_cache(cls, cache_dir: Path, port: int, controller_port: int) -> LocalKafka:
        """The broker of a cache directory (the layout in the module docstring)."""
        return cls(cache_dir / "jars" / f"kafka-{KAFKA_VERSION}", cache_dir / "broker", port, controller_port)

    # --- jars --------------------------------------------------------------------------------

    def jars_cached(self) -> bool:
        return (self.jars / "libs" / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file()

    def fetch_jars(self) -> None:
        """Resolve the broker's runtime classpath with Maven (a no-op when cached)."""
        if self.jars_cached():
            return
        if shutil.which("mvn") is None:
            raise LocalKafkaError(
                Code.MAVEN_MISSING,
                "Maven (`mvn`) is needed once to fetch the Kafka jars: install it "
                "(Debian: apt-get install maven) or set PERSONA_STREAM_KAFKA_BOOTSTRAP_SERVERS.",
            )
        self.jars.mkdir(parents=True, exist_ok=True)
        (self.jars / "pom.xml").write_text(POM.format(kafka=KAFKA_VERSION, log4j=LOG4J_VERSION))
        staging = self.jars / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        command = [
            "mvn", "-q", "-B", "-f", str(self.jars / "pom.xml"),
            "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies",
            f"-DoutputDirectory={staging}", "-DincludeScope=runtime",
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise LocalKafkaError(
                Code.FETCH_FAILED, f"Maven could not fetch Kafka {KAFKA_VERSION}:\n{done.stdout[-2000:]}"
            )
        shutil.rmtree(self.jars / "libs", ignore_errors=True)
        staging.rename(self.jars / "libs")

    # --- state -------------------------------------------------------------------------------

    def running(self) -> BrokerState | None:
        """The broker recorded in the state file, if its JVM is alive and owns its port."""
        try:
            raw = json.loads(self.state_file.read_text())
            state = BrokerState(**raw)
        except (OSError, ValueError, TypeError):
            return None
        if not _pid_alive(state.pid):
            return None
        return state

    # --- start / stop ------------------------------------------------------------------------

    async def start(self, timeout: float = 60.0) -> StartResult:
        """Start the broker, or reuse the one already running; return once a round trip works.

        A node of a cluster cannot serve alone (its controller needs a majority of the voters):
        for it, return once its client port is open, which happens once it has joined.
        """
        began = time.monotonic()
        state, reused = self.launch()
        try:
            await self.wait_serving(state, began + timeout)
            if self.cluster is None:
                await wait_ready(state.address, max(1.0, began + timeout - time.monotonic()))
        except BaseException:
            if not reused:
                self._terminate(state.pid)
            raise
        return StartResult(state, reused=reused, seconds=time.monotonic() - began)

    def launch(self) -> tuple[BrokerState, bool]:
        """Start the JVM unless it runs; its state, and whether it was running already."""
        state = self.running()
        if state is not None:
            return state, True
        if shutil.which("java") is None:
            raise LocalKafkaError(
                Code.JAVA_MISSING,
                "Java 17+ is needed to run the local Kafka (Debian: apt-get install openjdk-17-jre-headless).",
            )
        for port in (self.port, self.controller_port):
            if _port_is_open(port):
                raise LocalKafkaError(
                    Code.PORT_IN_USE,
                    f"127.0.0.1:{port} is taken by another process; set PERSONA_STREAM_LOCAL_KAFKA_PORT "
                    "and PERSONA_STREAM_LOCAL_KAFKA_CONTROLLER_PORT to free ports.",
                )
        self.fetch_jars()
        pid = self._launch()
        state = BrokerState(
            pid=pid,
            port=self.port,
            controller_port=self.controller_port,
            version=KAFKA_VERSION,
            started_at=time.time(),
        )
        self.state_file.write_text(json.dumps(asdict(state)))
        return state, False

    def _launch(self) -> int:
        """Format the storage if needed, start the JVM in the background, return its pid."""
        self.home.mkdir(parents=True, exist_ok=True)
        data, logs = self.home / "data", self.home / "logs"
        data.mkdir(parents=True, exist_ok=True)
        logs.mkdir(parents=True, exist_ok=True)
        properties = self.home / "server.properties"
        properties.write_text(server_properties(data, self.port, self.controller_port, self.node_id, self.cluster))
        log_config = self.home / "log4j2.properties"
        log_config.write_text(LOG4J2.format(logs=logs))
        classpath = f"{self.jars / 'libs'}/*"
        log_opt = f"-Dlog4j2.configurationFile={log_config}"
        if not (data / "meta.properties").exists():
            subprocess.run(
                ["java", log_opt, "-cp", classpath, "kafka.tools.StorageTool", "format",
                 "-t", self.cluster.cluster_id if self.cluster else random_cluster_id(), "-c", str(properties),
                 "--ignore-formatted"],
                check=True, capture_output=True,
            )  # fmt: skip
        command = [
            "java", "-Xms256m", "-Xmx512m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            f"-Dkafka.logs.dir={logs}", log_opt, "-cp", classpath, "kafka.Kafka", str(properties),
        ]  # fmt: skip
        # Started through a shell that exits at once: the JVM is re-parented to init, outlives this
        # command, ignores its Ctrl-C (setsid), and never becomes a zombie child of ours.
        launched = subprocess.run(
            ["sh", "-c", 'setsid "$@" >> "$LOG" 2>&1 < /dev/null & echo $!', "sh", *command],
            env={**os.environ, "LOG": str(self.home / "stdout.log")},
            capture_output=True,
            text=True,
            check=True,
        )
        return int(launched.stdout.strip())

    async def wait_serving(self, state: BrokerState, deadline: float) -> None:
        """Until the client port is open (the broker opens it once ready); fail fast if the JVM dies."""
        while not _port_is_open(state.port):
            if not _pid_alive(state.pid):
                raise LocalKafkaError(Code.EXITED, f"Kafka exited while starting:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise LocalKafkaError(Code.NOT_READY, f"Kafka did not open its port:\n{self.log_tail()}")
            await asyncio.sleep(0.1)

    def stop(self, timeout: float = 30.0) -> BrokerState | None:
        """Stop the running broker and wait until its ports are free; None if none ran."""
        state = self.running()
        if state is None:
            self.state_file.unlink(missing_ok=True)
            return None
        self.wait_stopped(state, timeout)
        return state

    def signal_stop(self) -> BrokerState | None:
        """Ask the broker to stop (SIGTERM) without waiting; None if none ran."""
        state = self.running()
        if state is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(state.pid, signal.SIGTERM)
        return state

    def wait_stopped(self, state: BrokerState, timeout: float = 30.0) -> None:
        """Until the JVM is gone (SIGKILL after ``timeout``) and its ports are free."""
        self._terminate(state.pid, timeout)
        deadline = time.monotonic() + timeout
        while _port_is_open(state.port) or _port_is_open(state.controller_port):
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.state_file.unlink(missing_ok=True)

    @staticmethod
    def _terminate(pid: int, timeout: float = 30.0) -> None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _pid_alive(pid):
                _reap(pid)
                time.sleep(0.05)
        _reap(pid)

    def log_tail(self, lines: int = 30) -> str:
        for name in ("logs/server.log", "stdout.log"):
            path = self.home / name
            if path.exists():
                return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):  # not our child: its own parent reaps it
        os.waitpid(pid, os.WNOHANG)


async def wait_ready(bootstrap_servers: str, timeout: float, replication_factor: int = 1) -> None:
    """Return once a record produced with acks=all can be consumed back and the group and the
    transaction coordinators answer, or raise not-ready.

    On a cluster, the round-trip topic has ``replication_factor`` replicas: it can only be
    created once that many brokers have registered. On a fresh broker the first look-up of a
    coordinator creates ``__consumer_offsets`` or ``__transaction_state``; doing it here, and
    waiting until both answer, spares the first worker a burst of ``GroupCoordinatorNotAvailable``
    errors that only mean "not yet".
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            await asyncio.wait_for(
                _round_trip(bootstrap_servers, replication_factor), max(0.5, deadline - time.monotonic())
            )
            return
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            last_error = exc
            await asyncio.sleep(0.25)
    raise LocalKafkaError(Code.NOT_READY, f"no produce/consume round trip with {bootstrap_servers}: {last_error!r}")


async def _round_trip(bootstrap_servers: str, replication_factor: int) -> None:
    await ensure_topic(bootstrap_servers, READY_TOPIC, partitions=1, replication_factor=replication_factor)
    token = secrets.token_bytes(8)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        sent = await producer.send_and_wait(READY_TOPIC, token, partition=0)
    finally:
        await producer.stop()
    await _coordinators(bootstrap_servers)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(READY_TOPIC, 0)
        consumer.assign([tp])
        consumer.seek(tp, sent.offset)
        record = await consumer.getone()
        if record.value != token:
            raise LocalKafkaError(Code.NOT_READY, "round trip returned another record")
    finally:
        await consumer.stop()


async def _coordinators(bootstrap_servers: str) -> None:
    """Raise until the group and the transaction coordinators are known (FindCoordinator, quietly)."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap_servers)
    await client.bootstrap()
    try:
        for kind in (CoordinationType.GROUP, CoordinationType.TRANSACTION):
            await client.coordinator_lookup(kind, READY_KEY)
    finally:
        await client.close()
