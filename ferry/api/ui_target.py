"""The target view's read (web UI, /ui/target): one host or service and every signal it has in a window,
GET /api/v1/ui/target?kind=host|service&name=&start=&end= (times as the rest of the API takes them).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from ferry.api import params
from ferry.api.context import ApiContext
from ferry.api.guard import guard
from ferry.errors import BadRequest
from ferry.query import ui_target as sql
from ferry.query.prom_store import PromStore
from ferry.query.timerange import parse_time, shown

DEFAULT_SPAN_NS = 3600 * 1_000_000_000
MAX_NAME = 1024


def _target(request: Request) -> tuple[sql.Kind, str]:
    kind = request.query_params.get("kind", "")
    if kind not in sql.KINDS:
        raise BadRequest(f'kind: must be host or service, got {shown(kind)}')
    name = request.query_params.get("name", "")
    if not name.strip():
        raise BadRequest(f'name: the {kind} name is required')
    if len(name) > MAX_NAME:
        raise BadRequest(f'name: longer than {MAX_NAME} characters')
    return cast(sql.Kind, kind), name


def _line(r: dict[str, Any]) -> dict[str, Any]:
    # Nanoseconds since the epoch exceed JavaScript's exact integers: sent as text.
    return {**r, "time_ns": str(r["time_ns"]), "ingest_ns": str(r["ingest_ns"])}


def routes(ctx: ApiContext) -> list[BaseRoute]:

    async def ui_target(request: Request) -> Any:
        kind, name = _target(request)
        end = params.param(request, "end", parse_time, time.time_ns())
        start = params.param(request, "start", parse_time, end - DEFAULT_SPAN_NS)
        if start >= end:
            raise BadRequest("start must be before end")
        tw = ctx.tenant_where(request)
        step = sql.histogram_step(start, end)
        t0 = time.perf_counter()
        hist, lines, counts, recent, resources = await asyncio.gather(
            ctx.rows(sql.log_histogram_sql(tw, kind, name, start, end, step)),
            ctx.rows(sql.log_lines_sql(tw, kind, name, start, end)),
            ctx.rows(sql.span_counts_sql(tw, kind, name, start, end)),
            ctx.rows(sql.recent_traces_sql(tw, kind, name, start, end)),
            ctx.rows(sql.metric_resources_sql(tw, kind, name, start, end)),
        )
        store = PromStore(ctx.rows, ctx.tenant_of(request), scope=ctx)
        metrics_task = sql.metric_series(store, kind, resources, start // 1_000_000, end // 1_000_000)
        ids = [r["trace_id"] for r in recent]
        summaries_task = ctx.rows(sql.trace_summaries_sql(tw, ids)) if ids else asyncio.sleep(0, [])
        metrics, summaries = await asyncio.gather(metrics_task, summaries_task)
        by_id = {s["trace_id"]: s for s in summaries}
        traces = []
        for r in recent:
            s = by_id.get(r["trace_id"], {})
            traces.append({
                "trace_id": r["trace_id"], "error": bool(r["error"]), "spans_here": int(r["spans_here"]),
                "root_service": s.get("root_service") if s.get("roots") else None,
                "root_name": s.get("root_name") if s.get("roots") else None,
                "start_ns": str(s.get("start_ns", r["last_ns"])), "duration_ns": int(s.get("duration_ns", 0)),
                "spans": int(s.get("spans", r["spans_here"])), "errors": int(s.get("errors", 0)),
            })
        c = counts[0] if counts else {"spans": 0, "errors": 0, "error_traces": 0, "related": []}
        return {
            "kind": kind, "name": name, "start_ns": str(start), "end_ns": str(end),
            "related": sql.related(kind, hist, counts, resources),
            "logs": {
                "count": sum(int(h["count"]) for h in hist), "step_s": step,
                "histogram": [{"bucket": int(h["bucket"]), "level": h["level"], "count": int(h["count"])} for h in hist],
                "lines": [_line(r) for r in lines],
            },
            "traces": {"spans": int(c["spans"]), "errors": int(c["errors"]), "error_traces": int(c["error_traces"]),
                       "traces": traces},
            "metrics": metrics,
            "took_ms": round((time.perf_counter() - t0) * 1000, 2),
        }

    return [Route("/api/v1/ui/target", guard("ui_target", ui_target), methods=["GET"])]
