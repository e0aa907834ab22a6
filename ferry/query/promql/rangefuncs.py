"""Range-vector functions (rate, *_over_time, deriv, holt_winters, ...) evaluated for every series
and step at once: windows are index slices found by searchsorted, values gathered into blocks.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ferry.query.promql.errors import PromQLError
from ferry.query.promql.values import RangeArg

# Gathered blocks are processed in chunks of about this many cells, to bound memory.
_BLOCK_CELLS = 4_000_000

BlockFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _gather(arg: RangeArg, min_count: int, fn: BlockFn, extra: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Apply FN(X, T, M, C, extra) to every (series, step) window with at least MIN_COUNT samples:
    X/T the window's values/times padded to the widest window (M marks real cells), C the counts,
    `extra` the per-step scalar argument at each window's step. Returns (values [n, S], present)."""
    tt, vv, a, b, _ = arg.windows()
    cnt = b - a
    present = cnt >= max(min_count, 1)
    out = np.full(cnt.shape, np.nan)
    rr, cc = np.nonzero(present)
    if len(rr) == 0:
        return out, present
    aa = a[rr, cc]
    cn = cnt[rr, cc]
    width = int(cn.max())
    chunk = max(1, _BLOCK_CELLS // width)
    ar = np.arange(width)
    res = np.empty(len(rr))
    for s in range(0, len(rr), chunk):
        e = min(len(rr), s + chunk)
        c = cn[s:e]
        m = ar[None, :] < c[:, None]
        idx = np.where(m, aa[s:e, None] + ar[None, :], 0)
        x = np.where(m, vv[idx], np.nan)
        t = tt[idx]
        with np.errstate(all="ignore"):
            res[s:e] = fn(x, t, m, c, extra[cc[s:e]] if extra is not None else np.zeros(0))
    out[rr, cc] = res
    return out, present


def _cells(arg: RangeArg, min_count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The (series, step) cells whose window holds at least MIN_COUNT samples: present mask, rows,
    columns, and each window's [A, B) slice."""
    _, _, a, b, _ = arg.windows()
    present = (b - a) >= max(min_count, 1)
    rr, cc = np.nonzero(present)
    return present, rr, cc, a[rr, cc], b[rr, cc]


def _reduceat(ufunc: np.ufunc, values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """UFUNC over values[lo:hi] for every pair (lo < hi), in C, summing in sample order."""
    if len(lo) == 0:
        return np.zeros(0)
    idx = np.empty(2 * len(lo), dtype=np.int64)
    idx[0::2] = lo
    idx[1::2] = hi
    ext = np.append(values, values[:1] if len(values) else 0.0)  # hi may equal len(values)
    return ufunc.reduceat(ext, idx)[0::2]


def _scatter(shape: tuple[int, ...], rr: np.ndarray, cc: np.ndarray, res: np.ndarray) -> np.ndarray:
    out = np.full(shape, np.nan)
    out[rr, cc] = res
    return out


# Rows of cells computed together: small enough that a block's temporaries are reused from the
# allocator and stay in cache (measured, 6,000 series x 700 steps: 0.1 s in blocks of 60k cells,
# 0.26-1.25 s all at once).
_ROW_BLOCK_CELLS = 60_000


def _one_grid(arg: RangeArg) -> tuple[np.ndarray, np.ndarray] | None:
    """(T [L], V [n, L]) when every series has the very same sample times (one target's series, or
    targets scraped in step), read from the concatenated samples without a copy; else None."""
    if arg.flat is None or arg._win is not None:
        return None
    tt, vv, starts = arg.flat
    n = len(starts) - 1
    if n < 2 or len(tt) == 0 or len(tt) % n:
        return None
    length = len(tt) // n
    if not (starts == np.arange(n + 1, dtype=np.int64) * length).all():
        return None
    grid = tt[:length]
    if not (tt.reshape(n, length) == grid[None, :]).all():
        return None
    return grid, vv.reshape(n, length)


def _rate_one_grid(arg: RangeArg, grid: np.ndarray, vals: np.ndarray, is_counter: bool,
                   is_rate: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """extrapolated_rate when the series share one grid: every window is the same columns of VALS,
    so what depends on times alone is computed once per step, not per series and step. The
    arithmetic is _rate_block's, operation for operation (results agree to the bit). None when a
    counter resets somewhere (those windows want their corrections added one at a time)."""
    if is_counter and (vals[:, 1:] < vals[:, :-1]).any():
        return None
    n, s = vals.shape[0], len(arg.ref)
    lo = np.searchsorted(grid, arg.ref - arg.range_ms, side="left")
    hi = np.searchsorted(grid, arg.ref, side="right")
    cols = np.flatnonzero((hi - lo) >= 2)
    out = np.full((n, s), np.nan)
    present = np.zeros((n, s), dtype=bool)
    if len(cols) == 0:
        return out, present
    present[:, cols] = True
    lo, hi, ref = lo[cols], hi[cols], arg.ref[cols]
    tf, tl = grid[lo], grid[hi - 1]
    with np.errstate(all="ignore"):
        dur_start0 = (tf - (ref - arg.range_ms)) / 1000.0
        dur_end = (ref - tl) / 1000.0
        sampled = (tl - tf) / 1000.0
        avg_between = sampled / (hi - lo - 1)
        threshold = avg_between * 1.1
        end_part = np.where(dur_end < threshold, dur_end, avg_between / 2)
        rows = max(1, _ROW_BLOCK_CELLS // len(cols))
        for r in range(0, n, rows):
            first, last = vals[r:r + rows, lo], vals[r:r + rows, hi - 1]
            result = last - first
            dur_start = dur_start0
            if is_counter:
                dur_zero = sampled * (first / result)
                use_zero = (result > 0) & (first >= 0) & (dur_zero < dur_start)
                dur_start = np.where(use_zero, dur_zero, dur_start)
            interval = sampled + np.where(dur_start < threshold, dur_start, avg_between / 2)
            interval += end_part
            factor = interval / sampled
            if is_rate:
                factor = factor / (arg.range_ms / 1000.0)
            out[r:r + rows, cols] = result * factor
    return out, present


def extrapolated_rate(arg: RangeArg, is_counter: bool, is_rate: bool) -> tuple[np.ndarray, np.ndarray]:
    """Prometheus' extrapolatedRate (rate, increase, delta), for every series and step."""
    one = _one_grid(arg)
    if one is not None:
        done = _rate_one_grid(arg, one[0], one[1], is_counter, is_rate)
        if done is not None:
            return done
    tt, vv, a, b, starts = arg.windows()
    present = (b - a) >= 2
    out = np.full(a.shape, np.nan)
    if not present.any():
        return out, present
    # corr[i]: what a counter reset between samples i-1 and i adds back (not across series).
    drop = np.zeros(len(vv), dtype=bool)
    if is_counter:
        drop[1:] = vv[1:] < vv[:-1]
        drop[starts[:-1][starts[:-1] < len(vv)]] = False
    resets = None
    if drop.any():
        corr = np.zeros(len(vv))
        corr[drop] = vv[np.flatnonzero(drop) - 1]
        resets = (np.concatenate([[0], np.cumsum(drop)]), corr)
    rows = max(1, _ROW_BLOCK_CELLS // max(1, a.shape[1]))
    for r in range(0, a.shape[0], rows):
        blk = slice(r, r + rows)
        out[blk] = _rate_block(arg, tt, vv, a[blk], b[blk], present[blk], resets, is_counter, is_rate)
    return out, present


def _rate_block(arg: RangeArg, tt: np.ndarray, vv: np.ndarray, a: np.ndarray, b: np.ndarray, present: np.ndarray,
                resets: tuple[np.ndarray, np.ndarray] | None, is_counter: bool, is_rate: bool) -> np.ndarray:
    # Every cell computed ([rows x steps], no gather of the present ones and scatter back): windows
    # of fewer than two samples read a valid index and are masked at the end.
    lo = np.where(present, a, 0)
    hi = np.where(present, b, 2)
    ref = arg.ref[None, :]
    first, last = vv[lo], vv[hi - 1]
    tf, tl = tt[lo], tt[hi - 1]
    with np.errstate(all="ignore"):
        result = last - first
        if resets is not None:
            pn, corr = resets
            has = present & ((pn[hi] - pn[lo + 1]) > 0)
            if has.any():
                # Added one reset at a time, in order, as Prometheus does.
                hl, hh = lo[has] + 1, hi[has]
                acc = result[has]
                for j in range(int((hh - hl).max())):
                    live = hl + j < hh
                    acc = np.where(live, acc + corr[np.where(live, hl + j, 0)], acc)
                result[has] = acc
        dur_start = (tf - (ref - arg.range_ms)) / 1000.0
        dur_end = (ref - tl) / 1000.0
        sampled = (tl - tf) / 1000.0
        avg_between = sampled / (hi - lo - 1)
        if is_counter:
            dur_zero = sampled * (first / result)
            use_zero = (result > 0) & (first >= 0) & (dur_zero < dur_start)
            dur_start = np.where(use_zero, dur_zero, dur_start)
        threshold = avg_between * 1.1
        interval = sampled + np.where(dur_start < threshold, dur_start, avg_between / 2)
        interval += np.where(dur_end < threshold, dur_end, avg_between / 2)
        factor = interval / sampled
        if is_rate:
            factor = factor / (arg.range_ms / 1000.0)
        result = result * factor
    result[~present] = np.nan
    return result


def instant_value(arg: RangeArg, is_rate: bool) -> tuple[np.ndarray, np.ndarray]:
    """irate / idelta: the last two samples of each window."""
    tt, vv, a, _, _ = arg.windows()
    present, rr, cc, lo, hi = _cells(arg, 2)
    last, prev = vv[hi - 1], vv[hi - 2]
    dt = tt[hi - 1] - tt[hi - 2]
    with np.errstate(all="ignore"):
        res = (np.where(last < prev, last, last - prev) / (dt / 1000.0)) if is_rate else last - prev
    ok = dt != 0
    present[rr[~ok], cc[~ok]] = False
    return _scatter(a.shape, rr[ok], cc[ok], res[ok]), present


def count_pairs(arg: RangeArg, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """changes / resets: how many adjacent pairs inside each window changed / decreased."""
    tt, vv, a, _, starts = arg.windows()
    present, rr, cc, lo, hi = _cells(arg, 1)
    flag = np.zeros(len(vv), dtype=bool)
    if len(vv) > 1:
        cur, prev = vv[1:], vv[:-1]
        if kind == "changes":
            flag[1:] = (cur != prev) & ~(np.isnan(cur) & np.isnan(prev))
        else:
            flag[1:] = cur < prev
        flag[starts[:-1][starts[:-1] < len(vv)]] = False
    pf = np.concatenate([[0], np.cumsum(flag)])
    return _scatter(a.shape, rr, cc, (pf[hi] - pf[lo + 1]).astype(np.float64)), present


def simple(arg: RangeArg, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Functions of each window's count, ends or plain reductions, computed without gathering."""
    tt, vv, a, _, _ = arg.windows()
    present, rr, cc, lo, hi = _cells(arg, 1)
    with np.errstate(all="ignore"):
        if name == "count_over_time":
            res = (hi - lo).astype(np.float64)
        elif name == "present_over_time":
            res = np.ones(len(rr))
        elif name == "last_over_time":
            res = vv[hi - 1]
        elif name == "min_over_time":
            res = _reduceat(np.fmin, vv, lo, hi)
        elif name == "max_over_time":
            res = _reduceat(np.fmax, vv, lo, hi)
        else:
            raise AssertionError(name)
    return _scatter(a.shape, rr, cc, res), present


def kahan_inc(inc: np.ndarray, total: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prometheus' kahanSumInc (Neumaier's variant), elementwise."""
    t = total + inc
    c = c + np.where(np.abs(total) >= np.abs(inc), (total - t) + inc, (inc - t) + total)
    return t, c


# Window reductions below run column by column in sample order, as Prometheus' loops do, so their
# results agree to the last bit (numpy's own sums are pairwise).
def _sum(x: np.ndarray, t: np.ndarray, m: np.ndarray, c: np.ndarray, e: np.ndarray) -> np.ndarray:
    total = np.zeros(len(x))
    for j in range(x.shape[1]):
        live = m[:, j]
        total = np.where(live, total + x[:, j], total)
    return total


def _avg(x: np.ndarray, t: np.ndarray, m: np.ndarray, c: np.ndarray, e: np.ndarray) -> np.ndarray:
    mean = np.zeros(len(x))
    comp = np.zeros(len(x))
    for j in range(x.shape[1]):
        v = x[:, j]
        n = float(j + 1)
        live = m[:, j]
        minf = np.isinf(mean)
        # An infinite mean stays as it is for a same-signed Inf or a finite value.
        skip = minf & ((np.isinf(v) & ((mean > 0) == (v > 0))) | (~np.isinf(v) & ~np.isnan(v)))
        nm, nc = kahan_inc(v / n - mean / n, mean, comp)
        upd = live & ~skip
        mean = np.where(upd, nm, mean)
        comp = np.where(upd, nc, comp)
    return np.where(np.isinf(mean), mean, mean + comp)


def _stdvar(x: np.ndarray, t: np.ndarray, m: np.ndarray, c: np.ndarray, e: np.ndarray) -> np.ndarray:
    mean = np.zeros(len(x))
    cmean = np.zeros(len(x))
    aux = np.zeros(len(x))
    caux = np.zeros(len(x))
    for j in range(x.shape[1]):
        v = x[:, j]
        live = m[:, j]
        n = float(j + 1)
        delta = v - (mean + cmean)
        nm, ncm = kahan_inc(delta / n, mean, cmean)
        na, nca = kahan_inc(delta * (v - (nm + ncm)), aux, caux)
        mean, cmean = np.where(live, nm, mean), np.where(live, ncm, cmean)
        aux, caux = np.where(live, na, aux), np.where(live, nca, caux)
    return (aux + caux) / c


def _stddev(x: np.ndarray, t: np.ndarray, m: np.ndarray, c: np.ndarray, e: np.ndarray) -> np.ndarray:
    return np.sqrt(_stdvar(x, t, m, c, e))


def quantile_rows(x: np.ndarray, m: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Prometheus' quantile() over each row's marked cells (NaN sorts first, as its heap does)."""
    n = m.sum(axis=1)
    isnan = np.isnan(x)
    order = np.lexsort((np.where(m & ~isnan, x, 0.0), ~isnan, ~m), axis=1)
    srt = np.take_along_axis(x, order, axis=1)
    with np.errstate(all="ignore"):
        rank = q * (n - 1)
        fl = np.floor(rank)
        lo = np.clip(np.maximum(0, fl), 0, np.maximum(n - 1, 0)).astype(np.int64)
        hi = np.minimum(n - 1, lo + 1).clip(0).astype(np.int64)
        w = rank - fl
        rows = np.arange(len(x))
        res = srt[rows, lo] * (1 - w) + srt[rows, hi] * w
    res = np.where(q < 0, -np.inf, np.where(q > 1, np.inf, res))
    return np.where(n == 0, np.nan, res)


def _quantile(x: np.ndarray, t: np.ndarray, m: np.ndarray, c: np.ndarray, e: np.ndarray) -> np.ndarray:
    return quantile_rows(x, m, e)


def _linreg(x: np.ndarray, t: np.ndarray, m: np.ndarray, c: np.ndarray, intercept_t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prometheus' linearRegression (Kahan sums, sample order): slope and the intercept at
    INTERCEPT_T (ms) for each row."""
    k = len(x)
    sx, cx, sy, cy, sxy, cxy, sx2, cx2 = (np.zeros(k) for _ in range(8))
    for j in range(x.shape[1]):
        live = m[:, j]
        xj = (t[:, j] - intercept_t) / 1e3
        yj = x[:, j]
        for_ = ((xj, sx, cx), (yj, sy, cy), (xj * yj, sxy, cxy), (xj * xj, sx2, cx2))
        res = [kahan_inc(inc, tot, comp) for inc, tot, comp in for_]
        sx, cx = np.where(live, res[0][0], sx), np.where(live, res[0][1], cx)
        sy, cy = np.where(live, res[1][0], sy), np.where(live, res[1][1], cy)
        sxy, cxy = np.where(live, res[2][0], sxy), np.where(live, res[2][1], cxy)
        sx2, cx2 = np.where(live, res[3][0], sx2), np.where(live, res[3][1], cx2)
    n = c.astype(np.float64)
    sx, sy, sxy, sx2 = sx + cx, sy + cy, sxy + cxy, sx2 + cx2
    cov = sxy - sx * sy / n
    var = sx2 - sx * sx / n
    slope = cov / var
    icpt = sy / n - slope * sx / n
    first = x[:, 0]
    const = (np.where(m, x == first[:, None], True)).all(axis=1)
    slope = np.where(const, np.where(np.isinf(first), np.nan, 0.0), slope)
    icpt = np.where(const, np.where(np.isinf(first), np.nan, first), icpt)
    return slope, icpt


def _holt_winters(x: np.ndarray, sf: np.ndarray, tf: np.ndarray, c: np.ndarray) -> np.ndarray:
    s1 = x[:, 0].copy()
    b = x[:, 1] - x[:, 0]
    s0 = np.zeros(len(x))
    for i in range(1, x.shape[1]):
        live = i < c
        xv = sf * x[:, i]
        if i > 1:
            nb = tf * (s1 - s0) + (1 - tf) * b
            b = np.where(live, nb, b)
        y = (1 - sf) * (s1 + b)
        ns1 = xv + y
        s0 = np.where(live, s1, s0)
        s1 = np.where(live, ns1, s1)
    return s1


OVER_TIME: dict[str, BlockFn] = {"stddev_over_time": _stddev, "stdvar_over_time": _stdvar,
                                  "sum_over_time": _sum, "avg_over_time": _avg}


def over_time(arg: RangeArg, name: str, params: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Dispatch every range function; PARAMS are its scalar arguments, one value per step."""
    if name in ("rate", "increase", "delta"):
        return extrapolated_rate(arg, name != "delta", name == "rate")
    if name in ("irate", "idelta"):
        return instant_value(arg, name == "irate")
    if name in ("changes", "resets"):
        return count_pairs(arg, name)
    if name in ("count_over_time", "present_over_time", "last_over_time", "min_over_time", "max_over_time"):
        return simple(arg, name)
    if name in OVER_TIME:
        with np.errstate(all="ignore"):
            return _gather(arg, 1, OVER_TIME[name])
    if name == "quantile_over_time":
        return _gather(arg, 1, _quantile, params[0])
    if name == "deriv":
        def deriv(x: np.ndarray, t: np.ndarray, m: np.ndarray, c: np.ndarray, e: np.ndarray) -> np.ndarray:
            return _linreg(x, t, m, c, t[:, 0])[0]
        return _gather(arg, 2, deriv)
    if name == "predict_linear":
        # The intercept is taken at the evaluation time: ref + offset.
        eval_t = arg.ref + arg.offset_ms
        dur = params[0]
        step_ix = np.arange(len(arg.ref))

        def predict(x: np.ndarray, t: np.ndarray, m: np.ndarray, c: np.ndarray, e: np.ndarray) -> np.ndarray:
            ix = e.astype(np.int64)
            slope, icpt = _linreg(x, t, m, c, eval_t[ix])
            return slope * dur[ix] + icpt
        return _gather(arg, 2, predict, step_ix.astype(np.float64))
    if name == "holt_winters":
        sf, tf = params
        bad = (sf <= 0) | (sf >= 1)
        if bad.any():
            raise PromQLError(f"invalid smoothing factor. Expected: 0 < sf < 1, got: {sf[bad][0]:f}", "execution")
        bad = (tf <= 0) | (tf >= 1)
        if bad.any():
            raise PromQLError(f"invalid trend factor. Expected: 0 < tf < 1, got: {tf[bad][0]:f}", "execution")
        step_ix = np.arange(len(arg.ref)).astype(np.float64)

        def hw(x: np.ndarray, t: np.ndarray, m: np.ndarray, c: np.ndarray, e: np.ndarray) -> np.ndarray:
            ix = e.astype(np.int64)
            with np.errstate(all="ignore"):
                return _holt_winters(x, sf[ix], tf[ix], c)
        return _gather(arg, 2, hw, step_ix)
    raise PromQLError(f"unknown function {name}")
