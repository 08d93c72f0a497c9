"""JSON Schema of every public model, written to ``docs/schemas/`` (``persona-stream schemas export``).

The files are generated, never edited: a test fails when they differ from what this module
produces, so the documentation cannot drift from the code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter
from pydantic.json_schema import JsonSchemaMode

from schemas import callbacks, frames, records, views, webhooks

INPUTS: dict[str, Any] = {
    "callback": callbacks.Callback,
    "webhook-event": webhooks.WebhookEvent,
    "client-frame": frames.ClientFrame,
}
"""Documents persona-stream accepts: their schema says what is valid to send."""

OUTPUTS: dict[str, Any] = {
    "client-event": records.ClientEvent,
    "status-record": records.StatusRecord,
    "api-snapshot": records.ApiSnapshot,
    "analytics-record": records.AnalyticsRecord,
    "dead-letter": records.DeadLetter,
    "inquiry-view": views.InquiryView,
    "server-frame": frames.ServerFrame,
}
"""Documents persona-stream emits: their schema says what a consumer will read."""


def render(target: Any, mode: JsonSchemaMode) -> str:
    schema = TypeAdapter(target).json_schema(by_alias=True, mode=mode)
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def rendered() -> dict[str, str]:
    documents = {f"{stem}.schema.json": render(target, "validation") for stem, target in INPUTS.items()}
    documents.update({f"{stem}.schema.json": render(target, "serialization") for stem, target in OUTPUTS.items()})
    return documents


def export(directory: Path) -> list[Path]:
    """Write every schema file; remove files of models that no longer exist."""
    directory.mkdir(parents=True, exist_ok=True)
    wanted = rendered()
    for stale in directory.glob("*.schema.json"):
        if stale.name not in wanted:
            stale.unlink()
    written = []
    for name, text in wanted.items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written


def stale_files(directory: Path) -> list[str]:
    """Names of schema files that are missing, outdated or no longer generated."""
    wanted = rendered()
    present = {path.name: path.read_text() for path in directory.glob("*.schema.json")}
    stale = [name for name, text in wanted.items() if present.get(name) != text]
    return sorted(stale + [name for name in present if name not in wanted])
