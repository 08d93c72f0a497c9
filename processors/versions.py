"""The exact versions of faust, mode and aiokafka the workers' runtime classes were written against.

:mod:`processors.driver` and :mod:`processors.tables` subclass faust's transport and table classes
and read some of their (and aiokafka's) internals, so another version may change what they rely
on without a word. ``pyproject.toml`` pins these versions; :func:`check` refuses to start a worker
on any other, naming both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib.metadata import PackageNotFoundError, version

from schemas.errors import Code, PersonaStreamError

SUPPORTED: Mapping[str, str] = {
    "faust-streaming": "0.15.3",
    "mode-streaming": "0.7.1",
    "aiokafka": "0.14.0",
}


class UnsupportedVersionError(PersonaStreamError, RuntimeError):
    """An installed library is not the version the workers were written against.

    Attributes:
        package: the distribution's name; ``installed`` and ``supported``: its two versions.
    """

    code = Code.UNSUPPORTED_VERSION

    def __init__(self, package: str, installed: str | None, supported: str) -> None:
        self.package, self.installed, self.supported = package, installed, supported
        found = f"{package} {installed} is installed" if installed else f"{package} is not installed"
        super().__init__(
            f"the workers were written against {package} {supported}, but {found}; "
            f"install {package}=={supported} (pip install -c constraints.txt -e .)"
        )


def installed_version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def check(lookup: Callable[[str], str | None] = installed_version) -> None:
    """Raise :class:`UnsupportedVersionError` unless every pinned library is at its version."""
    for package, supported in SUPPORTED.items():
        installed = lookup(package)
        if installed != supported:
            raise UnsupportedVersionError(package, installed, supported)
