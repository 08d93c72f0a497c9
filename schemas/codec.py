"""The one codec: every producer and consumer turns models into bytes and back through here.

JSON, UTF-8, field aliases on the wire (``inquiryId``, ``created-at``), ``None`` kept explicit.
Decoding errors become :class:`~schemas.errors.SchemaError` with the offending field named.
"""

from __future__ import annotations

from functools import cache
from typing import Any, TypeVar, overload

import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError

from schemas.errors import Code, FieldProblem, SchemaError

T = TypeVar("T")


def encode(model: BaseModel) -> bytes:
    """A model as compact JSON bytes, with wire names (serialized to bytes once, not to str first)."""
    return model.__pydantic_serializer__.to_json(model, by_alias=True)


def to_jsonable(model: BaseModel) -> dict[str, Any]:
    """A model as a JSON-ready dict, with wire names (for embedding in a larger document)."""
    return model.model_dump(mode="json", by_alias=True)


@cache
def _adapter(target: Any) -> TypeAdapter[Any]:
    return TypeAdapter(target)


@overload
def decode(target: type[T], data: bytes | str) -> T: ...
@overload
def decode(target: Any, data: bytes | str) -> Any: ...
def decode(target: Any, data: bytes | str) -> Any:
    """Parse ``data`` as ``target`` (a model class or an annotated union such as ``Callback``).

    Raises:
        SchemaError: ``invalid-json`` when the bytes are not JSON, ``invalid-shape`` otherwise.
    """
    try:
        return _adapter(target).validate_json(data)
    except ValidationError as exc:
        try:
            document: object = orjson.loads(data)
        except orjson.JSONDecodeError:
            document = None
        raise translate(exc, document) from None


@overload
def validate(target: type[T], value: object) -> T: ...
@overload
def validate(target: Any, value: object) -> Any: ...
def validate(target: Any, value: object) -> Any:
    """Like :func:`decode`, for an already parsed JSON value."""
    try:
        return _adapter(target).validate_python(value)
    except ValidationError as exc:
        raise translate(exc, value) from None


def translate(exc: ValidationError, document: object) -> SchemaError:
    """pydantic's error, as the project's: a code and the fields at fault, as the sender wrote them."""
    problems = []
    code = Code.INVALID_SHAPE
    for error in exc.errors(include_url=False, include_input=False):
        if error["type"] == "json_invalid":
            code = Code.INVALID_JSON
        loc = error["loc"]
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            # the location stops at the union; name the discriminator field itself
            loc = (*loc, str(error.get("ctx", {}).get("discriminator", "")).strip("'"))
        problems.append(FieldProblem(_field_path(loc, document), error["msg"]))
    return SchemaError(code, problems)


def _field_path(loc: tuple[int | str, ...], document: object) -> str:
    """The dotted path of an error location, without the tags pydantic inserts for tagged unions.

    pydantic writes the discriminator's value ("onEvent", "inquiry") into the location of errors
    inside a tagged union. Walking the location alongside the document tells the two apart: a part
    is a field when the document has it at that level (or when it is the missing last one).
    """
    path: list[str] = []
    node = document
    for index, part in enumerate(loc):
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            node = node[part]  # type: ignore[index]
        elif index != len(loc) - 1:
            continue
        path.append(str(part))
    return ".".join(path)
