"""One error tree and one code enumeration: every error class of the project derives from the root,
and every code an error carries is a member of :class:`~schemas.errors.Code`."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from schemas.code_docs import USES, Table
from schemas.errors import Code, PersonaStreamError, SchemaError

PACKAGES = ("schemas", "core", "gateway", "processors", "persona_stream")


def error_classes() -> list[type[BaseException]]:
    """Every exception class defined in the project's packages (imported module by module)."""
    found: list[type[BaseException]] = []
    for name in PACKAGES:
        package = importlib.import_module(name)
        for info in pkgutil.walk_packages(package.__path__, f"{name}."):
            module = importlib.import_module(info.name)
            for _, value in inspect.getmembers(module, inspect.isclass):
                if issubclass(value, BaseException) and value.__module__ == module.__name__:
                    found.append(value)
    return found


def test_every_error_class_derives_from_the_project_error() -> None:
    classes = error_classes()
    assert len(classes) >= 15
    strays = [f"{cls.__module__}.{cls.__qualname__}" for cls in classes if not issubclass(cls, PersonaStreamError)]
    assert strays == [], f"derive these from schemas.errors.PersonaStreamError: {strays}"


def test_every_code_an_error_class_declares_is_a_code() -> None:
    for cls in error_classes():
        code = getattr(cls, "code", None)
        if code is not None:
            assert isinstance(code, Code), (cls, code)
        retriable = getattr(cls, "retriable", None)
        if isinstance(code, Code) and retriable is not None:
            assert retriable == code.retriable, cls


def test_errors_keep_their_standard_bases() -> None:
    from processors.versions import UnsupportedVersionError

    assert issubclass(SchemaError, ValueError)
    assert issubclass(UnsupportedVersionError, RuntimeError)


def test_codes_are_their_strings_on_the_wire() -> None:
    import orjson

    assert f"{Code.RATE_LIMITED}" == str(Code.RATE_LIMITED) == "rate-limited"
    assert orjson.dumps({"code": Code.TOKEN_EXPIRED}) == b'{"code":"token-expired"}'
    assert Code("token-expired") is Code.TOKEN_EXPIRED


def test_codes_are_unique_and_every_table_has_a_code() -> None:
    values = [code.value for code in Code]
    assert len(values) == len(set(values))
    used = {use.table for code in Code for use in USES[code]}
    assert used == set(Table)
