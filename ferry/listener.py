"""What a receiver's port is to the rest of ferry: the banner shows it and the port check binds it.

Low in the layers: a receiver's config.py (imported before any role runs) and the registry both use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Listener:
    """One port a receiver opens: what the port check binds and the banner shows."""

    setting: str  # config key of the port, relative to the component's section (the registry prefixes it)
    transport: Literal["tcp", "udp"]
    port: int
    label: str  # banner line; listeners with the same label share one line
    scheme: str = ""  # shown before host:port in the banner (http://, udp://)
    note: str = ""  # shown after it
