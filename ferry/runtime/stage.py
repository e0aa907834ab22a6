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
    # Stop gathering sooner once the topic has nothing more waiting and this long has passed:
    # a burst's last rows then go out without waiting the full max_wait_s, while under steady
    # load a call still gathers at least this long.
    drained_wait_s: float | None = None


class Stage(Protocol):
    group: str  # consumer group name; its input topics come from bus/topics.py
    fetch: FetchPolicy

    async def process(self, topic: str, batches: list[Batch]) -> list[Output]:
        """Return what to publish. Raising RetryableError makes the runner redeliver later."""
        ...

    async def close(self) -> None: ...
