"""The target view's reads (web UI, /ui/target): every signal of one host (resource host.name) or one
service (ServiceName) in a time window — logs, spans and traces, related targets, Prometheus series.

Every user value reaches SQL through ferry.store.sql.literal; every read is bounded by the window and a LIMIT.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Literal

from ferry.query.prom_store import JOB_SQL, PromStore
from ferry.query.promql.source import Matcher
from ferry.query.traceql.compile import trace_bounds_sql
from ferry.query.ui_logs import ROW_COLUMNS
from ferry.store.sql import literal

Kind = Literal["host", "service"]
KINDS: tuple[Kind, ...] = ("host", "service")
MAX_LINES = 20
MAX_TRACES = 20
MAX_RELATED = 100
MAX_RESOURCES = 200
MAX_METRIC_NAMES = 500
# Histogram steps (seconds), the smallest giving at most HISTOGRAM_BUCKETS buckets (the logs view's too).
STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800)
HISTOGRAM_BUCKETS = 90
METRIC_TABLES = ("otel_metrics_gauge", "otel_metrics_sum", "otel_metrics_histogram", "otel_metrics_summary")
_HOST = "ResourceAttributes['host.name']"
_ERROR = "StatusCode = 'STATUS_CODE_ERROR'"


def is_target(kind: Kind, name: str) -> str:
    """The SQL condition a row of any signal's table must meet to belong to the target."""
    if kind == "host":
        # The value bloom index skips granules without the name before the map is read.
        return f"has(mapValues(ResourceAttributes), {literal(name)}) AND {_HOST} = {literal(name)}"
    return f"ServiceName = {literal(name)}"


def _window(column: str, start_ns: int, end_ns: int) -> str:
    return (f"{column} >= fromUnixTimestamp64Nano({int(start_ns)}) "
            f"AND {column} < fromUnixTimestamp64Nano({int(end_ns)})")


def histogram_step(start_ns: int, end_ns: int) -> int:
    span_s = max(1, (end_ns - start_ns) // 10**9)
    return next((s for s in STEPS if span_s / s <= HISTOGRAM_BUCKETS), STEPS[-1])


def _other(kind: Kind) -> str:
    """The other kind of target, as a column: a host's services, a service's hosts."""
    return _HOST if kind == "service" else "ServiceName"


def log_histogram_sql(tenant_where: str, kind: Kind, name: str, start_ns: int, end_ns: int, step_s: int) -> str:
    """The target's log lines per `step_s` bucket (unix seconds at its start) and severity text, with
    the other kind of target seen in them (`related`): one scan gives the chart and the pivots."""
    return (
        f"SELECT intDiv(toUnixTimestamp64Nano(Timestamp), {int(step_s) * 10**9}) * {int(step_s)} AS bucket, "
        f"SeverityText AS level, count() AS count, groupUniqArray({MAX_RELATED})({_other(kind)}) AS related "
        f"FROM otel_logs WHERE {tenant_where} AND {_window('Timestamp', start_ns, end_ns)} AND {is_target(kind, name)} "
        "GROUP BY bucket, level ORDER BY bucket, level LIMIT 100000"
    )


def log_lines_sql(tenant_where: str, kind: Kind, name: str, start_ns: int, end_ns: int, n: int = MAX_LINES) -> str:
    """The target's newest `n` log lines, as GET /api/v1/logs answers rows."""
    return (f"SELECT {ROW_COLUMNS} FROM otel_logs WHERE {tenant_where} AND {_window('Timestamp', start_ns, end_ns)} "
            f"AND {is_target(kind, name)} ORDER BY Timestamp DESC LIMIT {int(n)}")


def span_counts_sql(tenant_where: str, kind: Kind, name: str, start_ns: int, end_ns: int) -> str:
    """Spans and error spans of the target, the traces with an error span on it, and the other kind
    of target seen in its spans (`related`)."""
    return (f"SELECT count() AS spans, countIf({_ERROR}) AS errors, uniqIf(TraceId, {_ERROR}) AS error_traces, "
            f"groupUniqArray({MAX_RELATED})({_other(kind)}) AS related "
            f"FROM otel_traces WHERE {tenant_where} AND {_window('Timestamp', start_ns, end_ns)} "
            f"AND {is_target(kind, name)}")


def recent_traces_sql(tenant_where: str, kind: Kind, name: str, start_ns: int, end_ns: int,
                      n: int = MAX_TRACES) -> str:
    """The `n` traces with spans on the target, those with an error span on it first, then the newest."""
    return (f"SELECT TraceId AS trace_id, max({_ERROR}) AS error, count() AS spans_here, "
            "toUnixTimestamp64Nano(max(Timestamp)) AS last_ns "
            f"FROM otel_traces WHERE {tenant_where} AND {_window('Timestamp', start_ns, end_ns)} "
            f"AND {is_target(kind, name)} AND TraceId != '' "
            f"GROUP BY TraceId ORDER BY error DESC, last_ns DESC LIMIT {int(n)}")


def trace_summaries_sql(tenant_where: str, trace_ids: Sequence[str]) -> str:
    """Root service and operation, start, duration, span and error counts of each given trace (all its
    spans, on the target or not), read from the traces' own time range."""
    ids = "(" + ", ".join(literal(t) for t in trace_ids) + ")"
    root = "ParentSpanId = ''"
    return (
        "SELECT TraceId AS trace_id, argMinIf(ServiceName, Timestamp, " + root + ") AS root_service, "
        "argMinIf(SpanName, Timestamp, " + root + ") AS root_name, countIf(" + root + ") AS roots, "
        "toUnixTimestamp64Nano(min(Timestamp)) AS start_ns, "
        "max(toUnixTimestamp64Nano(Timestamp) + Duration) - toUnixTimestamp64Nano(min(Timestamp)) AS duration_ns, "
        f"count() AS spans, countIf({_ERROR}) AS errors "
        f"FROM otel_traces WHERE {tenant_where} AND TraceId IN {ids} AND {trace_bounds_sql(trace_ids)} "
        "GROUP BY TraceId"
    )


def metric_resources_sql(tenant_where: str, kind: Kind, name: str, start_ns: int, end_ns: int) -> str:
    """The (job, instance) label pairs of the resources that reported the target's metric points, the
    job as the PromQL store names it (prom_store.JOB_SQL: service.namespace/service.name), with the other
    kind of target of each (`related`)."""
    other = "ra['host.name']" if kind == "service" else "ServiceName"
    parts = [f"SELECT {JOB_SQL} AS job, ra['service.instance.id'] AS instance, {other} AS related FROM "
             f"(SELECT ServiceName, ResourceAttributes AS ra FROM {table} WHERE {tenant_where} "
             f"AND {_window('TimeUnix', start_ns, end_ns)} AND {is_target(kind, name)} GROUP BY ServiceName, ra)"
             for table in METRIC_TABLES]
    return (f"SELECT DISTINCT job, instance, related FROM ({' UNION ALL '.join(parts)}) ORDER BY job, instance "
            f"LIMIT {MAX_RESOURCES}")


def related(kind: Kind, logs: list[dict[str, Any]], spans: list[dict[str, Any]],
            resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The other kind of target seen with this one (a host's services, a service's hosts), by name,
    with the signals it was seen in, from the `related` columns of the three reads above."""
    seen: dict[str, set[str]] = defaultdict(set)
    for signal, rows in (("logs", logs), ("traces", spans)):
        for r in rows:
            for other in r["related"]:
                seen[other].add(signal)
    for r in resources:
        seen[r["related"]].add("metrics")
    seen.pop("", None)
    other_kind = "service" if kind == "host" else "host"
    return [{"kind": other_kind, "name": n, "signals": sorted(seen[n])} for n in sorted(seen)[:MAX_RELATED]]


def _promql_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def selectors(kind: Kind, resources: list[dict[str, Any]]) -> list[list[Matcher]]:
    """PromQL label matchers picking the target's series: a service's jobs; for a host, each job with
    the instances that ran on the host (series of a job on several hosts are told apart by instance)."""
    by_job: dict[str, set[str]] = defaultdict(set)
    for r in resources:
        by_job[r["job"]].add(r["instance"])
    out = []
    for job in sorted(by_job):
        if kind == "service":
            out.append([Matcher("job", "=", job)])
            continue
        inst = sorted(by_job[job])
        if len(inst) == 1:
            out.append([Matcher("job", "=", job), Matcher("instance", "=", inst[0])])
        else:
            out.append([Matcher("job", "=", job), Matcher("instance", "=~", "|".join(re.escape(i) for i in inst))])
    return out


def promql(name: str, sels: list[list[Matcher]]) -> str:
    """`name` restricted to each matcher set, joined with `or` (the sets name different jobs)."""
    def one(ms: list[Matcher]) -> str:
        return name + "{" + ", ".join(f"{m.name}{m.op}{_promql_string(m.value)}" for m in ms) + "}"
    return " or ".join(one(ms) for ms in sels)


async def metric_series(store: PromStore, kind: Kind, resources: list[dict[str, Any]], start_ms: int,
                        end_ms: int) -> dict[str, Any]:
    """The Prometheus series names the target reported (as the PromQL API names them, through the
    store), each with its series count and a PromQL query selecting just the target's series."""
    sels = selectors(kind, resources)
    counts: dict[str, int] = defaultdict(int)
    jobs: dict[str, set[str]] = defaultdict(set)  # the jobs each name has series under: its query names only those
    if sels:
        for labels in await store.series_labels(sels, start_ms, end_ms):
            counts[labels.get("__name__", "")] += 1
            jobs[labels.get("__name__", "")].add(labels.get("job", ""))
    names = sorted(n for n in counts if n)
    # A host's job whose points carry no service.instance.id: instance="" also picks the same job's
    # series from other hosts that lack one, so the selector is not exact there.
    loose = sorted({r["job"] for r in resources if not r["instance"]}) if kind == "host" else []
    return {
        "series": [{"name": n, "series": counts[n], "query": promql(n, [m for m in sels if m[0].value in jobs[n]])} for n in names[:MAX_METRIC_NAMES]],
        "truncated": len(names) > MAX_METRIC_NAMES,
        "resources": [{"job": r["job"], "instance": r["instance"]} for r in resources],
        "inexact_jobs": loose,
    }
