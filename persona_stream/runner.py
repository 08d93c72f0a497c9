"""``persona-stream run``: the whole pipeline on one machine, until Ctrl-C.

Starts the embedded Kafka (unless a cluster is configured), creates the topics, then runs the
worker, the reconciler (when ``PERSONA_STREAM_PERSONA_API_KEY`` is set) and the gateway -- and with
``--demo`` the simulator -- as child processes, each in its own session so that one Ctrl-C is
handled here, in order: simulator, gateway (flushes and acknowledges what is in flight),
reconciler, worker (commits), then the Kafka this command started. Nothing is left running.

Without ``PERSONA_STREAM_TOKEN_SECRET`` / ``PERSONA_STREAM_WEBHOOK_SECRETS`` it makes throwaway
secrets for this run and prints how to use them. Without ``PERSONA_STREAM_ALLOWED_ORIGINS``, on a
loopback ``host`` websockets are allowed from the dashboard's own origin only.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from core.settings import Settings
from core.tokens import TokenAuthority
from core.topics import TopicPlan, create_topics
from persona_stream.gateways import cores
from persona_stream.localcluster import LocalKafkaCluster
from persona_stream.localkafka import KAFKA_VERSION

LOOPBACK = ("127.0.0.1", "localhost", "::1")
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


@dataclass
class Runner:
    settings: Settings
    demo: bool = False
    log_level: str = "warning"
    children: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    stopping: bool = False

    def run(self) -> int:
        env = self._environment()
        kafka = LocalKafkaCluster.in_cache(
            self.settings.cache_dir,
            self.settings.local_kafka_brokers,
            self.settings.local_kafka_port,
            self.settings.local_kafka_controller_port,
        )
        started_kafka = False
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            if self.settings.uses_local_kafka:
                result = asyncio.run(kafka.start(timeout=120))
                started_kafka = not result.reused
                how = "started" if started_kafka else "reused"
                print(f"Kafka {KAFKA_VERSION} at {result.bootstrap_servers} ({how})")
            asyncio.run(create_topics(self.settings.bootstrap_servers(), TopicPlan.from_settings(self.settings).all()))
            self._spawn("worker", ["worker"], env)
            if self.settings.persona_api_key is not None:
                self._spawn("reconciler", ["reconciler"], env)
            self._spawn("gateway", ["gateway"], env)
            if not self._wait_ready(timeout=90):
                print("persona-stream: the gateway did not become ready", file=sys.stderr)
                return 1
            if self.demo:
                self._spawn("simulator", ["simulate", "--forever", "--rate", "2", "--quiet"], env)
            self._print_urls(env)
            return self._supervise()
        finally:
            self._stop_children()
            if started_kafka:
                kafka.stop()
                print("stopped the local Kafka")
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.settings.token_secret is None:
            env["PERSONA_STREAM_TOKEN_SECRET"] = secrets.token_urlsafe(48)
            print("using a throwaway token secret for this run (set PERSONA_STREAM_TOKEN_SECRET to keep one)")
        if not self.settings.webhook_secrets:
            env["PERSONA_STREAM_WEBHOOK_SECRETS"] = "wbhsec_" + secrets.token_urlsafe(24)
            print("using a throwaway webhook secret for this run (set PERSONA_STREAM_WEBHOOK_SECRETS to Persona's)")
        if "PERSONA_STREAM_ALLOWED_ORIGINS" not in env and self.settings.host in LOOPBACK:
            # the dashboard's own origin: on this machine only, nothing else needs to open websockets
            port = self.settings.http_port
            env["PERSONA_STREAM_ALLOWED_ORIGINS"] = ",".join(f"http://{host}:{port}" for host in LOOPBACK_NAMES)
        return env

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> None:
        process = subprocess.Popen(
            [sys.executable, "-m", "persona_stream.cli", "--log-level", self.log_level, *command],
            env=env,
            start_new_session=True,  # Ctrl-C reaches this process only; it stops the children in order
        )
        self.children.append((name, process))

    def _wait_ready(self, timeout: float) -> bool:
        """Until every gateway process has answered ``/readyz`` with 200 (each new connection
        reaches one of them, as the kernel picks)."""
        url = f"http://{self.settings.host}:{self.settings.http_port}/readyz"
        processes = self.settings.gateway_processes or cores()
        ready: set[int] = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stopping:
            if any(process.poll() is not None for _, process in self.children):
                return False
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        ready.add(int(json.loads(response.read())["pid"]))
                        if len(ready) >= processes:
                            return True
                        time.sleep(0.05)
                        continue
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        return False

    def _print_urls(self, env: dict[str, str]) -> None:
        s = self.settings
        tokens = TokenAuthority(env["PERSONA_STREAM_TOKEN_SECRET"].encode())
        dashboard = tokens.mint("dashboard", "analytics", 24 * 3600)
        http, ws = f"http://{s.host}:{s.http_port}", f"ws://{s.host}:{s.ws_port}"
        print(
            "\npersona-stream is running\n"
            f"  dashboard       {http}/dashboard#token={dashboard}\n"
            f"  webhooks        {http}/v1/webhooks/persona   (POST, signed by Persona)\n"
            f"  browser ingest  {ws}/v1/client\n"
            f"  subscriptions   {ws}/v1/subscribe\n"
            f"  inquiry views   {http}/v1/inquiries/{{id}}\n"
            f"  health          {http}/healthz  {http}/readyz  {http}/metrics\n"
            f"  status topic    {s.topic_prefix}.inquiry-status on {s.bootstrap_servers()}\n"
            + ("  demo traffic    the simulator runs 2 inquiries a second\n" if self.demo else "")
            + "Ctrl-C stops everything.",
            flush=True,
        )

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _supervise(self) -> int:
        while not self.stopping:
            for name, process in self.children:
                if process.poll() is not None:
                    print(f"persona-stream: the {name} exited with {process.returncode}", file=sys.stderr)
                    return 1
            time.sleep(0.2)
        return 0

    def _stop_children(self) -> None:
        for name, process in reversed(self.children):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    print(f"persona-stream: the {name} did not stop in time; killing it", file=sys.stderr)
                    process.kill()
                    process.wait()
        self.children.clear()
