"""SQL the UI's trace views read besides TraceQL: per-trace span and error counts for search hits,
and one trace's log lines (its spans come from traceql.reads.full_spans_sql, events included).
"""

from __future__ import annotations

from collections.abc import Sequence

from ferry.query.traceql.compile import trace_bounds_sql
from ferry.query.traceql.reads import FULL_COLUMNS, MAX_TRACE_SPANS
from ferry.store.sql import literal

# Log lines one trace view shows; a trace logging more is cut (and says so).
MAX_TRACE_LOGS = 10_000


def counts_sql(tenant_where: str, trace_ids: Sequence[str]) -> str:
    """Spans, error spans and services of each given trace, read from the traces' own time range."""
    ids = "(" + ", ".join(literal(t) for t in trace_ids) + ")"
    return (
        "SELECT TraceId AS trace_id, count() AS spans, countIf(StatusCode = 'STATUS_CODE_ERROR') AS errors, "
        "groupUniqArray(ServiceName) AS services "
        f"FROM otel_traces WHERE {tenant_where} AND TraceId IN {ids} AND {trace_bounds_sql(trace_ids)} "
        "GROUP BY TraceId"
    )


# Log lines are looked for this far around the trace's spans (clocks of different hosts differ).
LOG_MARGIN_NS = 60 * 10**9


def bounds_sql(trace_id: str) -> str:
    """The trace's first and last span start (whole seconds) from the trace-id lookup table."""
    return ("SELECT toUnixTimestamp(min(Start)) AS s, toUnixTimestamp(max(End)) AS e, count() AS n "
            f"FROM otel_traces_trace_id_ts WHERE TraceId = {literal(trace_id)}")


def spans_sql(tenant_where: str, trace_id: str, start_s: int, end_s: int) -> str:
    """Every column of the trace's spans (as the Tempo API reads them) within its known seconds."""
    return (f"SELECT {FULL_COLUMNS} FROM otel_traces WHERE {tenant_where} AND TraceId = {literal(trace_id)} "
            f"AND Timestamp >= toDateTime({int(start_s) - 1}) AND Timestamp < toDateTime({int(end_s) + 2}) "
            f"ORDER BY Timestamp LIMIT {MAX_TRACE_SPANS}")


def logs_sql(tenant_where: str, trace_id: str, start_ns: int | None = None, end_ns: int | None = None) -> str:
    """The trace's log lines in time order (one more than the cap, so a cut can be told), within
    [start, end] when the trace's spans give one (else every partition is read)."""
    bound = ""
    if start_ns is not None and end_ns is not None:
        bound = (f" AND Timestamp >= fromUnixTimestamp64Nano({int(start_ns) - LOG_MARGIN_NS})"
                 f" AND Timestamp <= fromUnixTimestamp64Nano({int(end_ns) + LOG_MARGIN_NS})")
    return (
        "SELECT toUnixTimestamp64Nano(Timestamp) AS time_ns, SpanId AS span_id, ServiceName AS service, "
        "SeverityText AS level, SeverityNumber AS severity, Body AS body, LogAttributes AS attributes "
        f"FROM otel_logs WHERE {tenant_where} AND TraceId = {literal(trace_id)}{bound} "
        f"ORDER BY Timestamp LIMIT {MAX_TRACE_LOGS + 1}"
    )
