"""SQL text helpers shared by every layer that writes ClickHouse SQL: the store, its upkeep, the queries.

One string-literal function, so that every value reaches SQL escaped the same (safest) way.
"""

from __future__ import annotations

import re

# Backslash and quote, plus every control character: a raw newline or NUL inside a literal is legal
# ClickHouse, but one escaping for all keeps logged SQL on one line and leaves nothing to reason about.
_ESCAPED = re.compile(r"[\x00-\x1f\x7f\\']")


def _escape(m: re.Match[str]) -> str:
    ch = m.group()
    return "\\" + ch if ch in "\\'" else f"\\x{ord(ch):02X}"


def literal(value: str) -> str:
    """A ClickHouse string literal that evaluates to exactly `value` (any Unicode, any control byte)."""
    return "'" + _ESCAPED.sub(_escape, value) + "'"
