"""An ordered list of transforms compiled once into steps, and run over one batch of log records.

A step is a function over a Frame (frame.py): it replaces `frame.df` with whole-batch polars
expressions, never a Python loop over records.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from ferry.transforms.config import Transform
from ferry.transforms.frame import Frame

Step = Callable[[Frame], None]


@dataclass(frozen=True)
class CompileContext:
    stage: str  # the stage instance's name (labels of its counters)
    outputs: tuple[str, ...]  # topics the stage may emit to
    config_dir: Path = field(default_factory=Path.cwd)  # relative paths in transform settings start here


@dataclass
class Chain:
    steps: list[tuple[str, Step]]  # (label "<index>:<type>", step)

    @classmethod
    def compile(cls, transforms: Sequence[Transform], ctx: CompileContext) -> Chain:
        return cls([(f"{i}:{t.type}", t.compile(ctx)) for i, t in enumerate(transforms)])

    def __bool__(self) -> bool:
        return bool(self.steps)

    def run(self, table: pa.Table, tenant: str = "default") -> Frame:
        """Every step over `table` (LOGS schema), in order; the caller reads `to_table()`, `emitted`, `counts`."""
        frame = Frame.from_table(table, tenant)
        for label, step in self.steps:
            frame.label = label
            step(frame)
            if frame.height == 0:
                break
        return frame
