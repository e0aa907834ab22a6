"""SQL for the logs explorer's own reads: facet counts for several keys in one scan, and the lines
around one line from the same service and host (its context).

Every user value reaches SQL through ferry.store.sql.literal, group keys through logs_sql.group_column.
"""

from __future__ import annotations

from ferry.query.language import parse
from ferry.query.logs_sql import compile_where, group_column
from ferry.store.sql import literal

# The columns of a log row as GET /api/v1/logs answers them (ferry/api/app.py LOG_COLUMNS).
ROW_COLUMNS = (
    "toUnixTimestamp64Nano(Timestamp) AS time_ns, ServiceName AS service, SeverityText AS level, "
    "Body AS body, TraceId AS trace_id, SpanId AS span_id, ResourceAttributes AS resource, "
    "LogAttributes AS attributes, Source AS source, toUnixTimestamp64Nano(IngestTime) AS ingest_ns"
)
MAX_FACET_KEYS = 12
MAX_FACET_VALUES = 50
# How far from the line the context looks: nearer lines are what an operator wants, and the bound
# keeps both reads on a few hourly partitions.
CONTEXT_WINDOW_NS = 3600 * 10**9


def _time(start_ns: int, end_ns: int | None) -> str:
    cond = f"Timestamp >= fromUnixTimestamp64Nano({int(start_ns)})"
    if end_ns is not None:
        cond += f" AND Timestamp < fromUnixTimestamp64Nano({int(end_ns)})"
    return cond


def facets_sql(query: str, keys: list[str], start_ns: int, end_ns: int | None, tenant_where: str,
               per_key: int) -> str:
    """Top `per_key` values of each key (service, level, host, source or an attribute) among the lines
    matching `query`, read in one pass: each line is expanded into one (key, value) pair per key.
    A line without an attribute has no value for it (not counted under "")."""
    pairs = ", ".join(f"({literal(k)}, toString({group_column(k)}))" for k in keys)
    where = compile_where(parse(query))
    return (
        f"SELECT pair.1 AS field, pair.2 AS value, count() AS count\n"
        f"FROM otel_logs ARRAY JOIN [{pairs}] AS pair\n"
        f"WHERE {tenant_where} AND {_time(start_ns, end_ns)} AND ({where}) AND pair.2 != ''\n"
        f"GROUP BY field, value\nORDER BY field, count DESC, value\nLIMIT {int(per_key)} BY field"
    )


def context_sql(time_ns: int, service: str, host: str, tenant_where: str, n: int, before: bool) -> str:
    """The `n` lines of the same service and host next to `time_ns`: at or before it (newest
    first, the line itself among them) or after it (oldest first)."""
    t = f"fromUnixTimestamp64Nano({int(time_ns)})"
    if before:
        span, order = f"Timestamp <= {t} AND Timestamp >= {t} - toIntervalSecond(3600)", "DESC"
    else:
        span, order = f"Timestamp > {t} AND Timestamp <= {t} + toIntervalSecond(3600)", "ASC"
    return (
        f"SELECT {ROW_COLUMNS}\nFROM otel_logs\n"
        f"WHERE {tenant_where} AND ServiceName = {literal(service)} "
        f"AND ResourceAttributes['host.name'] = {literal(host)} AND {span}\n"
        f"ORDER BY Timestamp {order}\nLIMIT {int(n)}"
    )
