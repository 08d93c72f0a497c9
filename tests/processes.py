"""The processes the tests start, and the ports they listen on.

One harness: :class:`Process` runs ``python -m persona_stream.cli …`` with its output in a log file,
waits until it is ready (or says why it is not: its exit and the tail of its log), stops it with
SIGTERM or kills it with SIGKILL. The worker, the reconciler (tests/integration/workers.py) and the
gateway (:class:`GatewayProcess`) are built on it. Async tests call it through ``asyncio.to_thread``
so that their event loop keeps running meanwhile.

Ports: what runs in this process binds port 0 and reads the port it got. A child that can say which
port it got (the gateway prints its ports) is given port 0 too. A child that cannot (a faust worker,
Kafka) gets ports from :func:`free_ports`, and is started through :func:`on_free_ports`, which
starts it again on other ports if one was taken before the child bound it.
"""

from __future__ import annotations

import asyncio
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Protocol, Self, TypeVar

T = TypeVar("T")

# below the kernel's ephemeral range (32768-60999 on Linux), where no outgoing connection -- of a
# Kafka client, say -- takes one between its choice and the child binding it
PORT_RANGE = (20_000, 32_000)


@contextmanager
def held_ports(count: int = 1, *, consecutive: bool = False) -> Iterator[list[int]]:
    """``count`` ports (``consecutive`` ones if asked) bound by this process, not listening, for
    the block: no one else can take them until the block ends, just before the child starts."""
    for _ in range(200):
        base = random.randrange(PORT_RANGE[0], PORT_RANGE[1] - count)
        candidates = range(base, base + count) if consecutive else random.sample(range(*PORT_RANGE), count)
        with ExitStack() as held:
            try:
                for port in candidates:
                    sock = held.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            yield list(candidates)
            return
    raise AssertionError(f"no {count} free ports in {PORT_RANGE}")


def free_ports(count: int = 1, *, consecutive: bool = False) -> list[int]:
    """Ports free now, released for the child that gets them (see :func:`on_free_ports`)."""
    with held_ports(count, consecutive=consecutive) as ports:
        return ports


def port_taken(error: BaseException) -> bool:
    """Whether a start failed because a port was taken (the JVM's, aiohttp's or LocalKafka's words)."""
    return getattr(error, "code", None) == "port-in-use" or "address already in use" in str(error).lower()


def on_free_ports(
    start: Callable[[list[int]], T], count: int = 1, *, consecutive: bool = False, attempts: int = 3
) -> T:
    """``start(ports)`` on free ports; on other ones if a port was taken before the child bound it."""
    for attempt in range(attempts):
        try:
            return start(free_ports(count, consecutive=consecutive))
        except Exception as error:
            if attempt == attempts - 1 or not port_taken(error):
                raise
    raise AssertionError("unreachable")


class LocalKafkaLike(Protocol):
    """A broker or a cluster of the shell's local Kafka."""

    async def start(self, timeout: float) -> object: ...

    def stop(self) -> object: ...


K = TypeVar("K", bound=LocalKafkaLike)


def kafka_on_free_ports(make: Callable[[list[int]], K], count: int, timeout: float, *, consecutive: bool = False) -> K:
    """``make(ports)`` started on free ports: stopped again if its start fails, then tried on other
    ports if one was taken before the JVM bound it."""

    def start(ports: list[int]) -> K:
        kafka = make(ports)
        try:
            asyncio.run(kafka.start(timeout=timeout))
        except BaseException:
            kafka.stop()
            raise
        return kafka

    return on_free_ports(start, count, consecutive=consecutive)


def cli_env(base: Mapping[str, str], **settings: object) -> dict[str, str]:
    """``base`` with ``PERSONA_STREAM_<NAME>`` set for each of ``settings``."""
    return {**base, **{f"PERSONA_STREAM_{name}": str(value) for name, value in settings.items()}}


class ProcessFailed(AssertionError):
    """The process exited, or was not ready in time; the message ends with the tail of its log."""


class Process:
    """``python -m persona_stream.cli <args>`` as a child process, its output appended to ``log_path``."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.args, self.env, self.log_path = list(args), dict(env), log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def ready(self) -> bool:
        """Whether it is up (subclasses say what that means); :meth:`start` waits for it."""
        return True

    def start(self, timeout: float = 60.0) -> Self:
        """Start it and wait until it is :meth:`ready`; killed, and :class:`ProcessFailed`, if it
        exits first or is not ready in time."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "persona_stream.cli", *self.args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + timeout
            while not self.ready():
                if self.process.poll() is not None:
                    raise ProcessFailed(f"{self} exited with {self.process.returncode}:\n{self.log_tail()}")
                if time.monotonic() > deadline:
                    raise ProcessFailed(f"{self} was not ready after {timeout} s:\n{self.log_tail()}")
                time.sleep(0.2)
        except BaseException:
            self.kill9()
            raise
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill9(self) -> None:
        """SIGKILL (no shutdown at all), and wait until it is gone."""
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, the graceful shutdown; its exit code. Killed, and TimeoutExpired, if it takes longer."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def wait_for_log(self, pattern: re.Pattern[str], timeout: float = 60.0) -> re.Match[str]:
        """The first match of ``pattern`` in the log, once it is written."""
        deadline = time.monotonic() + timeout
        while (match := pattern.search(self.log())) is None:
            if not self.alive():
                raise ProcessFailed(f"{self} exited before logging {pattern.pattern!r}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise ProcessFailed(f"{self} did not log {pattern.pattern!r}:\n{self.log_tail()}")
            time.sleep(0.1)
        return match

    def __str__(self) -> str:
        return f"persona-stream {' '.join(self.args)} ({self.log_path.name})"


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The status ``url`` answers with; None if nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return None


GATEWAY_PORTS = re.compile(r"gateway: ws://[^:]+:(\d+)/v1/client +http://[^:]+:(\d+)")


class GatewayProcess(Process):
    """``persona-stream gateway`` as a process of its own: on the ports it was given, by default
    port 0 and the ports it says it bound; ready once ``/readyz`` answers 200."""

    def __init__(
        self, env: Mapping[str, str], log_path: Path, *, args: Sequence[str] = (), log_level: str = "info"
    ) -> None:
        env = {"PERSONA_STREAM_WS_PORT": "0", "PERSONA_STREAM_HTTP_PORT": "0", **env}
        super().__init__(["--log-level", log_level, "gateway", *args], env, log_path)
        self.ws_port = self.http_port = 0

    def start(self, timeout: float = 90.0) -> Self:
        return super().start(timeout)

    def ready(self) -> bool:
        if not self.http_port and (found := GATEWAY_PORTS.search(self.log())):
            self.ws_port, self.http_port = int(found.group(1)), int(found.group(2))
        return bool(self.http_port) and http_status(f"{self.http}/readyz") == 200

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}"
