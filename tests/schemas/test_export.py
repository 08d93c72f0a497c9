from __future__ import annotations

from pathlib import Path

from schemas.export import export, stale_files

DOCS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


def test_the_committed_schema_files_are_current() -> None:
    assert stale_files(DOCS) == [], "run: persona-stream schemas export"


def test_export_then_check_is_clean_and_detects_edits(tmp_path: Path) -> None:
    export(tmp_path)
    assert stale_files(tmp_path) == []
    (tmp_path / "callback.schema.json").write_text("{}\n")
    (tmp_path / "gone.schema.json").write_text("{}\n")
    assert stale_files(tmp_path) == ["callback.schema.json", "gone.schema.json"]
