"""SQL for a basic metric series query: a name, label filters, a time range and a step.

Gauges average per step, cumulative sums take the last value per step, delta sums add up,
histograms give their mean (sum/count) per step; one series per distinct label set.
"""

from __future__ import annotations

import re

from ferry.errors import BadRequest
from ferry.store.chdb_store import quote

_NAME = re.compile(r"^[A-Za-z_:][A-Za-z0-9_.:/-]*$")

_VALUE = {
    "otel_metrics_gauge": "avg(Value)",
    "otel_metrics_sum": "if(any(AggregationTemporality) = 1, sum(Value), argMax(Value, TimeUnix))",
    "otel_metrics_histogram": "if(sum(Count) = 0, nan, sum(Sum) / sum(Count))",
}


def series_sql(name: str, labels: dict[str, str], start_ns: int, end_ns: int, step_s: int) -> str:
    if not _NAME.match(name):
        raise BadRequest(f"metric name {name!r} has characters a metric name cannot have")
    if step_s <= 0:
        raise BadRequest("step must be a positive number of seconds")
    where = [
        f"MetricName = {quote(name)}",
        f"TimeUnix >= fromUnixTimestamp64Nano({int(start_ns)})",
        f"TimeUnix <= fromUnixTimestamp64Nano({int(end_ns)})",
    ]
    for k, v in labels.items():
        cond = f"Attributes[{quote(k)}] = {quote(v)} OR ResourceAttributes[{quote(k)}] = {quote(v)}"
        if k in ("service", "service.name"):
            cond = f"ServiceName = {quote(v)}"
        where.append(f"({cond})")
    cond = " AND ".join(where)
    parts = []
    for table, value in _VALUE.items():
        kind = table.removeprefix("otel_metrics_")
        parts.append(
            f"SELECT '{kind}' AS kind, ServiceName AS service, Attributes AS labels, "
            f"toUnixTimestamp(toStartOfInterval(TimeUnix, INTERVAL {int(step_s)} SECOND)) AS t, {value} AS v, "
            f"groupArrayArray(10)(`Exemplars.TraceId`) AS exemplar_trace_ids "
            f"FROM {table} WHERE {cond} GROUP BY service, labels, t"
        )
    return " UNION ALL ".join(parts) + " ORDER BY kind, service, t"
