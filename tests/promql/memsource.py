"""An in-memory PromQL Source for tests: a plain list of series, filtered by matchers and time.

Matchers behave as Prometheus': a missing label matches "", regular expressions are anchored.
"""

from __future__ import annotations

import re

import numpy as np

from ferry.query.promql.rangefuncs import over_time
from ferry.query.promql.source import Hint, Matcher, Series, is_stale
from ferry.query.promql.values import RangeArg, RangeSeries


def _matches(m: Matcher, labels: dict[str, str]) -> bool:
    v = labels.get(m.name, "")
    if m.op == "=":
        return v == m.value
    if m.op == "!=":
        return v != m.value
    hit = re.fullmatch(f"(?:{m.value})", v) is not None
    return hit if m.op == "=~" else not hit


class MemorySource:
    """With `pushdown`, it also evaluates range functions itself (RangeFunctionSource), as a store
    computing them in SQL would: the engine must then give the same answers."""

    def __init__(self, data: list[tuple[dict[str, str], list[tuple[int, float]]]], pushdown: bool = False) -> None:
        self.pushdown = pushdown
        self.pushed: list[str] = []
        self.series = [Series(dict(labels), np.array([t for t, _ in s], dtype=np.int64),
                              np.array([v for _, v in s], dtype=np.float64)) for labels, s in data]
        self.calls: list[tuple[list[Matcher], int, int, Hint | None]] = []

    async def select(self, matchers: list[Matcher], start_ms: int, end_ms: int, hint: Hint | None = None) -> list[Series]:
        self.calls.append((matchers, start_ms, end_ms, hint))
        out = []
        for s in self.series:
            if all(_matches(m, s.labels) for m in matchers):
                lo, hi = np.searchsorted(s.t, start_ms, "left"), np.searchsorted(s.t, end_ms, "right")
                if hi > lo:
                    out.append(Series(dict(s.labels), s.t[lo:hi], s.v[lo:hi]))
        return out

    async def select_range_function(self, func: str, matchers: list[Matcher], ref_ms: np.ndarray, range_ms: int,
                                    hint: Hint) -> list[Series] | None:
        if not self.pushdown:
            return None
        self.pushed.append(func)
        raw = await self.select(matchers, int(ref_ms[0]) - range_ms, int(ref_ms[-1]), hint)
        series = [RangeSeries(s.labels, s.t[~is_stale(s.v)], s.v[~is_stale(s.v)]) for s in raw]
        v, p = over_time(RangeArg(series, ref_ms, range_ms), func, [])
        return [Series(s.labels, ref_ms[p[i]], v[i, p[i]]) for i, s in enumerate(series)]
