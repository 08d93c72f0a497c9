"""Workers and reconcilers as real processes (``persona-stream worker``), so that tests can ``kill -9``
them; both run on the one harness of tests/processes.py."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Self

from tests.integration.conftest import TOKEN_SECRET
from tests.processes import Process, cli_env, http_status, on_free_ports


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
    return cli_env(env, **values)


class Worker(Process):
    """One ``persona-stream worker`` process and its log file; on the port of
    ``PERSONA_STREAM_WORKER_PORT`` if set, else on a free one (another if it was taken meanwhile)."""

    def __init__(self, env: dict[str, str], log_dir: Path, name: str = "worker", state: str | None = None) -> None:
        """``state`` names its local state directory (under ``log_dir``): a worker restarted with the
        same name finds the state its predecessor left; by default each worker has its own."""
        env = {"PERSONA_STREAM_STATE_DIR": str(log_dir / "state" / (state or name)), **env}
        super().__init__(["--log-level", "info", "worker"], env, log_dir / f"{name}.log")
        self.port = int(env.get("PERSONA_STREAM_WORKER_PORT") or 0)

    def start(self, timeout: float = 60.0) -> Self:
        if self.port:
            return super().start(timeout)

        def on(ports: list[int]) -> None:
            [self.port] = ports
            self.env["PERSONA_STREAM_WORKER_PORT"] = str(self.port)
            super(Worker, self).start(timeout)

        on_free_ports(on)
        return self

    def ready(self) -> bool:
        """Its web server answers (it starts once the app is up): 401, up and refusing us."""
        return http_status(f"http://127.0.0.1:{self.port}/v1/views/inq_probe", timeout=1) is not None


class Reconciler(Process):
    """One ``persona-stream reconciler`` process and its log file (logging at debug level)."""

    def __init__(self, env: dict[str, str], log_dir: Path, name: str = "reconciler") -> None:
        super().__init__(["--log-level", "debug", "reconciler"], env, log_dir / f"{name}.log")

    def ready(self) -> bool:
        """It has joined its consumer group."""
        return "reconciler: consumer group" in self.log()
