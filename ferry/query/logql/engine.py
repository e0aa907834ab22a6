"""Evaluates parsed LogQL against the store: log queries to streams, metric queries to series per step.

Selection, time range, tenant and line filters go to SQL; so do line counts per step when nothing else runs.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from ferry.errors import BadRequest, QueryTooBig
from ferry.query.logql import ast
from ferry.query.logql import pipeline as pipe
from ferry.query.logql import sql as q

Rows = Callable[[str], Awaitable[list[dict[str, Any]]]]

# Lines a metric query may pull out of the store when its pipeline has to run here (parsers, label
# filters, unwrap); past it the query is refused (422) rather than answered from part of the data.
MAX_METRIC_LINES = 2_000_000
# Lines a log query reads while its pipeline filters them, looking for `limit` matches.
MAX_SCANNED_LINES = 1_000_000
# The first window of a log query's range read, at the end its lines start from; the next ones are sized
# by the lines found so far (measured at 10 M rows: a rare word's newest 1000 lines of one service, see
# docs/performance.md).
FIRST_WINDOW_NS = 2 * 3600 * 10**9
# Buckets the store counts into for a pushed-down metric query (see _sql_counts).
MAX_BUCKETS = 2_000_000
MAX_POINTS = 11_000

_COUNTING = frozenset({"count_over_time", "rate", "bytes_over_time", "bytes_rate", "absent_over_time"})
_ADDITIVE = frozenset({"count_over_time", "rate", "bytes_over_time", "bytes_rate"})


@dataclass
class Series:
    labels: dict[str, str]
    values: np.ndarray  # float64 per step; NaN = no sample at that step


@dataclass
class Scalar:
    values: np.ndarray


@dataclass
class Stats:
    lines: int = 0
    bytes: int = 0
    queries: int = 0
    started: float = field(default_factory=time.perf_counter)
    warnings: list[str] = field(default_factory=list)

    def summary(self, returned: int) -> dict[str, Any]:
        took = max(time.perf_counter() - self.started, 1e-9)
        return {
            "summary": {
                "bytesProcessedPerSecond": int(self.bytes / took), "linesProcessedPerSecond": int(self.lines / took),
                "totalBytesProcessed": self.bytes, "totalLinesProcessed": self.lines, "execTime": round(took, 6),
                "queueTime": 0, "subqueries": self.queries, "totalEntriesReturned": returned, "splits": 1,
                "shards": 1, "totalPostFilterLines": returned, "totalStructuredMetadataBytesProcessed": 0,
            },
            "querier": {"store": {"totalChunksRef": 0, "totalChunksDownloaded": 0, "chunksDownloadTime": 0,
                                  "chunk": {"totalLinesSent": self.lines, "totalBytesProcessed": self.bytes}}},
            "ingester": {"totalReached": 0, "totalChunksMatched": 0, "totalBatches": 0, "totalLinesSent": 0},
        }


class Engine:
    def __init__(self, rows: Rows, tenant_where: str) -> None:
        self.rows = rows
        self.tenant_where = tenant_where
        self.stats = Stats()

    async def _fetch(self, sql: str) -> list[dict[str, Any]]:
        self.stats.queries += 1
        return await self.rows(sql)

    # -- log queries ----------------------------------------------------------------------------
    async def lines(self, query: ast.LogQuery, start_ns: int, end_ns: int, limit: int, backward: bool) -> pipe.Lines:
        """Up to `limit` lines of `query` in [start, end), newest first when `backward`."""
        pushed, rest = q.pushed_filters(query)
        filtering = pipe.drops_lines(rest)
        page = min(max(limit * 4, 1000), 50_000) if filtering else limit
        lo, hi = start_ns, end_ns
        width = FIRST_WINDOW_NS
        found: list[pipe.Lines] = []
        total = scanned = 0
        while True:
            # Read a window at the end the answer starts from, then the next one until enough lines
            # came: the store reads a few hours of the range, not all of it, when matches are common.
            wlo, whi = (max(lo, hi - width), hi) if backward else (lo, min(hi, lo + width))
            want = page if filtering else limit - total
            where = q.where_sql(query, self.tenant_where, wlo, whi, filters=pushed)
            rows = await self._fetch(q.lines_sql(where, limit=want, backward=backward))
            scanned += len(rows)
            full = len(rows) == want and filtering
            boundary = 0
            if full:
                boundary = int(rows[-1]["ts"])
                kept = [r for r in rows if int(r["ts"]) != boundary]
                if not kept:  # one nanosecond holds a whole page: read it with a bigger one
                    page *= 2
                    continue
                rows = kept
            self.stats.lines += len(rows)
            self.stats.bytes += sum(len(r["line"]) for r in rows)
            got = pipe.run(pipe.from_rows(rows), rest)
            found.append(got)
            total += got.df.height
            if total >= limit:
                break
            if full:
                if scanned >= MAX_SCANNED_LINES:
                    self.stats.warnings.append(f"stopped after reading {scanned} lines; narrow the time range for more")
                    break
                # The rest of this window lies past the page's last nanosecond (read again: it was cut).
                if backward:
                    hi = boundary + 1
                else:
                    lo = boundary
                continue
            if (wlo == lo) if backward else (whi == hi):
                break
            if backward:
                hi = wlo
            else:
                lo = whi
            # Size the next window by the lines found per ns so far, a quarter more for luck, at most
            # 16 times what is read so far (lines may crowd into a burst further back).
            covered = (end_ns - hi) if backward else (lo - start_ns)
            need = covered * (limit - total) * 5 // (4 * max(total, 1))
            width = min(max(need, FIRST_WINDOW_NS), 16 * covered)
        kinds: dict[str, str] = {}
        for f in found:
            kinds.update(f.kinds)
        frames = [f.df for f in found if f.df.width]
        df = pl.concat(frames, how="diagonal_relaxed") if frames else pipe.from_rows([]).df
        df = df.sort(pipe.TS, descending=backward, maintain_order=True).head(limit)
        return pipe.Lines(df, kinds)

    # -- metric queries -------------------------------------------------------------------------
    async def evaluate(self, expr: ast.Expr, times: np.ndarray) -> list[Series] | Scalar:
        """`expr` at each of `times` (int64 ns, ascending, evenly spaced)."""
        if isinstance(expr, ast.LogQuery):
            raise BadRequest("a log query has no value per step; wrap it in a range aggregation such as "
                             "count_over_time({...}[5m])")
        return await self._eval(expr, times, None)

    async def _eval(self, e: ast.MetricExpr, times: np.ndarray, by_hint: tuple[str, ...] | None
                    ) -> list[Series] | Scalar:
        if isinstance(e, ast.Number):
            return Scalar(np.full(len(times), e.value))
        if isinstance(e, ast.VectorOf):
            return [Series({}, np.full(len(times), e.value))]
        if isinstance(e, ast.RangeAgg):
            return await self._range(e, times, by_hint)
        if isinstance(e, ast.VectorAgg):
            hint = None
            if (e.op == "sum" and e.grouping is not None and not e.grouping.without
                    and isinstance(e.expr, ast.RangeAgg)):
                hint = e.grouping.labels
            elif e.op == "sum" and e.grouping is None and isinstance(e.expr, ast.RangeAgg):
                hint = ()
            inner = await self._eval(e.expr, times, hint)
            if isinstance(inner, Scalar):
                raise BadRequest(f"{e.op} needs series, not a number")
            return _aggregate(e, inner)
        if isinstance(e, ast.BinOp):
            left = await self._eval(e.left, times, None)
            right = await self._eval(e.right, times, None)
            return _binary(e, left, right)
        if isinstance(e, ast.LabelReplace):
            inner = await self._eval(e.expr, times, None)
            if isinstance(inner, Scalar):
                raise BadRequest("label_replace needs series, not a number")
            return _label_replace(e, inner)
        raise TypeError(f"not a metric expression: {e!r}")

    async def _range(self, node: ast.RangeAgg, times: np.ndarray, by_hint: tuple[str, ...] | None) -> list[Series]:
        pushed, rest = q.pushed_filters(node.query)
        lo = int(times[0]) - node.offset_ns - node.range_ns
        hi = int(times[-1]) - node.offset_ns
        where = q.where_sql(node.query, self.tenant_where, lo, hi, end_inclusive=True, filters=pushed)
        if not rest and node.func in _COUNTING:
            got = await self._sql_counts(node, times, where, lo, by_hint if node.func in _ADDITIVE else ())
            if got is not None:
                return got
        rows = await self._fetch(f"SELECT {q.LINE_COLUMNS} FROM {q.TABLE} WHERE {where} "
                                 f"LIMIT {MAX_METRIC_LINES + 1}")
        if len(rows) > MAX_METRIC_LINES:
            raise QueryTooBig(f"the query's pipeline would have to read more than {MAX_METRIC_LINES} lines; "
                              "narrow the stream selector, add line filters, or shorten the time range")
        self.stats.lines += len(rows)
        self.stats.bytes += sum(len(r["line"]) for r in rows)
        lines = pipe.run(pipe.from_rows(rows), rest)
        return _windows(node, lines, times)

    async def _sql_counts(self, node: ast.RangeAgg, times: np.ndarray, where: str, phase: int,
                          by: tuple[str, ...] | None) -> list[Series] | None:
        """Counts per step computed from per-bucket counts the store returns. Buckets are gcd(step,
        range) wide, starting at the first window's start, so every window is a whole run of buckets."""
        step = int(times[1] - times[0]) if len(times) > 1 else node.range_ns
        width = math.gcd(step, node.range_ns)
        span = (len(times) - 1) * step // width
        per_window = node.range_ns // width
        nbuckets = span + per_window
        if nbuckets > MAX_BUCKETS:
            return None
        rows = await self._fetch(q.bucket_counts_sql(where, phase_ns=phase, width_ns=width, by=by))
        first = np.arange(len(times), dtype=np.int64) * (step // width)
        last = first + per_window
        groups: dict[tuple[tuple[str, str], ...], tuple[np.ndarray, np.ndarray]] = {}
        for r in rows:
            labels = tuple(sorted((k, v) for k, v in r["labels"].items() if v != ""))
            k, n, b = int(r["k"]), int(r["n"]), int(r["b"])
            self.stats.lines += n
            self.stats.bytes += b
            if not 1 <= k <= nbuckets:
                continue
            counts, sizes = groups.setdefault(labels, (np.zeros(nbuckets + 1), np.zeros(nbuckets + 1)))
            counts[k] += n
            sizes[k] += b
        range_s = node.range_ns / 1e9
        if node.func == "absent_over_time":
            total = np.zeros(nbuckets + 1)
            for counts, _ in groups.values():
                total += counts
            c = np.cumsum(total)
            n_win = c[last] - c[first]
            values = np.where(n_win == 0, 1.0, np.nan)
            return [Series(_absent_labels(node.query), values)] if not np.isnan(values).all() else []
        out: list[Series] = []
        for labels, (counts, sizes) in groups.items():
            cn, cb = np.cumsum(counts), np.cumsum(sizes)
            n_win = cn[last] - cn[first]
            b_win = cb[last] - cb[first]
            value = {"count_over_time": n_win, "rate": n_win / range_s, "bytes_over_time": b_win,
                     "bytes_rate": b_win / range_s}[node.func]
            values = np.where(n_win > 0, value, np.nan)
            if not np.isnan(values).all():
                out.append(Series(dict(labels), values))
        return out


def _absent_labels(query: ast.LogQuery) -> dict[str, str]:
    """Labels absent_over_time answers with: the selector's equality matchers (as Loki does)."""
    seen: dict[str, int] = {}
    for m in query.matchers:
        seen[m.name] = seen.get(m.name, 0) + 1
    return {m.name: m.value for m in query.matchers if m.op == "=" and seen[m.name] == 1}


def _windows(node: ast.RangeAgg, lines: pipe.Lines, times: np.ndarray) -> list[Series]:
    """A range aggregation over lines the pipeline kept: per series, each step's window (t-range, t]."""
    df = lines.df
    unwrapped = node.query.unwrap is not None
    names = [c for c in lines.labels]
    if node.grouping is not None:
        wanted = set(node.grouping.labels)
        names = [c for c in names if (c in wanted) != node.grouping.without]
    df = df.with_columns(pipe.series_key(lines, names).alias("@key"))
    hi = times - node.offset_ns
    lo = hi - node.range_ns
    range_s = node.range_ns / 1e9
    if node.func == "absent_over_time":
        ts = np.sort(df.get_column(pipe.TS).to_numpy())
        n_win = np.searchsorted(ts, hi, "right") - np.searchsorted(ts, lo, "right")
        values = np.where(n_win == 0, 1.0, np.nan)
        return [Series(_absent_labels(node.query), values)] if not np.isnan(values).all() else []
    out: list[Series] = []
    if df.height == 0:
        return out
    value_col = pipe.VALUE if unwrapped else pipe.LINE
    df = df.sort(["@key", pipe.TS])
    for (key,), group in df.group_by("@key", maintain_order=True):
        ts = group.get_column(pipe.TS).to_numpy()
        a = np.searchsorted(ts, lo, "right")
        b = np.searchsorted(ts, hi, "right")
        n = (b - a).astype(np.float64)
        if unwrapped:
            v = group.get_column(value_col).to_numpy().astype(np.float64)
        else:
            v = group.get_column(pipe.LINE).str.len_bytes().to_numpy().astype(np.float64)
        values = _window_values(node, ts, v, a, b, n, range_s)
        values = np.where(n > 0, values, np.nan)
        if not np.isnan(values).all():
            out.append(Series(pipe.key_labels(str(key)), values))
    return out


def _window_values(node: ast.RangeAgg, ts: np.ndarray, v: np.ndarray, a: np.ndarray, b: np.ndarray,
                   n: np.ndarray, range_s: float) -> np.ndarray:
    f = node.func
    c = np.concatenate([[0.0], np.cumsum(v)])
    total = c[b] - c[a]
    with np.errstate(invalid="ignore", divide="ignore"):
        if f == "count_over_time":
            return n
        if f == "rate":
            return (total if node.query.unwrap is not None else n) / range_s
        if f == "bytes_over_time":
            return total
        if f == "bytes_rate":
            return total / range_s
        if f == "sum_over_time":
            return total
        if f == "avg_over_time":
            return total / n
    out = np.full(len(a), np.nan)
    for i, (lo, hi) in enumerate(zip(a, b, strict=True)):
        if hi <= lo:
            continue
        w = v[lo:hi]
        if f == "min_over_time":
            out[i] = w.min()
        elif f == "max_over_time":
            out[i] = w.max()
        elif f == "stddev_over_time":
            out[i] = w.std()
        elif f == "stdvar_over_time":
            out[i] = w.var()
        elif f == "quantile_over_time":
            out[i] = _quantile(w, node.param if node.param is not None else 0.5)
        elif f == "first_over_time":
            out[i] = w[0]
        elif f == "last_over_time":
            out[i] = w[-1]
        elif f == "rate_counter":
            d = np.diff(w)
            out[i] = (np.where(d >= 0, d, w[1:]).sum() if len(w) > 1 else 0.0) / range_s
    return out


def _quantile(w: np.ndarray, q_: float) -> float:
    if q_ < 0:
        return -math.inf
    if q_ > 1:
        return math.inf
    return float(np.quantile(w, q_))


# -- vector aggregation, binary operators, label_replace -----------------------------------------


def _group_labels(labels: dict[str, str], grouping: ast.Grouping | None) -> dict[str, str]:
    if grouping is None:
        return {}
    if grouping.without:
        return {k: v for k, v in labels.items() if k not in grouping.labels}
    return {k: labels[k] for k in grouping.labels if k in labels}


def _aggregate(e: ast.VectorAgg, series: list[Series]) -> list[Series]:
    if e.op in ("sort", "sort_desc"):
        return sorted(series, key=lambda s: float(np.nan_to_num(s.values[-1], nan=-math.inf)),
                      reverse=e.op == "sort_desc")
    groups: dict[tuple[tuple[str, str], ...], list[Series]] = {}
    for s in series:
        groups.setdefault(tuple(sorted(_group_labels(s.labels, e.grouping).items())), []).append(s)
    out: list[Series] = []
    for key, members in groups.items():
        m = np.vstack([s.values for s in members])
        present = ~np.isnan(m)
        count = present.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"), _quiet():
            if e.op in ("topk", "bottomk"):
                k = int(e.param or 1)
                filled = np.where(present, m, -np.inf if e.op == "topk" else np.inf)
                order = np.argsort(-filled if e.op == "topk" else filled, axis=0, kind="stable")
                keep = np.zeros_like(present)
                np.put_along_axis(keep, order[:k], True, axis=0)
                kept = np.where(keep & present, m, np.nan)
                out.extend(Series(s.labels, kept[i]) for i, s in enumerate(members) if not np.isnan(kept[i]).all())
                continue
            if e.op == "sum":
                v = np.nansum(m, axis=0)
            elif e.op == "avg":
                v = np.nanmean(m, axis=0)
            elif e.op == "min":
                v = np.nanmin(m, axis=0)
            elif e.op == "max":
                v = np.nanmax(m, axis=0)
            elif e.op == "count":
                v = count.astype(np.float64)
            elif e.op == "stddev":
                v = np.nanstd(m, axis=0)
            elif e.op == "stdvar":
                v = np.nanvar(m, axis=0)
            else:
                raise BadRequest(f"unsupported aggregation {e.op!r}")
        out.append(Series(dict(key), np.where(count > 0, v, np.nan)))
    return out


class _quiet:
    """Silences numpy's all-NaN-slice warnings: those slices are masked out right after."""

    def __enter__(self) -> None:
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc: object) -> None:
        self._w.__exit__(*exc)


_ARITH: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "%": np.fmod, "^": np.power,
}
_CMP: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "==": np.equal, "!=": np.not_equal, ">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal,
}


def _apply(op: str, a: np.ndarray, b: np.ndarray, keep: np.ndarray, bool_mod: bool) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        if op in _ARITH:
            return _ARITH[op](a, b)
        hit = _CMP[op](a, b)
    if bool_mod:
        return np.where(np.isnan(a) | np.isnan(b), np.nan, hit.astype(np.float64))
    return np.where(hit, keep, np.nan)


def _match_key(labels: dict[str, str], m: ast.VectorMatching | None) -> tuple[tuple[str, str], ...]:
    if m is None:
        return tuple(sorted(labels.items()))
    if m.on:
        return tuple(sorted((k, labels.get(k, "")) for k in m.labels))
    return tuple(sorted((k, v) for k, v in labels.items() if k not in m.labels))


def _binary(e: ast.BinOp, left: list[Series] | Scalar, right: list[Series] | Scalar) -> list[Series] | Scalar:
    op = e.op
    if op in ("and", "or", "unless"):
        if isinstance(left, Scalar) or isinstance(right, Scalar):
            raise BadRequest(f"{op} needs series on both sides")
        return _set_op(op, left, right, e.matching)
    if isinstance(left, Scalar) and isinstance(right, Scalar):
        return Scalar(_apply(op, left.values, right.values, left.values, True))
    if isinstance(left, Scalar) or isinstance(right, Scalar):
        out = []
        for s in right if isinstance(left, Scalar) else left:  # type: ignore[union-attr]
            a = left.values if isinstance(left, Scalar) else s.values
            b = right.values if isinstance(right, Scalar) else s.values
            v = _apply(op, a, b, s.values, e.bool_modifier)
            if not np.isnan(v).all():
                out.append(Series(s.labels, v))
        return out
    index: dict[tuple[tuple[str, str], ...], Series] = {}
    for s in right:
        key = _match_key(s.labels, e.matching)
        if key in index:
            raise BadRequest("found duplicate series for the match group on the right-hand side of the operation; "
                             "many-to-many matching is not supported")
        index[key] = s
    out = []
    seen: set[tuple[tuple[str, str], ...]] = set()
    for s in left:
        key = _match_key(s.labels, e.matching)
        other = index.get(key)
        if other is None:
            continue
        if key in seen:
            raise BadRequest("found duplicate series for the match group on the left-hand side of the operation; "
                             "many-to-many matching is not supported")
        seen.add(key)
        v = _apply(op, s.values, other.values, s.values, e.bool_modifier)
        if np.isnan(s.values).any() or np.isnan(other.values).any():
            v = np.where(np.isnan(s.values) | np.isnan(other.values), np.nan, v)
        # As Prometheus: one-to-one matching keeps the `on` labels, or drops the `ignoring` ones.
        labels = s.labels if e.matching is None else dict(key)
        if not np.isnan(v).all():
            out.append(Series(labels, v))
    return out


def _set_op(op: str, left: list[Series], right: list[Series], m: ast.VectorMatching | None) -> list[Series]:
    present: dict[tuple[tuple[str, str], ...], np.ndarray] = {}
    for s in right:
        key = _match_key(s.labels, m)
        mask = ~np.isnan(s.values)
        present[key] = present[key] | mask if key in present else mask
    out: list[Series] = []
    left_keys: dict[tuple[tuple[str, str], ...], np.ndarray] = {}
    for s in left:
        key = _match_key(s.labels, m)
        mask = present.get(key, np.zeros(len(s.values), bool))
        left_keys[key] = left_keys[key] | ~np.isnan(s.values) if key in left_keys else ~np.isnan(s.values)
        v = np.where(mask, s.values, np.nan) if op == "and" else (
            np.where(mask, np.nan, s.values) if op == "unless" else s.values)
        if not np.isnan(v).all():
            out.append(Series(s.labels, v))
    if op == "or":
        for s in right:
            taken = left_keys.get(_match_key(s.labels, m), np.zeros(len(s.values), bool))
            v = np.where(taken, np.nan, s.values)
            if not np.isnan(v).all():
                out.append(Series(s.labels, v))
    return out


def _label_replace(e: ast.LabelReplace, series: list[Series]) -> list[Series]:
    try:
        regex = re.compile(q.anchored(e.regex))
    except re.error as err:
        raise BadRequest(f"label_replace: invalid regular expression {e.regex!r}: {err}") from None
    template = re.sub(r"\$\{?(\w+)\}?", r"\\g<\1>", e.replacement)
    out = []
    for s in series:
        m = regex.match(s.labels.get(e.src, ""))
        labels = dict(s.labels)
        if m is not None:
            value = m.expand(template)
            if value:
                labels[e.dst] = value
            else:
                labels.pop(e.dst, None)
        out.append(Series(labels, s.values))
    return out


def step_times(start_ns: int, end_ns: int, step_ns: int) -> np.ndarray:
    """Evaluation times start, start+step, ... up to end; refused past MAX_POINTS as Loki does."""
    if step_ns <= 0:
        raise BadRequest("zero or negative query resolution step widths are not accepted. Try a positive integer")
    n = (end_ns - start_ns) // step_ns + 1
    if n > MAX_POINTS:
        raise BadRequest(f"exceeded maximum resolution of {MAX_POINTS:,} points per timeseries. Try increasing the "
                         "value of the step parameter")
    return start_ns + np.arange(n, dtype=np.int64) * step_ns
