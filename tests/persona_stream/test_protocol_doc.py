"""The generated code tables of docs/protocol.md: rewritten between their markers, prose kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from persona_stream import protocol_doc
from schemas.code_docs import Table
from schemas.codes import Code

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def test_a_stale_table_is_detected_and_rewritten_without_touching_the_prose(tmp_path: Path) -> None:
    path = tmp_path / "protocol.md"
    current = DOC.read_text()
    stale = current.replace("| `seq-missing` | a callback frame without `seq` | no |\n", "").replace(
        "## Ports", "## Ports, edited by hand"
    )
    path.write_text(stale)
    assert not protocol_doc.is_current(path)
    assert protocol_doc.update(path)
    assert path.read_text() == current.replace("## Ports", "## Ports, edited by hand")
    assert protocol_doc.is_current(path)
    assert not protocol_doc.update(path)


def test_a_table_without_its_markers_is_refused() -> None:
    start, _end = protocol_doc.markers(Table.CLOSE)
    with pytest.raises(ValueError, match="close"):
        protocol_doc.render(DOC.read_text().replace(start, ""))


def test_rows_that_read_alike_are_one_row() -> None:
    close = protocol_doc.table_text(Table.CLOSE)
    assert "| 1008 | `token-invalid` / `token-expired` / `token-scope` |" in close
    assert f"| 4001 | `{Code.TOKEN_EXPIRED}` |" in close
    frames = protocol_doc.table_text(Table.CLIENT_FRAME)
    assert f"| `{Code.RATE_LIMITED}` | " in frames
    assert frames.rstrip().endswith("| yes |")
