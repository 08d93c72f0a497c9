"""Workers as real processes (``persona-stream worker``), so that tests can ``kill -9`` them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.integration.conftest import TOKEN_SECRET


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def worker_env(kafka_bootstrap: str, prefix: str, **overrides: object) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("PERSONA_STREAM_")}
    values: dict[str, object] = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "TOPIC_PREFIX": prefix,
        "PARTITIONS": 3,
        "TOKEN_SECRET": TOKEN_SECRET,
        "COMMIT_INTERVAL_SECONDS": 0.1,
        "TICK_INTERVAL_SECONDS": 0.5,
        **overrides,
    }
    env.update({f"PERSONA_STREAM_{name}": str(value) for name, value in values.items()})
    return env


class Worker:
    """One ``persona-stream worker`` process and its log file."""

    def __init__(self, env: dict[str, str], log_dir: Path, name: str = "worker", state: str | None = None) -> None:
        """``state`` names its local state directory (under ``log_dir``): a worker restarted with the
        same name finds the state its predecessor left; by default each worker has its own."""
        self.env = {
            "PERSONA_STREAM_STATE_DIR": str(log_dir / "state" / (state or name)),
            **env,
            "PERSONA_STREAM_WORKER_PORT": env.get("PERSONA_STREAM_WORKER_PORT") or str(free_port()),
        }
        self.port = int(self.env["PERSONA_STREAM_WORKER_PORT"])
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "persona_stream.cli", "--log-level", "info", "worker"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self.wait_serving()
        except BaseException:
            self.kill9()
            raise
        return self

    def wait_serving(self, timeout: float = 60.0) -> None:
        """Until the worker's web server answers (it starts once the app is up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v1/views/inq_probe", timeout=1)
            except urllib.error.HTTPError:
                return  # 401: up, and refusing us
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"worker did not start:\n{self.log_tail()}")

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class Reconciler:
    """One ``persona-stream reconciler`` process and its log file (logging at debug level)."""

    def __init__(self, env: dict[str, str], log_dir: Path, name: str = "reconciler") -> None:
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> Reconciler:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "persona_stream.cli", "--log-level", "debug", "reconciler"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while "reconciler: consumer group" not in self.log_path.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"reconciler did not start:\n{self.log_path.read_text(errors='replace')}")
            time.sleep(0.2)
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
