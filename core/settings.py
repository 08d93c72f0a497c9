"""The one settings object.

Every entry point (the CLI commands, the test fixtures) builds :class:`Settings` once and passes it
down; nothing else in the project reads ``os.environ``. Each field is read from an environment
variable named ``PERSONA_STREAM_<FIELD>`` (for example ``PERSONA_STREAM_KAFKA_BOOTSTRAP_SERVERS``).
Secrets are :class:`~pydantic.SecretStr` so they never show up in a ``repr`` or a log line.

The configuration table in README.md is generated from this class
(``persona-stream settings table``): the field descriptions below are the documentation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "persona-stream"


class Settings(BaseSettings):
    """Configuration of every persona-stream process, from ``PERSONA_STREAM_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="PERSONA_STREAM_", frozen=True, extra="forbid")

    # --- Kafka -------------------------------------------------------------------------------
    kafka_bootstrap_servers: str | None = Field(
        default=None,
        description="Comma-separated `host:port` list of an existing Kafka cluster. "
        "Unset: use the embedded local Kafka that persona-stream starts itself.",
    )
    topic_prefix: str = Field(
        default="persona",
        pattern=r"^[A-Za-z0-9._-]{1,100}$",
        description="Prefix of every topic name (`<prefix>.client-events`, ...).",
    )
    partitions: int = Field(
        default=6,
        ge=1,
        le=1000,
        description="Partition count of the inquiry-keyed topics (client events, webhooks, status). "
        "It caps how many workers share the load; it cannot shrink later.",
    )
    replication_factor: int = Field(
        default=1,
        ge=1,
        le=7,
        description="Replication factor of created topics (use 3 on a production cluster). "
        "Unset with a local cluster of 3 brokers or more: 3.",
    )
    cache_dir: Path = Field(
        default_factory=_default_cache_dir,
        description="Where the embedded Kafka keeps its jars, data and logs (outside the repository).",
    )
    local_kafka_port: int = Field(default=19092, ge=1, le=65535, description="Client port of the embedded local Kafka.")
    local_kafka_controller_port: int = Field(
        default=19093, ge=1, le=65535, description="KRaft controller port of the embedded local Kafka."
    )
    local_kafka_brokers: int = Field(
        default=1,
        ge=1,
        le=9,
        description="Nodes of the embedded local Kafka: 1, or a cluster (3: replication factor 3, "
        "min.insync.replicas 2). Node i listens on the two ports above + 2i.",
    )

    # --- Secrets -----------------------------------------------------------------------------
    webhook_secrets: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Persona webhook secrets (`wbhsec_...`), comma-separated; several during rotation.",
    )
    webhook_tolerance_seconds: int = Field(
        default=300,
        ge=1,
        description="A webhook whose signature timestamp is further than this from now is refused.",
    )
    token_secret: SecretStr | None = Field(
        default=None,
        description="HS256 secret that signs ingest and subscription tokens (at least 32 bytes).",
    )

    # --- Gateway -----------------------------------------------------------------------------
    host: str = Field(default="127.0.0.1", description="Interface the gateway listens on (0.0.0.0 for all).")
    ws_port: int = Field(
        default=8765, ge=0, le=65535, description="Websocket port: /v1/client, /v1/subscribe, /v1/analytics."
    )
    http_port: int = Field(
        default=8080,
        ge=0,
        le=65535,
        description="HTTP port: webhooks, /v1/inquiries, /dashboard, /healthz, /readyz, /metrics.",
    )
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["*"],
        description="Origins browsers may open websockets from, comma-separated; `*` allows any "
        "(set it in production).",
    )
    max_frame_bytes: int = Field(default=65536, ge=256, description="Largest websocket message accepted (close 1009).")
    rate_per_second: float = Field(default=50.0, gt=0, description="Frames a second one connection may send.")
    rate_burst: int = Field(default=100, ge=1, description="Frames one connection may send at once after a pause.")
    max_connections: int = Field(default=10000, ge=1, description="Open websocket connections per gateway.")
    max_errors_per_connection: int = Field(
        default=50, ge=1, description="Rejected frames one connection may earn before it is closed (1008)."
    )
    max_sessions_per_connection: int = Field(default=8, ge=1, description="Client sessions one connection may carry.")
    max_inflight_frames: int = Field(
        default=256, ge=1, description="Frames of one connection being written at once; reading pauses beyond."
    )
    ping_interval_seconds: float = Field(default=20.0, gt=0, description="Websocket keepalive ping interval.")
    ping_timeout_seconds: float = Field(default=20.0, gt=0, description="A pong later than this closes (1011).")
    idle_timeout_seconds: float = Field(
        default=300.0, gt=0, description="An ingest connection silent for this long is closed."
    )
    auth_timeout_seconds: float = Field(default=10.0, gt=0, description="Time allowed for the first (auth) frame.")
    gateway_processes: int = Field(
        default=0,
        ge=0,
        le=256,
        description="Gateway processes sharing the two ports (SO_REUSEPORT), each serving its own connections; "
        "0: one per core. `persona-stream gateway --processes` overrides it.",
    )
    ws_compression: bool = Field(
        default=False, description="Offer permessage-deflate (costs CPU; callback frames are small)."
    )
    webhook_max_bytes: int = Field(default=1_048_576, ge=1024, description="Largest webhook body accepted (413).")
    http_max_connections: int = Field(
        default=2000,
        ge=1,
        description="Open HTTP connections per gateway. At the cap a new one replaces the oldest still waiting "
        "for its headers; if none is, it is refused (503 too-many-connections).",
    )
    http_header_timeout_seconds: float = Field(
        default=5.0, gt=0, description="A connection must have sent its request headers within this (else closed)."
    )
    http_body_timeout_seconds: float = Field(
        default=10.0, gt=0, description="A request body must be complete this long after its headers (else closed)."
    )
    http_keepalive_seconds: float = Field(
        default=15.0, gt=0, description="An idle HTTP keep-alive connection is closed after this."
    )
    produce_timeout_seconds: float = Field(
        default=4.0, gt=0, description="Longest wait for Kafka's acknowledgement before answering 503 / retry."
    )
    keep_field_values: bool = Field(
        default=False, description="Store onComplete field values (personal data); by default only names and types."
    )
    event_loop: Literal["asyncio", "uvloop"] = Field(
        default="uvloop", description="The gateway's event loop: uvloop (faster) or the standard asyncio loop."
    )
    dedupe_cache_size: int = Field(
        default=100_000, ge=0, description="Recently written frames and webhook ids the gateway remembers."
    )

    worker_url: str = Field(
        default="http://127.0.0.1:6066",
        description="Where the gateway asks for inquiry views: any worker (it routes to the owner).",
    )
    status_cache_size: int = Field(
        default=1_000_000, ge=1, description="Inquiries whose latest trusted status a gateway keeps in memory."
    )
    status_history: int = Field(
        default=8, ge=1, description="Recent status records kept per inquiry, to resume subscribers without a snapshot."
    )
    subscriber_queue_size: int = Field(
        default=1000, ge=1, description="Frames waiting for one subscriber; beyond, it is closed (1013 slow-consumer)."
    )
    max_subscriptions_per_connection: int = Field(
        default=100, ge=1, description="Subscriptions one /v1/subscribe connection may hold (close 1008)."
    )
    analytics_retention_hours: float = Field(
        default=24.0, gt=0, description="How far back a gateway reads analytics for /v1/analytics and the dashboard."
    )

    # --- Worker ------------------------------------------------------------------------------
    processing_guarantee: Literal["exactly_once", "at_least_once"] = Field(
        default="exactly_once",
        description="exactly_once: Kafka transactions (status consumers must read_committed); "
        "at_least_once: faster, status records may repeat after a crash (deduplicate on version).",
    )
    store: Literal["memory", "rocksdb"] = Field(
        default="rocksdb",
        description="Where a worker keeps inquiry views: RocksDB on local disk, committed state only "
        "(a restart replays only the changelog's tail), or memory (restored from the changelog on every start).",
    )
    store_memory_mb: int = Field(
        default=128, ge=16, description="Memory of a worker's RocksDB: memtables and block cache, all partitions."
    )
    restore_checkpoint_records: int = Field(
        default=250_000,
        ge=1_000,
        description="A bulk restore makes its progress durable every this many records (a restore cut off "
        "by a crash resumes there); each checkpoint flushes RocksDB's memtables and costs throughput.",
    )
    state_dir: Path | None = Field(
        default=None,
        description="A worker's local state (RocksDB); one per worker instance. "
        "Default: <cache_dir>/workers/<processors id>/<worker port>.",
    )
    worker_host: str = Field(default="127.0.0.1", description="Interface of the worker's internal view endpoint.")
    worker_advertised_host: str | None = Field(
        default=None,
        description="Host name other workers use to reach this one (request routing); default: worker_host.",
    )
    worker_port: int = Field(
        default=6066, ge=1, le=65535, description="Port of the worker's internal view endpoint (/v1/views/{id})."
    )
    worker_session_timeout_seconds: float = Field(
        default=10.0,
        ge=6.0,
        description="A worker silent for this long is presumed dead and its partitions move (failover time).",
    )
    commit_interval_seconds: float = Field(
        default=0.1, gt=0, description="How often a worker commits (ends its transactions): the latency floor."
    )
    worker_batch_size: int = Field(
        default=1000, ge=1, description="Most inputs a worker processes together, in one transaction per partition."
    )
    worker_batch_seconds: float = Field(
        default=0.02, gt=0, description="Longest a worker waits to fill a batch (added latency at low rates)."
    )
    tick_interval_seconds: float = Field(default=1.0, gt=0, description="How often timers run (flags, windows).")
    awaiting_confirmation_seconds: float = Field(
        default=120.0, gt=0, description="After onComplete, how long to wait for a trusted completion before flagging."
    )
    analytics_window_seconds: int = Field(default=60, ge=1, description="Length of an analytics window.")
    analytics_grace_seconds: int = Field(
        default=5, ge=0, description="How long after its end a window waits for late inputs before its final record."
    )
    view_cache_size: int = Field(
        default=10_000,
        ge=1,
        description="Decoded views a worker keeps in memory (about 23 KB each); the rest stay encoded in its store.",
    )
    persona_api_key: SecretStr | None = Field(
        default=None, description="Persona API key (Bearer) for reads of inquiries; a secret, never logged."
    )
    persona_api_url: str = Field(
        default="https://api.withpersona.com/api/v1", description="Base URL of Persona's REST API."
    )
    persona_api_version: str = Field(
        default="2025-12-08", description="Persona-Version header sent with every API call (pins the response format)."
    )
    persona_api_max_concurrency: int = Field(default=4, ge=1, description="API calls in flight at once.")
    persona_api_timeout_seconds: float = Field(default=10.0, gt=0, description="Timeout of one API call.")
    persona_api_max_retries: int = Field(
        default=5, ge=0, description="Retries of one API call after 429, 5xx, timeouts or connection errors."
    )
    persona_api_rate_per_minute: int = Field(
        default=240, ge=1, description="Client-side cap on API calls a minute (Persona allows 300 by default)."
    )
    reconcile_interval_seconds: float = Field(
        default=60.0,
        gt=0,
        description="While an inquiry's trusted completion is overdue, how often it is read again from Persona's API.",
    )
    reconcile_max_requests: int = Field(
        default=60,
        ge=1,
        description="Most reconcile requests for one overdue inquiry; then its flag stays raised for a person.",
    )
    reconcile_requests: bool | None = Field(
        default=None,
        description="Whether workers ask the reconciler for API reads of overdue inquiries (default: when "
        "persona_api_key is set).",
    )

    @model_validator(mode="before")
    @classmethod
    def _replicate_on_a_local_cluster(cls, values: object) -> object:
        """A local cluster replicates the topics as a production cluster does, unless told otherwise."""
        if isinstance(values, dict) and "replication_factor" not in values and values.get("local_kafka_brokers"):
            brokers = int(values["local_kafka_brokers"])
            if brokers > 1 and values.get("kafka_bootstrap_servers") is None:
                return {**values, "replication_factor": min(3, brokers)}
        return values

    @field_validator("webhook_secrets", "allowed_origins", mode="before")
    @classmethod
    def _split_secrets(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def processors_id(self) -> str:
        """The workers' consumer group id, transactional id prefix and changelog topic prefix."""
        return f"{self.topic_prefix}-processors"

    @property
    def reconciling(self) -> bool:
        """Whether workers send reconcile requests (``reconcile_requests``, else: an API key is set)."""
        return self.reconcile_requests if self.reconcile_requests is not None else self.persona_api_key is not None

    @property
    def reconciler_group(self) -> str:
        """The reconcilers' consumer group id."""
        return f"{self.topic_prefix}-reconciler"

    @property
    def uses_local_kafka(self) -> bool:
        """True when no cluster is configured and the embedded broker must be used."""
        return self.kafka_bootstrap_servers is None

    def worker_state_dir(self) -> Path:
        """Where this worker instance keeps its local state: its own, never shared with another."""
        return self.state_dir or self.cache_dir / "workers" / self.processors_id / str(self.worker_port)

    def bootstrap_servers(self) -> str:
        """The cluster to connect to: the configured one, or the embedded local broker."""
        if self.kafka_bootstrap_servers is not None:
            return self.kafka_bootstrap_servers
        return ",".join(f"127.0.0.1:{self.local_kafka_port + 2 * n}" for n in range(self.local_kafka_brokers))
