"""JSON Schema of every public model, written to ``docs/schemas/`` (``persona-stream schemas export``).

The files are generated, never edited: a test fails when they differ from what this module
produces, so the documentation cannot drift from the code. They are JSON Schema draft 2020-12
(``$schema`` says so), and the integration tests validate what the system really sends and
receives against them (``tests/contract.py``), so they cannot drift from the wire either.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, JsonSchemaValue
from pydantic_core import CoreSchema

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
    "inquiry-view": views.ViewDocument,
    "server-frame": frames.ServerFrame,
}
"""Documents persona-stream emits: their schema says what a consumer will read."""


class ContractSchema(GenerateJsonSchema):
    """pydantic's JSON Schema, with every discriminator property required.

    A tagged union's tag (``type`` of a frame, ``kind`` of a callback or record) has a default in
    its model, so pydantic marks it optional; yet a document without it is refused (no branch can
    be chosen) and every document persona-stream writes carries it. The schema says so.
    """

    def generate(self, schema: CoreSchema, mode: JsonSchemaMode = "validation") -> JsonSchemaValue:
        document = super().generate(schema, mode)
        _require_tags(document, document.get("$defs", {}))
        return document


def _require_tags(node: Any, definitions: dict[str, Any]) -> None:
    if isinstance(node, list):
        for item in node:
            _require_tags(item, definitions)
        return
    if not isinstance(node, dict):
        return
    discriminator = node.get("discriminator")
    if isinstance(discriminator, dict):
        tag = discriminator["propertyName"]
        for branch in node.get("oneOf", []):
            target = definitions.get(branch.get("$ref", "").rsplit("/", 1)[-1], branch)
            if tag in target.get("properties", {}) and tag not in target.setdefault("required", []):
                target["required"].insert(0, tag)
    for value in node.values():
        _require_tags(value, definitions)


def json_schema(target: Any, mode: JsonSchemaMode, ref_template: str = "#/$defs/{model}") -> dict[str, Any]:
    """The JSON Schema of a model or annotated union, as published (wire names, tags required)."""
    return TypeAdapter(target).json_schema(
        by_alias=True, mode=mode, ref_template=ref_template, schema_generator=ContractSchema
    )


def render(target: Any, mode: JsonSchemaMode) -> str:
    schema = {"$schema": GenerateJsonSchema.schema_dialect, **json_schema(target, mode)}
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
