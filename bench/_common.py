"""Helpers the benchmarks share: timing and percentiles, disk usage, load average, and running a step
in a child process (a store directory can be open in one process only)."""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import queue
import subprocess
import time
from pathlib import Path
from typing import Any


def ms(t0: float) -> float:
    """Milliseconds since perf_counter() read `t0`."""
    return (time.perf_counter() - t0) * 1000


def pct(xs: list[float], p: float) -> float:
    """Percentile with linear interpolation between the two nearest ranks."""
    s = sorted(xs)
    k = (len(s) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def du(path: Path) -> int:
    """Bytes under `path`, as `du -sb` counts them."""
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def load_avg() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def in_child(target: Any, *args: Any) -> Any:
    """Run target(*args, queue) in a fresh process and return what it puts on the queue."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    while True:
        try:
            result = q.get(timeout=1.0)
            break
        except queue.Empty:
            if not p.is_alive():
                raise RuntimeError(f"{target.__name__} process exited with {p.exitcode}") from None
    p.join()
    return result
