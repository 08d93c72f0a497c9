"""The admission policy of the HTTP port, without sockets."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from gateway.http_edge import Admission, ConnectionTable


@dataclass(frozen=True)
class Case:
    name: str
    limit: int
    steps: list[tuple[str, str]]
    """(action, connection): ``open``, ``start`` (its headers are complete), ``close``."""
    last: Admission
    open: set[str]


CASES = [
    Case("under the cap", 2, [("open", "a"), ("open", "b")], Admission(True), {"a", "b"}),
    Case("at the cap the oldest waiting one is replaced", 2,
         [("open", "a"), ("open", "b"), ("open", "c")], Admission(True, evict="a"), {"b", "c"}),
    Case("one that sent its headers is never replaced", 2,
         [("open", "a"), ("start", "a"), ("open", "b"), ("open", "c")], Admission(True, evict="b"), {"a", "c"}),
    Case("all serving: refused", 2,
         [("open", "a"), ("start", "a"), ("open", "b"), ("start", "b"), ("open", "c")], Admission(False), {"a", "b"}),
    Case("a closed one frees its place", 2,
         [("open", "a"), ("start", "a"), ("open", "b"), ("start", "b"), ("close", "a"), ("open", "c")],
         Admission(True), {"b", "c"}),
    Case("a flood replaces itself, the prompt one stays", 3,
         [("open", "p"), ("start", "p"), *[("open", f"s{n}") for n in range(10)]], Admission(True, evict="s7"),
         {"p", "s8", "s9"}),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_admission(case: Case) -> None:
    table = ConnectionTable(case.limit)
    last = None
    for action, connection in case.steps:
        if action == "open":
            last = table.admit(connection)
        elif action == "start":
            table.started(connection)
        else:
            table.closed(connection)
    assert last == case.last
    assert table.open == case.open
    assert set(table.waiting) <= table.open
