"""The backfill (``persona-stream reconcile --since``) against the API stand-in's paginated list and the
real broker: interrupted and resumed, every inquiry reconciled exactly once, never over the rate."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from core.settings import Settings
from core.topics import TopicPlan, create_topics
from processors.persona_api import PersonaApiClient
from processors.reconcile import Backfill
from schemas.codec import decode
from schemas.records import ApiSnapshot
from tests.fixtures.persona_api import PersonaStandIn, inquiry, persona_api
from tests.kafkautil import consume, wait_for

__all__ = ["persona_api"]

pytestmark = pytest.mark.integration

KEY = "persona_sandbox_backfill-" + os.urandom(8).hex()
SINCE = datetime(2026, 11, 1, tzinfo=UTC)


def backfill_settings(kafka_bootstrap: str, prefix: str, api: PersonaStandIn, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "kafka_bootstrap_servers": kafka_bootstrap,
        "topic_prefix": prefix,
        "partitions": 3,
        "persona_api_key": SecretStr(KEY),
        "persona_api_url": api.url,
        "persona_api_max_concurrency": 8,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


async def snapshots(settings: Settings) -> list[ApiSnapshot]:
    topic = TopicPlan.from_settings(settings).api_snapshots.name
    return [decode(ApiSnapshot, r.value) for r in await consume(settings.bootstrap_servers(), topic, quiet=2)]


async def test_a_backfill_of_1000_interrupted_and_resumed_reconciles_each_once_within_the_rate(
    kafka_bootstrap: str, unique: str, tmp_path: Path, persona_api: PersonaStandIn
) -> None:
    ids = [f"inq_backfill{n:04d}" for n in range(1000)]
    persona_api.inquiries.update({i: inquiry(i, "approved") for i in ids})
    limit, window = 150, 0.5  # a short window, so the cap shows within a test
    settings = backfill_settings(kafka_bootstrap, unique, persona_api, persona_api_rate_per_minute=limit)
    await create_topics(kafka_bootstrap, TopicPlan.from_settings(settings).all())
    checkpoint = tmp_path / "checkpoint.json"

    async def run(stop_after: int | None) -> tuple[bool, list[float]]:
        first = len(persona_api.seen)
        async with PersonaApiClient(settings, rate_window_seconds=window) as api:
            backfill = Backfill(settings, SINCE, None, checkpoint, api=api, progress=io.StringIO(), chunk=16)

            async def interrupt() -> None:
                assert stop_after is not None
                await wait_for(lambda: len(persona_api.seen) >= stop_after, timeout=60, interval=0.01)
                backfill.stopping.set()  # what Ctrl-C does

            watcher = asyncio.create_task(interrupt()) if stop_after is not None else None
            finished = await backfill.run()
            if watcher is not None:
                watcher.cancel()
        return finished, sorted(seen.at for seen in persona_api.seen[first:])

    finished, calls = await run(stop_after=400)
    assert not finished
    assert checkpoint.exists()
    interrupted_at = len(persona_api.seen)
    assert interrupted_at < 1010
    finished, resumed_calls = await run(stop_after=None)
    assert finished

    written = Counter(s.inquiry_id for s in await snapshots(settings))
    assert set(written) == set(ids)
    assert set(written.values()) == {1}  # each exactly once across the interrupt
    gets = [s for s in persona_api.seen if "/inquiries/" in s.path]
    reads = Counter(s.path for s in gets)
    assert set(reads) == {f"/api/v1/inquiries/{i}" for i in ids}
    # only the chunk abandoned at the interrupt (read, never written) was read again
    assert sum(reads.values()) - len(ids) <= 16
    for times in (calls, resumed_calls):  # as in the client's own rate test: arrivals only ever stretch
        assert times[-1] - times[0] >= (len(times) / limit - 1) * window * 0.95
    assert all(s.reason == "backfill" for s in await snapshots(settings))


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "persona_stream.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


def cli_env(kafka_bootstrap: str, prefix: str, api: PersonaStandIn, tmp_path: Path, key: bool = True) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("PERSONA_STREAM_")}
    env.update(
        {
            "PERSONA_STREAM_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "PERSONA_STREAM_TOPIC_PREFIX": prefix,
            "PERSONA_STREAM_PARTITIONS": "3",
            "PERSONA_STREAM_PERSONA_API_URL": api.url,
            "PERSONA_STREAM_CACHE_DIR": str(tmp_path / "cache"),
        }
    )
    if key:
        env["PERSONA_STREAM_PERSONA_API_KEY"] = KEY
    return env


async def test_the_reconcile_command(
    kafka_bootstrap: str, unique: str, tmp_path: Path, persona_api: PersonaStandIn
) -> None:
    ids = [f"inq_command{n:03d}" for n in range(25)]
    persona_api.inquiries.update({i: inquiry(i, "completed") for i in ids})
    env = cli_env(kafka_bootstrap, unique, persona_api, tmp_path)
    await create_topics(kafka_bootstrap, TopicPlan.from_settings(Settings(topic_prefix=unique, partitions=3)).all())

    # on demand: one known, one unknown (a stable code, exit 1)
    done = await asyncio.to_thread(cli, env, "reconcile", "--inquiry", ids[0], "inq_unknown")
    assert done.returncode == 1, done.stderr
    assert f"{ids[0]}  completed" in done.stdout
    assert "inq_unknown  failed [persona-api-not-found]" in done.stdout

    # a backfill with a progress bar and a checkpoint; run again, it is already done and calls nothing
    checkpoint = tmp_path / "backfill.json"
    args = ("reconcile", "--since", "2026-11-01", "--checkpoint", str(checkpoint))
    done = await asyncio.to_thread(cli, env, *args)
    assert done.returncode == 0, done.stderr
    assert "reconciled 25 inquiries (0 failed)" in done.stdout
    assert "reconcile [" in done.stderr
    calls = len(persona_api.seen)
    again = await asyncio.to_thread(cli, env, *args)
    assert again.returncode == 0, again.stderr
    assert len(persona_api.seen) == calls
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=unique, partitions=3)
    written = Counter(s.inquiry_id for s in await snapshots(settings))
    assert written == Counter({ids[0]: 2, **{i: 1 for i in ids[1:]}})  # the on-demand read, then the backfill's
    for result in (done, again):
        assert KEY not in result.stdout + result.stderr
    lists = [seen.query for seen in persona_api.seen if seen.path == "/api/v1/inquiries"]
    assert lists[0]["filter[created-at-start]"] == "2026-11-01T00:00:00+00:00"
    assert "filter[inquiry-template-id]" not in lists[0]

    # --template filters the list (by default, a checkpoint of its own)
    templated = await asyncio.to_thread(cli, env, "reconcile", "--since", "2026-11-01", "--template", "itmpl_9")
    assert templated.returncode == 0, templated.stderr
    lists = [seen.query for seen in persona_api.seen if seen.path == "/api/v1/inquiries"]
    assert lists[-1]["filter[inquiry-template-id]"] == "itmpl_9"
    assert list((tmp_path / "cache").glob("reconcile-*-itmpl_9.json"))

    # refusals, each with its stable code
    other = await asyncio.to_thread(cli, env, "reconcile", "--since", "2026-10-01", "--checkpoint", str(checkpoint))
    assert other.returncode == 2
    assert "[reconcile-checkpoint-mismatch]" in other.stderr
    neither = await asyncio.to_thread(cli, env, "reconcile")
    assert neither.returncode == 2
    assert "[reconcile-usage]" in neither.stderr
    both = await asyncio.to_thread(cli, env, "reconcile", "--inquiry", ids[0], "--since", "2026-11-01")
    assert both.returncode == 2
    assert "[reconcile-usage]" in both.stderr
    for command in (["reconcile", "--inquiry", ids[0]], ["reconciler"]):
        keyless = await asyncio.to_thread(
            cli, cli_env(kafka_bootstrap, unique, persona_api, tmp_path, key=False), *command
        )
        assert keyless.returncode == 2
        assert "[persona-api-key-missing]" in keyless.stderr
    bad_date = await asyncio.to_thread(cli, env, "reconcile", "--since", "yesterday")
    assert bad_date.returncode == 2
    assert "not a date" in bad_date.stderr


async def test_ctrl_c_interrupts_a_backfill_waiting_for_the_rate_and_the_same_command_resumes(
    kafka_bootstrap: str, unique: str, tmp_path: Path, persona_api: PersonaStandIn
) -> None:
    ids = [f"inq_interrupt{n:03d}" for n in range(25)]
    persona_api.inquiries.update({i: inquiry(i, "completed") for i in ids})
    env = cli_env(kafka_bootstrap, unique, persona_api, tmp_path)
    env["PERSONA_STREAM_PERSONA_API_RATE_PER_MINUTE"] = "10"  # 10 calls, then a wait of a minute
    await create_topics(kafka_bootstrap, TopicPlan.from_settings(Settings(topic_prefix=unique, partitions=3)).all())
    checkpoint = tmp_path / "backfill.json"
    command = [sys.executable, "-m", "persona_stream.cli", "reconcile", "--since", "2026-11-01"]
    command += ["--checkpoint", str(checkpoint)]
    process = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        await wait_for(lambda: len(persona_api.seen) >= 10, timeout=60)
        await wait_for(lambda: checkpoint.exists() and json.loads(checkpoint.read_text())["total"] >= 8, timeout=30)
        process.send_signal(signal.SIGINT)  # Ctrl-C, while it waits for the rate
        async with asyncio.timeout(20):
            stdout, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    out, err = stdout.decode(), stderr.decode()
    assert process.returncode == 130, err
    assert "interrupted after" in out
    assert len(persona_api.seen) == 10  # never over the rate
    state = json.loads(checkpoint.read_text())
    assert not state["finished"]

    env["PERSONA_STREAM_PERSONA_API_RATE_PER_MINUTE"] = "240"
    resumed = await asyncio.to_thread(cli, env, *command[3:])
    assert resumed.returncode == 0, resumed.stderr
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=unique, partitions=3)
    written = Counter(s.inquiry_id for s in await snapshots(settings))
    assert written == Counter(dict.fromkeys(ids, 1))  # each exactly once across the interrupt
