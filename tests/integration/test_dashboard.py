"""The dashboard's trend charts in headless Chromium, against a running pipeline with simulated
traffic: every chart draws points, live data does not move the page, hovering shows values.

The screenshot is a test artifact: ``dashboard.png`` in the test's pytest temporary directory
(``/tmp/pytest-of-<user>/pytest-<n>/test_the_trend_charts_draw_the_simulated_windows0/``; pytest keeps
the last three runs), and its path is printed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from core.tokens import TokenAuthority
from persona_stream.simulator import Report, SimulationConfig, Simulator
from tests.integration.conftest import WEBHOOK_SECRET, gateway_settings, started_gateway
from tests.integration.workers import Worker, worker_env
from tests.nodejs import run_node

pytestmark = [pytest.mark.integration, pytest.mark.browser]

WINDOW_SECONDS = 3  # short windows, so that a short simulation spans several
CHARTS = {"funnel": 3, "decisions": 3, "disagreements": 3, "latency": 2}  # chart -> windows it must draw


async def test_the_trend_charts_draw_the_simulated_windows(
    kafka_bootstrap: str, unique: str, tmp_path: Path, tokens: TokenAuthority
) -> None:
    env = worker_env(kafka_bootstrap, unique, ANALYTICS_WINDOW_SECONDS=WINDOW_SECONDS, ANALYTICS_GRACE_SECONDS=1)
    worker = Worker(env, tmp_path).start()
    gateway = await started_gateway(
        gateway_settings(kafka_bootstrap, unique, worker_url=f"http://127.0.0.1:{worker.port}")
    )
    try:
        config = SimulationConfig(
            ws_url=f"ws://127.0.0.1:{gateway.ws_port}",
            http_url=f"http://127.0.0.1:{gateway.http_port}",
            tokens=tokens,
            webhook_secret=WEBHOOK_SECRET.encode(),
            inquiries=300,
            rate=20,
            chaos=True,  # disagreements too
            seed=16,
            timeout=120,
            progress=None,
        )
        simulation = asyncio.create_task(Simulator(config).run())
        dashboard = f"http://127.0.0.1:{gateway.http_port}/dashboard#token={tokens.mint('ops', 'analytics', 600)}"
        screenshot = tmp_path / "dashboard.png"
        # the page is open while the traffic runs: the charts fill, then must stay put as data keeps coming
        code, output = await asyncio.to_thread(
            run_node,
            "dashboard.mjs",
            "--url", dashboard,
            "--expect", orjson.dumps({"funnel.loaded": 1}).decode(),
            "--charts", orjson.dumps(CHARTS).decode(),
            "--live-updates", "3",
            "--screenshot", str(screenshot),
            "--timeout", "120",
            timeout=200,
        )  # fmt: skip
        report: Report = await simulation
    finally:
        await gateway.stop()
        worker.stop()
    print(f"dashboard screenshot: {screenshot}")
    assert code == 0, output
    assert isinstance(output, dict)
    assert report.ok, report.summary()
    for name, windows in CHARTS.items():
        chart = output["charts"][name]
        assert (chart["windows"] >= windows, chart["points"] >= 1) == (True, True), (name, chart)
        assert output["hover"][name][0] != "–", (name, output["hover"][name])  # the window's time, then values
    assert output["moved"] is None
    assert output["live_updates"] >= 3
    assert screenshot.stat().st_size > 10_000
