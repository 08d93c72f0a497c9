"""The published contract, checked on the wire: every document the tests see against docs/schemas/.

The shared helpers call these checks -- :class:`tests.wsclient.Client` on every frame it sends and
receives, :func:`tests.kafkautil.consume` on every record of a persona-stream topic, the view
fetchers on every view -- so each integration test also proves that the JSON Schemas a client in
another language would build from say exactly what the system sends.

The validation is strict:

* JSON Schema draft 2020-12, and each schema file is itself checked against the meta-schema;
* an object schema that lists its properties and says nothing of others is read as closed
  (``additionalProperties: false``): a field the wire carries and the schema does not describe
  fails, as a client's generated types would. Schemas that allow extras say so explicitly;
* ``date-time`` strings must be RFC 3339 date-times with an offset (jsonschema checks no format
  unless told to).
"""

from __future__ import annotations

import copy
import json
import re
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import orjson
from jsonschema import Draft202012Validator, FormatChecker

SCHEMAS = Path(__file__).resolve().parents[1] / "docs" / "schemas"

TOPIC_SCHEMAS = {
    "client-events": "client-event",
    "webhooks": "webhook-event",
    "inquiry-status": "status-record",
    "analytics": "analytics-record",
    "dead-letters": "dead-letter",
}
"""The schema of each public topic, by the part of its name after the prefix (core/topics.py)."""

FORMATS = FormatChecker(formats=())
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True  # formats constrain strings only; "type" says what else is allowed
    if not _RFC3339.fullmatch(value):
        return False
    datetime.fromisoformat(value.upper().replace("Z", "+00:00"))  # a real date and time
    return True


class ContractError(AssertionError):
    """A document that its published schema does not describe."""


def closed(schema: Any) -> Any:
    """``schema`` with every object that lists properties and says nothing of others closed."""
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: closed(value) for key, value in schema.items()}
    if "properties" in result and "additionalProperties" not in result and "unevaluatedProperties" not in result:
        result["additionalProperties"] = False
    return result


def published(name: str) -> dict[str, Any]:
    """The schema file ``docs/schemas/<name>.schema.json``, checked against its meta-schema."""
    schema: dict[str, Any] = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return schema


@cache
def validator(name: str, *, internal_view: bool = False) -> Draft202012Validator:
    schema = published(name)
    if internal_view:
        # a worker's /v1/views answer: the published view before the gateway adds its provenance
        schema = copy.deepcopy(schema)
        schema["required"] = [field for field in schema.get("required", []) if field != "provenance"]
        del schema["properties"]["provenance"]
    return Draft202012Validator(closed(schema), format_checker=FORMATS)


def check(name: str, document: object, *, internal_view: bool = False) -> None:
    """Raise :class:`ContractError` naming every place where ``document`` leaves schema ``name``."""
    errors = sorted(
        validator(name, internal_view=internal_view).iter_errors(document), key=lambda e: list(e.absolute_path)
    )
    if errors:
        lines = [f"  at /{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:10]]
        text = orjson.dumps(document).decode()
        raise ContractError(f"not a valid {name}.schema.json document:\n" + "\n".join(lines) + f"\n  in {text[:2000]}")


def check_server_frame(frame: object) -> None:
    check("server-frame", frame)


def check_client_frame(frame: object) -> None:
    check("client-frame", frame)


def check_view(view: object) -> None:
    """A view as ``GET /v1/inquiries/{id}`` answers it."""
    check("inquiry-view", view)


def check_worker_view(view: object) -> None:
    """A view as a worker's ``/v1/views/{id}`` answers it (the gateway adds ``provenance``)."""
    check("inquiry-view", view, internal_view=True)


def schema_of_topic(topic: str) -> str | None:
    """The schema of a persona-stream topic (``<prefix>.<name>``); None for any other topic."""
    _, _, name = topic.rpartition(".")
    return TOPIC_SCHEMAS.get(name) if "." in topic else None


def check_record(topic: str, value: bytes | None) -> None:
    """One Kafka record's value against the schema of its topic (topics of no schema pass)."""
    name = schema_of_topic(topic)
    if name is None or value is None:
        return
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ContractError(f"a record of {topic} is not JSON: {value[:200]!r}") from exc
    check(name, document)
