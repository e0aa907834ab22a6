"""SQL the Tempo and Jaeger APIs share besides TraceQL search: whole traces by id, tag names and
values, services, operations and the service dependency graph.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ferry.errors import BadRequest
from ferry.query.traceql.compile import trace_bounds_sql, value_sql
from ferry.query.traceql.parser import Attr, Field, Intrinsic
from ferry.store.sql import literal

_HEX = re.compile(r"^[0-9a-fA-F]{1,32}$")

# Every column of a span, named as the API modules read them.
FULL_COLUMNS = (
    "TraceId AS trace_id, SpanId AS span_id, ParentSpanId AS parent_span_id, TraceState AS trace_state, "
    "SpanName AS name, SpanKind AS kind, ServiceName AS service, ResourceAttributes AS resource, "
    "ScopeName AS scope_name, ScopeVersion AS scope_version, SpanAttributes AS attributes, "
    "toUnixTimestamp64Nano(Timestamp) AS start_ns, Duration AS duration_ns, StatusCode AS status, "
    "StatusMessage AS status_message, arrayMap(t -> toUnixTimestamp64Nano(t), `Events.Timestamp`) AS event_ns, "
    "`Events.Name` AS event_names, `Events.Attributes` AS event_attrs, `Links.TraceId` AS link_trace_ids, "
    "`Links.SpanId` AS link_span_ids, `Links.TraceState` AS link_states, `Links.Attributes` AS link_attrs"
)
# Spans one trace answer may hold (Tempo's own default cap on a trace is by bytes, 5 MB and up).
MAX_TRACE_SPANS = 100_000


def check_trace_id(raw: str) -> str:
    """A trace id as stored: 32 lower-case hex digits. Shorter ids are zero-padded on the left, as
    Tempo and Jaeger accept them (64-bit ids of older tracers)."""
    tid = raw.strip()
    if not _HEX.match(tid):
        shown = tid if len(tid) <= 40 else tid[:40] + "…"
        raise BadRequest(f"trace id must be up to 32 hex digits, got {shown!r}")
    return tid.lower().rjust(32, "0")


def _range(start_ns: int | None, end_ns: int | None) -> str:
    out = ""
    if start_ns is not None:
        out += f" AND Timestamp >= fromUnixTimestamp64Nano({int(start_ns)})"
    if end_ns is not None:
        out += f" AND Timestamp < fromUnixTimestamp64Nano({int(end_ns)})"
    return out


def full_spans_sql(tenant_where: str, trace_ids: Sequence[str], start_ns: int | None = None,
                   end_ns: int | None = None) -> str:
    """Every column of every span of the given traces, read only from the time range the trace-id
    lookup table gives them (and within [start, end) when given)."""
    ids = "(" + ", ".join(literal(t) for t in trace_ids) + ")"
    return (f"SELECT {FULL_COLUMNS} FROM otel_traces WHERE {tenant_where} AND TraceId IN {ids} "
            f"AND {trace_bounds_sql(trace_ids)}{_range(start_ns, end_ns)} "
            f"ORDER BY Timestamp LIMIT {MAX_TRACE_SPANS}")


def _where(tenant_where: str, start_ns: int, end_ns: int, extra: str = "") -> str:
    return f"WHERE {tenant_where}{_range(start_ns, end_ns)}" + (f" AND {extra}" if extra else "")


def tag_names_sql(tenant_where: str, scope: str, start_ns: int, end_ns: int, limit: int) -> str:
    """Attribute keys of spans (`scope` span) or their resources (resource) in the range."""
    column = {"span": "SpanAttributes", "resource": "ResourceAttributes"}[scope]
    return (f"SELECT DISTINCT arrayJoin(mapKeys({column})) AS tag FROM otel_traces "
            f"{_where(tenant_where, start_ns, end_ns)} ORDER BY tag LIMIT {int(limit)}")


def tag_values_sql(tenant_where: str, field: Field, start_ns: int, end_ns: int, limit: int,
                   cond: str = "") -> str:
    """Distinct values of an attribute or a string intrinsic in the range (spans meeting `cond`)."""
    value, exists = value_sql(field)
    if isinstance(field, Intrinsic) and field.name in ("name", "statusMessage"):
        exists = f"{value} != ''"
    conds = " AND ".join(c for c in (exists if exists != "1" else "", cond) if c)
    return (f"SELECT DISTINCT {value} AS value FROM otel_traces {_where(tenant_where, start_ns, end_ns, conds)} "
            f"ORDER BY value LIMIT {int(limit)}")


def unscoped(key: str) -> Field:
    """A tag as the v1 tag APIs and Jaeger name it, unscoped (`service.name`, `http.method`)."""
    return Attr(None, key)


_NAMED = "ServiceName != ''"


def services_sql(tenant_where: str, start_ns: int, end_ns: int) -> str:
    return (f"SELECT DISTINCT ServiceName AS service FROM otel_traces "
            f"{_where(tenant_where, start_ns, end_ns, _NAMED)} ORDER BY service LIMIT 10000")


def operations_sql(tenant_where: str, service: str, kind: str | None, start_ns: int, end_ns: int) -> str:
    cond = f"ServiceName = {literal(service)}" + (f" AND SpanKind = {literal(kind)}" if kind else "")
    return (f"SELECT SpanName AS name, SpanKind AS kind FROM otel_traces {_where(tenant_where, start_ns, end_ns, cond)} "
            "GROUP BY name, kind ORDER BY name, kind LIMIT 10000")


def dependencies_sql(tenant_where: str, start_ns: int, end_ns: int) -> str:
    """Calls between services: each span whose parent span is of another service is one call from
    the parent's service to the child's. Parents are looked up to a minute before the range, so a
    child near its start still finds a long-running parent."""
    window = _range(start_ns, end_ns)
    parent_window = _range(start_ns - 60 * 10**9, end_ns)
    return (
        "SELECT p.service AS parent, c.service AS child, count() AS callCount FROM "
        f"(SELECT TraceId, ParentSpanId, ServiceName AS service FROM otel_traces WHERE {tenant_where}{window} "
        "AND ParentSpanId != '') AS c INNER JOIN "
        f"(SELECT TraceId, SpanId, ServiceName AS service FROM otel_traces WHERE {tenant_where}{parent_window}) AS p "
        "ON c.TraceId = p.TraceId AND c.ParentSpanId = p.SpanId "
        "WHERE c.service != p.service GROUP BY parent, child ORDER BY parent, child"
    )
