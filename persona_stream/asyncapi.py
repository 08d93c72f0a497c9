"""``docs/asyncapi.yaml``: every Kafka topic and websocket channel, generated from the code.

The topic names, keys and partitioning come from :class:`~core.topics.TopicPlan`; every
message payload is the JSON Schema of the pydantic model that crosses that wire. The document is
AsyncAPI 3.0, written from persona-stream's side: it *sends* what it writes and *receives* what it
reads. A test regenerates it and fails when the committed file is stale; CI validates it with the
AsyncAPI parser (``tests/browser/validate-asyncapi.mjs``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from core.settings import Settings
from core.topics import TopicPlan, TopicSpec
from schemas import callbacks, frames, records, webhooks
from schemas.export import json_schema

REF = "#/components/schemas/{model}"


class _Components:
    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}
        self.messages: dict[str, Any] = {}

    def message(self, name: str, target: Any, summary: str, mode: str = "serialization") -> dict[str, str]:
        schema = _asyncapi_schema(json_schema(target, mode, REF))  # type: ignore[arg-type]
        self.schemas.update(schema.pop("$defs", {}))
        self.messages[name] = {"name": name, "summary": summary, "contentType": "application/json", "payload": schema}
        return {"$ref": f"#/components/messages/{name}"}


def _asyncapi_schema(node: Any) -> Any:
    """pydantic writes OpenAPI's discriminator object; an AsyncAPI schema takes the property name."""
    if isinstance(node, dict):
        return {
            key: value["propertyName"]
            if key == "discriminator" and isinstance(value, dict)
            else _asyncapi_schema(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_asyncapi_schema(item) for item in node]
    return node


def _kafka(spec: TopicSpec, description: str, message: dict[str, str], name: str) -> dict[str, Any]:
    return {
        "address": spec.name,
        "description": f"{description} Key: {spec.key}. Partitions: {spec.partitions}.",
        "servers": [{"$ref": "#/servers/kafka"}],
        "messages": {name: message},
        "bindings": {
            "kafka": {
                "topic": spec.name,
                "partitions": spec.partitions,
                "replicas": spec.replication_factor,
                "topicConfiguration": {
                    "cleanup.policy": [spec.config.get("cleanup.policy", "delete")],
                    **({"retention.ms": int(spec.config["retention.ms"])} if "retention.ms" in spec.config else {}),
                },
                "bindingVersion": "0.5.0",
            }
        },
    }


def document(settings: Settings) -> dict[str, Any]:
    """The AsyncAPI 3 document of the settings' topics and the gateway's websockets."""
    c = _Components()
    messages = _messages(c)
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "persona-stream",
            "version": "1.0.0",
            "description": "Persona's client callbacks and signed webhooks joined, per inquiry, into one trusted "
            "status. Generated from the code by `persona-stream schemas export`; the prose is docs/protocol.md.",
        },
        "servers": {
            "kafka": {"host": settings.bootstrap_servers(), "protocol": "kafka", "description": "The Kafka cluster."},
            "gateway-ws": {
                "host": f"{settings.host}:{settings.ws_port}",
                "protocol": "ws",
                "description": "The gateway's websocket port.",
            },
        },
        "channels": _channels(TopicPlan.from_settings(settings), messages),
        "operations": _operations(),
        "components": {"schemas": dict(sorted(c.schemas.items())), "messages": c.messages},
    }


def _messages(c: _Components) -> dict[str, dict[str, Any]]:
    """Every message, registered with its schema in the components; the references by short name."""
    m: dict[str, dict[str, Any]] = {}
    m["client_event"] = c.message(
        "ClientEvent", records.ClientEvent, "A browser callback stamped by the gateway, or a session link."
    )
    m["webhook"] = c.message(
        "WebhookEvent",
        webhooks.WebhookEvent,
        "A Persona webhook body, byte for byte as Persona signed it.",
        "validation",
    )
    m["status"] = c.message(
        "StatusRecord", records.StatusRecord, "One change of an inquiry's status record: its trusted status or a flag."
    )
    m["api_snapshot"] = c.message(
        "ApiSnapshot", records.ApiSnapshot, "An inquiry as Persona's REST API answered it: a trusted input."
    )
    m["analytics"] = c.message(
        "AnalyticsRecord", records.AnalyticsRecord, "Funnel counts of one template over one window."
    )
    m["dead"] = c.message("DeadLetter", records.DeadLetter, "A record that could not be processed, and why.")
    m["client_frame"] = c.message("ClientFrame", frames.ClientFrame, "A frame a client sends.", "validation")
    m["server_frame"] = c.message("ServerFrame", frames.ServerFrame, "A frame the gateway sends.")
    c.message("Callback", callbacks.Callback, "One SDK callback (inside a callback frame).", "validation")

    return m


def _channels(plan: TopicPlan, m: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The Kafka topics and the websocket paths, each with its messages."""
    return {
        "clientEvents": _kafka(
            plan.client_events, "Client callbacks, as the gateway wrote them.", m["client_event"], "ClientEvent"
        ),
        "webhooks": _kafka(
            plan.webhooks,
            "Verified Persona webhooks; delivery headers kept as Kafka headers.",
            m["webhook"],
            "WebhookEvent",
        ),
        "apiSnapshots": _kafka(
            plan.api_snapshots,
            "Reads of Persona's API (reconciliation), ordered against webhooks by when they were observed.",
            m["api_snapshot"],
            "ApiSnapshot",
        ),
        "inquiryStatus": _kafka(
            plan.inquiry_status,
            "Trusted status changes; read it with isolation.level=read_committed.",
            m["status"],
            "StatusRecord",
        ),
        "analytics": _kafka(
            plan.analytics,
            "The analytics feed: partial records while a window is open, then a final one.",
            m["analytics"],
            "AnalyticsRecord",
        ),
        "deadLetters": _kafka(
            plan.dead_letters, "What could not be processed, with the reason.", m["dead"], "DeadLetter"
        ),
        "ingest": {
            "address": "/v1/client",
            "description": "Browser callbacks in, acknowledgements out (scope ingest). See docs/protocol.md.",
            **_websocket(m),
        },
        "subscribe": {
            "address": "/v1/subscribe",
            "description": "Trusted status updates (scopes subscribe, firehose): snapshot, then live, resumable.",
            **_websocket(m),
        },
        "analyticsStream": {
            "address": "/v1/analytics",
            "description": "The analytics feed over a websocket (scope analytics).",
            **_websocket(m),
        },
    }


def _websocket(m: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A websocket path's server and messages (new objects each time: YAML would tie shared ones by anchors)."""
    return {
        "servers": [{"$ref": "#/servers/gateway-ws"}],
        "messages": {"ClientFrame": m["client_frame"], "ServerFrame": m["server_frame"]},
    }


def _op(action: str, channel: str, messages: list[str], summary: str) -> dict[str, Any]:
    return {
        "action": action,
        "summary": summary,
        "channel": {"$ref": f"#/channels/{channel}"},
        "messages": [{"$ref": f"#/channels/{channel}/messages/{m}"} for m in messages],
    }


def _operations() -> dict[str, Any]:
    """Who sends and who receives on each channel."""
    return {
        "writeClientEvents": _op("send", "clientEvents", ["ClientEvent"], "The gateway writes each accepted callback."),
        "writeWebhooks": _op("send", "webhooks", ["WebhookEvent"], "The gateway writes each verified webhook."),
        "writeApiSnapshots": _op(
            "send", "apiSnapshots", ["ApiSnapshot"], "The reconciler writes each read of Persona's API."
        ),
        "publishStatus": _op(
            "send",
            "inquiryStatus",
            ["StatusRecord"],
            "Workers publish each change (trusted status or flag), once, in order.",
        ),
        "publishAnalytics": _op("send", "analytics", ["AnalyticsRecord"], "Workers publish analytics windows."),
        "writeDeadLetters": _op(
            "send", "deadLetters", ["DeadLetter"], "Gateway and workers set aside what they cannot process."
        ),
        "receiveCallbacks": _op("receive", "ingest", ["ClientFrame"], "Browsers send auth and callback frames."),
        "answerCallbacks": _op("send", "ingest", ["ServerFrame"], "The gateway answers ready, ack and error frames."),
        "receiveSubscriptions": _op(
            "receive", "subscribe", ["ClientFrame"], "Clients send auth, subscribe, unsubscribe."
        ),
        "sendStatusUpdates": _op(
            "send", "subscribe", ["ServerFrame"], "The gateway sends subscribed and update frames."
        ),
        "receiveAnalyticsAuth": _op("receive", "analyticsStream", ["ClientFrame"], "Dashboards send their auth frame."),
        "sendAnalytics": _op("send", "analyticsStream", ["ServerFrame"], "The gateway streams analytics records."),
    }


def render(settings: Settings) -> str:
    header = "# Generated by `persona-stream schemas export` from the code: do not edit by hand.\n"
    return header + yaml.safe_dump(document(settings), sort_keys=False, width=100, allow_unicode=True)


def write(path: Path, settings: Settings) -> bool:
    """Write the document; True if the file changed."""
    text = render(settings)
    if path.exists() and path.read_text() == text:
        return False
    path.write_text(text)
    return True
