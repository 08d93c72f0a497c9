"""Every benchmark scenario still runs (tiny sizes, nothing timed): `persona-stream bench --smoke`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.runner import SCENARIOS

pytestmark = pytest.mark.integration


def test_every_scenario_runs_prints_its_table_and_writes_its_json(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("PERSONA_STREAM_")}
    env["PERSONA_STREAM_KAFKA_BOOTSTRAP_SERVERS"] = kafka_bootstrap
    command = [sys.executable, "-m", "persona_stream.cli", "bench", "--smoke", "--out", str(tmp_path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in SCENARIOS:
        result = json.loads((tmp_path / f"{name}.json").read_text())
        assert result["scenario"] == name
        assert result["figures"], name
        assert result["targets"], name
        assert name in done.stdout
    ratios = {name: json.loads((tmp_path / f"{name}.json").read_text())["figures"] for name in ("ingest", "processing")}
    assert all("ratio to raw" in figures for figures in ratios.values())
