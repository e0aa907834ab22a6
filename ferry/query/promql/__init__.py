"""PromQL for ferry: parse with `promql_parser`, evaluate with Prometheus 2.42 semantics over a Source,
answer in Prometheus' HTTP API shape; plus the API's selector, time and duration parsers.
"""

from __future__ import annotations

import math
import re
from datetime import datetime

import numpy as np
import promql_parser as pp

from ferry.query.promql.engine import Evaluator, parse, selector_matchers
from ferry.query.promql.errors import PromQLError
from ferry.query.promql.source import Hint, Matcher, Series, Source
from ferry.query.promql.values import RangeArg, RangeSeries, Result, Scal, Str, Vec

__all__ = ["Hint", "Matcher", "PromQLError", "Result", "Series", "Source", "instant_query", "parse_duration_ms",
           "parse_selector", "parse_time_ms", "range_query"]

MAX_POINTS = 11_000  # Prometheus' limit of points per series in a range query


def _unwrap(node: object) -> object:
    while isinstance(node, pp.ParenExpr):
        node = node.expr
    return node


async def instant_query(query: str, time_ms: int, source: Source, *, lookback_ms: int = 300_000) -> Result:
    """Evaluate QUERY at TIME_MS as Prometheus' /api/v1/query does."""
    node = parse(query)
    steps = np.array([time_ms], dtype=np.int64)
    ev = Evaluator(source, time_ms, time_ms, 0, lookback_ms)
    val = await ev.eval(node, steps)
    if isinstance(val, Vec):
        order = None
        top = _unwrap(node)
        if isinstance(top, pp.Call) and top.func.name in ("sort", "sort_desc"):
            order = "asc" if top.func.name == "sort" else "desc"
        return Result("vector", steps, val, order)
    if isinstance(val, Scal):
        return Result("scalar", steps, val)
    if isinstance(val, Str):
        return Result("string", steps, val)
    assert isinstance(val, RangeArg)
    ref = int(val.ref[0])
    out = []
    for x in val.series:
        keep = (x.t >= ref - val.range_ms) & (x.t <= ref)
        out.append(RangeSeries(x.labels, x.t[keep], x.v[keep]))
    return Result("matrix", steps, out)


async def range_query(query: str, start_ms: int, end_ms: int, step_ms: int, source: Source, *,
                      lookback_ms: int = 300_000) -> Result:
    """Evaluate QUERY at every step from START_MS to END_MS as /api/v1/query_range does."""
    if end_ms < start_ms:
        raise PromQLError("end timestamp must not be before start time")
    if step_ms <= 0:
        raise PromQLError("zero or negative query resolution step widths are not accepted. Try a positive integer")
    if (end_ms - start_ms) // step_ms > MAX_POINTS:
        raise PromQLError("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query "
                          "resolution (?step=XX)")
    node = parse(query)
    top = _unwrap(node)
    if isinstance(top, pp.StringLiteral):
        raise PromQLError('invalid expression type "string" for range query, must be Scalar or instant Vector')
    if isinstance(top, (pp.MatrixSelector, pp.SubqueryExpr)):
        raise PromQLError('invalid expression type "range vector" for range query, must be Scalar or instant Vector')
    steps = np.arange(start_ms, end_ms + 1, step_ms, dtype=np.int64)
    ev = Evaluator(source, start_ms, end_ms, step_ms, lookback_ms)
    val = await ev.eval(node, steps)
    if not isinstance(val, (Vec, Scal)):
        raise PromQLError("invalid expression type for range query, must be Scalar or instant Vector")
    return Result("matrix", steps, val)


def parse_selector(text: str) -> list[Matcher]:
    """The matchers of a series selector such as `up{job="api"}` (the API's `match[]`)."""
    try:
        node = pp.parse(text)
    except ValueError as e:
        raise PromQLError(f"1:1: parse error: {e}") from None
    if not isinstance(node, pp.VectorSelector):
        raise PromQLError(f"invalid series selector {text!r}: not a vector selector")
    return selector_matchers(node)


_DURATION = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_UNIT_MS = [365 * 86_400_000, 7 * 86_400_000, 86_400_000, 3_600_000, 60_000, 1000, 1]


def parse_duration_ms(text: str) -> int:
    """A Prometheus API duration: float seconds ("30", "1.5") or a duration ("5m", "1h30m")."""
    try:
        f = float(text)
    except ValueError:
        pass
    else:
        if math.isnan(f) or math.isinf(f) or abs(f) * 1e9 >= 2**63:
            raise PromQLError(f'cannot parse "{text}" to a valid duration. It overflows int64')
        return round(f * 1000)
    m = _DURATION.match(text)
    if text and text != "0" and m and any(m.groups()):
        return sum(int(g) * u for g, u in zip(m.groups(), _UNIT_MS, strict=True) if g)
    if text == "0":
        return 0
    raise PromQLError(f'cannot parse "{text}" to a valid duration')


def parse_time_ms(text: str) -> int:
    """A Prometheus API time: unix seconds as a float, or RFC 3339."""
    try:
        f = float(text)
    except ValueError:
        pass
    else:
        if math.isnan(f) or math.isinf(f):
            raise PromQLError(f'cannot parse "{text}" to a valid timestamp')
        s = math.floor(f)
        return s * 1000 + round((f - s) * 1000)
    t = text.strip()
    m = re.fullmatch(r"(\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d)(\.\d+)?([Zz]|[+-]\d\d:\d\d)", t)
    if m is None:
        raise PromQLError(f'cannot parse "{text}" to a valid timestamp')
    tz = "+00:00" if m.group(3) in ("Z", "z") else m.group(3)
    try:
        dt = datetime.fromisoformat(m.group(1).replace("t", "T") + tz)
    except ValueError:
        raise PromQLError(f'cannot parse "{text}" to a valid timestamp') from None
    frac = m.group(2) or ""
    ms = int((frac[1:] + "000")[:3]) if frac else 0
    return int(dt.timestamp()) * 1000 + ms
