"""PromQL aggregations (sum avg min max count group stddev stdvar topk bottomk quantile count_values,
by/without) over [series x steps] arrays, reduced per group with numpy.
"""

from __future__ import annotations

import re

import numpy as np

from ferry.query.promql.errors import PromQLError
from ferry.query.promql.rangefuncs import quantile_rows
from ferry.query.promql.values import Labels, Scal, Str, Value, Vec, fmt_float, group_reduce


def group_labels(labels: Labels, by: list[str] | None, without: list[str] | None) -> Labels:
    if by is not None:
        return {k: labels[k] for k in by if labels.get(k)}
    if without is not None:
        return {k: v for k, v in labels.items() if k not in without and k != "__name__"}
    return {}


AGGREGATIONS = {"sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "topk", "bottomk", "quantile",
                "count_values"}


def aggregate(op: str, vec: Vec, by: list[str] | None, without: list[str] | None, param: Value | None) -> Vec:
    if op not in AGGREGATIONS:
        raise PromQLError(f"unknown aggregation {op!r} (not in Prometheus 2.42)")
    n, s = vec.v.shape if vec.v.ndim == 2 else (0, 0)
    keys: dict[tuple[tuple[str, str], ...], int] = {}
    out_labels: list[Labels] = []
    gid = np.empty(len(vec.labels), dtype=np.int64)
    for i, lab in enumerate(vec.labels):
        g = group_labels(lab, by, without)
        # With `by`, every group's labels come in by's order: the items are already a key.
        k = tuple(g.items()) if by is not None else tuple(sorted(g.items()))
        j = keys.get(k)
        if j is None:
            j = keys[k] = len(out_labels)
            out_labels.append(g)
        gid[i] = j
    ng = len(out_labels)
    if op in ("topk", "bottomk"):
        return _topk(op, vec, gid, ng, param)
    if op == "count_values":
        if not isinstance(param, Str):
            raise PromQLError("expected string parameter for count_values")
        if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", param.s):
            raise PromQLError(f"invalid label name {param.s!r}", "execution")
        return _count_values(vec, gid, out_labels, param.s)
    if n == 0:
        return Vec([], np.zeros((0, vec.p.shape[1] if vec.p.ndim == 2 else 0)), np.zeros((0, vec.p.shape[1] if vec.p.ndim == 2 else 0), bool))
    p = vec.p
    gp = group_reduce(np.logical_or, gid, p, ng, False)
    with np.errstate(all="ignore"):
        if op in ("sum", "avg", "stddev", "stdvar"):
            res = _sequential(op, gid, vec.v, p, ng)
        elif op == "count":
            res = group_reduce(np.add, gid, p.astype(np.float64), ng, 0.0)
        elif op == "group":
            res = np.ones((ng, s))
        elif op in ("min", "max"):
            res = group_reduce(np.fmin if op == "min" else np.fmax, gid, np.where(p, vec.v, np.nan), ng, np.nan)
        elif op == "quantile":
            if not isinstance(param, Scal):
                raise PromQLError("expected scalar parameter for quantile")
            res = np.full((ng, s), np.nan)
            for g in range(ng):
                rows = np.flatnonzero(gid == g)
                res[g] = quantile_rows(vec.v[rows].T, p[rows].T, param.v)
        else:
            raise PromQLError(f"unknown aggregation {op!r} (not in Prometheus 2.42)")
    return Vec(out_labels, np.where(gp, res, np.nan), gp)


def _sequential(op: str, gid: np.ndarray, v: np.ndarray, p: np.ndarray, ng: int) -> np.ndarray:
    """sum / avg / stddev / stdvar folded over each group's series in input order with Prometheus'
    own update rules, so results agree to the last bit."""
    s = v.shape[1]
    order = np.argsort(gid, kind="stable")
    sg = gid[order]
    bounds = np.flatnonzero(np.r_[True, sg[1:] != sg[:-1]]) if len(sg) else np.zeros(0, np.int64)
    sizes = np.diff(np.r_[bounds, len(sg)])
    x = np.where(p, v, 0.0)[order]
    live = p[order]
    if op == "sum" and len(bounds) <= int(sizes.max(initial=0)):
        # Few large groups: numpy's reduction along axis 0 adds row after row.
        out = np.zeros((ng, s))
        for b, n in zip(bounds.tolist(), sizes.tolist(), strict=True):
            out[sg[b]] = np.add.reduce(x[b:b + n], axis=0)
        return out
    # Else one pass per rank within the groups: the k-th series of every group at once.
    rank = np.arange(len(sg)) - np.repeat(bounds, sizes)
    cnt_after = np.zeros((len(sg), s))  # how many present so far in its group, this row included
    acc = np.zeros((ng, s))
    total = np.zeros((ng, s))
    mean = np.zeros((ng, s))
    var = np.zeros((ng, s))
    has_inf = op == "avg" and bool(np.isinf(x).any())
    by_rank = np.argsort(rank, kind="stable")
    rank_sorted = rank[by_rank]
    rb = np.flatnonzero(np.r_[True, rank_sorted[1:] != rank_sorted[:-1]]) if len(rank) else np.zeros(0, np.int64)
    re_ = np.r_[rb[1:], len(rank)]
    for a, e in zip(rb.tolist(), re_.tolist(), strict=True):
        rows = by_rank[a:e]
        g = sg[rows]
        xr = x[rows]
        lv = live[rows]
        n = acc[g] + lv
        acc[g] = n
        cnt_after[rows] = n
        first = lv & (n == 1)
        if op == "sum":
            total[g] += xr
        elif op == "avg":
            mg = mean[g]
            with np.errstate(all="ignore"):
                upd = mg + (xr / n - mg / n)
            if has_inf:
                minf = np.isinf(mg)
                skip = minf & ((np.isinf(xr) & ((mg > 0) == (xr > 0))) | (~np.isinf(xr) & ~np.isnan(xr)))
                lv = lv & ~skip
            mean[g] = np.where(first, xr, np.where(lv, upd, mg))
        else:
            mg, vg = mean[g], var[g]
            with np.errstate(all="ignore"):
                delta = xr - mg
                nm = mg + delta / n
                nv = vg + delta * (xr - nm)
            mean[g] = np.where(first, xr, np.where(lv, nm, mg))
            var[g] = np.where(first, 0.0, np.where(lv, nv, vg))
    if op == "sum":
        return total
    if op == "avg":
        return mean
    with np.errstate(all="ignore"):
        out = var / acc
    return np.sqrt(out) if op == "stddev" else out


def _topk(op: str, vec: Vec, gid: np.ndarray, ng: int, param: Value | None) -> Vec:
    if not isinstance(param, Scal):
        raise PromQLError(f"expected scalar parameter for {op}")
    if np.isnan(param.v).any() or (np.abs(param.v) >= 2**63).any():
        raise PromQLError(f"Scalar value {param.v[0]} overflows int64", "execution")
    k = param.v.astype(np.int64)
    p = vec.p
    keep = np.zeros_like(p)
    for g in range(ng):
        rows = np.flatnonzero(gid == g)
        x = vec.v[rows]
        nan = np.isnan(x)
        # NaN ranks below every number for both topk and bottomk; absent rows last of all.
        score = np.where(nan, 0.0, -x if op == "topk" else x)
        # Ties keep the earlier series, but a NaN is displaced by a later one (Prometheus' heap).
        pos = np.arange(len(rows), dtype=np.int64)[:, None]
        tie = np.where(nan, -pos, pos)
        order = np.lexsort((tie, score, nan, ~p[rows]), axis=0)
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(len(rows))[:, None].repeat(order.shape[1], 1), axis=0)
        keep[rows] = p[rows] & (rank < k[None, :])
        # Where the k-th and the next value are equal, which of them stays depends on the order the
        # series reached Prometheus' heap: those steps are played through a heap as it keeps one.
        cols = _ambiguous(x, p[rows], order, k)
        if len(cols):
            keep[np.ix_(rows, cols)] = _heap_choice(op == "topk", x[:, cols], p[rows][:, cols], k[cols])
    return Vec(vec.labels, np.where(keep, vec.v, np.nan), keep)


def _ambiguous(x: np.ndarray, p: np.ndarray, order: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The steps (columns) where more than k series are present and the k-th and (k+1)-th of
    `order` (best first) have equal values, NaN counting as equal to NaN."""
    n, s = x.shape
    count = p.sum(axis=0)
    cols = np.flatnonzero((k >= 1) & (count > k))
    if not len(cols):
        return cols
    a = x[order[k[cols] - 1, cols], cols]
    b = x[order[k[cols], cols], cols]
    tie = (a == b) | (np.isnan(a) & np.isnan(b))
    return cols[tie]


def _heap_choice(top: bool, x: np.ndarray, p: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Which series (rows) a Prometheus 2.42 topk (else bottomk) heap of size k holds after taking
    the present ones in row order, every column (step) at once. The heap's root is its least
    wanted element, NaN below any number. A full heap takes a series when the root is worse or
    NaN: for k = 1 in place, else by popping the root and pushing the series."""
    n, s = x.shape
    cap = int(min(int(k.max(initial=0)), n))
    held = np.zeros((n, s), dtype=bool)
    if cap < 1:
        return held
    hv = np.full((s, cap), np.nan)
    hi = np.zeros((s, cap), dtype=np.int64)
    size = np.zeros(s, dtype=np.int64)
    col = np.arange(s)

    def below(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # the heap's "less": a goes nearer the root
        with np.errstate(invalid="ignore"):
            return np.isnan(a) | ((a < b) if top else (a > b))

    def swap(m: np.ndarray, i: np.ndarray, j: np.ndarray) -> None:
        c, a, b = col[m], i[m], j[m]
        hv[c, a], hv[c, b] = hv[c, b], hv[c, a].copy()
        hi[c, a], hi[c, b] = hi[c, b], hi[c, a].copy()

    for r in range(n):
        live = p[r] & (k >= 1)
        if not live.any():
            continue
        xr = x[r]
        push = live & (size < k)
        root = hv[:, 0]
        with np.errstate(invalid="ignore"):
            worse = (root < xr) if top else (root > xr)
        take = live & ~push & (worse | np.isnan(root))
        if take.any():
            one = take & (k == 1)
            hv[col[one], 0] = xr[one]
            hi[col[one], 0] = r
            pop = take & (k > 1)
            if pop.any():  # the root to the end, the new root sinks within the rest; the end goes
                last = size - 1
                swap(pop, np.zeros(s, dtype=np.int64), last)
                i = np.zeros(s, dtype=np.int64)
                act = pop.copy()
                while act.any():
                    j1 = 2 * i + 1
                    act &= j1 < last
                    j2 = j1 + 1
                    c1, c2 = np.minimum(j1, cap - 1), np.minimum(j2, cap - 1)
                    j = np.where((j2 < last) & below(hv[col, c2], hv[col, c1]), c2, c1)
                    act &= below(hv[col, j], hv[col, i])
                    swap(act, i, j)
                    i = np.where(act, j, i)
                size -= pop
                push |= pop
        if push.any():  # at the end, rising while below its parent
            j = np.minimum(size, cap - 1)
            hv[col[push], j[push]] = xr[push]
            hi[col[push], j[push]] = r
            act = push.copy()
            while act.any():
                par = np.maximum((j - 1) // 2, 0)
                act &= (j > 0) & below(hv[col, j], hv[col, par])
                swap(act, j, par)
                j = np.where(act, par, j)
            size += push
    for slot in range(cap):
        m = slot < size
        held[hi[m, slot], col[m]] = True
    return held


def _count_values(vec: Vec, gid: np.ndarray, glabels: list[Labels], label: str) -> Vec:
    s = vec.p.shape[1] if vec.p.ndim == 2 else 0
    rr, cc = np.nonzero(vec.p)
    vals = vec.v[rr, cc]
    fmt_cache: dict[float | str, str] = {}
    out_index: dict[tuple[tuple[str, str], ...], int] = {}
    out_labels: list[Labels] = []
    row_of = np.empty(len(rr), dtype=np.int64)
    for i, (r, x) in enumerate(zip(rr.tolist(), vals.tolist(), strict=True)):
        key_x: float | str = "NaN" if x != x else x
        sv = fmt_cache.get(key_x)
        if sv is None:
            sv = fmt_cache[key_x] = fmt_float(x)
        lab = dict(glabels[gid[r]])
        lab[label] = sv
        k = tuple(sorted(lab.items()))
        j = out_index.get(k)
        if j is None:
            j = out_index[k] = len(out_labels)
            out_labels.append(lab)
        row_of[i] = j
    cnt = np.zeros((len(out_labels), s))
    np.add.at(cnt, (row_of, cc), 1.0)  # one entry per present sample: small
    p = cnt > 0
    return Vec(out_labels, np.where(p, cnt, np.nan), p)
