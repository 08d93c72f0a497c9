"""``persona-stream gateway --processes N``: N gateway processes sharing the two ports.

A single CPython process cannot carry the ingest of a machine's cores, and the gateway is stateless,
so it scales by processes. Each child is a whole gateway (:mod:`gateway.app`) started as
``persona-stream gateway --processes 1`` with its ports bound through SO_REUSEPORT: the kernel
spreads new connections across the children. Each child has its own Kafka producer and reads the
status and analytics topics itself, so it serves the subscriptions, snapshots and dashboard of its
own connections; no state is shared. The parent here only starts, watches and stops them:

==========================  ==============================================================
event                       what the parent does
==========================  ==============================================================
start                       resolves a port of 0 to a free port, once, for every child; holds
                            both ports bound (not listening) so that nothing else takes them
                            while children come and go; starts N children and prints one line
                            when each has reported, over its socket pair, that it listens
SIGTERM or SIGINT           sends SIGTERM to every child: each drains as a lone gateway does
                            (refuses new connections, flushes and acknowledges what is in
                            flight, closes websockets with 1001, flushes its producer) and
                            prints what it served; exit 0 once all exited 0, else 1 (a child
                            still running after ``STOP_TIMEOUT`` is killed)
a child exits on its own    reported on stderr with its exit code, and replaced by a new child;
                            after ``MAX_RESTARTS`` deaths within ``RESTART_WINDOW`` seconds (a
                            crash loop: configuration or environment), the parent stops the
                            others and exits 1, for the supervisor above it (systemd, compose)
the parent dies (kill -9)   each child sees its end of the socket pair close and drains itself:
                            none is left orphaned
==========================  ==============================================================
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field

from core.settings import Settings
from schemas.errors import Code, PersonaStreamError

STOP_TIMEOUT = 30.0
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
READY_TIMEOUT = 90.0


class PortInUseError(PersonaStreamError):
    """A port the gateway processes would share is held by another program."""

    code = Code.PORT_IN_USE


def cores() -> int:
    """The cores this process may run on (the default number of gateway processes)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` with SO_REUSEPORT, not listening: the port, held for the children.

    First bound without SO_REUSEPORT, so that a port another program (or another gateway) listens
    on is reported here rather than silently shared with it.
    """
    addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = addresses[0]
    probe = socket.socket(family, kind, proto)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)
        address = probe.getsockname()  # the port chosen for 0
    except OSError as exc:
        raise PortInUseError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    finally:
        probe.close()
    held = socket.socket(family, kind, proto)
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        held.bind(address)
    except OSError as exc:
        held.close()
        raise PortInUseError(f"cannot listen on {host}:{address[1]}: {exc.strerror}") from exc
    return held


@dataclass
class Child:
    process: subprocess.Popen[bytes]
    channel: socket.socket
    """The parent's end of the socket pair: the child writes ``ready`` to it, and stops when it closes."""


@dataclass
class GatewayProcesses:
    """The parent of ``count`` gateway processes (see the module docstring)."""

    settings: Settings
    count: int
    log_level: str = "warning"
    children: list[Child] = field(default_factory=list)
    deaths: deque[float] = field(default_factory=deque)
    stopping: bool = False

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        held: list[socket.socket] = []
        try:
            code = self._serve(held)
        finally:
            drained = self._stop_children()
            for sock in held:
                sock.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return code if drained else 1

    def _serve(self, held: list[socket.socket]) -> int:
        s = self.settings
        try:
            held.extend(reserve_port(s.host, port) for port in (s.ws_port, s.http_port))
        except PortInUseError as exc:
            print(f"persona-stream: {exc} [{exc.code}]", file=sys.stderr)
            return 2
        ws_port, http_port = (sock.getsockname()[1] for sock in held)
        env = {**os.environ, "PERSONA_STREAM_WS_PORT": str(ws_port), "PERSONA_STREAM_HTTP_PORT": str(http_port)}
        for _ in range(self.count):
            if not self._start_child(env):
                return 0 if self.stopping else 1
        pids = " ".join(str(child.process.pid) for child in self.children)
        print(
            f"gateway: ws://{s.host}:{ws_port}/v1/client  http://{s.host}:{http_port}  "
            f"({self.count} processes sharing the ports: pids {pids})",
            flush=True,
        )
        return self._supervise(env)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _start_child(self, env: dict[str, str]) -> bool:
        """Start one child and wait until it listens; False if it died first or the parent is stopping."""
        ours, theirs = socket.socketpair()
        command = [sys.executable, "-m", "persona_stream.cli", "--log-level", self.log_level, "gateway"]
        process = subprocess.Popen(
            [*command, "--processes", "1", "--lifeline", str(theirs.fileno())], env=env, pass_fds=(theirs.fileno(),)
        )
        theirs.close()
        child = Child(process, ours)
        self.children.append(child)
        ours.settimeout(0.2)
        deadline = time.monotonic() + READY_TIMEOUT
        while not self.stopping and time.monotonic() < deadline:
            try:
                message = ours.recv(16)
            except TimeoutError:
                continue
            if message.startswith(b"ready"):
                ours.setblocking(True)
                return True
            break  # closed: the child died before listening
        if not self.stopping:
            process.poll()
            why = "did not start in time" if process.returncode is None else f"exited with {process.returncode}"
            print(f"persona-stream: gateway process {process.pid} {why}", file=sys.stderr)
        return False

    def _supervise(self, env: dict[str, str]) -> int:
        while not self.stopping:
            for child in list(self.children):
                if child.process.poll() is None:
                    continue
                self.children.remove(child)
                child.channel.close()
                now = time.monotonic()
                self.deaths.append(now)
                while self.deaths and self.deaths[0] < now - RESTART_WINDOW:
                    self.deaths.popleft()
                pid, returncode = child.process.pid, child.process.returncode
                if len(self.deaths) >= MAX_RESTARTS:
                    print(
                        f"persona-stream: gateway process {pid} exited with {returncode}, the "
                        f"{len(self.deaths)}th in {RESTART_WINDOW:.0f} s; stopping the gateway",
                        file=sys.stderr,
                    )
                    return 1
                print(
                    f"persona-stream: gateway process {pid} exited with {returncode}; starting another", file=sys.stderr
                )
                if not self._start_child(env):
                    return 0 if self.stopping else 1
                if not self.stopping:
                    print(f"gateway: process {self.children[-1].process.pid} replaces {pid}", flush=True)
            time.sleep(0.2)
        return 0

    def _stop_children(self) -> bool:
        """SIGTERM to every child, then wait for all; True if every one drained and exited 0."""
        for child in self.children:
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        clean = True
        deadline = time.monotonic() + STOP_TIMEOUT
        for child in self.children:
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(
                    f"persona-stream: gateway process {child.process.pid} did not stop in time; killing it",
                    file=sys.stderr,
                )
                child.process.kill()
                child.process.wait()
            if child.process.returncode != 0:
                clean = False
            child.channel.close()
        self.children.clear()
        return clean
