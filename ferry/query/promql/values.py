"""The engine's value types (instant vectors over a step grid, scalars, strings, range vectors) and
the query Result rendered exactly as Prometheus' HTTP API renders its `data` object.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Labels = dict[str, str]


@dataclass
class Vec:
    """An instant vector evaluated at every step: row i is series `labels[i]`, `v[i, j]` its value at
    step j where `p[i, j]` (present). `st` holds the samples' own timestamps for a raw selector
    (what timestamp() reports), else None."""

    labels: list[Labels]
    v: np.ndarray  # float64 [n, S]
    p: np.ndarray  # bool [n, S]
    st: np.ndarray | None = None  # int64 [n, S]


@dataclass
class Scal:
    v: np.ndarray  # float64 [S]


@dataclass
class Str:
    s: str


@dataclass
class RangeSeries:
    labels: Labels
    t: np.ndarray  # int64 ms, ascending, no staleness markers
    v: np.ndarray  # float64


@dataclass
class RangeArg:
    """A range vector as a function sees it: series plus, for every step, the window [ref - range,
    ref] (both ends included, as in Prometheus 2.x)."""

    series: list[RangeSeries]
    ref: np.ndarray  # int64 [S]: the window's end at each step (step time - offset, or @ - offset)
    range_ms: int
    offset_ms: int = 0
    selector_matchers: list[tuple[str, str, str]] | None = None  # for absent_over_time's labels
    flat: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # concat_series of `series`, if known
    _win: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def windows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(T, V, a, b, starts): all samples concatenated, and per series and step the slice
        [a, b) of T/V inside the window. Computed once."""
        if self._win is None:
            tt, vv, starts = self.flat or concat_series([x.t for x in self.series], [x.v for x in self.series])
            a, b = search_rows_many(tt, starts, [(self.ref - self.range_ms, "left"), (self.ref, "right")])
            self._win = (tt, vv, a, b, starts)
        return self._win


def concat_series(ts: list[np.ndarray], vs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All series' samples end to end, and where each series starts (n + 1 offsets)."""
    n = len(ts)
    starts = np.zeros(n + 1, dtype=np.int64)
    if n:
        np.cumsum(np.fromiter((len(t) for t in ts), dtype=np.int64, count=n), out=starts[1:])
        return np.concatenate(ts).astype(np.int64, copy=False), np.concatenate(vs).astype(np.float64, copy=False), starts
    return np.zeros(0, np.int64), np.zeros(0), starts


def search_rows(tt: np.ndarray, starts: np.ndarray, q: np.ndarray, side: str) -> np.ndarray:
    """np.searchsorted of the times Q [S] in every series' slice of TT at once, as absolute indexes
    into TT ([n, S])."""
    return search_rows_many(tt, starts, [(q, side)])[0]


# Series sharing one timestamp grid are searched once per grid when there are at most this many grids
# per series (typical: every series of one scrape target has its target's timestamps).
_MAX_GRIDS_PER_SERIES = 0.25


def _grids(tt: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(grid id of each series, its first series) when series fall into few groups of identical
    timestamps, else None."""
    n = len(starts) - 1
    lens = np.diff(starts)
    if n < 8 or (lens == 0).any():
        return None
    # Candidates by (length, first, last, sum of times); equality is then checked exactly.
    fp = np.stack([lens, tt[starts[:-1]], tt[starts[1:] - 1], np.add.reduceat(tt, starts[:-1])], axis=1)
    _, rep, gid = np.unique(fp, axis=0, return_index=True, return_inverse=True)
    gid = gid.reshape(-1)
    if len(rep) > max(1, int(n * _MAX_GRIDS_PER_SERIES)):
        return None
    # Series of one grid that lie next to each other are checked as one [rows, length] view of TT
    # (no gather); runs alternate between grids only as often as the series' order mixes them.
    cut = np.flatnonzero(np.r_[True, gid[1:] != gid[:-1], True])
    if len(cut) - 1 <= max(8, n // 16):
        for s, e in zip(cut[:-1].tolist(), cut[1:].tolist(), strict=True):
            r = int(rep[gid[s]])
            length = int(lens[r])
            block = tt[starts[s]:starts[e]].reshape(e - s, length)
            if not (block == tt[starts[r]:starts[r] + length][None, :]).all():
                return None
        return gid, rep
    for g, r in enumerate(rep):
        rows = np.flatnonzero(gid == g)
        length = int(lens[r])
        block = tt[starts[rows][:, None] + np.arange(length)[None, :]]
        if not (block == tt[starts[r]:starts[r] + length][None, :]).all():
            return None
    return gid, rep


def search_rows_many(tt: np.ndarray, starts: np.ndarray, queries: list[tuple[np.ndarray, str]]) -> list[np.ndarray]:
    """search_rows for several (times, side) queries over the same series, sharing the work: series
    with one timestamp grid are searched once per grid; otherwise each series' times are shifted
    into a band of their own, one search."""
    n = len(starts) - 1
    if n == 0 or len(tt) == 0:
        return [np.broadcast_to(starts[:-1, None], (n, len(q))).copy() for q, _ in queries]
    grids = _grids(tt, starts)
    if grids is not None:
        gid, rep = grids
        out = []
        for q, side in queries:
            per_grid = np.stack([np.searchsorted(tt[starts[r]:starts[r + 1]], q, side=side) for r in rep])  # type: ignore[call-overload]
            out.append(per_grid[gid] + starts[:-1, None])
        return out
    lo = min(int(tt.min()), min(int(q.min()) for q, _ in queries))
    span = max(int(tt.max()), max(int(q.max()) for q, _ in queries)) - lo + 1
    sid = np.repeat(np.arange(n, dtype=np.int64), np.diff(starts))
    key = sid * span + (tt - lo)
    band = np.arange(n, dtype=np.int64)[:, None] * span
    return [np.searchsorted(key, (band + (q - lo)[None, :]).ravel(), side=side).reshape(n, len(q))  # type: ignore[call-overload]
            for q, side in queries]


Value = Vec | Scal | Str | RangeArg


def fmt_float(v: float) -> str:
    """Go's strconv.FormatFloat(v, 'f', -1, 64) as Prometheus writes sample values."""
    v = float(v)
    if v != v:
        return "NaN"
    if v == math.inf:
        return "+Inf"
    if v == -math.inf:
        return "-Inf"
    r = repr(v)
    if "e" in r:
        return np.format_float_positional(v, unique=True, trim="-")
    return r[:-2] if r.endswith(".0") else r


def fmt_values(arr: np.ndarray) -> list[str]:
    """fmt_float over an array at C speed: repr for fractions, int() for whole numbers, and
    fmt_float only for what Python would write with an exponent (below 1e-4, from 1e16 on) or
    for NaN, ±Inf and -0."""
    out = np.array(list(map(repr, arr.tolist())), dtype=object)
    with np.errstate(all="ignore"):
        mag = np.abs(arr)
        odd = ~np.isfinite(arr) | (mag >= 1e16) | ((mag < 1e-4) & (mag > 0)) | ((arr == 0) & np.signbit(arr))
        whole = ~odd & (arr == np.trunc(arr))
    if whole.any():
        out[whole] = list(map(str, arr[whole].astype(np.int64).tolist()))
    if odd.any():
        out[odd] = [fmt_float(x) for x in arr[odd].tolist()]
    return out.tolist()  # type: ignore[no-any-return]


def group_reduce(ufunc: np.ufunc, ids: np.ndarray, x: np.ndarray, ng: int, fill: float | bool) -> np.ndarray:
    """Rows of X [n, S] reduced by their group id (0 <= id < ng) with UFUNC: [ng, S]."""
    s = x.shape[1] if x.ndim == 2 else 0
    out = np.full((ng, s), fill, dtype=x.dtype)
    if len(ids) == 0:
        return out
    order = np.argsort(ids, kind="stable")
    srt = ids[order]
    bounds = np.flatnonzero(np.r_[True, srt[1:] != srt[:-1]])
    out[srt[bounds]] = ufunc.reduceat(x[order], bounds, axis=0)
    return out


def fmt_time(t_ms: int) -> float | int:
    t = int(t_ms)
    return t // 1000 if t % 1000 == 0 else t / 1000


def labels_key(labels: Labels) -> list[tuple[str, str]]:
    """Prometheus' labels.Compare order (names then values, pairwise by sorted name)."""
    return sorted(labels.items())


@dataclass
class Result:
    """What a query evaluated to, in Prometheus' terms (`resultType` + `result`)."""

    result_type: str  # matrix | vector | scalar | string
    steps: np.ndarray
    value: Value | list[RangeSeries]
    order: str | None = None  # "asc" / "desc" for an instant sort()/sort_desc()

    def to_json(self) -> dict[str, Any]:
        rt = self.result_type
        if rt == "string":
            assert isinstance(self.value, Str)
            return {"resultType": "string", "result": [fmt_time(self.steps[0]), self.value.s]}
        if rt == "scalar":
            assert isinstance(self.value, Scal)
            return {"resultType": "scalar", "result": [fmt_time(self.steps[0]), fmt_float(float(self.value.v[0]))]}
        if rt == "vector":
            assert isinstance(self.value, Vec)
            t = fmt_time(self.steps[0])
            vec = self.value
            rows = [i for i in range(len(vec.labels)) if vec.p[i, 0]]
            if self.order:
                vals = vec.v[rows, 0] if rows else np.zeros(0)
                # NaN last in both directions, as Prometheus' sort()/sort_desc().
                key = np.where(np.isnan(vals), np.inf, -vals if self.order == "desc" else vals)
                nan_last = np.isnan(vals)
                idx = np.lexsort((key, nan_last))
                rows = [rows[i] for i in idx]
            else:
                rows.sort(key=lambda i: labels_key(vec.labels[i]))
            return {"resultType": "vector", "result": [
                {"metric": dict(sorted(vec.labels[i].items())), "value": [t, fmt_float(float(vec.v[i, 0]))]}
                for i in rows]}
        # matrix
        out: list[tuple[list[tuple[str, str]], dict[str, Any]]] = []
        if isinstance(self.value, Vec):
            vec = self.value
            times = np.array([fmt_time(t) for t in self.steps], dtype=object)
            for i, lab in enumerate(vec.labels):
                idx = np.flatnonzero(vec.p[i])
                if len(idx) == 0:
                    continue
                vals = fmt_values(vec.v[i, idx])
                out.append((labels_key(lab), {"metric": dict(sorted(lab.items())),
                                              "values": list(map(list, zip(times[idx].tolist(), vals, strict=True)))}))
        elif isinstance(self.value, Scal):
            times = [fmt_time(t) for t in self.steps]
            out.append(([], {"metric": {}, "values": list(map(list, zip(times, fmt_values(self.value.v), strict=True)))}))
        else:
            assert isinstance(self.value, list)
            for rs in self.value:
                if len(rs.t) == 0:
                    continue
                out.append((labels_key(rs.labels), {"metric": dict(sorted(rs.labels.items())), "values": [
                    [fmt_time(t), x] for t, x in zip(rs.t.tolist(), fmt_values(rs.v), strict=True)]}))
        out.sort(key=lambda x: x[0])
        return {"resultType": "matrix", "result": [o[1] for o in out]}
