"""The one enumeration of every stable code persona-stream emits.

Every code that reaches a client, Persona, a dead letter, a log line or a command's output is a
:class:`Code` member, never a string literal. StrEnum members *are* their strings, so the wire is
unchanged. Each member says whether it is retriable -- whether the same attempt may succeed later
without anyone changing anything. Where each code appears, and what it means there, is in
:mod:`schemas.code_docs`, from which ``docs/protocol.md`` renders its code tables
(:mod:`persona_stream.protocol_doc`); a test fails for a member that is in no table. The errors
that carry these codes are in :mod:`schemas.errors`.
"""

from __future__ import annotations

from enum import StrEnum


class Code(StrEnum):
    """Every stable code persona-stream emits; the value is the string on the wire.

    Attributes:
        retriable: whether the same attempt may succeed later, unchanged (a client backs off and
            retries; a final code needs a fix, a new token or a human).
    """

    retriable: bool

    def __new__(cls, value: str, retriable: bool = False) -> Code:
        # the default only makes ``Code("token-expired")`` (a lookup by value) type-check
        member = str.__new__(cls, value)
        member._value_ = value
        member.retriable = retriable
        return member

    # --- decoding, and the error frames of /v1/client -----------------------------------------
    INVALID_JSON = "invalid-json", False
    INVALID_SHAPE = "invalid-shape", False
    INVALID_FRAME = "invalid-frame", False
    UNKNOWN_FRAME_TYPE = "unknown-frame-type", False
    SEQ_MISSING = "seq-missing", False
    SEQ_REPEATED = "seq-repeated", False
    TOO_MANY_SESSIONS = "too-many-sessions", False
    INQUIRY_FORBIDDEN = "inquiry-forbidden", False
    INQUIRY_MISMATCH = "inquiry-mismatch", False

    # --- /v1/subscribe --------------------------------------------------------------------------
    CHANNEL_FORBIDDEN = "channel-forbidden", False
    DUPLICATE_SUBSCRIPTION = "duplicate-subscription", False

    # --- closes, and tokens -----------------------------------------------------------------------
    IDLE_TIMEOUT = "idle-timeout", True
    SHUTDOWN = "shutdown", True
    AUTH_TIMEOUT = "auth-timeout", False
    AUTH_REQUIRED = "auth-required", False
    TOKEN_MISSING = "token-missing", False
    TOKEN_INVALID = "token-invalid", False
    TOKEN_EXPIRED = "token-expired", False
    TOKEN_SCOPE = "token-scope", False
    TOKEN_MISMATCH = "token-mismatch", False
    TOO_MANY_ERRORS = "too-many-errors", False
    TOO_MANY_SUBSCRIPTIONS = "too-many-subscriptions", False
    INTERNAL_ERROR = "internal-error", True
    KAFKA_UNAVAILABLE = "kafka-unavailable", True
    RATE_LIMITED = "rate-limited", True
    SLOW_CONSUMER = "slow-consumer", True

    # --- HTTP answers of the gateway and the worker ------------------------------------------------
    NOT_FOUND = "not-found", False
    ORIGIN_FORBIDDEN = "origin-forbidden", False
    TOO_MANY_CONNECTIONS = "too-many-connections", True
    SHUTTING_DOWN = "shutting-down", True
    INVALID_INQUIRY_ID = "invalid-inquiry-id", False
    VIEWS_UNAVAILABLE = "views-unavailable", True
    VIEWS_DISABLED = "views-disabled", False
    RECOVERING = "recovering", True

    # --- POST /v1/webhooks/persona -------------------------------------------------------------------
    ACCEPTED = "accepted", False
    DUPLICATE = "duplicate", False
    DEAD_LETTERED = "dead-lettered", False
    SIGNATURE_MISSING = "signature-missing", False
    SIGNATURE_MALFORMED = "signature-malformed", False
    SIGNATURE_MISMATCH = "signature-mismatch", False
    SIGNATURE_EXPIRED = "signature-expired", False
    BODY_TOO_LARGE = "body-too-large", False

    # --- dead letters ----------------------------------------------------------------------------
    WEBHOOK_INVALID_JSON = "webhook-invalid-json", False
    WEBHOOK_INVALID_SHAPE = "webhook-invalid-shape", False
    CLIENT_EVENT_INVALID = "client-event-invalid", False
    WEBHOOK_UNDECODABLE = "webhook-undecodable", False
    PROCESSING_FAILED = "processing-failed", False
    API_SNAPSHOT_INVALID = "api-snapshot-invalid", False
    ANALYTICS_FACT_INVALID = "analytics-fact-invalid", False
    DEAD_LETTER_STILL_INVALID = "dead-letter-still-invalid", False
    DEAD_LETTER_NOT_A_WEBHOOK = "dead-letter-not-a-webhook", False
    DEAD_LETTER_NOT_FOUND = "dead-letter-not-found", False

    # --- reconciliation ------------------------------------------------------------------------------
    PERSONA_API_KEY_MISSING = "persona-api-key-missing", False
    RECONCILE_USAGE = "reconcile-usage", False
    RECONCILE_CHECKPOINT_MISMATCH = "reconcile-checkpoint-mismatch", False

    # --- start-up -------------------------------------------------------------------------------------
    UNSUPPORTED_VERSION = "unsupported-version", False
    PORT_IN_USE = "port-in-use", False

    # --- the Persona API client ----------------------------------------------------------------------
    PERSONA_API_ERROR = "persona-api-error", False
    PERSONA_API_NOT_FOUND = "persona-api-not-found", False
    PERSONA_API_AUTH = "persona-api-auth", False
    PERSONA_API_REJECTED = "persona-api-rejected", False
    PERSONA_API_RATE_LIMITED = "persona-api-rate-limited", True
    PERSONA_API_UNAVAILABLE = "persona-api-unavailable", True
    PERSONA_API_BAD_RESPONSE = "persona-api-bad-response", False

    # --- the embedded Kafka ---------------------------------------------------------------------------
    JAVA_MISSING = "java-missing", False
    MAVEN_MISSING = "maven-missing", False
    FETCH_FAILED = "fetch-failed", True
    PORT_CLASH = "port-clash", False
    EXITED = "exited", False
    NOT_READY = "not-ready", True
