"""Every module of the packages stays small enough to read in one sitting: at most 400 lines."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("schemas", "core", "gateway", "processors", "persona_stream", "bench")
MAX_LINES = 400


def modules() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def test_the_packages_have_modules() -> None:
    assert len(modules()) > len(PACKAGES)


@pytest.mark.parametrize("path", modules(), ids=lambda path: str(path.relative_to(ROOT)))
def test_a_module_is_at_most_400_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines: split it (at most {MAX_LINES})"


def test_the_cli_does_not_import_bench() -> None:
    """``persona-stream bench`` arrives through its entry point; the shell never imports the package above it."""
    for path in (ROOT / "persona_stream").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "from bench" not in text, path
        assert "import bench" not in text, path
