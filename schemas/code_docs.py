"""Where each code of :class:`~schemas.codes.Code` appears, and what it means there.

``docs/protocol.md`` renders its code tables from :data:`USES` (:mod:`persona_stream.protocol_doc`):
one :class:`Use` per row; rows that read alike are rendered as one. A test fails for a code in no
table, so a code cannot be emitted without being documented.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from schemas.codes import Code


class Table(StrEnum):
    """The code tables of ``docs/protocol.md``: where a code is emitted, and to whom."""

    HTTP_EDGE = "http-edge"
    """Any HTTP connection refused before its request is read (gateway/http_edge.py)."""
    REFRESH = "refresh"
    """Error frames answering a ``refresh`` frame, on every websocket endpoint."""
    HANDSHAKE = "handshake"
    """Websocket handshakes refused with an HTTP status and a one-line body."""
    CLOSE = "close"
    """Websocket close frames: the close code and its reason."""
    CLIENT_FRAME = "client-frame"
    """Error frames of ``/v1/client``."""
    SUBSCRIBE_FRAME = "subscribe-frame"
    """Error frames of ``/v1/subscribe``."""
    INQUIRY_VIEW = "inquiry-view"
    """Answers of the gateway's ``GET /v1/inquiries/{id}``."""
    WORKER_VIEW = "worker-view"
    """Answers of a worker's ``GET /v1/views/{id}``, which the gateway asks."""
    WEBHOOK = "webhook"
    """Answers of ``POST /v1/webhooks/persona``."""
    DEAD_LETTER = "dead-letter"
    """The ``reason`` of a record of ``<prefix>.dead-letters``."""
    DECODING = "decoding"
    """The codes of a document that does not decode (:class:`SchemaError`)."""
    DEAD_LETTER_COMMAND = "dead-letter-command"
    """What ``persona-stream dead-letters`` reports about a letter it leaves or cannot find."""
    RECONCILE_COMMAND = "reconcile-command"
    """Refusals of ``persona-stream reconciler`` and ``reconcile`` (exit 2)."""
    STARTUP = "startup"
    """Refusals of a command before it starts anything."""
    PERSONA_API = "persona-api"
    """Errors of the client of Persona's REST API (processors/persona_api.py)."""
    LOCAL_KAFKA = "local-kafka"
    """Errors of the embedded Kafka that ``persona-stream`` starts itself."""


@dataclass(frozen=True)
class Use:
    """One row of one of the protocol document's tables: where a code appears, and what it means there.

    Attributes:
        table: the table (the surface that emits the code).
        text: what the code means there: the "when", "meaning" or "what" column.
        status: the HTTP status or websocket close code it is sent with, where there is one.
        note: the table's other column, where it has one: what a client (or Persona) does, which
            program writes or refuses, or which HTTP answers of Persona's API raise it.
    """

    table: Table
    text: str
    status: int | None = None
    note: str = ""


# wording shared by the rows of several codes (rows that read alike are rendered as one)
_AS_AT_AUTH = "as at `auth`"
_TOKEN_CLOSE = "the token does not open this endpoint"
_NEW_TOKEN = "get a new token, then reconnect"
_TOKEN_REFUSED = "no bearer token, or one that does not open this endpoint"
_WORKER_TOKEN = "no bearer token, or one that is not a valid `firehose` token"

USES: dict[Code, tuple[Use, ...]] = {
    Code.INVALID_JSON: (
        Use(Table.CLIENT_FRAME, "the message is not JSON, or JSON nested too deeply to read (about 200 levels)"),
        Use(Table.SUBSCRIBE_FRAME, "as on `/v1/client`"),
        Use(Table.DECODING, "the bytes are not JSON"),
    ),
    Code.INVALID_SHAPE: (
        Use(Table.DECODING, "JSON whose shape is not the model's; the error names the first bad field"),
    ),
    Code.INVALID_FRAME: (
        Use(Table.CLIENT_FRAME, "the frame's shape is wrong; `field` names the first bad field"),
        Use(Table.SUBSCRIBE_FRAME, "as on `/v1/client`"),
    ),
    Code.UNKNOWN_FRAME_TYPE: (
        Use(Table.CLIENT_FRAME, "no such frame type on this endpoint"),
        Use(Table.SUBSCRIBE_FRAME, "as on `/v1/client`"),
    ),
    Code.SEQ_MISSING: (Use(Table.CLIENT_FRAME, "a callback frame without `seq`"),),
    Code.SEQ_REPEATED: (
        Use(
            Table.CLIENT_FRAME, "`seq` is not greater than the last one of its session on this connection; not written"
        ),
    ),
    Code.TOO_MANY_SESSIONS: (
        Use(Table.CLIENT_FRAME, "more than `max_sessions_per_connection` sessions on one connection"),
    ),
    Code.INQUIRY_FORBIDDEN: (Use(Table.CLIENT_FRAME, "the token's `inq` names another inquiry"),),
    Code.INQUIRY_MISMATCH: (
        Use(
            Table.CLIENT_FRAME,
            "the frame's `inquiry` differs from the `inquiryId` its callback carries (`onComplete`, `onCancel`, "
            "`start` metadata); `field` is `inquiry`",
        ),
    ),
    Code.CHANNEL_FORBIDDEN: (
        Use(
            Table.SUBSCRIBE_FRAME,
            "the token's scope does not allow this channel (`all` without `firehose`), or its `inq` names "
            "another inquiry",
        ),
    ),
    Code.DUPLICATE_SUBSCRIPTION: (Use(Table.SUBSCRIBE_FRAME, "the `id` is in use on this connection"),),
    Code.IDLE_TIMEOUT: (
        Use(Table.CLOSE, "no frame for `idle_timeout_seconds`", 1000, "reconnect when it has something to send"),
    ),
    Code.SHUTDOWN: (
        Use(
            Table.CLOSE,
            "the gateway is stopping; in-flight frames were flushed and acknowledged first",
            1001,
            "reconnect (with backoff), resend unacknowledged frames",
        ),
    ),
    Code.AUTH_TIMEOUT: (Use(Table.CLOSE, "no `auth` frame in time", 1008, "fix the client"),),
    Code.AUTH_REQUIRED: (Use(Table.CLOSE, "the first frame was not a valid `auth` frame", 1008, "fix the client"),),
    Code.TOKEN_MISSING: (
        Use(Table.CLOSE, "the `auth` frame has no token (absent, null or empty)", 1008, "get a token, then reconnect"),
        Use(Table.INQUIRY_VIEW, _TOKEN_REFUSED, 401),
        Use(Table.WORKER_VIEW, _WORKER_TOKEN, 401),
    ),
    Code.TOKEN_INVALID: (
        Use(Table.REFRESH, _AS_AT_AUTH),
        Use(Table.CLOSE, _TOKEN_CLOSE, 1008, _NEW_TOKEN),
        Use(Table.INQUIRY_VIEW, _TOKEN_REFUSED, 401),
        Use(Table.WORKER_VIEW, _WORKER_TOKEN, 401),
    ),
    Code.TOKEN_EXPIRED: (
        Use(Table.REFRESH, _AS_AT_AUTH),
        Use(Table.CLOSE, _TOKEN_CLOSE, 1008, _NEW_TOKEN),
        Use(
            Table.CLOSE,
            "the connection's token expired without a `refresh`",
            4001,
            "get a new token, then reconnect (and refresh in time next time)",
        ),
        Use(Table.INQUIRY_VIEW, _TOKEN_REFUSED, 401),
        Use(Table.WORKER_VIEW, _WORKER_TOKEN, 401),
    ),
    Code.TOKEN_SCOPE: (
        Use(Table.REFRESH, _AS_AT_AUTH),
        Use(Table.CLOSE, _TOKEN_CLOSE, 1008, _NEW_TOKEN),
        Use(Table.INQUIRY_VIEW, _TOKEN_REFUSED, 401),
        Use(Table.WORKER_VIEW, _WORKER_TOKEN, 401),
    ),
    Code.TOKEN_MISMATCH: (Use(Table.REFRESH, "the new token names another subject, scope, inquiry or template"),),
    Code.TOO_MANY_ERRORS: (
        Use(Table.CLOSE, "more than `max_errors_per_connection` refused frames", 1008, "fix the client"),
    ),
    Code.TOO_MANY_SUBSCRIPTIONS: (
        Use(Table.CLOSE, "more than `max_subscriptions_per_connection`", 1008, "fix the client"),
    ),
    Code.INTERNAL_ERROR: (Use(Table.CLOSE, "a server fault", 1011, "reconnect with backoff"),),
    Code.KAFKA_UNAVAILABLE: (
        Use(
            Table.CLOSE,
            "Kafka did not confirm a write; nothing after it was acknowledged",
            1013,
            "reconnect with backoff, resend unacknowledged frames",
        ),
        Use(Table.WEBHOOK, "Kafka did not confirm within `produce_timeout_seconds`; `Retry-After: 5`", 503, "retries"),
    ),
    Code.RATE_LIMITED: (
        Use(
            Table.CLIENT_FRAME,
            "over `rate_per_second` (burst `rate_burst`); the frame is not written, and the connection closes "
            "(1013 `rate-limited`)",
        ),
        Use(
            Table.CLOSE,
            "over the rate limit; nothing after the limited frame was acknowledged",
            1013,
            "reconnect with backoff, resend unacknowledged frames, pace them",
        ),
    ),
    Code.SLOW_CONSUMER: (
        Use(Table.CLOSE, "a subscriber's queue overflowed", 1013, "reconnect and resume with `since`"),
    ),
    Code.NOT_FOUND: (
        Use(Table.HANDSHAKE, "no websocket endpoint at that path", 404),
        Use(
            Table.INQUIRY_VIEW,
            "no such inquiry — or, for scope `subscribe`, one whose trusted reference-id is not the token's "
            "subject (the answer does not reveal which)",
            404,
        ),
        Use(Table.WORKER_VIEW, "the worker that owns the inquiry has no view of it", 404),
    ),
    Code.ORIGIN_FORBIDDEN: (Use(Table.HANDSHAKE, "the `Origin` header is not in `allowed_origins`", 403),),
    Code.TOO_MANY_CONNECTIONS: (
        Use(
            Table.HTTP_EDGE,
            "every one of `http_max_connections` connections is serving a request; `Retry-After: 1`",
            503,
            "retries",
        ),
        Use(Table.HANDSHAKE, "the gateway holds `max_connections` already", 503),
    ),
    Code.SHUTTING_DOWN: (Use(Table.HANDSHAKE, "the gateway is stopping", 503),),
    Code.INVALID_INQUIRY_ID: (Use(Table.INQUIRY_VIEW, "not an inquiry id", 400),),
    Code.VIEWS_UNAVAILABLE: (
        Use(
            Table.INQUIRY_VIEW,
            "no worker answered, or the one that owns the inquiry is restoring its state after a rebalance",
            503,
        ),
    ),
    Code.VIEWS_DISABLED: (Use(Table.WORKER_VIEW, "the worker has no `token_secret`, so it serves no views", 503),),
    Code.RECOVERING: (
        Use(Table.WORKER_VIEW, "the worker is restoring its tables after a rebalance; the gateway answers 503", 503),
    ),
    Code.ACCEPTED: (Use(Table.WEBHOOK, "verified and durably in `<prefix>.webhooks`", 200, "done"),),
    Code.DUPLICATE: (Use(Table.WEBHOOK, "this gateway wrote the same event id lately", 200, "done"),),
    Code.DEAD_LETTERED: (
        Use(Table.WEBHOOK, "verified, but not a webhook envelope; in `<prefix>.dead-letters`", 202, "done"),
    ),
    Code.SIGNATURE_MISSING: (Use(Table.WEBHOOK, "no header", 401, "retries"),),
    Code.SIGNATURE_MALFORMED: (Use(Table.WEBHOOK, "no `t=…,v1=…` group", 401, "retries"),),
    Code.SIGNATURE_MISMATCH: (Use(Table.WEBHOOK, "no group verifies with any secret", 401, "retries"),),
    Code.SIGNATURE_EXPIRED: (
        Use(Table.WEBHOOK, "verifies, but the timestamp is outside the tolerance", 401, "retries"),
    ),
    Code.BODY_TOO_LARGE: (Use(Table.WEBHOOK, "over `webhook_max_bytes`", 413, "retries"),),
    Code.WEBHOOK_INVALID_JSON: (Use(Table.DEAD_LETTER, "a verified webhook body that is not JSON", None, "gateway"),),
    Code.WEBHOOK_INVALID_SHAPE: (
        Use(Table.DEAD_LETTER, "a verified webhook body that is not an event envelope", None, "gateway"),
    ),
    Code.CLIENT_EVENT_INVALID: (
        Use(Table.DEAD_LETTER, "a record of `<prefix>.client-events` that does not decode", None, "worker"),
    ),
    Code.WEBHOOK_UNDECODABLE: (
        Use(Table.DEAD_LETTER, "a record of `<prefix>.webhooks` that does not decode", None, "worker"),
    ),
    Code.PROCESSING_FAILED: (
        Use(Table.DEAD_LETTER, "a record whose processing raised; its partition moved on", None, "worker"),
    ),
    Code.API_SNAPSHOT_INVALID: (
        Use(Table.DEAD_LETTER, "a record of `<prefix>.api-snapshots` that does not decode", None, "worker"),
    ),
    Code.ANALYTICS_FACT_INVALID: (
        Use(Table.DEAD_LETTER, "a record of `<prefix>.analytics-facts` that does not decode", None, "worker"),
    ),
    Code.DEAD_LETTER_STILL_INVALID: (
        Use(Table.DEAD_LETTER_COMMAND, "`replay` left it: the body still does not decode as a webhook"),
    ),
    Code.DEAD_LETTER_NOT_A_WEBHOOK: (
        Use(Table.DEAD_LETTER_COMMAND, "`replay` left it: the letter came from another topic (a client event)"),
    ),
    Code.DEAD_LETTER_NOT_FOUND: (Use(Table.DEAD_LETTER_COMMAND, "`show ID` exits 1: no letter has that id"),),
    Code.PERSONA_API_KEY_MISSING: (
        Use(Table.RECONCILE_COMMAND, "`reconciler` or `reconcile` without `PERSONA_STREAM_PERSONA_API_KEY`"),
    ),
    Code.RECONCILE_USAGE: (
        Use(Table.RECONCILE_COMMAND, "`reconcile` needs exactly one of `--inquiry ID...` and `--since DATE`"),
    ),
    Code.RECONCILE_CHECKPOINT_MISMATCH: (
        Use(
            Table.RECONCILE_COMMAND,
            "the checkpoint file belongs to another backfill (other `--since` or `--template`), or is not a checkpoint",
        ),
    ),
    Code.UNSUPPORTED_VERSION: (
        Use(
            Table.STARTUP,
            "the installed faust-streaming, mode-streaming or aiokafka is not the exact version the workers' "
            "runtime classes were written against; the message names both versions",
            None,
            "`persona-stream worker` (exit 2)",
        ),
    ),
    Code.PORT_IN_USE: (
        Use(
            Table.STARTUP,
            "another program (or another gateway) already listens on `ws_port` or `http_port`; the processes "
            "would otherwise share it with that program silently",
            None,
            "`persona-stream gateway` with several processes (exit 2)",
        ),
        Use(Table.LOCAL_KAFKA, "something that is not our broker holds one of its ports"),
    ),
    Code.PERSONA_API_ERROR: (Use(Table.PERSONA_API, "base of the client's errors"),),
    Code.PERSONA_API_NOT_FOUND: (Use(Table.PERSONA_API, "no such inquiry", None, "404"),),
    Code.PERSONA_API_AUTH: (Use(Table.PERSONA_API, "the API key is wrong or lacks permission", None, "401, 403"),),
    Code.PERSONA_API_REJECTED: (
        Use(Table.PERSONA_API, "Persona refused the request; never retried", None, "other 4xx"),
    ),
    Code.PERSONA_API_RATE_LIMITED: (Use(Table.PERSONA_API, "still rate limited after every retry", None, "429"),),
    Code.PERSONA_API_UNAVAILABLE: (
        Use(Table.PERSONA_API, "still failing after every retry", None, "5xx, timeout, connection"),
    ),
    Code.PERSONA_API_BAD_RESPONSE: (Use(Table.PERSONA_API, "a body that is not the expected JSON", None, "2xx"),),
    Code.JAVA_MISSING: (Use(Table.LOCAL_KAFKA, "no `java` on PATH"),),
    Code.MAVEN_MISSING: (Use(Table.LOCAL_KAFKA, "no `mvn` on PATH and the jars are not cached"),),
    Code.FETCH_FAILED: (Use(Table.LOCAL_KAFKA, "Maven could not resolve the jars"),),
    Code.PORT_CLASH: (Use(Table.LOCAL_KAFKA, "the ports of a cluster's nodes overlap"),),
    Code.EXITED: (Use(Table.LOCAL_KAFKA, "the JVM died while starting (the log tail is attached)"),),
    Code.NOT_READY: (Use(Table.LOCAL_KAFKA, "no produce/consume round trip within the timeout"),),
}
"""Every code's rows, in the order of the enumeration."""
