"""The metric names a PromQL expression reads: enough of PromQL's lexical rules for our own queries.

PromQL names a metric wherever an identifier is neither a function (followed by ``(``), a keyword,
a label (inside ``{...}`` or the ``(...)`` of ``by``/``without``/``on``/``ignoring``/``group_*``),
nor part of a range or offset (``[...]``). Strings are dropped first, so label values never count.
"""

from __future__ import annotations

import re

KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
                      "group_right", "inf", "nan", "atan2"})  # fmt: skip
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
MATCHERS = re.compile(r"\{[^{}]*\}")
RANGE = re.compile(r"\[[^\[\]]*\]")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
IDENTIFIER = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(?!\w)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """Every metric name ``expr`` selects."""
    text = STRING.sub('""', expr)
    text = MATCHERS.sub(" ", text)
    text = RANGE.sub(" ", text)
    text = GROUPING.sub(" ", text)
    names = set()
    for match in IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if call is None and name.lower() not in KEYWORDS:
            names.add(name)
    return names
