"""PromQL functions over instant vectors and scalars (math, clamp, round, time, label_*, sort,
vector/scalar, absent, histogram_quantile) with Prometheus 2.42's label and NaN behaviour.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np
import promql_parser as pp

from ferry.query.promql.errors import PromQLError
from ferry.query.promql.values import Labels, RangeArg, Scal, Str, Value, Vec

if TYPE_CHECKING:
    from ferry.query.promql.engine import Evaluator

_MATH = {
    "abs": np.abs, "ceil": np.ceil, "floor": np.floor, "exp": np.exp, "sqrt": np.sqrt, "ln": np.log,
    "log2": np.log2, "log10": np.log10, "sin": np.sin, "cos": np.cos, "tan": np.tan, "asin": np.arcsin,
    "acos": np.arccos, "atan": np.arctan, "sinh": np.sinh, "cosh": np.cosh, "tanh": np.tanh,
    "asinh": np.arcsinh, "acosh": np.arccosh, "atanh": np.arctanh,
    "deg": lambda x: x * 180 / np.pi, "rad": lambda x: x * np.pi / 180,
    "sgn": lambda x: np.where(x < 0, -1.0, np.where(x > 0, 1.0, x)),
}
_TIME = {"day_of_month", "day_of_week", "day_of_year", "days_in_month", "hour", "minute", "month", "year"}


def _drop(labels: list[Labels]) -> list[Labels]:
    return [{k: v for k, v in x.items() if k != "__name__"} for x in labels]


def _vec(val: Value, name: str) -> Vec:
    if not isinstance(val, Vec):
        raise PromQLError(f"expected type instant vector in call to function {name!r}")
    return val


def _scal(val: Value, name: str) -> np.ndarray:
    if not isinstance(val, Scal):
        raise PromQLError(f"expected type scalar in call to function {name!r}")
    return val.v


def _str(val: Value, name: str) -> str:
    if not isinstance(val, Str):
        raise PromQLError(f"expected type string in call to function {name!r}")
    return val.s


def _apply(vec: Vec, values: np.ndarray, keep_name: bool = False) -> Vec:
    from ferry.query.promql.engine import merge_same_labels

    out = Vec(vec.labels if keep_name else _drop(vec.labels), np.where(vec.p, values, np.nan), vec.p)
    return out if keep_name else merge_same_labels(out)


def call(name: str, vals: list[Value], args: list[Any], steps: np.ndarray, ev: Evaluator) -> Value:
    s = len(steps)
    if name in _MATH:
        vec = _vec(vals[0], name)
        with np.errstate(all="ignore"):
            return _apply(vec, _MATH[name](vec.v))
    if name == "pi":
        return Scal(np.full(s, np.pi))
    if name == "time":
        return Scal(steps.astype(np.float64) / 1000.0)
    if name == "vector":
        return Vec([{}], _scal(vals[0], name)[None, :].copy(), np.ones((1, s), dtype=bool))
    if name == "scalar":
        vec = _vec(vals[0], name)
        cnt = vec.p.sum(axis=0)
        first = np.argmax(vec.p, axis=0) if len(vec.labels) else np.zeros(s, np.int64)
        v = vec.v[first, np.arange(s)] if len(vec.labels) else np.full(s, np.nan)
        return Scal(np.where(cnt == 1, v, np.nan))
    if name in ("clamp", "clamp_min", "clamp_max"):
        vec = _vec(vals[0], name)
        with np.errstate(all="ignore"):
            if name == "clamp":
                lo, hi = _scal(vals[1], name), _scal(vals[2], name)
                res = np.maximum(lo[None, :], np.minimum(hi[None, :], vec.v))
                out = _apply(vec, res)
                ok = (hi >= lo)[None, :]
                return Vec(out.labels, np.where(ok, out.v, np.nan), out.p & ok)
            bound = _scal(vals[1], name)[None, :]
            res = np.maximum(bound, vec.v) if name == "clamp_min" else np.minimum(bound, vec.v)
            return _apply(vec, res)
    if name == "round":
        vec = _vec(vals[0], name)
        to = _scal(vals[1], name) if len(vals) > 1 else np.ones(s)
        with np.errstate(all="ignore"):
            inv = 1.0 / to[None, :]
            return _apply(vec, np.floor(vec.v * inv + 0.5) / inv)
    if name in _TIME:
        if vals:
            vec = _vec(vals[0], name)
        else:
            vec = Vec([{}], (steps.astype(np.float64) / 1000.0)[None, :], np.ones((1, s), dtype=bool))
        return _apply(vec, _time_part(name, vec.v))  # NaN too: Prometheus converts it to a date
    if name in ("sort", "sort_desc"):
        return _vec(vals[0], name)
    if name == "absent":
        vec = _vec(vals[0], name)
        none = ~vec.p.any(axis=0) if len(vec.labels) else np.ones(s, dtype=bool)
        return Vec([_absent_labels(args[0])], np.where(none, 1.0, np.nan)[None, :], none[None, :])
    if name == "label_replace":
        return _label_replace(_vec(vals[0], name), *(_str(v, name) for v in vals[1:5]))
    if name == "label_join":
        return _label_join(_vec(vals[0], name), _str(vals[1], name), _str(vals[2], name),
                           [_str(v, name) for v in vals[3:]])
    if name in ("histogram_count", "histogram_sum", "histogram_fraction"):
        # Native-histogram functions: ferry stores float samples only, which they skip.
        _vec(vals[-1], name)
        return Vec([], np.zeros((0, s)), np.zeros((0, s), dtype=bool))
    if name == "histogram_quantile":
        return _histogram_quantile(_scal(vals[0], name), _vec(vals[1], name))
    raise PromQLError(f"unknown function with name {name!r} (not in Prometheus 2.42)", "bad_data")


# Go's time package constants: seconds from the Unix epoch to its "absolute" zero (a Monday in
# year -292277022399), where its calendar arithmetic runs on uint64.
_UNIX_TO_ABS = np.uint64(62_135_596_800 + 9_223_371_966_579_724_800)
_ABS_ZERO_YEAR = -292_277_022_399
_D400, _D100, _D4 = 365 * 400 + 97, 365 * 100 + 24, 365 * 4 + 1
_DAYS_BEFORE = np.array([0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365])
_DAYS_IN = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _time_part(name: str, v: np.ndarray) -> np.ndarray:
    """Prometheus' dateWrapper: time.Unix(int64(v), 0).UTC() and a calendar field, done as Go does
    it, so NaN, ±Inf and out-of-range values (int64 conversion gives MinInt64 on amd64) agree too."""
    with np.errstate(all="ignore"):
        ok = np.isfinite(v) & (np.abs(v) < 2.0**63)
        secs = np.where(ok, np.trunc(np.where(ok, v, 0.0)), 0.0).astype(np.int64)
        secs[~ok] = np.iinfo(np.int64).min
        a = secs.view(np.uint64) + _UNIX_TO_ABS
    if name == "hour":
        return ((a % np.uint64(86400)) // np.uint64(3600)).astype(np.float64)
    if name == "minute":
        return ((a % np.uint64(3600)) // np.uint64(60)).astype(np.float64)
    if name == "day_of_week":
        return (((a + np.uint64(86400)) % np.uint64(604800)) // np.uint64(86400)).astype(np.float64)
    d = a // np.uint64(86400)
    n = d // np.uint64(_D400)
    y = np.uint64(400) * n
    d = d - np.uint64(_D400) * n
    n = d // np.uint64(_D100)
    n = n - (n >> np.uint64(2))
    y = y + np.uint64(100) * n
    d = d - np.uint64(_D100) * n
    n = d // np.uint64(_D4)
    y = y + np.uint64(4) * n
    d = d - np.uint64(_D4) * n
    n = d // np.uint64(365)
    n = n - (n >> np.uint64(2))
    y = y + n
    d = d - np.uint64(365) * n
    year = y.astype(np.int64) + _ABS_ZERO_YEAR
    yday = d.astype(np.int64)
    if name == "year":
        return year.astype(np.float64)
    if name == "day_of_year":
        return (yday + 1).astype(np.float64)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    day = np.where(leap & (yday > 59), yday - 1, yday)
    leap_day = leap & (yday == 59)
    month = np.clip(day // 31, 0, 11)
    end = _DAYS_BEFORE[month + 1]
    after = day >= end
    begin = np.where(after, end, _DAYS_BEFORE[month])
    month = month + after + 1
    dom = day - begin + 1
    month = np.where(leap_day, 2, month)
    dom = np.where(leap_day, 29, dom)
    if name == "month":
        return month.astype(np.float64)
    if name == "day_of_month":
        return dom.astype(np.float64)
    # days_in_month
    return np.where((month == 2) & leap, 29, _DAYS_IN[month - 1]).astype(np.float64)


def _absent_labels(arg: Any) -> Labels:
    vs = None
    if isinstance(arg, pp.VectorSelector):
        vs = arg
    elif isinstance(arg, pp.MatrixSelector):
        vs = arg.vector_selector
    if vs is None:
        return {}
    return absent_labels_from([(m.name, "=" if m.op == pp.MatchOp.Equal else "other", m.value) for m in vs.matchers.matchers])


def absent_labels_from(matchers: list[tuple[str, str, str]]) -> Labels:
    out: Labels = {}
    empty: list[str] = []
    for name, op, value in matchers:
        if name == "__name__":
            continue
        if op == "=" and name not in out:
            out[name] = value
        else:
            empty.append(name)
    for name in empty:
        out.pop(name, None)
    return {k: v for k, v in out.items() if v}


def absent_over_time(arg: RangeArg, s: int) -> Vec:
    _, _, a, b, _ = arg.windows()
    any_ = ((b - a) > 0).any(axis=0) if len(arg.series) else np.zeros(s, dtype=bool)
    labels = absent_labels_from(arg.selector_matchers or [])
    return Vec([labels], np.where(~any_, 1.0, np.nan)[None, :], ~any_[None, :])


_GO_TEMPLATE = re.compile(r"\$(\$|\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")


def _expand(template: str, m: re.Match[str]) -> str:
    """Go's regexp.Expand: $1, ${1}, $name, ${name}, $$; an unknown group expands to nothing."""
    def one(x: re.Match[str]) -> str:
        if x.group(1) == "$":
            return "$"
        ref = x.group(2) or x.group(3)
        try:
            g = m.group(int(ref)) if ref.isdigit() else m.group(ref)
        except IndexError:
            return ""
        return g or ""
    return _GO_TEMPLATE.sub(one, template)


def _label_replace(vec: Vec, dst: str, repl: str, src: str, regex: str) -> Vec:
    from ferry.query.promql.engine import check_label_name, merge_same_labels

    try:
        rx = re.compile(f"^(?:{regex})$")
    except re.error as e:
        raise PromQLError(f"invalid regular expression in label_replace(): {regex}: {e}", "execution") from None
    check_label_name(dst)
    labels: list[Labels] = []
    for lab in vec.labels:
        m = rx.match(lab.get(src, ""))
        if m is None:
            labels.append(lab)
            continue
        res = _expand(repl, m)
        new = dict(lab)
        if res:
            new[dst] = res
        else:
            new.pop(dst, None)
        labels.append(new)
    return merge_same_labels(Vec(labels, vec.v, vec.p))


def _label_join(vec: Vec, dst: str, sep: str, srcs: list[str]) -> Vec:
    from ferry.query.promql.engine import check_label_name, merge_same_labels

    check_label_name(dst)
    labels: list[Labels] = []
    for lab in vec.labels:
        res = sep.join(lab.get(x, "") for x in srcs)
        new = dict(lab)
        if res:
            new[dst] = res
        else:
            new.pop(dst, None)
        labels.append(new)
    return merge_same_labels(Vec(labels, vec.v, vec.p))


def _histogram_quantile(q: np.ndarray, vec: Vec) -> Vec:
    from ferry.query.promql.engine import merge_same_labels

    s = len(q)
    groups: dict[tuple[tuple[str, str], ...], list[tuple[int, float]]] = {}
    out_labels: dict[tuple[tuple[str, str], ...], Labels] = {}
    for i, lab in enumerate(vec.labels):
        try:
            ub = float(lab.get("le", "x").replace("+Inf", "inf").replace("-Inf", "-inf"))
        except ValueError:
            continue
        if not _GO_FLOAT.fullmatch(lab.get("le", "")):
            continue
        sig = tuple(sorted((k, v) for k, v in lab.items() if k != "le"))
        groups.setdefault(sig, []).append((i, ub))
        out_labels.setdefault(sig, {k: v for k, v in lab.items() if k not in ("le", "__name__")})
    labels: list[Labels] = []
    rows_v: list[np.ndarray] = []
    rows_p: list[np.ndarray] = []
    for sig, members in groups.items():
        members.sort(key=lambda x: x[1])
        idx = np.array([m[0] for m in members])
        ubs = np.array([m[1] for m in members])
        pres = vec.p[idx]
        anyp = pres.any(axis=0)
        res = np.full(s, np.nan)
        for j in np.flatnonzero(anyp):
            sel = pres[:, j]
            res[j] = bucket_quantile(float(q[j]), ubs[sel], vec.v[idx[sel], j])
        labels.append(out_labels[sig])
        rows_v.append(res)
        rows_p.append(anyp)
    if not labels:
        return Vec([], np.zeros((0, s)), np.zeros((0, s), dtype=bool))
    return merge_same_labels(Vec(labels, np.array(rows_v), np.array(rows_p)))


_GO_FLOAT = re.compile(r"[+-]?(?:inf|Inf|INF|infinity|Infinity|NaN|nan|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|0[xX][0-9a-fA-F]+)")


def bucket_quantile(q: float, ubs: np.ndarray, counts: np.ndarray) -> float:
    """Prometheus' bucketQuantile over buckets sorted by upper bound."""
    if q != q:
        return float("nan")
    if q < 0:
        return float("-inf")
    if q > 1:
        return float("inf")
    if len(ubs) == 0 or ubs[-1] != np.inf:
        return float("nan")
    # Coalesce equal bounds, then force monotonic counts.
    cub: list[float] = []
    cc: list[float] = []
    for ub, c in zip(ubs.tolist(), counts.tolist(), strict=True):
        if cub and cub[-1] == ub:
            cc[-1] += c
        else:
            cub.append(ub)
            cc.append(c)
    mx = float("-inf")
    for i, c in enumerate(cc):
        if c > mx:
            mx = c
        elif c < mx:
            cc[i] = mx
    if len(cub) < 2:
        return float("nan")
    obs = cc[-1]
    if obs == 0:
        return float("nan")
    rank = q * obs
    b = len(cc) - 1
    for i in range(len(cc) - 1):
        if cc[i] >= rank:
            b = i
            break
    if b == len(cub) - 1:
        return cub[-2]
    if b == 0 and cub[0] <= 0:
        return cub[0]
    start = 0.0
    end = cub[b]
    count = cc[b]
    if b > 0:
        start = cub[b - 1]
        count -= cc[b - 1]
        rank -= cc[b - 1]
    return start + (end - start) * (rank / count)
