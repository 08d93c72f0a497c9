"""The documentation tells the truth about the code: every stable code is documented."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = (ROOT / "docs" / "protocol.md").read_text()

CODE_PATTERNS = [
    r'_reject\(\s*"([a-z0-9-]+)"',
    r'close\([^()]*?\d{4}, "([a-z0-9-]+)"',
    r'Close\(\d{4}, "([a-z0-9-]+)"',
    r'_answer\(\s*\d{3}, "([a-z0-9-]+)"',
    r'TokenError\(\s*"([a-z0-9-]+)"',
    r'SignatureError\(\s*"([a-z0-9-]+)"',
    r'respond\(HTTPStatus\.\w+, "([a-z0-9-]+)\\n"\)',
    r'reason="([a-z0-9-]+)"',
    r'ErrorFrame\(\s*code="([a-z0-9-]+)"',
    r'code = "([a-z0-9-]+)"',
]


def codes_in_source() -> set[str]:
    found: set[str] = set()
    for folder in ("gateway", "processors"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            for pattern in CODE_PATTERNS:
                found.update(m for m in re.findall(pattern, text) if m)
    return found


def test_every_code_the_code_can_emit_is_in_the_protocol_document() -> None:
    codes = codes_in_source()
    assert len(codes) > 20
    missing = sorted(code for code in codes if f"`{code}`" not in PROTOCOL)
    assert missing == [], f"document these codes in docs/protocol.md: {missing}"
