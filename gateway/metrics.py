"""Prometheus metrics of one gateway, on a registry of its own (several gateways can share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.frames_received = Counter(
            "persona_stream_frames_received", "Client frames received after authentication.", registry=self.registry
        )
        self.frames_acknowledged = Counter(
            "persona_stream_frames_acknowledged",
            "Client frames acknowledged as durable in Kafka.",
            registry=self.registry,
        )
        self.frames_deduplicated = Counter(
            "persona_stream_frames_deduplicated",
            "Resent frames this gateway had already written (acknowledged, not written again).",
            registry=self.registry,
        )
        self.frames_rejected = Counter(
            "persona_stream_frames_rejected", "Client frames refused, by code.", ["code"], registry=self.registry
        )
        self.connections_closed = Counter(
            "persona_stream_connections_closed", "Websocket connections closed by the gateway, by reason.",
            ["reason"], registry=self.registry,
        )  # fmt: skip
        self.http_connections_closed = Counter(
            "persona_stream_http_connections_closed",
            "HTTP connections closed or refused by the gateway's limits, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.webhooks = Counter(
            "persona_stream_webhooks", "Webhook requests, by outcome.", ["outcome"], registry=self.registry
        )
        self.webhook_responses = Counter(
            "persona_stream_webhook_responses",
            "Webhook responses, by HTTP status (5xx: Persona retries them).",
            ["status"],
            registry=self.registry,
        )
        self.ready = Gauge(
            "persona_stream_gateway_ready",
            "1 while /readyz answers 200: Kafka reachable and the status feed caught up.",
            registry=self.registry,
        )
        self.produce_latency = Histogram(
            "persona_stream_produce_latency_seconds",
            "Time from a produce request to Kafka's acknowledgement (acks=all).",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self.connections_opened = Counter(
            "persona_stream_connections_opened", "Websocket connections accepted, by endpoint.", ["endpoint"],
            registry=self.registry,
        )  # fmt: skip
        self.open_connections = Gauge(
            "persona_stream_open_connections", "Open websocket connections, by endpoint.", ["endpoint"],
            registry=self.registry,
        )  # fmt: skip

    def total(self, counter: Counter, **labels: str) -> int:
        """A labelled counter's sum over the label values matching ``labels``."""
        return int(
            sum(
                sample.value
                for metric in counter.collect()
                for sample in metric.samples
                if sample.name.endswith("_total") and all(sample.labels.get(k) == v for k, v in labels.items())
            )
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
