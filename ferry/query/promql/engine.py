"""PromQL evaluation with Prometheus 2.42 semantics over a Source: the AST of `promql_parser` is
walked once per query, every node evaluated for all steps at once as [series x steps] arrays.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import promql_parser as pp

from ferry.query.promql import functions as fns
from ferry.query.promql.aggregate import aggregate
from ferry.query.promql.errors import PromQLError
from ferry.query.promql.rangefuncs import over_time
from ferry.query.promql.source import PUSHABLE_RANGE_FUNCTIONS, Hint, Matcher, Series, Source, is_stale
from ferry.query.promql.values import (
    Labels,
    RangeArg,
    RangeSeries,
    Scal,
    Str,
    Value,
    Vec,
    concat_series,
    group_reduce,
    search_rows,
)

DEFAULT_SUBQUERY_STEP_MS = 60_000  # Prometheus' default global evaluation_interval
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_OPS = {"MatchOp.Equal": "=", "MatchOp.NotEqual": "!=", "MatchOp.Re": "=~", "MatchOp.NotRe": "!~"}
_ARITH = {"+", "-", "*", "/", "%", "^", "atan2"}
_DROPS_NAME = {"+", "-", "*", "/", "%", "^"}  # Prometheus 2.42's shouldDropMetricName (not atan2)
_CMP = {"==", "!=", ">", "<", ">=", "<="}
_SET = {"and", "or", "unless"}
_RANGE_FUNCS = {
    "rate", "increase", "delta", "irate", "idelta", "changes", "resets", "deriv", "predict_linear",
    "holt_winters", "avg_over_time", "min_over_time", "max_over_time", "sum_over_time", "count_over_time",
    "stddev_over_time", "stdvar_over_time", "last_over_time", "present_over_time", "quantile_over_time",
    "absent_over_time",
}


def _register_2_42_functions() -> None:
    """holt_winters is Prometheus 2.x's name for what the parser only knows as
    double_exponential_smoothing (Prometheus 3)."""
    try:
        pp.parse("holt_winters(x[1m], 0.5, 0.5)")
    except ValueError:
        pp.register_extra_functions([pp.Function(
            "holt_winters", [pp.ValueType.Matrix, pp.ValueType.Scalar, pp.ValueType.Scalar], pp.ValueType.Vector)])


_register_2_42_functions()


def td_ms(td: timedelta | None) -> int:
    return 0 if td is None else td // _MS


def parse(query: str) -> Any:
    try:
        return pp.parse(query)
    except ValueError as e:
        raise PromQLError(f"1:1: parse error: {e}") from None
    except Exception as e:  # the parser raises its own types for some inputs
        raise PromQLError(f"parse error: {e}") from None


def selector_matchers(vs: Any) -> list[Matcher]:
    out: list[Matcher] = []
    if vs.name:
        out.append(Matcher("__name__", "=", vs.name))
    if vs.matchers.or_matchers:
        raise PromQLError("'or' inside a selector is not supported by Prometheus 2.42")
    for m in vs.matchers.matchers:
        out.append(Matcher(m.name, _OPS[str(m.op)], m.value))  # type: ignore[arg-type]
    return out


def sorted_series(series: list[Series]) -> list[Series]:
    """In Prometheus' order (its storage returns series sorted by label set), on which ties in
    topk/bottomk and the order of results depend."""
    return sorted(series, key=lambda x: x.key if x.key is not None else tuple(sorted(x.labels.items())))


def label_str(labels: Labels) -> str:
    return "{" + ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(labels.items())) + "}"


def drop_name(labels: Labels) -> Labels:
    if "__name__" not in labels:
        return labels
    return {k: v for k, v in labels.items() if k != "__name__"}


def merge_same_labels(vec: Vec, message: str = "vector cannot contain metrics with the same labelset") -> Vec:
    """Rows with equal label sets become one row; overlapping steps are Prometheus' error."""
    seen: dict[tuple[tuple[str, str], ...], int] = {}
    keep: list[int] = []
    dup = False
    for i, lab in enumerate(vec.labels):
        k = tuple(sorted(lab.items()))
        j = seen.get(k)
        if j is None:
            seen[k] = i
            keep.append(i)
        else:
            dup = True
    if not dup:
        return vec
    v, p = vec.v.copy(), vec.p.copy()
    for i, lab in enumerate(vec.labels):
        j = seen[tuple(sorted(lab.items()))]
        if j == i:
            continue
        if (p[j] & vec.p[i]).any():
            raise PromQLError(message, "execution")
        v[j] = np.where(vec.p[i], vec.v[i], v[j])
        p[j] |= vec.p[i]
    return Vec([vec.labels[i] for i in keep], v[keep], p[keep])


class Evaluator:
    def __init__(self, source: Source, start_ms: int, end_ms: int, step_ms: int, lookback_ms: int) -> None:
        self.source = source
        self.start = start_ms
        self.end = end_ms
        self.step = step_ms
        self.lookback = lookback_ms

    # -- helpers ---------------------------------------------------------------------------
    def at_ms(self, at: Any) -> int | None:
        if at is None:
            return None
        if at.type == pp.AtModifierType.Start:
            return self.start
        if at.type == pp.AtModifierType.End:
            return self.end
        return (at.at - _EPOCH) // _MS

    def ref_times(self, steps: np.ndarray, at: Any, offset: timedelta | None) -> np.ndarray:
        a = self.at_ms(at)
        base = steps if a is None else np.full(len(steps), a, dtype=np.int64)
        return base - td_ms(offset)

    async def scalar_arg(self, node: Any, steps: np.ndarray) -> np.ndarray:
        val = await self.eval(node, steps)
        if not isinstance(val, Scal):
            raise PromQLError("expected a scalar argument")
        return val.v

    # -- evaluation -------------------------------------------------------------------------
    async def eval(self, node: Any, steps: np.ndarray, hint: Hint | None = None) -> Value:
        if isinstance(node, pp.NumberLiteral):
            return Scal(np.full(len(steps), float(node.val)))
        if isinstance(node, pp.StringLiteral):
            return Str(node.val)
        if isinstance(node, pp.ParenExpr):
            return await self.eval(node.expr, steps, hint)
        if isinstance(node, pp.UnaryExpr):
            val = await self.eval(node.expr, steps)
            if isinstance(val, Scal):
                return Scal(-val.v)
            if isinstance(val, Vec):
                return merge_same_labels(Vec([drop_name(x) for x in val.labels], -val.v, val.p))
            raise PromQLError("unary expression only allowed on expressions of type scalar or instant vector")
        if isinstance(node, pp.VectorSelector):
            return await self.vector_selector(node, steps, hint)
        if isinstance(node, pp.MatrixSelector):
            return await self.matrix_selector(node, steps, hint)
        if isinstance(node, pp.SubqueryExpr):
            return await self.subquery(node, steps)
        if isinstance(node, pp.Call):
            return await self.call(node, steps, hint)
        if isinstance(node, pp.AggregateExpr):
            return await self.aggregate(node, steps)
        if isinstance(node, pp.BinaryExpr):
            return await self.binary(node, steps)
        raise PromQLError(f"unsupported expression {type(node).__name__}")

    async def vector_selector(self, vs: Any, steps: np.ndarray, hint: Hint | None) -> Vec:
        ref = self.ref_times(steps, vs.at, vs.offset)
        series = sorted_series(await self.source.select(
            selector_matchers(vs), int(ref.min()) - self.lookback, int(ref.max()), hint or Hint(step_ms=self.step)))
        tt, vv, starts = concat_series([x.t for x in series], [x.v for x in series])
        if len(tt) == 0:
            n = len(series)
            return Vec([dict(x.labels) for x in series], np.full((n, len(steps)), np.nan),
                       np.zeros((n, len(steps)), bool), np.zeros((n, len(steps)), np.int64))
        idx = search_rows(tt, starts, ref, "right") - 1
        ok = idx >= starts[:-1, None]
        ix = np.where(ok, idx, 0)
        st = tt[ix]
        v = vv[ix]
        ok &= st >= (ref - self.lookback)[None, :]
        ok &= ~is_stale(v)
        v[~ok] = np.nan
        p = ok
        return Vec([dict(x.labels) for x in series], v, p, st)

    async def matrix_selector(self, ms: Any, steps: np.ndarray, hint: Hint | None) -> RangeArg:
        vs = ms.vector_selector
        rng = td_ms(ms.range)
        ref = self.ref_times(steps, vs.at, vs.offset)
        matchers = selector_matchers(vs)
        series = sorted_series(await self.source.select(matchers, int(ref.min()) - rng, int(ref.max()),
                                                        hint or Hint(range_ms=rng, step_ms=self.step)))
        # End to end once, staleness markers dropped in one pass; the series are views into that.
        tt, vv, starts = concat_series([x.t for x in series], [x.v for x in series])
        keep = ~is_stale(vv)
        if not keep.all():
            tt, vv = tt[keep], vv[keep]
            starts = np.concatenate([[0], np.cumsum(keep)])[starts]
        out = [RangeSeries(dict(x.labels), tt[starts[i]:starts[i + 1]], vv[starts[i]:starts[i + 1]])
               for i, x in enumerate(series)]
        return RangeArg(out, ref, rng, td_ms(vs.offset),
                        [(m.name, m.op, m.value) for m in matchers], flat=(tt, vv, starts))

    async def pushed_down(self, name: str, ms: Any, steps: np.ndarray, hint: Hint) -> Vec | None:
        """The range function evaluated by the source itself, when it offers that (RangeFunctionSource)."""
        vs = ms.vector_selector
        fn = getattr(self.source, "select_range_function", None)
        if fn is None or name not in PUSHABLE_RANGE_FUNCTIONS or vs.at is not None:
            return None
        ref = self.ref_times(steps, None, vs.offset)
        got = await fn(name, selector_matchers(vs), ref, td_ms(ms.range), hint)
        if got is None:
            return None
        series = sorted_series(got)
        n, s = len(series), len(steps)
        v = np.full((n, s), np.nan)
        p = np.zeros((n, s), dtype=bool)
        for i, x in enumerate(series):
            ix = np.searchsorted(ref, x.t)
            ok = ix < s
            ok[ok] &= ref[ix[ok]] == x.t[ok]
            v[i, ix[ok]] = x.v[ok]
            p[i, ix[ok]] = True
        labels = [dict(x.labels) if name == "last_over_time" else drop_name(x.labels) for x in series]
        return merge_same_labels(Vec(labels, v, p))

    async def subquery(self, sq: Any, steps: np.ndarray) -> RangeArg:
        rng = td_ms(sq.range)
        step = td_ms(sq.step) or DEFAULT_SUBQUERY_STEP_MS
        ref = self.ref_times(steps, sq.at, sq.offset)
        lo = int(ref.min()) - rng
        first = (lo // step) * step
        if first < lo:
            first += step
        inner_steps = np.arange(first, int(ref.max()) + 1, step, dtype=np.int64)
        inner = Evaluator(self.source, self.start, self.end, step, self.lookback)
        val = await inner.eval(sq.expr, inner_steps) if len(inner_steps) else Vec([], np.zeros((0, 0)), np.zeros((0, 0), bool))
        if isinstance(val, Scal):
            val = Vec([{}], val.v[None, :], np.ones((1, len(inner_steps)), dtype=bool))
        if not isinstance(val, Vec):
            raise PromQLError("subquery is only allowed on instant vector")
        series = [RangeSeries(lab, inner_steps[val.p[i]], val.v[i, val.p[i]]) for i, lab in enumerate(val.labels)]
        return RangeArg(series, ref, rng, td_ms(sq.offset))

    async def call(self, node: Any, steps: np.ndarray, hint: Hint | None) -> Value:
        name = node.func.name
        args = list(node.args)
        if name in _RANGE_FUNCS:
            # Which argument is the range vector: the first but for quantile_over_time/…
            mi = 1 if name == "quantile_over_time" else 0
            target = args[mi]
            while isinstance(target, pp.ParenExpr):
                target = target.expr
            if isinstance(target, pp.MatrixSelector):
                rng = td_ms(target.range)
                h = Hint(func=name, range_ms=rng, step_ms=self.step,
                         by=hint.by if hint else None, without=hint.without if hint else None)
                pushed = await self.pushed_down(name, target, steps, h)
                if pushed is not None:
                    return pushed
                arg = await self.matrix_selector(target, steps, h)
            elif isinstance(target, pp.SubqueryExpr):
                arg = await self.subquery(target, steps)
            else:
                raise PromQLError(f"expected type range vector in call to function {name!r}")
            params = [await self.scalar_arg(a, steps) for i, a in enumerate(args) if i != mi]
            if name == "absent_over_time":
                return fns.absent_over_time(arg, len(steps))
            v, p = over_time(arg, name, params)
            labels = [x.labels if name == "last_over_time" else drop_name(x.labels) for x in arg.series]
            if name != "last_over_time" and len({x.labels.get("__name__") for x in arg.series}) <= 1:
                # Distinct series of one name stay distinct without it: nothing to merge.
                return Vec(labels, v, p)
            return merge_same_labels(Vec(labels, v, p))
        if name == "timestamp":
            target = args[0]
            while isinstance(target, pp.ParenExpr):
                target = target.expr
            val = await self.eval(target, steps)
            if not isinstance(val, Vec):
                raise PromQLError("timestamp() expects an instant vector")
            if isinstance(target, pp.VectorSelector) and val.st is not None:
                t = val.st.astype(np.float64) / 1000.0
            else:
                t = np.broadcast_to(steps.astype(np.float64) / 1000.0, val.v.shape)
            return merge_same_labels(Vec([drop_name(x) for x in val.labels], np.where(val.p, t, np.nan), val.p))
        vals: list[Value] = [await self.eval(a, steps) for a in args]
        return fns.call(name, vals, args, steps, self)

    async def aggregate(self, node: Any, steps: np.ndarray) -> Value:
        op = str(node.op)
        by: list[str] | None = None
        without: list[str] | None = None
        if node.modifier is not None:
            if node.modifier.type == pp.AggModifierType.By:
                by = list(node.modifier.labels)
            else:
                without = list(node.modifier.labels)
        hint = Hint(step_ms=self.step, by=tuple(by) if by is not None else (() if without is None else None),
                    without=tuple(without) if without is not None else None)
        param: Value | None = None
        if node.param is not None:
            param = await self.eval(node.param, steps)
        val = await self.eval(node.expr, steps, hint)
        if not isinstance(val, Vec):
            raise PromQLError(f"expected type instant vector in aggregation expression, got {type(val).__name__}")
        return aggregate(op, val, by, without, param)

    async def binary(self, node: Any, steps: np.ndarray) -> Value:
        op = str(node.op).lower()
        mod = node.modifier
        return_bool = bool(mod and mod.return_bool)
        lhs = await self.eval(node.lhs, steps)
        rhs = await self.eval(node.rhs, steps)
        if isinstance(lhs, Scal) and isinstance(rhs, Scal):
            value, keep = elem_binop(op, lhs.v, rhs.v)
            if op in _CMP:
                value = keep.astype(np.float64)
            return Scal(value)
        if isinstance(lhs, Vec) and isinstance(rhs, Scal):
            return vector_scalar(op, lhs, rhs.v, False, return_bool)
        if isinstance(lhs, Scal) and isinstance(rhs, Vec):
            return vector_scalar(op, rhs, lhs.v, True, return_bool)
        if isinstance(lhs, Vec) and isinstance(rhs, Vec):
            return vector_vector(op, lhs, rhs, mod, return_bool)
        raise PromQLError("binary expression must contain only scalar and instant vector types")


def elem_binop(op: str, lv: np.ndarray, rv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(value, keep) as Prometheus' vectorElemBinop: comparisons keep the left value where true."""
    with np.errstate(all="ignore"):
        if op == "+":
            return lv + rv, np.ones(np.shape(lv + rv), bool)
        if op == "-":
            r = lv - rv
        elif op == "*":
            r = lv * rv
        elif op == "/":
            r = lv / rv
        elif op == "%":
            r = np.fmod(lv, rv)
        elif op == "^":
            r = go_pow(lv, rv)
        elif op == "atan2":
            r = np.arctan2(lv, rv)
        else:
            cmp = {"==": np.equal, "!=": np.not_equal, ">": np.greater, "<": np.less,
                   ">=": np.greater_equal, "<=": np.less_equal}[op](lv, rv)
            return np.broadcast_to(lv, cmp.shape).astype(np.float64), cmp
    return r, np.ones(np.shape(r), bool)


def go_pow(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Go's math.Pow, bit for bit where it matters: integer powers by its repeated squaring of the
    mantissa (numpy's SIMD pow is not correctly rounded, so x ^ 2 could differ from Prometheus in
    the last bit), and x ^ 0.5 at -Inf and -0, which numpy takes as sqrt."""
    with np.errstate(all="ignore"):
        r = np.power(x, y)
    shape = np.shape(r)
    xb = np.broadcast_to(x, shape)
    yb = np.broadcast_to(y, shape)
    half = yb == 0.5
    if half.any():
        r = np.where(half & (xb == -np.inf), np.inf, r)
        r = np.where(half & (xb == 0), 0.0, r)
    with np.errstate(all="ignore"):
        whole = np.isfinite(xb) & (xb != 0) & np.isfinite(yb) & (np.trunc(yb) == yb) & (np.abs(yb) >= 2) & \
            (np.abs(yb) < 2.0**62)
    if not whole.any():
        return r
    xs, ys = xb[whole], yb[whole]
    x1, xe = np.frexp(xs)
    xe = xe.astype(np.int64)
    a1 = np.ones(len(xs))
    ae = np.zeros(len(xs), dtype=np.int64)
    i = np.abs(ys).astype(np.int64)
    live = i != 0
    while live.any():
        blown = live & ((xe < -(1 << 12)) | (xe > (1 << 12)))
        ae = np.where(blown, ae + xe, ae)
        live &= ~blown
        bit = live & ((i & 1) == 1)
        a1 = np.where(bit, a1 * x1, a1)
        ae = np.where(bit, ae + xe, ae)
        x1 = np.where(live, x1 * x1, x1)
        xe = np.where(live, xe << 1, xe)
        small = live & (x1 < 0.5)
        x1 = np.where(small, x1 + x1, x1)
        xe = np.where(small, xe - 1, xe)
        i = np.where(live, i >> 1, i)
        live &= i != 0
    neg = ys < 0
    a1 = np.where(neg, 1 / a1, a1)
    ae = np.where(neg, -ae, ae)
    out = np.array(r, dtype=np.float64, copy=True)
    with np.errstate(all="ignore"):
        out[whole] = np.ldexp(a1, np.clip(ae, -(1 << 30), 1 << 30).astype(np.int32))
    return out


def vector_scalar(op: str, vec: Vec, sv: np.ndarray, swap: bool, return_bool: bool) -> Vec:
    if op in _SET:
        raise PromQLError(f"set operator {op!r} not allowed in binary scalar expression")
    s = np.broadcast_to(sv[None, :], vec.v.shape)
    lv, rv = (s, vec.v) if swap else (vec.v, s)
    value, keep = elem_binop(op, lv, rv)
    if op in _CMP:
        value = vec.v  # the vector's value, even when the scalar is on the left
    if return_bool:
        value = keep.astype(np.float64)
        keep = np.ones_like(keep)
    p = vec.p & keep
    drop = op in _DROPS_NAME or return_bool
    labels = [drop_name(x) for x in vec.labels] if drop else vec.labels
    out = Vec(labels, np.where(p, value, np.nan), p)
    return merge_same_labels(out) if drop else out


def _signature(labels: Labels, on: bool, names: list[str]) -> tuple[tuple[str, str], ...]:
    if on:
        return tuple(sorted((k, labels[k]) for k in names if labels.get(k)))
    return tuple(sorted((k, v) for k, v in labels.items() if k not in names and k != "__name__"))


def vector_vector(op: str, lhs: Vec, rhs: Vec, mod: Any, return_bool: bool) -> Vec:
    matching = mod.matching if mod is not None else None
    on = matching is not None and matching.type == pp.LabelModifierType.Include
    names = list(matching.labels) if matching is not None else []
    card = mod.card if mod is not None else pp.VectorMatchCardinality.OneToOne
    s = lhs.v.shape[1] if lhs.v.ndim == 2 else rhs.v.shape[1]
    sigs: dict[tuple[tuple[str, str], ...], int] = {}

    def sig_ids(vec: Vec) -> np.ndarray:
        return np.array([sigs.setdefault(_signature(x, on, names), len(sigs)) for x in vec.labels], dtype=np.int64)

    if op in _SET:
        ls, rs = sig_ids(lhs), sig_ids(rhs)
        nsig = len(sigs)
        if op in ("and", "unless"):
            rp = group_reduce(np.logical_or, rs, rhs.p, nsig, False)
            hit = rp[ls] if len(ls) else np.zeros((0, s), bool)
            p = lhs.p & hit if op == "and" else lhs.p & ~hit
            return Vec(lhs.labels, np.where(p, lhs.v, np.nan), p)
        lp = group_reduce(np.logical_or, ls, lhs.p, nsig, False)
        rkeep = rhs.p & ~lp[rs] if len(rs) else np.zeros((0, s), bool)
        out = Vec(lhs.labels + rhs.labels, np.concatenate([lhs.v, np.where(rkeep, rhs.v, np.nan)]).reshape(-1, s),
                  np.concatenate([lhs.p, rkeep]).reshape(-1, s))
        return merge_same_labels(out)

    one_to_many = card == pp.VectorMatchCardinality.OneToMany
    one_to_one = card == pp.VectorMatchCardinality.OneToOne
    include = list(mod.group_labels or []) if mod is not None else []
    many, one = (rhs, lhs) if one_to_many else (lhs, rhs)
    ms, os_ = sig_ids(many), sig_ids(one)
    nsig = len(sigs)
    cnt = group_reduce(np.add, os_, one.p.astype(np.int64), nsig, 0)
    if (cnt > 1).any():
        g, j = np.argwhere(cnt > 1)[0]
        dups = [i for i in range(len(os_)) if os_[i] == g and one.p[i, j]]
        sig_labels = dict(next(k for k, v in sigs.items() if v == g))
        side = "left" if one_to_many else "right"
        raise PromQLError(
            f"found duplicate series for the match group {label_str(sig_labels)} on the {side} hand-side of the "
            f"operation: [{label_str(one.labels[dups[1]])}, {label_str(one.labels[dups[0]])}];many-to-many "
            "matching not allowed: matching labels must be unique on one side", "execution")
    ridx = np.full((nsig, s), -1, dtype=np.int64)
    for i, g in enumerate(os_):
        ridx[g, one.p[i]] = i
    mr = ridx[ms] if len(ms) else np.zeros((0, s), np.int64)
    valid = many.p & (mr >= 0)
    cols = np.arange(s)[None, :]
    ov = one.v[np.clip(mr, 0, None), cols] if len(one.labels) else np.full(mr.shape, np.nan)
    vl, vr = (ov, many.v) if one_to_many else (many.v, ov)
    value, keep = elem_binop(op, vl, vr)
    if return_bool:
        value = keep.astype(np.float64)
        keep = np.ones_like(keep)
    pres = valid & keep
    if one_to_one:
        c2 = group_reduce(np.add, ms, pres.astype(np.int64), nsig, 0)
        if (c2 > 1).any():
            raise PromQLError("multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                              "execution")
    drop = op in _DROPS_NAME
    rr, cc = np.nonzero(pres)
    pair = rr * max(1, len(one.labels)) + mr[rr, cc]
    uniq, inv = np.unique(pair, return_inverse=True)
    labels: list[Labels] = []
    for u in uniq.tolist():
        li, ri = divmod(u, max(1, len(one.labels)))
        lab = dict(many.labels[li])
        if drop or return_bool:
            lab.pop("__name__", None)
        if one_to_one:
            if on:
                lab = {k: v for k, v in lab.items() if k in names}
            else:
                lab = {k: v for k, v in lab.items() if k not in names}
        for ln in include:
            val = one.labels[ri].get(ln, "")
            if val:
                lab[ln] = val
            else:
                lab.pop(ln, None)
        labels.append(lab)
    v = np.full((len(uniq), s), np.nan)
    p = np.zeros((len(uniq), s), dtype=bool)
    v[inv, cc] = value[rr, cc]
    p[inv, cc] = True
    msg = ("vector cannot contain metrics with the same labelset" if one_to_one
           else "multiple matches for labels: grouping labels must ensure unique matches")
    return merge_same_labels(Vec(labels, v, p), msg)


def check_label_name(name: str) -> None:
    if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name):
        raise PromQLError(f"invalid destination label name in label_replace(): {name}", "execution")
