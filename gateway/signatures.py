"""Persona webhook signatures: verification (and signing, for tests and the simulator).

Header: ``Persona-Signature: t=<unix seconds>,v1=<hex>``, where ``v1`` is HMAC-SHA256 with the
webhook secret over the bytes ``"<t>." + raw body`` -- the raw body, never re-serialized JSON.
During a secret rotation the header holds several space-separated ``t=…,v1=…`` groups.

A request is accepted when some group's ``v1`` matches some configured secret (compared in
constant time) and that group's ``t`` lies within the tolerance of now. Persona documents no
tolerance; ours (default 300 s) is what makes a captured request useless for a later replay.

Errors (:class:`SignatureError`, ``code``)::

    signature-missing     no header
    signature-malformed   a header that has no parseable t=…,v1=… group
    signature-mismatch    no group verifies with any configured secret
    signature-expired     a group verifies, but its timestamp is outside the tolerance
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from schemas.errors import Code, CodedError


class SignatureError(CodedError):
    """A webhook whose signature does not verify; ``code`` is stable and documented."""


@dataclass(frozen=True)
class SignatureGroup:
    timestamp: int
    signatures: tuple[str, ...]


def parse_header(header: str) -> list[SignatureGroup]:
    """Every well-formed ``t=…,v1=…`` group of a header; malformed groups are skipped."""
    groups = []
    for chunk in header.split():
        timestamp: int | None = None
        signatures = []
        for part in chunk.split(","):
            name, _, value = part.partition("=")
            if name == "t" and _TIMESTAMP.fullmatch(value):
                timestamp = int(value)
            elif name == "v1" and _HEX_SHA256.fullmatch(value):
                signatures.append(value.lower())
        if timestamp is not None and signatures:
            groups.append(SignatureGroup(timestamp, tuple(signatures)))
    return groups


_TIMESTAMP = re.compile(r"[0-9]{1,12}")  # ASCII digits only: str.isdigit() also admits "²"
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def compute(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """A header value as Persona would send it."""
    return f"t={timestamp},v1={compute(secret, timestamp, body)}"


def verify(header: str | None, body: bytes, secrets: list[bytes], *, now: float, tolerance: int) -> int:
    """Return the timestamp of the group that verified; raise :class:`SignatureError` otherwise."""
    if not header:
        raise SignatureError(Code.SIGNATURE_MISSING, "no Persona-Signature header")
    groups = parse_header(header)
    if not groups:
        raise SignatureError(Code.SIGNATURE_MALFORMED, "Persona-Signature has no t=…,v1=… group")
    expired = False
    for group in groups:
        for secret in secrets:
            expected = compute(secret, group.timestamp, body)
            # every candidate is compared, so timing does not reveal which one matched
            matches = [hmac.compare_digest(expected, candidate) for candidate in group.signatures]
            if any(matches):
                if abs(now - group.timestamp) <= tolerance:
                    return group.timestamp
                expired = True
    if expired:
        raise SignatureError(Code.SIGNATURE_EXPIRED, f"the signature's timestamp is more than {tolerance} s from now")
    raise SignatureError(Code.SIGNATURE_MISMATCH, "no signature matches a configured secret")
