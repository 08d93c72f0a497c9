"""The documentation tells the truth about the code: every stable code is documented."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = (ROOT / "docs" / "protocol.md").read_text()


def test_the_code_tables_of_the_protocol_document_are_current() -> None:
    from persona_stream import protocol_doc

    assert protocol_doc.is_current(ROOT / "docs" / "protocol.md"), "run: persona-stream schemas export"


def test_every_code_is_in_a_generated_table_of_the_protocol_document() -> None:
    from persona_stream.protocol_doc import markers
    from schemas.code_docs import USES, Table
    from schemas.codes import Code

    tables = ""
    for table in Table:
        start, end = markers(table)
        tables += PROTOCOL.split(start, 1)[1].split(end, 1)[0]
    missing = sorted(code for code in Code if f"`{code}`" not in tables)
    assert missing == [], f"give these codes a Use: {missing}"
    for code in Code:
        assert USES[code], f"{code} is in no table"


def test_every_frame_type_is_in_the_protocol_document() -> None:
    from typing import get_args

    from schemas import frames

    for union in (frames.ClientFrame, frames.ServerFrame):
        for model in get_args(get_args(union)[0]):
            name = model.model_fields["type"].default
            assert f'"type": "{name}"' in PROTOCOL, f"document the {name!r} frame in docs/protocol.md"


def test_the_status_record_and_its_semantics_are_in_the_protocol_document() -> None:
    from schemas.records import RECORD_FIELDS, StatusRecord, Trigger

    section = PROTOCOL.split("### Status records", 1)[1].split("\n## ", 1)[0]
    for name in [*StatusRecord.model_fields, *Trigger.model_fields]:
        assert f'"{name}"' in section or f"`{name}`" in section, f"document {name!r} under Status records"
    for name in RECORD_FIELDS:
        assert f"`{name.removeprefix('flags.')}`" in section or "any flag" in section
    for note in ("name-status-mismatch", "unexpected-transition"):
        assert f"`{note}`" in section


def test_the_token_expiry_close_is_in_the_protocol_document() -> None:
    from gateway.client_ws import TOKEN_EXPIRED

    assert f"| {TOKEN_EXPIRED} | `token-expired` |" in PROTOCOL


def test_every_ready_limit_is_documented_with_its_type() -> None:
    from schemas.frames import AnalyticsLimits, ClientLimits, SubscribeLimits

    rows = {
        row.split("|")[2].strip(): row.split("|")[3].strip()
        for row in PROTOCOL.splitlines()
        if row.lstrip().startswith("| `/v1/")
    }
    for model in (ClientLimits, SubscribeLimits, AnalyticsLimits):
        for name, field in model.model_fields.items():
            documented = rows.get(f"`{name}`", "")
            assert documented.startswith("number" if field.annotation is float else "integer"), (name, documented)
