"""The project's one error root, and the one enumeration of every stable code it emits.

Every error persona-stream raises derives from :class:`PersonaStreamError`, so a caller can catch
"anything of ours" in one clause; a stdlib base stays where behaviour needs it (``SchemaError`` is
also a ``ValueError``). Errors that carry a ``code`` carry a :class:`Code`::

    PersonaStreamError
    ├── SchemaError (ValueError)         schemas/errors.py        code invalid-json | invalid-shape;
    │                                                             ``field`` names the first offending
    │                                                             field ("callback.inquiryId")
    ├── TokenError                       core/tokens.py           code token-*
    ├── TopicError                       core/topics.py           the cluster refused to create a topic
    ├── PublishError                     gateway/publisher.py     code kafka-unavailable (retriable)
    ├── SignatureError                   gateway/signatures.py    code signature-*
    ├── PersonaApiError                  processors/persona_api.py  code persona-api-error
    │   ├── PersonaApiNotFound                                    code persona-api-not-found
    │   ├── PersonaApiAuthError                                   code persona-api-auth
    │   ├── PersonaApiRejected                                    code persona-api-rejected
    │   ├── PersonaApiRateLimited                                 code persona-api-rate-limited (retriable)
    │   ├── PersonaApiUnavailable                                 code persona-api-unavailable (retriable)
    │   └── PersonaApiBadResponse                                 code persona-api-bad-response
    ├── OutputError                      processors/output.py     Kafka refused a transactional write
    ├── CheckpointError                  processors/reconcile.py  code reconcile-checkpoint-mismatch
    ├── DeadLetterNotFound               processors/dead_letters.py  code dead-letter-not-found
    ├── UnsupportedVersionError (RuntimeError)  processors/versions.py  code unsupported-version
    ├── LocalKafkaError                  persona_stream/localkafka.py  code java-missing, maven-missing,
    │                                                             fetch-failed, port-in-use, port-clash,
    │                                                             exited, not-ready
    └── PortInUseError                   persona_stream/gateways.py  code port-in-use

:class:`Code` is the other half: every code that reaches a client, Persona, a dead letter, a log
line or a command's output is a member, never a string literal. StrEnum members *are* their
strings, so the wire is unchanged. Each member says whether it is retriable -- whether the same
attempt may succeed later without anyone changing anything -- and, in :class:`Use` entries, where
it appears: ``docs/protocol.md`` renders its code tables from them
(:mod:`persona_stream.protocol_doc`), so a code cannot be emitted without being documented.

Third-party errors (pydantic's ``ValidationError``, JSON decode errors) are translated into
``SchemaError`` here, once, by :mod:`schemas.codec`; nothing above this layer sees them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class PersonaStreamError(Exception):
    """The root of every error persona-stream raises."""


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


class Code(StrEnum):
    """Every stable code persona-stream emits; the value is the string on the wire.

    Attributes:
        retriable: whether the same attempt may succeed later, unchanged (a client backs off and
            retries; a final code needs a fix, a new token or a human).
        uses: where the code appears, one :class:`Use` per row of the protocol document.
    """

    retriable: bool
    uses: tuple[Use, ...]

    def __new__(cls, value: str, retriable: bool = False, *uses: Use) -> Code:
        # the defaults only make ``Code("token-expired")`` (a lookup by value) type-check
        member = str.__new__(cls, value)
        member._value_ = value
        member.retriable = retriable
        member.uses = uses
        return member

    # --- decoding, and the error frames of /v1/client -----------------------------------------
    INVALID_JSON = (
        "invalid-json",
        False,
        Use(Table.CLIENT_FRAME, "the message is not JSON, or JSON nested too deeply to read (about 200 levels)"),
        Use(Table.SUBSCRIBE_FRAME, "as on `/v1/client`"),
        Use(Table.DECODING, "the bytes are not JSON"),
    )
    INVALID_SHAPE = (
        "invalid-shape",
        False,
        Use(Table.DECODING, "JSON whose shape is not the model's; the error names the first bad field"),
    )
    INVALID_FRAME = (
        "invalid-frame",
        False,
        Use(Table.CLIENT_FRAME, "the frame's shape is wrong; `field` names the first bad field"),
        Use(Table.SUBSCRIBE_FRAME, "as on `/v1/client`"),
    )
    UNKNOWN_FRAME_TYPE = (
        "unknown-frame-type",
        False,
        Use(Table.CLIENT_FRAME, "no such frame type on this endpoint"),
        Use(Table.SUBSCRIBE_FRAME, "as on `/v1/client`"),
    )
    SEQ_MISSING = "seq-missing", False, Use(Table.CLIENT_FRAME, "a callback frame without `seq`")
    SEQ_REPEATED = (
        "seq-repeated",
        False,
        Use(
            Table.CLIENT_FRAME, "`seq` is not greater than the last one of its session on this connection; not written"
        ),
    )
    TOO_MANY_SESSIONS = (
        "too-many-sessions",
        False,
        Use(Table.CLIENT_FRAME, "more than `max_sessions_per_connection` sessions on one connection"),
    )
    INQUIRY_FORBIDDEN = "inquiry-forbidden", False, Use(Table.CLIENT_FRAME, "the token's `inq` names another inquiry")
    INQUIRY_MISMATCH = (
        "inquiry-mismatch",
        False,
        Use(
            Table.CLIENT_FRAME,
            "the frame's `inquiry` differs from the `inquiryId` its callback carries (`onComplete`, `onCancel`, "
            "`start` metadata); `field` is `inquiry`",
        ),
    )
    # --- /v1/subscribe --------------------------------------------------------------------------
    CHANNEL_FORBIDDEN = (
        "channel-forbidden",
        False,
        Use(
            Table.SUBSCRIBE_FRAME,
            "the token's scope does not allow this channel (`all` without `firehose`), or its `inq` names another "
            "inquiry",
        ),
    )
    DUPLICATE_SUBSCRIPTION = (
        "duplicate-subscription",
        False,
        Use(Table.SUBSCRIBE_FRAME, "the `id` is in use on this connection"),
    )

    # --- closes, and tokens -----------------------------------------------------------------------
    IDLE_TIMEOUT = (
        "idle-timeout",
        True,
        Use(Table.CLOSE, "no frame for `idle_timeout_seconds`", 1000, "reconnect when it has something to send"),
    )
    SHUTDOWN = (
        "shutdown",
        True,
        Use(
            Table.CLOSE,
            "the gateway is stopping; in-flight frames were flushed and acknowledged first",
            1001,
            "reconnect (with backoff), resend unacknowledged frames",
        ),
    )
    AUTH_TIMEOUT = "auth-timeout", False, Use(Table.CLOSE, "no `auth` frame in time", 1008, "fix the client")
    AUTH_REQUIRED = (
        "auth-required",
        False,
        Use(Table.CLOSE, "the first frame was not a valid `auth` frame", 1008, "fix the client"),
    )
    TOKEN_MISSING = (
        "token-missing",
        False,
        Use(Table.CLOSE, "the `auth` frame has no token (absent, null or empty)", 1008, "get a token, then reconnect"),
        Use(Table.INQUIRY_VIEW, _TOKEN_REFUSED, 401),
        Use(Table.WORKER_VIEW, _WORKER_TOKEN, 401),
    )
    TOKEN_INVALID = (
        "token-invalid",
        False,
        Use(Table.REFRESH, _AS_AT_AUTH),
        Use(Table.CLOSE, _TOKEN_CLOSE, 1008, _NEW_TOKEN),
        Use(Table.INQUIRY_VIEW, _TOKEN_REFUSED, 401),
        Use(Table.WORKER_VIEW, _WORKER_TOKEN, 401),
    )
    TOKEN_EXPIRED = (
        "token-expired",
        False,
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
    )
    TOKEN_SCOPE = (
        "token-scope",
        False,
        Use(Table.REFRESH, _AS_AT_AUTH),
        Use(Table.CLOSE, _TOKEN_CLOSE, 1008, _NEW_TOKEN),
        Use(Table.INQUIRY_VIEW, _TOKEN_REFUSED, 401),
        Use(Table.WORKER_VIEW, _WORKER_TOKEN, 401),
    )
    TOKEN_MISMATCH = (
        "token-mismatch",
        False,
        Use(Table.REFRESH, "the new token names another subject, scope, inquiry or template"),
    )
    TOO_MANY_ERRORS = (
        "too-many-errors",
        False,
        Use(Table.CLOSE, "more than `max_errors_per_connection` refused frames", 1008, "fix the client"),
    )
    TOO_MANY_SUBSCRIPTIONS = (
        "too-many-subscriptions",
        False,
        Use(Table.CLOSE, "more than `max_subscriptions_per_connection`", 1008, "fix the client"),
    )
    INTERNAL_ERROR = (
        "internal-error",
        True,
        Use(Table.CLOSE, "a server fault", 1011, "reconnect with backoff"),
    )
    KAFKA_UNAVAILABLE = (
        "kafka-unavailable",
        True,
        Use(
            Table.CLOSE,
            "Kafka did not confirm a write; nothing after it was acknowledged",
            1013,
            "reconnect with backoff, resend unacknowledged frames",
        ),
        Use(
            Table.WEBHOOK,
            "Kafka did not confirm within `produce_timeout_seconds`; `Retry-After: 5`",
            503,
            "retries",
        ),
    )
    RATE_LIMITED = (
        "rate-limited",
        True,
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
    )
    SLOW_CONSUMER = (
        "slow-consumer",
        True,
        Use(Table.CLOSE, "a subscriber's queue overflowed", 1013, "reconnect and resume with `since`"),
    )

    # --- HTTP answers of the gateway and the worker ------------------------------------------------
    NOT_FOUND = (
        "not-found",
        False,
        Use(Table.HANDSHAKE, "no websocket endpoint at that path", 404),
        Use(
            Table.INQUIRY_VIEW,
            "no such inquiry — or, for scope `subscribe`, one whose trusted reference-id is not the token's "
            "subject (the answer does not reveal which)",
            404,
        ),
        Use(Table.WORKER_VIEW, "the worker that owns the inquiry has no view of it", 404),
    )
    ORIGIN_FORBIDDEN = (
        "origin-forbidden",
        False,
        Use(Table.HANDSHAKE, "the `Origin` header is not in `allowed_origins`", 403),
    )
    TOO_MANY_CONNECTIONS = (
        "too-many-connections",
        True,
        Use(
            Table.HTTP_EDGE,
            "every one of `http_max_connections` connections is serving a request; `Retry-After: 1`",
            503,
            "retries",
        ),
        Use(Table.HANDSHAKE, "the gateway holds `max_connections` already", 503),
    )
    SHUTTING_DOWN = "shutting-down", True, Use(Table.HANDSHAKE, "the gateway is stopping", 503)
    INVALID_INQUIRY_ID = "invalid-inquiry-id", False, Use(Table.INQUIRY_VIEW, "not an inquiry id", 400)
    VIEWS_UNAVAILABLE = (
        "views-unavailable",
        True,
        Use(
            Table.INQUIRY_VIEW,
            "no worker answered, or the one that owns the inquiry is restoring its state after a rebalance",
            503,
        ),
    )
    VIEWS_DISABLED = (
        "views-disabled",
        False,
        Use(Table.WORKER_VIEW, "the worker has no `token_secret`, so it serves no views", 503),
    )
    RECOVERING = (
        "recovering",
        True,
        Use(Table.WORKER_VIEW, "the worker is restoring its tables after a rebalance; the gateway answers 503", 503),
    )

    # --- POST /v1/webhooks/persona -------------------------------------------------------------------
    ACCEPTED = (
        "accepted",
        False,
        Use(Table.WEBHOOK, "verified and durably in `<prefix>.webhooks`", 200, "done"),
    )
    DUPLICATE = (
        "duplicate",
        False,
        Use(Table.WEBHOOK, "this gateway wrote the same event id lately", 200, "done"),
    )
    DEAD_LETTERED = (
        "dead-lettered",
        False,
        Use(Table.WEBHOOK, "verified, but not a webhook envelope; in `<prefix>.dead-letters`", 202, "done"),
    )
    SIGNATURE_MISSING = "signature-missing", False, Use(Table.WEBHOOK, "no header", 401, "retries")
    SIGNATURE_MALFORMED = "signature-malformed", False, Use(Table.WEBHOOK, "no `t=…,v1=…` group", 401, "retries")
    SIGNATURE_MISMATCH = (
        "signature-mismatch",
        False,
        Use(Table.WEBHOOK, "no group verifies with any secret", 401, "retries"),
    )
    SIGNATURE_EXPIRED = (
        "signature-expired",
        False,
        Use(Table.WEBHOOK, "verifies, but the timestamp is outside the tolerance", 401, "retries"),
    )
    BODY_TOO_LARGE = "body-too-large", False, Use(Table.WEBHOOK, "over `webhook_max_bytes`", 413, "retries")

    # --- dead letters ----------------------------------------------------------------------------
    WEBHOOK_INVALID_JSON = (
        "webhook-invalid-json",
        False,
        Use(Table.DEAD_LETTER, "a verified webhook body that is not JSON", note="gateway"),
    )
    WEBHOOK_INVALID_SHAPE = (
        "webhook-invalid-shape",
        False,
        Use(Table.DEAD_LETTER, "a verified webhook body that is not an event envelope", note="gateway"),
    )
    CLIENT_EVENT_INVALID = (
        "client-event-invalid",
        False,
        Use(Table.DEAD_LETTER, "a record of `<prefix>.client-events` that does not decode", note="worker"),
    )
    WEBHOOK_UNDECODABLE = (
        "webhook-undecodable",
        False,
        Use(Table.DEAD_LETTER, "a record of `<prefix>.webhooks` that does not decode", note="worker"),
    )
    PROCESSING_FAILED = (
        "processing-failed",
        False,
        Use(Table.DEAD_LETTER, "a record whose processing raised; its partition moved on", note="worker"),
    )
    API_SNAPSHOT_INVALID = (
        "api-snapshot-invalid",
        False,
        Use(Table.DEAD_LETTER, "a record of `<prefix>.api-snapshots` that does not decode", note="worker"),
    )
    ANALYTICS_FACT_INVALID = (
        "analytics-fact-invalid",
        False,
        Use(Table.DEAD_LETTER, "a record of `<prefix>.analytics-facts` that does not decode", note="worker"),
    )
    DEAD_LETTER_STILL_INVALID = (
        "dead-letter-still-invalid",
        False,
        Use(Table.DEAD_LETTER_COMMAND, "`replay` left it: the body still does not decode as a webhook"),
    )
    DEAD_LETTER_NOT_A_WEBHOOK = (
        "dead-letter-not-a-webhook",
        False,
        Use(Table.DEAD_LETTER_COMMAND, "`replay` left it: the letter came from another topic (a client event)"),
    )
    DEAD_LETTER_NOT_FOUND = (
        "dead-letter-not-found",
        False,
        Use(Table.DEAD_LETTER_COMMAND, "`show ID` exits 1: no letter has that id"),
    )

    # --- reconciliation ------------------------------------------------------------------------------
    PERSONA_API_KEY_MISSING = (
        "persona-api-key-missing",
        False,
        Use(Table.RECONCILE_COMMAND, "`reconciler` or `reconcile` without `PERSONA_STREAM_PERSONA_API_KEY`"),
    )
    RECONCILE_USAGE = (
        "reconcile-usage",
        False,
        Use(Table.RECONCILE_COMMAND, "`reconcile` needs exactly one of `--inquiry ID...` and `--since DATE`"),
    )
    RECONCILE_CHECKPOINT_MISMATCH = (
        "reconcile-checkpoint-mismatch",
        False,
        Use(
            Table.RECONCILE_COMMAND,
            "the checkpoint file belongs to another backfill (other `--since` or `--template`), or is not a checkpoint",
        ),
    )

    # --- start-up -------------------------------------------------------------------------------------
    UNSUPPORTED_VERSION = (
        "unsupported-version",
        False,
        Use(
            Table.STARTUP,
            "the installed faust-streaming, mode-streaming or aiokafka is not the exact version the workers' "
            "runtime classes were written against; the message names both versions",
            note="`persona-stream worker` (exit 2)",
        ),
    )
    PORT_IN_USE = (
        "port-in-use",
        False,
        Use(
            Table.STARTUP,
            "another program (or another gateway) already listens on `ws_port` or `http_port`; the processes "
            "would otherwise share it with that program silently",
            note="`persona-stream gateway` with several processes (exit 2)",
        ),
        Use(Table.LOCAL_KAFKA, "something that is not our broker holds one of its ports"),
    )

    # --- the Persona API client ----------------------------------------------------------------------
    PERSONA_API_ERROR = "persona-api-error", False, Use(Table.PERSONA_API, "base of the client's errors")
    PERSONA_API_NOT_FOUND = "persona-api-not-found", False, Use(Table.PERSONA_API, "no such inquiry", note="404")
    PERSONA_API_AUTH = (
        "persona-api-auth",
        False,
        Use(Table.PERSONA_API, "the API key is wrong or lacks permission", note="401, 403"),
    )
    PERSONA_API_REJECTED = (
        "persona-api-rejected",
        False,
        Use(Table.PERSONA_API, "Persona refused the request; never retried", note="other 4xx"),
    )
    PERSONA_API_RATE_LIMITED = (
        "persona-api-rate-limited",
        True,
        Use(Table.PERSONA_API, "still rate limited after every retry", note="429"),
    )
    PERSONA_API_UNAVAILABLE = (
        "persona-api-unavailable",
        True,
        Use(Table.PERSONA_API, "still failing after every retry", note="5xx, timeout, connection"),
    )
    PERSONA_API_BAD_RESPONSE = (
        "persona-api-bad-response",
        False,
        Use(Table.PERSONA_API, "a body that is not the expected JSON", note="2xx"),
    )

    # --- the embedded Kafka ---------------------------------------------------------------------------
    JAVA_MISSING = "java-missing", False, Use(Table.LOCAL_KAFKA, "no `java` on PATH")
    MAVEN_MISSING = "maven-missing", False, Use(Table.LOCAL_KAFKA, "no `mvn` on PATH and the jars are not cached")
    FETCH_FAILED = "fetch-failed", True, Use(Table.LOCAL_KAFKA, "Maven could not resolve the jars")
    PORT_CLASH = "port-clash", False, Use(Table.LOCAL_KAFKA, "the ports of a cluster's nodes overlap")
    EXITED = "exited", False, Use(Table.LOCAL_KAFKA, "the JVM died while starting (the log tail is attached)")
    NOT_READY = "not-ready", True, Use(Table.LOCAL_KAFKA, "no produce/consume round trip within the timeout")


@dataclass(frozen=True)
class FieldProblem:
    """One problem with one field of a decoded document."""

    field: str
    message: str


class SchemaError(PersonaStreamError, ValueError):
    """Input that is not JSON, or whose shape is not the model's.

    Attributes:
        code: :attr:`Code.INVALID_JSON` (not parseable) or :attr:`Code.INVALID_SHAPE` (parsed, wrong
            shape).
        field: dotted path of the first offending field ("" for the document itself).
        problems: every problem found, in document order.
    """

    def __init__(self, code: Code, problems: list[FieldProblem]) -> None:
        self.code = code
        self.problems = problems
        first = problems[0] if problems else FieldProblem("", "invalid")
        self.field = first.field
        super().__init__(f"{first.field or '<document>'}: {first.message}")
