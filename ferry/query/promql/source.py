"""What the PromQL engine reads: series of samples selected by label matchers (the store or a test).

The engine (ferry/query/promql) evaluates; a Source only selects, so the store's (ferry/query/prom_store.py)
and the tests' in-memory one are interchangeable.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

# Prometheus' staleness marker: a NaN with this exact bit pattern (value.StaleNaN in Prometheus).
STALE_NAN_BITS = 0x7FF0000000000002
STALE_NAN: float = struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]


def is_stale(values: np.ndarray) -> np.ndarray:
    """Which of `values` (float64) are staleness markers (not any NaN: a written NaN is a value)."""
    return values.view(np.uint64) == np.uint64(STALE_NAN_BITS)


@dataclass(frozen=True)
class Matcher:
    name: str
    op: Literal["=", "!=", "=~", "!~"]
    value: str  # for =~ and !~ a regular expression, anchored at both ends as Prometheus does


@dataclass(frozen=True)
class Hint:
    """What the engine will do with a selection, so a source may narrow or pre-aggregate it (a
    source is free to ignore it and return raw samples). `func` is the range function applied
    (rate, sum_over_time, ...) or None for an instant selector; `range_ms` its window; `step_ms`
    the evaluation step; `by`/`without` the grouping of an aggregation directly above it."""

    func: str | None = None
    range_ms: int = 0
    step_ms: int = 0
    by: tuple[str, ...] | None = None
    without: tuple[str, ...] | None = None


@dataclass
class Series:
    labels: dict[str, str]  # with __name__
    t: np.ndarray  # int64 milliseconds, ascending, no duplicates
    v: np.ndarray  # float64; staleness markers are STALE_NAN (see is_stale)
    exemplars: list[tuple[int, float, dict[str, str]]] = field(default_factory=list)  # (t ms, value, labels)
    # sorted(labels.items()) as a tuple, when the source keeps it (the engine orders series by it)
    key: tuple[tuple[str, str], ...] | None = None


class Source(Protocol):
    async def select(self, matchers: list[Matcher], start_ms: int, end_ms: int, hint: Hint | None = None) -> list[Series]:
        """Every series matching all `matchers` with its samples in [start_ms, end_ms] (both ends
        included). A matcher on a missing label matches the empty string, as in Prometheus."""
        ...


# Range functions a source may evaluate itself (select_range_function): each needs only a window's
# samples, never other series, so SQL over the metric tables can compute them per series and step.
PUSHABLE_RANGE_FUNCTIONS = frozenset({
    "rate", "increase", "delta", "irate", "idelta", "changes", "resets", "count_over_time", "sum_over_time",
    "avg_over_time", "min_over_time", "max_over_time", "last_over_time", "present_over_time",
})


class RangeFunctionSource(Source, Protocol):
    """Optional addition to Source: evaluate a range function in the store instead of handing raw
    samples to the engine (a dashboard's rate() over thousands of series then moves one value per
    series and step, not every sample)."""

    async def select_range_function(self, func: str, matchers: list[Matcher], ref_ms: np.ndarray, range_ms: int,
                                    hint: Hint) -> list[Series] | None:
        """For every series matching `matchers`, FUNC (one of PUSHABLE_RANGE_FUNCTIONS) over each
        window [ref - range_ms, ref] (both ends included, staleness markers skipped) for every ref in
        `ref_ms` (int64, strictly ascending): a Series with the series' own labels (with __name__),
        `t` the refs where the function has a value (rate and friends need two samples, the others
        one) and `v` that value, exactly as Prometheus 2.42 computes it. None: not supported here,
        the engine selects raw samples instead."""
        ...
