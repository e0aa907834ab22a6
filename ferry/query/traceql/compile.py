"""TraceQL AST to ClickHouse SQL over otel_traces, and the structural operators over fetched spans.

A search is two reads: the traces whose spans satisfy every spanset filter (exact in SQL unless the
query has a structural operator), then those traces' spans with one match flag per filter.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ferry.errors import BadRequest
from ferry.query.traceql.parser import (
    Attr,
    BoolOp,
    Compare,
    Cond,
    Duration,
    Everything,
    Field,
    Filter,
    Intrinsic,
    Keyword,
    Spanset,
    fields,
    filters,
    parse,
)
from ferry.store.sql import literal

STATUS_STORED = {"error": "STATUS_CODE_ERROR", "ok": "STATUS_CODE_OK", "unset": "STATUS_CODE_UNSET"}
KIND_STORED = {k: f"SPAN_KIND_{k.upper()}" for k in ("unspecified", "internal", "server", "client", "producer", "consumer")}
_SQL_OPS = {"=": "=", "!=": "!=", ">": ">", ">=": ">=", "<": "<", "<=": "<="}
# Spans one search may read back for the structural operators and the answer's span sets.
MAX_SPANS = 200_000


def value_sql(field: Field) -> tuple[str, str]:
    """(value, exists) SQL of a field on one otel_traces row. Attribute values are stored as text."""
    if isinstance(field, Intrinsic):
        column = {"name": "SpanName", "status": "StatusCode", "kind": "SpanKind", "duration": "Duration",
                  "statusMessage": "StatusMessage"}[field.name]
        return column, "1"
    key = literal(field.key)
    if field.scope == "resource" and field.key == "service.name":
        return "ServiceName", "ServiceName != ''"  # the sort key's first column: read it, not the map
    if field.scope == "span":
        return f"SpanAttributes[{key}]", f"mapContains(SpanAttributes, {key})"
    if field.scope == "resource":
        return f"ResourceAttributes[{key}]", f"mapContains(ResourceAttributes, {key})"
    # Unscoped: the span's value when it has one, else the resource's (as Tempo reads `.key`).
    return (f"if(mapContains(SpanAttributes, {key}), SpanAttributes[{key}], ResourceAttributes[{key}])",
            f"(mapContains(SpanAttributes, {key}) OR mapContains(ResourceAttributes, {key}))")


def _regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as e:
        raise BadRequest(f"invalid TraceQL query: invalid regular expression {pattern!r}: {e}") from None
    # Fully anchored, as Tempo (and Prometheus) match: `=~ "ap"` does not match "api".
    return literal(f"^(?s:{pattern})$")


def _number(v: float) -> str:
    return repr(float(v)) if isinstance(v, float) else str(int(v))


def compare_sql(c: Compare) -> str:
    val, exists = value_sql(c.field)
    v = c.value
    if isinstance(c.field, Intrinsic):
        if c.field.name == "status":
            assert isinstance(v, Keyword)
            return f"StatusCode {_SQL_OPS[c.op]} {literal(STATUS_STORED[v.word])}"
        if c.field.name == "kind":
            assert isinstance(v, Keyword)
            return f"SpanKind {_SQL_OPS[c.op]} {literal(KIND_STORED[v.word])}"
        if c.field.name == "duration":
            assert isinstance(v, Duration)
            return f"Duration {_SQL_OPS[c.op]} {v.ns}"
        # name, statusMessage: strings
        assert isinstance(v, str)
        if c.op == "=~":
            return f"match({val}, {_regex(v)})"
        if c.op == "!~":
            return f"NOT match({val}, {_regex(v)})"
        return f"{val} {_SQL_OPS[c.op]} {literal(v)}"
    # Attributes: a comparison needs the attribute (`!=` too, as in Tempo).
    if isinstance(v, bool):
        cond = f"{val} {_SQL_OPS[c.op]} {literal('true' if v else 'false')}"
    elif isinstance(v, int | float):
        cond = f"toFloat64OrNull({val}) {_SQL_OPS[c.op]} {_number(v)}"
    elif c.op == "=~":
        cond = f"match({val}, {_regex(str(v))})"
    elif c.op == "!~":
        cond = f"NOT match({val}, {_regex(str(v))})"
    else:
        cond = f"{val} {_SQL_OPS[c.op]} {literal(str(v))}"
    return f"({exists} AND {cond})" if exists != "1" else cond


def cond_sql(cond: Cond) -> str:
    if isinstance(cond, Everything):
        return "1"
    if isinstance(cond, BoolOp):
        joiner = " AND " if cond.op == "&&" else " OR "
        return f"({cond_sql(cond.left)}{joiner}{cond_sql(cond.right)})"
    return compare_sql(cond)


@dataclass(frozen=True)
class Plan:
    """A parsed query ready to run: its expression, one SQL condition per filter (in `filters` order),
    and whether SQL alone decides which traces match (no structural operator)."""

    expr: Spanset
    leaves: tuple[str, ...]
    exact: bool
    shown: tuple[Field, ...]  # attributes the query names: shown on the matched spans


def _structural(expr: Spanset) -> bool:
    if isinstance(expr, Filter):
        return False
    return expr.op not in ("&&", "||") or _structural(expr.left) or _structural(expr.right)


def plan(q: str | Spanset) -> Plan:
    expr = parse(q) if isinstance(q, str) else q
    leaves = filters(expr)
    shown: dict[Field, None] = {}
    for f in leaves:
        for fld in fields(f.cond):
            if isinstance(fld, Attr) or fld.name in ("status", "kind", "statusMessage"):
                shown[fld] = None
    return Plan(expr, tuple(cond_sql(f.cond) for f in leaves), not _structural(expr), tuple(shown))


def _having(expr: Spanset, leaves: Iterable[str]) -> str:
    it = iter(range(10**6))

    def walk(e: Spanset) -> str:
        if isinstance(e, Filter):
            return f"countIf(f{next(it)}) > 0"
        left, right = walk(e.left), walk(e.right)
        # A structural match needs both sides in the trace: SQL keeps the candidates, Python decides.
        return f"({left} {'OR' if e.op == '||' else 'AND'} {right})"

    return walk(expr)


def _ns(v: int) -> int:
    if not -(2**63) <= v < 2**63:
        raise BadRequest(f"time {v} is out of range")
    return v


def candidates_sql(p: Plan, tenant_where: str, start_ns: int, end_ns: int, limit: int,
                   min_trace_ns: int | None = None, max_trace_ns: int | None = None) -> str:
    """Trace ids (newest first) with spans in [start, end) satisfying the plan's filters (and, given
    bounds, a trace duration within them, over the trace's spans in the range)."""
    flags = ", ".join(f"{c} AS f{i}" for i, c in enumerate(p.leaves))
    where = [tenant_where, f"Timestamp >= fromUnixTimestamp64Nano({_ns(start_ns)})",
             f"Timestamp < fromUnixTimestamp64Nano({_ns(end_ns)})"]
    bounded = min_trace_ns is not None or max_trace_ns is not None
    if not bounded:
        # Only spans some filter wants are read into the groups (a trace's duration needs them all).
        where.append("(" + " OR ".join(p.leaves) + ")")
    having = [_having(p.expr, p.leaves)]
    span = "(max(toUnixTimestamp64Nano(Timestamp) + toInt64(Duration)) - min(toUnixTimestamp64Nano(Timestamp)))"
    if min_trace_ns is not None:
        having.append(f"{span} >= {int(min_trace_ns)}")
    if max_trace_ns is not None:
        having.append(f"{span} <= {int(max_trace_ns)}")
    return (
        f"SELECT TraceId AS trace_id FROM (SELECT TraceId, Timestamp, Duration, {flags} FROM otel_traces "
        f"WHERE {' AND '.join(where)}) GROUP BY TraceId HAVING {' AND '.join(having)} "
        f"ORDER BY min(Timestamp) DESC LIMIT {int(limit)}"
    )


def trace_bounds_sql(trace_ids: Sequence[str]) -> str:
    """Timestamp bounds (SQL) of the given traces from the trace-id lookup table, so their spans are
    read from the partitions they live in only."""
    ids = "(" + ", ".join(literal(t) for t in trace_ids) + ")"
    lookup = f"FROM otel_traces_trace_id_ts WHERE TraceId IN {ids}"
    return (f"Timestamp >= (SELECT toDateTime64(min(Start), 9) - 1 {lookup}) "
            f"AND Timestamp < (SELECT toDateTime64(max(End), 9) + 2 {lookup})")


def spans_sql(p: Plan, tenant_where: str, trace_ids: Sequence[str]) -> str:
    """Every span of the given traces, with one flag column per filter and the attributes the query names."""
    ids = "(" + ", ".join(literal(t) for t in trace_ids) + ")"
    flags = "".join(f", {c} AS f{i}" for i, c in enumerate(p.leaves))
    shown = "".join(f", {value_sql(f)[0]} AS a{i}" for i, f in enumerate(p.shown))
    return (
        "SELECT TraceId AS trace_id, SpanId AS span_id, ParentSpanId AS parent_id, "
        "toUnixTimestamp64Nano(Timestamp) AS start_ns, Duration AS duration_ns, ServiceName AS service, "
        f"SpanName AS name{flags}{shown} FROM otel_traces WHERE {tenant_where} AND TraceId IN {ids} "
        f"AND {trace_bounds_sql(trace_ids)} ORDER BY Timestamp LIMIT {MAX_SPANS}"
    )


def evaluate(expr: Spanset, spans: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The spans of one trace that `expr` yields (empty: the trace does not match). Each span dict has
    span_id, parent_id and f0..fn, the SQL match flag of each filter."""
    by_id = {s["span_id"]: s for s in spans}
    counter = iter(range(10**6))

    def ancestors(s: dict[str, Any]) -> Iterable[str]:
        seen: set[str] = set()
        pid = s["parent_id"]
        while pid and pid in by_id and pid not in seen:  # `seen`: a cycle in bad data must end
            seen.add(pid)
            yield pid
            pid = by_id[pid]["parent_id"]

    def walk(e: Spanset) -> set[str]:
        if isinstance(e, Filter):
            i = next(counter)
            return {s["span_id"] for s in spans if int(s[f"f{i}"])}
        left, right = walk(e.left), walk(e.right)
        if e.op == "&&":
            return left | right if left and right else set()
        if e.op == "||":
            return left | right
        if e.op == ">":
            return {r for r in right if by_id[r]["parent_id"] in left}
        if e.op == ">>":
            return {r for r in right if any(a in left for a in ancestors(by_id[r]))}
        if e.op == "<":
            return right & {by_id[x]["parent_id"] for x in left}
        if e.op == "<<":
            return right & {a for x in left for a in ancestors(by_id[x])}
        # "~": siblings, another span under the same parent
        parents: dict[str, set[str]] = {}
        for x in left:
            parents.setdefault(by_id[x]["parent_id"], set()).add(x)
        return {r for r in right if (pid := by_id[r]["parent_id"]) and parents.get(pid, set()) - {r}}

    matched = walk(expr)
    return [s for s in spans if s["span_id"] in matched]
