"""Errors raised when bytes do not decode into one of the project's models.

::

    SchemaError                 code "invalid-json" or "invalid-shape"; ``field`` names the
                                first offending field as a dotted path ("callback.inquiryId")

Third-party errors (pydantic's ``ValidationError``, JSON decode errors) are translated here, once,
by :mod:`schemas.codec`; nothing above this layer sees them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldProblem:
    """One problem with one field of a decoded document."""

    field: str
    message: str


class SchemaError(ValueError):
    """Input that is not JSON, or whose shape is not the model's.

    Attributes:
        code: ``"invalid-json"`` (not parseable) or ``"invalid-shape"`` (parsed, wrong shape).
        field: dotted path of the first offending field ("" for the document itself).
        problems: every problem found, in document order.
    """

    def __init__(self, code: str, problems: list[FieldProblem]) -> None:
        self.code = code
        self.problems = problems
        first = problems[0] if problems else FieldProblem("", "invalid")
        self.field = first.field
        super().__init__(f"{first.field or '<document>'}: {first.message}")
