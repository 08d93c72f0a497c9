"""The configuration table of README.md, generated from :class:`~core.settings.Settings`."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr
from pydantic.fields import FieldInfo

from core.settings import Settings

START, END = "<!-- settings:start -->", "<!-- settings:end -->"


def _default(name: str, info: FieldInfo) -> str:
    if name == "cache_dir":
        return "`~/.cache/persona-stream`"
    value = info.get_default(call_default_factory=True)
    if value is None:
        return "—"
    if isinstance(value, list):
        return (
            "`" + ",".join(v.get_secret_value() if isinstance(v, SecretStr) else str(v) for v in value) + "`"
            if value
            else "—"
        )
    return f"`{value}`"


def table() -> str:
    lines = ["| variable | default | |", "|---|---|---|"]
    for name, info in Settings.model_fields.items():
        variable = f"`PERSONA_STREAM_{name.upper()}`"
        lines.append(f"| {variable} | {_default(name, info)} | {info.description or ''} |")
    return "\n".join(lines)


def update_readme(path: Path) -> bool:
    """Replace the table between the markers; True if README.md changed."""
    text = path.read_text()
    before, _, rest = text.partition(START)
    _, _, after = rest.partition(END)
    updated = f"{before}{START}\n{table()}\n{END}{after}"
    if updated == text:
        return False
    path.write_text(updated)
    return True


def readme_is_current(path: Path) -> bool:
    text = path.read_text()
    return f"{START}\n{table()}\n{END}" in text
