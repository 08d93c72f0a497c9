"""The project's one error root, and the one enumeration of every stable code it emits.

Every error persona-stream raises derives from :class:`PersonaStreamError`, so a caller can catch
"anything of ours" in one clause; a stdlib base stays where behaviour needs it (``SchemaError`` is
also a ``ValueError``). Errors that carry a ``code`` carry a :class:`Code`::

    PersonaStreamError
    ├── CodedError                       schemas/errors.py        a ``code`` beside the message
    │   ├── TokenError                   core/tokens.py           code token-*
    │   ├── SignatureError               gateway/signatures.py    code signature-*
    │   └── LocalKafkaError              persona_stream/localkafka.py  code java-missing, maven-missing,
    │                                                             fetch-failed, port-in-use, port-clash,
    │                                                             exited, not-ready
    ├── SchemaError (ValueError)         schemas/errors.py        code invalid-json | invalid-shape;
    │                                                             ``field`` names the first offending
    │                                                             field ("callback.inquiryId")
    ├── TopicError                       core/topics.py           the cluster refused to create a topic
    ├── PublishError                     gateway/publisher.py     code kafka-unavailable (retriable)
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
    └── PortInUseError                   persona_stream/gateways.py  code port-in-use

:class:`Code` (:mod:`schemas.codes`) is the other half: every code that reaches a client, Persona,
a dead letter, a log line or a command's output is a member, never a string literal, and says
whether it is retriable. Where each appears is in :mod:`schemas.code_docs`, from which
``docs/protocol.md`` renders its code tables (:mod:`persona_stream.protocol_doc`).

Third-party errors (pydantic's ``ValidationError``, JSON decode errors) are translated into
``SchemaError`` here, once, by :mod:`schemas.codec`; nothing above this layer sees them.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.codes import Code as Code  # re-exported: an error and its code are imported together


class PersonaStreamError(Exception):
    """The root of every error persona-stream raises."""


class CodedError(PersonaStreamError):
    """An error that carries one stable, documented :class:`Code` beside its message."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code


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
