"""Per-process readiness flags that roles set when they are serving.

The supervisor waits for them before it tells the user ferry is ready.
"""

from __future__ import annotations

_ready: set[str] = set()


def mark(role: str) -> None:
    _ready.add(role)


def is_ready(role: str) -> bool:
    return role in _ready
