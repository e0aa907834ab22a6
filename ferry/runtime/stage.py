"""What a stage is: a consumer group that turns a list of input batches into output batches.

Stages never acknowledge, publish or retry themselves; runner.py does that for every stage alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ferry.bus.codec import Batch


@dataclass(frozen=True)
class Output:
    topic: str
    batch: Batch


@dataclass(frozen=True)
class FetchPolicy:
    """How much input the runner gathers before calling the stage once."""

    max_msgs: int = 64
    max_rows: int = 100_000
    max_wait_s: float = 0.05
    # Stop gathering sooner once the topic has nothing more waiting, this long has passed and at
    # least drained_min_rows are in hand: a burst's last rows then go out without waiting the full
    # max_wait_s, while a trickle still gathers for max_wait_s (for the writer: one insert, not
    # several small ones, per max_wait_s).
    drained_wait_s: float | None = None
    drained_min_rows: int = 0


class Stage(Protocol):
    group: str  # consumer group name; its input topics come from bus/topics.py
    fetch: FetchPolicy

    async def process(self, topic: str, batches: list[Batch]) -> list[Output]:
        """Return what to publish. Raising RetryableError makes the runner redeliver later."""
        ...

    async def close(self) -> None: ...
