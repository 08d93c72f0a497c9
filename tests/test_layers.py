"""The layers hold: ``lint-imports`` (what ``make lint`` runs) passes on the tree, and fails on a wrong import.

The contract is ``[tool.importlinter]`` in pyproject.toml: bench > persona_stream > gateway | processors >
core > schemas, each package importing only the ones below it, gateway and processors never each other.
The first test is the acceptance test of that picture; the second shows the check has teeth, on a copy of
the tree with one import that breaks it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("schemas", "core", "gateway", "processors", "persona_stream", "bench")

# `lint-imports` itself, run by the interpreter of the tests (the venv's, where the dev extra put it)
LINT_IMPORTS = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"]


def contract_names() -> list[str]:
    """The names of the contracts pyproject.toml declares: the report of a broken one names it."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [str(contract["name"]) for contract in config["tool"]["importlinter"]["contracts"]]


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the packages under ``tree``, with the contract of its pyproject.toml.

    ``tree`` is both the working directory and the head of PYTHONPATH, so the packages analysed are
    the ones in it (ahead of the editable install's); no cache is written.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(
        [*LINT_IMPORTS, "--no-cache", "--no-logo"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_tree_keeps_its_layers() -> None:
    """Acceptance: no package imports one above it, and gateway and processors never import each other."""
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 1 kept, 0 broken." in result.stdout


def test_an_import_against_the_layers_fails_the_check(tmp_path: Path) -> None:
    """A copy of the tree where the gateway imports the processors: lint-imports exits non-zero and
    names the broken contract and the offending import."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "static"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    wrong = tmp_path / "gateway" / "ingest.py"
    wrong.write_text(wrong.read_text() + "\nimport processors.correlation  # against the layers\n")

    result = lint_imports(tmp_path)

    assert result.returncode != 0, result.stdout
    [contract] = contract_names()
    assert f"{contract} BROKEN" in result.stdout
    assert "gateway.ingest -> processors.correlation" in result.stdout
