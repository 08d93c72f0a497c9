"""The code tables of ``docs/protocol.md``, generated from :class:`~schemas.errors.Code`.

Each table lives between two marker comments (``<!-- codes:<table>:start -->`` and
``<!-- codes:<table>:end -->``); everything around them is prose written by hand and left as it
is. A table's rows are the :class:`~schemas.errors.Use` entries of every code for that table,
ordered by status (HTTP status or close code), then as the enumeration declares them; consecutive
rows that read the same are one row naming every code ("`token-invalid` / `token-expired`").
``persona-stream schemas export`` rewrites the tables; ``--check`` (and a test) fails when one is
stale, so a code cannot be emitted without being documented.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from schemas.code_docs import USES, Table, Use
from schemas.codes import Code

DOCUMENT = Path("docs/protocol.md")


@dataclass(frozen=True)
class Layout:
    """A table's columns: each a heading and the field it shows (status, codes, text, note or retriable)."""

    columns: tuple[tuple[str, str], ...]


LAYOUTS: dict[Table, Layout] = {
    Table.HTTP_EDGE: Layout((("status", "status"), ("`code`", "codes"), ("when", "text"), ("client", "note"))),
    Table.REFRESH: Layout((("error code", "codes"), ("meaning", "text"))),
    Table.HANDSHAKE: Layout((("status", "status"), ("body", "codes"), ("when", "text"))),
    Table.CLOSE: Layout((("code", "status"), ("reason", "codes"), ("when", "text"), ("what a client does", "note"))),
    Table.CLIENT_FRAME: Layout((("code", "codes"), ("meaning", "text"), ("retriable", "retriable"))),
    Table.SUBSCRIBE_FRAME: Layout((("error code (with the request `id`)", "codes"), ("meaning", "text"))),
    Table.INQUIRY_VIEW: Layout((("status", "status"), ("`code`", "codes"), ("when", "text"))),
    Table.WORKER_VIEW: Layout((("status", "status"), ("`code`", "codes"), ("when", "text"))),
    Table.WEBHOOK: Layout((("status", "status"), ("`code`", "codes"), ("when", "text"), ("Persona", "note"))),
    Table.DEAD_LETTER: Layout((("reason", "codes"), ("written by", "note"), ("what", "text"))),
    Table.DECODING: Layout((("code", "codes"), ("what", "text"))),
    Table.DEAD_LETTER_COMMAND: Layout((("code", "codes"), ("what", "text"))),
    Table.RECONCILE_COMMAND: Layout((("code", "codes"), ("what", "text"))),
    Table.STARTUP: Layout((("code", "codes"), ("who", "note"), ("what", "text"))),
    Table.PERSONA_API: Layout((("Code", "codes"), ("HTTP", "note"), ("Retriable", "retriable"), ("Meaning", "text"))),
    Table.LOCAL_KAFKA: Layout((("code", "codes"), ("what", "text"))),
}


def markers(table: Table) -> tuple[str, str]:
    """The comments that enclose ``table`` in the document."""
    return f"<!-- codes:{table}:start -->", f"<!-- codes:{table}:end -->"


@dataclass
class _Row:
    codes: list[Code]
    use: Use

    def reads_like(self, code: Code, use: Use) -> bool:
        first = self.codes[0]
        return (use.status, use.text, use.note, code.retriable) == (
            self.use.status,
            self.use.text,
            self.use.note,
            first.retriable,
        )

    def cell(self, field: str) -> str:
        match field:
            case "status":
                text = "" if self.use.status is None else str(self.use.status)
            case "codes":
                text = " / ".join(f"`{code}`" for code in self.codes)
            case "text":
                text = self.use.text
            case "note":
                text = self.use.note
            case "retriable":
                text = "yes" if self.codes[0].retriable else "no"
            case _:
                raise ValueError(f"no column {field!r}")
        return text.replace("|", "\\|")


def rows(table: Table) -> list[_Row]:
    """The rows of ``table``: by status, then in declaration order; rows that read alike merged."""
    uses = [(code, use) for code in Code for use in USES[code] if use.table == table]
    uses.sort(key=lambda pair: pair[1].status or 0)
    merged: list[_Row] = []
    for code, use in uses:
        if merged and merged[-1].reads_like(code, use):
            merged[-1].codes.append(code)
        else:
            merged.append(_Row([code], use))
    return merged


def table_text(table: Table) -> str:
    """One table in Markdown."""
    columns = LAYOUTS[table].columns
    lines = ["| " + " | ".join(heading for heading, _ in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows(table):
        lines.append("| " + " | ".join(row.cell(field) for _, field in columns) + " |")
    return "\n".join(lines)


def render(document: str) -> str:
    """``document`` with every code table rewritten between its markers.

    Raises:
        ValueError: a table's markers are missing (every table must have a place in the document).
    """
    for table in Table:
        start, end = markers(table)
        before, found, rest = document.partition(start)
        _, found_end, after = rest.partition(end)
        if not found or not found_end:
            raise ValueError(f"{DOCUMENT} has no {start} ... {end} for the {table} codes")
        document = f"{before}{start}\n{table_text(table)}\n{end}{after}"
    return document


def update(path: Path = DOCUMENT) -> bool:
    """Rewrite the code tables of ``path``; True if it changed."""
    text = path.read_text()
    updated = render(text)
    if updated == text:
        return False
    path.write_text(updated)
    return True


def is_current(path: Path = DOCUMENT) -> bool:
    """Whether every code table of ``path`` is what the enumeration says."""
    text = path.read_text()
    return render(text) == text
