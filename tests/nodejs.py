"""Running the Node.js scripts of tests/browser/ (headless Chromium, the AsyncAPI parser)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

BROWSER = Path(__file__).parent / "browser"


def run_node(script: str, *args: str, timeout: float = 120) -> tuple[int, dict[str, Any] | str]:
    """Run one script; its last stdout line parsed as JSON when it is JSON."""
    node = shutil.which("node")
    assert node is not None, "Node.js is required (it runs the browser and AsyncAPI checks)"
    assert (BROWSER / "node_modules").is_dir(), "run `npm ci --prefix tests/browser` first (make test does)"
    done = subprocess.run([node, script, *args], cwd=BROWSER, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    last = lines[-1] if lines else done.stderr
    try:
        return done.returncode, json.loads(last)
    except (json.JSONDecodeError, TypeError):
        return done.returncode, done.stdout + done.stderr
