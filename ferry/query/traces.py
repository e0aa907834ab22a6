"""SQL for one trace: its spans (time-bounded via the trace-id lookup table) and its log lines.

Both are plain SELECTs; the API turns their rows into the span tree the CLI prints.
"""

from __future__ import annotations

import re

from ferry.errors import BadRequest
from ferry.tenancy import tenant_conds

_HEX = re.compile(r"^[0-9a-f]{32}$")


def check_trace_id(trace_id: str) -> str:
    tid = trace_id.strip().lower()
    if not _HEX.match(tid):
        raise BadRequest(f"trace id must be 32 hex digits, got {trace_id!r}")
    return tid


def time_bounds_sql(tid: str) -> str:
    """The trace's time range from the lookup table (which has no tenant: it only bounds the span read,
    and spans_sql keeps the tenant's spans)."""
    return (
        "SELECT toUnixTimestamp(min(Start)) AS s, toUnixTimestamp(max(End)) AS e, count() AS n "
        f"FROM otel_traces_trace_id_ts WHERE TraceId = '{tid}'"
    )


def spans_sql(tid: str, start: int | None, end: int | None, tenant: str | None = None) -> str:
    bound = "".join(f" AND {c}" for c in tenant_conds(tenant))
    if start is not None and end is not None:
        bound += f" AND Timestamp >= toDateTime({start - 1}) AND Timestamp <= toDateTime({end + 1})"
    return (
        "SELECT toUnixTimestamp64Nano(Timestamp) AS start_ns, TraceId AS trace_id, SpanId AS span_id, "
        "ParentSpanId AS parent_span_id, SpanName AS name, SpanKind AS kind, ServiceName AS service, "
        "Duration AS duration_ns, StatusCode AS status, StatusMessage AS status_message, "
        "SpanAttributes AS attributes, ResourceAttributes AS resource, `Events.Name` AS event_names "
        f"FROM otel_traces WHERE TraceId = '{tid}'{bound} ORDER BY Timestamp"
    )


def logs_sql(tid: str, tenant: str | None = None) -> str:
    bound = "".join(f" AND {c}" for c in tenant_conds(tenant))
    return (
        "SELECT toUnixTimestamp64Nano(Timestamp) AS time_ns, SpanId AS span_id, ServiceName AS service, "
        "SeverityText AS level, Body AS body, LogAttributes AS attributes "
        f"FROM otel_logs WHERE TraceId = '{tid}'{bound} ORDER BY Timestamp LIMIT 10000"
    )
