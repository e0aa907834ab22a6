"""The UI's trace reads: a TraceQL search answered as the search table and scatter plot need it
(root, duration in ns, span and error counts), and one trace with its events and log lines.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ferry.api.context import ApiContext
from ferry.api.guard import guard
from ferry.api.tempo import duration_param, json_response, search_traces, whole
from ferry.errors import BadRequest
from ferry.query import ui_traces as sql
from ferry.query.traceql import parser as tql
from ferry.query.traceql import reads
from ferry.query.traceql.reads import MAX_TRACE_SPANS

DEFAULT_RANGE_NS = 3600 * 10**9
MAX_LIMIT = 1000


def _hit(tid: str, spans: list[dict[str, Any]], matched: int, counts: dict[str, Any] | None) -> dict[str, Any]:
    start = min(int(s["start_ns"]) for s in spans)
    end = max(int(s["start_ns"]) + int(s["duration_ns"]) for s in spans)
    roots = [s for s in spans if not s["parent_id"]]
    root = min(roots, key=lambda s: int(s["start_ns"])) if roots else None
    return {
        "trace_id": tid,
        "root_service": root["service"] if root else None,
        "root_name": root["name"] if root else None,
        # Nanoseconds since the epoch exceed JavaScript's exact integers: sent as text, and in ms.
        "start_ns": str(start), "start_ms": start / 1e6, "duration_ns": end - start,
        "spans": int(counts["spans"]) if counts else len(spans),
        "errors": int(counts["errors"]) if counts else 0,
        "services": sorted(counts["services"]) if counts else sorted({s["service"] for s in spans}),
        "matched": matched,
    }


def _span(r: dict[str, Any], t0: int, resources: dict[bytes, int]) -> dict[str, Any]:
    start = int(r["start_ns"])
    # Spans of one process share their resource: sent once, spans name it by index.
    res = resources.setdefault(orjson.dumps(r["resource"] or {}, option=orjson.OPT_SORT_KEYS), len(resources))
    return {
        "span_id": r["span_id"], "parent_span_id": r["parent_span_id"], "name": r["name"],
        "kind": r["kind"].removeprefix("SPAN_KIND_").lower(), "service": r["service"],
        "start_ns": str(start), "offset_ns": start - t0, "duration_ns": int(r["duration_ns"]),
        "status": r["status"].removeprefix("STATUS_CODE_").lower(), "status_message": r["status_message"],
        "attributes": r["attributes"] or {}, "resource": res,
        "scope": r["scope_name"], "scope_version": r["scope_version"],
        "events": [{"offset_ns": int(ts) - t0, "name": name, "attributes": attrs or {}}
                   for ts, name, attrs in zip(r["event_ns"], r["event_names"], r["event_attrs"], strict=False)],
        "links": [{"trace_id": tid, "span_id": sid} for tid, sid in zip(r["link_trace_ids"], r["link_span_ids"],
                                                                         strict=False)],
    }


def routes(ctx: ApiContext) -> list[BaseRoute]:
    async def search(request: Request) -> Response:
        q = request.query_params.get("q", "").strip()
        expr: tql.Spanset = tql.parse(q) if q else tql.Filter(tql.Everything())
        end_ns = whole(request, "end", None) or time.time_ns() + 60 * 10**9
        start_ns = whole(request, "start", None) or end_ns - DEFAULT_RANGE_NS
        if start_ns >= end_ns:
            raise BadRequest("start must be before end")
        limit = whole(request, "limit", 100, 1, MAX_LIMIT) or 100
        lo, hi = duration_param(request, "minDuration"), duration_param(request, "maxDuration")
        if lo is not None and hi is not None and lo > hi:
            raise BadRequest("minDuration must not exceed maxDuration")
        t0 = time.perf_counter()
        _, found, inspected = await search_traces(ctx, request, expr, start_ns, end_ns, limit, lo, hi)
        counts: dict[str, dict[str, Any]] = {}
        if found:
            counts = {r["trace_id"]: r for r in await ctx.rows(
                sql.counts_sql(ctx.tenant_where(request), [tid for tid, _, _ in found]))}
        traces = [_hit(tid, spans, len(matched), counts.get(tid)) for tid, spans, matched in found]
        return json_response({"traces": traces, "inspected": inspected, "limit": limit,
                              "took_ms": round((time.perf_counter() - t0) * 1000, 2)})

    async def trace(request: Request) -> Response:
        tid = reads.check_trace_id(request.path_params["trace_id"])
        tenant = ctx.tenant_where(request)
        # The lookup table bounds the spans' read to their seconds, the spans the logs' read.
        bounds = await ctx.rows(sql.bounds_sql(tid))
        rows: list[dict[str, Any]] = []
        if bounds and int(bounds[0]["n"]):
            rows = await ctx.rows(sql.spans_sql(tenant, tid, int(bounds[0]["s"]), int(bounds[0]["e"])))
        if rows:
            first = min(int(r["start_ns"]) for r in rows)
            last = max(int(r["start_ns"]) + int(r["duration_ns"]) for r in rows)
            logs = await ctx.rows(sql.logs_sql(tenant, tid, first, last))
        else:
            logs = await ctx.rows(sql.logs_sql(tenant, tid))  # a trace known only from its logs
        if not rows and not logs:
            return json_response({"trace_id": tid, "found": False, "spans": [], "logs": []})
        starts = [int(r["start_ns"]) for r in rows] or [int(lg["time_ns"]) for lg in logs]
        t0 = min(starts)
        for lg in logs:
            lg["offset_ns"] = int(lg["time_ns"]) - t0
            lg["time_ns"] = str(lg["time_ns"])
        end = max((int(r["start_ns"]) + int(r["duration_ns"]) for r in rows), default=t0)
        resources: dict[bytes, int] = {}
        spans = [_span(r, t0, resources) for r in rows]
        return json_response({
            "trace_id": tid, "found": True, "start_ns": str(t0), "start_ms": t0 / 1e6, "duration_ns": end - t0,
            "spans": spans, "resources": [orjson.loads(k) for k in resources], "logs": logs[:sql.MAX_TRACE_LOGS],
            "logs_truncated": len(logs) > sql.MAX_TRACE_LOGS,
            "spans_truncated": len(rows) >= MAX_TRACE_SPANS,
        })

    def route(path: str, name: str, fn: Callable[[Request], Awaitable[Response]]) -> Route:
        return Route(path, guard(name, fn), methods=["GET"])

    return [
        route("/api/v1/ui/traces/search", "ui_trace_search", search),
        route("/api/v1/ui/traces/{trace_id}", "ui_trace", trace),
    ]
