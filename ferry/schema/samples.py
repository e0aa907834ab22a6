"""Small hand-made inputs for warm-ups and tests: raw syslog lines as a RAW_LINES table.

Kept tiny and dependency-free: the parser warms up with it, tests build inputs with it.
"""

from __future__ import annotations

import time

import pyarrow as pa

from ferry.schema import RAW_LINES


def raw_lines(lines: list[str], peer: str = "127.0.0.1:514", transport: str = "tcp") -> pa.Table:
    n = len(lines)
    now = time.time_ns()
    return pa.Table.from_arrays(
        [
            pa.array([now] * n, pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
            pa.array([peer] * n, pa.string()),
            pa.array([transport] * n, pa.string()),
            pa.array(lines, pa.string()),
        ],
        schema=RAW_LINES,
    )
