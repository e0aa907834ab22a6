"""What a stage is: a consumer group that turns a list of input batches into output batches.

Stages never acknowledge, publish or retry themselves; runtime/runner.py does that for every stage alike.
A stage that must keep inputs past the bus's ack_wait (a tail sampler's decision window) returns
them as held in a `Result` and lets go of them later with `StageContext.release`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ferry.bus.codec import Batch


@dataclass(frozen=True)
class Output:
    topic: str
    batch: Batch
    # Which bus it goes to: None is the stage's own; a name is one of the other buses the runner
    # was built with (an exporter to another region's bus). Durable there before any input is acked.
    bus: str | None = None


@dataclass(frozen=True)
class Result:
    """What process() returns when some inputs are not done yet.

    `hold` names input batch ids the stage keeps in its own state: the runner keeps their messages
    alive on the bus (in-progress acks) and acknowledges them only at `StageContext.release`. If the
    process dies first they are redelivered (at-least-once), so a stage must take a batch id twice.
    """

    outputs: list[Output] = field(default_factory=list)
    hold: frozenset[str] = frozenset()


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


class StageContext(Protocol):
    """What the runner lets a stage do outside process(); given to a stage's `bind(ctx)` at start."""

    async def release(self, batch_ids: Iterable[str], outputs: Sequence[Output] = ()) -> None:
        """Publish `outputs`, then acknowledge the held inputs `batch_ids` (unknown ids are ignored).

        Raises RetryableError when an output could not be made durable: nothing is acknowledged
        then and the inputs stay held, so the stage may call again.
        """
        ...


class Stage(Protocol):
    group: str  # the stage instance's name (pipeline.stages), which is its consumer group's
    kind: str  # its kind (registry): the `component` label of its self-metrics
    fetch: FetchPolicy

    async def process(self, topic: str, batches: list[Batch]) -> list[Output] | Result:
        """Return what to publish (and, in a Result, which inputs to hold). Raising RetryableError
        makes the runner redeliver later. A stage that holds inputs also defines `bind(ctx)`."""
        ...

    async def close(self) -> None:
        """Called once fetching has stopped; a stage may still release held inputs here."""
        ...
