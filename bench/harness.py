"""What every benchmark shares: processes to run, percentiles, the result table and its JSON.

Every figure is measured on the real broker. Each throughput is also given as a ratio to a raw
limit measured in the same run (a bare aiokafka producer or consumer on the same machine, at the
same moment), because a shared 2-core machine is noisy and only ratios compare across runs.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import psutil

from core.settings import Settings
from core.topics import TopicPlan, create_topics

TOKEN_SECRET = secrets.token_urlsafe(48)
WEBHOOK_SECRET = "wbhsec_" + secrets.token_urlsafe(16)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))]


@dataclass
class Result:
    scenario: str
    figures: dict[str, Any] = field(default_factory=dict)
    targets: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def table(self) -> str:
        width = max(len(name) for name in self.figures) if self.figures else 10
        lines = [f"== {self.scenario}"]
        for name, value in self.figures.items():
            shown = (
                f"{value:,.1f}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else str(value)
            )
            target = f"   target {self.targets[name]}" if name in self.targets else ""
            lines.append(f"  {name:<{width}}  {shown:>14}{target}")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.scenario}.json"
        document = {
            "scenario": self.scenario,
            "figures": self.figures,
            "targets": self.targets,
            "notes": self.notes,
            "machine": machine(),
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        path.write_text(json.dumps(document, indent=2) + "\n")
        return path


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


@dataclass
class Bench:
    """One benchmark's environment: its own topics on the broker, its own processes."""

    bootstrap: str
    prefix: str = field(default_factory=lambda: f"bench{secrets.token_hex(3)}")
    partitions: int = 6
    replication_factor: int = 1
    """Of the run's topics: the settings' own (3 on the local three-broker cluster)."""
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: dict[int, Path] = field(default_factory=dict)
    """The log file of each process spawned, by pid."""
    ws_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    worker_port: int = field(default_factory=free_port)
    state_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="persona-stream-bench-")))

    @cached_property
    def settings(self) -> Settings:
        return Settings(
            kafka_bootstrap_servers=self.bootstrap,
            topic_prefix=self.prefix,
            partitions=self.partitions,
            replication_factor=self.replication_factor,
            token_secret=TOKEN_SECRET,
            webhook_secrets=[WEBHOOK_SECRET],
        )

    @cached_property
    def topics(self) -> TopicPlan:
        return TopicPlan.from_settings(self.settings)

    async def create_topics(self) -> None:
        await create_topics(self.bootstrap, self.topics.all())

    def env(self) -> dict[str, str]:
        env = {name: value for name, value in os.environ.items() if not name.startswith("PERSONA_STREAM_")}
        env.update(
            {
                "PERSONA_STREAM_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                "PERSONA_STREAM_TOPIC_PREFIX": self.prefix,
                "PERSONA_STREAM_PARTITIONS": str(self.partitions),
                "PERSONA_STREAM_REPLICATION_FACTOR": str(self.replication_factor),
                "PERSONA_STREAM_TOKEN_SECRET": TOKEN_SECRET,
                "PERSONA_STREAM_WEBHOOK_SECRETS": WEBHOOK_SECRET,
                "PERSONA_STREAM_WS_PORT": str(self.ws_port),
                "PERSONA_STREAM_HTTP_PORT": str(self.http_port),
                "PERSONA_STREAM_WORKER_PORT": str(self.worker_port),
                "PERSONA_STREAM_WORKER_URL": f"http://127.0.0.1:{self.worker_port}",
                "PERSONA_STREAM_STATE_DIR": str(self.state_dir),  # a restarted worker finds its local state
                "PERSONA_STREAM_MAX_CONNECTIONS": "20000",
                "PERSONA_STREAM_RATE_PER_SECOND": "100000",
                "PERSONA_STREAM_RATE_BURST": "100000",
                "PERSONA_STREAM_GATEWAY_PROCESSES": "1",  # figures per gateway process, unless told otherwise
                **self.extra_env,
            }
        )
        return env

    def spawn(self, *command: str) -> subprocess.Popen[bytes]:
        return self.spawn_module("persona_stream.cli", *command)

    def spawn_module(self, module: str, *arguments: str) -> subprocess.Popen[bytes]:
        """A process of the run; its output goes to a log of its own, removed with the run's state."""
        logs = self.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"{len(self.logs)}-{'-'.join((module, *arguments)).replace('.', '-')}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", module, *arguments], env=self.env(), stdout=output, stderr=subprocess.STDOUT
            )
        self.processes.append(process)
        self.logs[process.pid] = log
        return process

    def start_gateway(self, timeout: float = 60) -> subprocess.Popen[bytes]:
        process = self.spawn("gateway")
        wait_http(f"http://127.0.0.1:{self.http_port}/readyz", timeout, process)
        return process

    def start_worker(self, timeout: float = 90) -> subprocess.Popen[bytes]:
        process = self.spawn("--log-level", "info", "worker")  # its restore figures are logged at info
        wait_http(f"http://127.0.0.1:{self.worker_port}/v1/views/inq_probe", timeout, process, any_status=True)
        return process

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.processes.clear()

    def remove_state(self) -> None:
        """The workers' local state: the benchmark's own, gone with it."""
        shutil.rmtree(self.state_dir, ignore_errors=True)


def wait_http(url: str, timeout: float, process: subprocess.Popen[bytes], *, any_status: bool = False) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError:
            if any_status:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout} s")


def rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)
