"""SQL for metric reads: one metric's series per step (with histogram percentiles), and the metric names.

Gauges average per step, cumulative sums take the last value per step, delta sums add up; histograms
give count, mean and p50/p90/p99 of what was observed in each step. One series per label set.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from ferry.errors import BadRequest
from ferry.store.sql import literal
from ferry.tenancy import tenant_conds

_NAME = re.compile(r"^[A-Za-z_:][A-Za-z0-9_.:/-]*$")

QUANTILES = (0.5, 0.9, 0.99)

# The kinds ferry reads back; exponential histograms and summaries are stored but not read yet.
_TABLES = {"gauge": "otel_metrics_gauge", "sum": "otel_metrics_sum", "histogram": "otel_metrics_histogram"}

_VALUE = {
    "gauge": "avg(Value)",
    "sum": "if(any(AggregationTemporality) = 1, sum(Value), argMax(Value, TimeUnix))",
}

# A cumulative histogram point holds everything since its StartTimeUnix, so a step's observations are
# the difference from the series' previous point. Points this far before the window are read only as
# that baseline; the SDKs' default export interval is 60 s.
_BASELINE_S = 900

_AGGREGATION_CUMULATIVE = 2


def _filters(labels: dict[str, str]) -> list[str]:
    where = []
    for k, v in labels.items():
        cond = f"Attributes[{literal(k)}] = {literal(v)} OR ResourceAttributes[{literal(k)}] = {literal(v)}"
        if k in ("service", "service.name"):
            cond = f"ServiceName = {literal(v)}"
        where.append(f"({cond})")
    return where


def _check(name: str, step_s: int | None) -> None:
    if not _NAME.match(name):
        raise BadRequest(f"metric name {name!r} has characters a metric name cannot have")
    if step_s is not None and step_s <= 0:
        raise BadRequest("step must be a positive number of seconds")


def _time(start_ns: int, end_ns: int, column: str = "TimeUnix") -> list[str]:
    return [f"{column} >= fromUnixTimestamp64Nano({int(start_ns)})", f"{column} <= fromUnixTimestamp64Nano({int(end_ns)})"]


def _bucket(step_s: int | None, start_ns: int) -> str:
    """Unix seconds a point is reported at: the start of its step, or of the window as a whole."""
    if step_s is None:
        return f"toInt64({int(start_ns) // 1_000_000_000})"
    return f"toInt64(toUnixTimestamp(toStartOfInterval(TimeUnix, INTERVAL {int(step_s)} SECOND)))"


def _quantile(q: float) -> str:
    """The q-quantile from merged bucket counts `b`, bounds `bounds` and their running total `cum`,
    interpolated linearly inside its bucket as Prometheus' histogram_quantile does. The open ends
    (below the first bound, above the last) are closed by the observed min and max when the points
    carry them; those also tighten the bucket, so one observation of 12.3 reads as 12.3, not as
    the middle of its 10..25 bucket."""
    rank = f"({q!r} * n)"
    i = f"arrayFirstIndex(c -> c >= {rank}, cum)"
    lower = f"if({i} = 1, if(ranged, lo, least(0, bounds[1])), bounds[{i} - 1])"
    upper = f"if({i} > length(bounds), if(ranged, hi, bounds[length(bounds)]), bounds[{i}])"
    lower = f"if(ranged, greatest({lower}, lo), {lower})"
    upper = f"greatest({lower}, if(ranged, least({upper}, hi), {upper}))"
    before = f"if({i} = 1, 0, cum[{i} - 1])"
    inside = f"({rank} - {before}) / greatest(b[{i}], 1)"
    return f"if(n = 0 OR {i} = 0, nan, {lower} + ({upper} - {lower}) * least({inside}, 1))"


def _histogram_sql(where: list[str], start_ns: int, end_ns: int, step_s: int | None) -> str:
    read_from = int(start_ns) - max(step_s or 0, _BASELINE_S) * 1_000_000_000
    window = "PARTITION BY ServiceName, Attributes, StartTimeUnix ORDER BY TimeUnix ROWS BETWEEN 1 PRECEDING AND CURRENT ROW"
    # A point stands for itself when it is a delta, the first of a series that began inside what was
    # read, or follows a reset (its count went down); otherwise it is the difference from the one before.
    whole = f"(AggregationTemporality != {_AGGREGATION_CUMULATIVE} OR rn = 1 OR Count < pcount)"
    points = (
        "SELECT ServiceName, Attributes, MetricUnit, TimeUnix, StartTimeUnix, AggregationTemporality, Count, Sum, "
        "BucketCounts, ExplicitBounds, Min, Max, `Exemplars.TraceId` AS ex, "
        "row_number() OVER w AS rn, lagInFrame(Count) OVER w AS pcount, lagInFrame(Sum) OVER w AS psum, "
        "lagInFrame(BucketCounts) OVER w AS pbuckets "
        f"FROM otel_metrics_histogram WHERE {' AND '.join([*where, *_time(read_from, end_ns)])} WINDOW w AS ({window})"
    )
    in_window = (
        f"TimeUnix >= fromUnixTimestamp64Nano({int(start_ns)}) AND (AggregationTemporality != {_AGGREGATION_CUMULATIVE} "
        f"OR rn > 1 OR StartTimeUnix >= fromUnixTimestamp64Nano({read_from}))"
    )
    steps = (
        f"SELECT ServiceName AS service, Attributes AS labels, any(MetricUnit) AS unit, {_bucket(step_s, start_ns)} AS t, "
        f"sum(toInt64(Count) - if({whole}, 0, toInt64(pcount))) AS n, sum(Sum - if({whole}, 0, psum)) AS total, "
        f"sumForEach(if({whole} OR length(BucketCounts) != length(pbuckets), BucketCounts, "
        "arrayMap((x, y) -> toUInt64(greatest(x, y) - y), BucketCounts, pbuckets))) AS b, "
        "any(ExplicitBounds) AS bounds, min(Min) AS lo, max(Max) AS hi, "
        # An SDK that does not track min and max leaves both 0: only trust them when some were set.
        "min(Min != 0 OR Max != 0 OR Sum = 0) AS ranged, groupArrayArray(10)(ex) AS exemplar_trace_ids "
        f"FROM ({points}) WHERE {in_window} GROUP BY service, labels, t"
    )
    quantiles = ", ".join(_quantile(q) for q in QUANTILES)
    return (
        "SELECT 'histogram' AS kind, service, labels, unit, t, if(n = 0, nan, total / n) AS v, n AS count, "
        f"[{quantiles}] AS quantiles, exemplar_trace_ids "
        f"FROM (SELECT *, arrayCumSum(b) AS cum FROM ({steps}))"
    )


def series_sql(name: str, labels: dict[str, str], start_ns: int, end_ns: int, step_s: int | None,
               tenant: str | None = None) -> str:
    """One row per (kind, service, labels, t): unit, value `v`, and for histograms `count` and
    `quantiles` (p50, p90, p99). With step_s None, one row per series for the whole window."""
    _check(name, step_s)
    where = [*tenant_conds(tenant), f"MetricName = {literal(name)}", *_filters(labels)]
    parts = []
    for kind, value in _VALUE.items():
        cond = " AND ".join([*where, *_time(start_ns, end_ns)])
        parts.append(
            f"SELECT '{kind}' AS kind, ServiceName AS service, Attributes AS labels, any(MetricUnit) AS unit, "
            f"{_bucket(step_s, start_ns)} AS t, {value} AS v, toUInt64(0) AS count, CAST([], 'Array(Float64)') AS quantiles, "
            f"groupArrayArray(10)(`Exemplars.TraceId`) AS exemplar_trace_ids "
            f"FROM {_TABLES[kind]} WHERE {cond} GROUP BY service, labels, t"
        )
    parts.append(_histogram_sql(where, start_ns, end_ns, step_s))
    # ORDER BY after a UNION ALL would bind to its last SELECT only.
    return f"SELECT * FROM ({' UNION ALL '.join(parts)}) ORDER BY kind, service, t"


def group_series(rows: list[dict[str, Any]], whole: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Rows of series_sql grouped into series: points [t, v]; for histograms also `stats` per step
    ({t, count, mean, p50, p90, p99}) and, from `whole` (series_sql with no step), `window`."""
    grouped: dict[tuple[str, str, str], dict[str, Any]] = {}

    def key(r: dict[str, Any]) -> tuple[str, str, str]:
        return r["kind"], r["service"], orjson.dumps(r["labels"], option=orjson.OPT_SORT_KEYS).decode()

    def stats(r: dict[str, Any]) -> dict[str, Any]:
        return {"t": int(r["t"]), "count": int(r["count"]), "mean": r["v"],
                **{f"p{round(q * 100)}": v for q, v in zip(QUANTILES, r["quantiles"], strict=True)}}

    for r in rows:
        s = grouped.setdefault(key(r), {"kind": r["kind"], "service": r["service"], "labels": r["labels"],
                                        "unit": r["unit"], "points": [], "exemplars": []})
        s["points"].append([int(r["t"]), r["v"]])
        if r["kind"] == "histogram":
            s.setdefault("stats", []).append(stats(r))
        s["exemplars"].extend(t for t in r["exemplar_trace_ids"] if t and t not in s["exemplars"])
    for r in whole or []:
        s = grouped.get(key(r))
        if s is not None:
            s["window"] = stats(r) if r["kind"] == "histogram" else {"value": r["v"]}
    return list(grouped.values())


def names_sql(labels: dict[str, str], start_ns: int, end_ns: int, tenant: str | None = None) -> str:
    """Every metric name with points in the window: kind, unit, series count, services, points."""
    parts = []
    for kind, table in _TABLES.items():
        cond = " AND ".join([*tenant_conds(tenant), *_filters(labels), *_time(start_ns, end_ns)])
        parts.append(
            f"SELECT MetricName AS name, '{kind}' AS kind, any(MetricUnit) AS unit, "
            "uniqExact(ServiceName, cityHash64(Attributes)) AS series, arraySort(groupUniqArray(20)(ServiceName)) AS services, "
            f"count() AS points, toUnixTimestamp64Nano(max(TimeUnix)) AS last_ns FROM {table} WHERE {cond} GROUP BY name"
        )
    return f"SELECT * FROM ({' UNION ALL '.join(parts)}) ORDER BY name, kind"


def parse_labels(items: list[str]) -> dict[str, str]:
    """`label` parameters (`key=value`, repeatable) as a dict."""
    labels: dict[str, str] = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep:
            raise BadRequest(f"label filter {item!r} must look like key=value")
        labels[k] = v
    return labels
