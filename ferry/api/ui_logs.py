"""The logs explorer's reads beyond GET /api/v1/logs: facet counts for several keys in one scan
(`/api/v1/ui/logs/facets`) and the lines around one line (`/api/v1/ui/logs/context`).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ferry.api import params
from ferry.api.context import ApiContext
from ferry.api.guard import guard
from ferry.errors import BadRequest
from ferry.query import ui_logs as sql
from ferry.query.timerange import parse_time

DEFAULT_RANGE_NS = 3600 * 10**9


def _answer(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status, media_type="application/json")


def routes(ctx: ApiContext) -> list[BaseRoute]:
    async def facets(request: Request) -> Response:
        keys = list(dict.fromkeys(k for k in request.query_params.getlist("key") if k))
        if not keys:
            raise BadRequest("key is required (repeat it: key=service&key=level)")
        if len(keys) > sql.MAX_FACET_KEYS:
            raise BadRequest(f"key: at most {sql.MAX_FACET_KEYS} keys, got {len(keys)}")
        end = params.param(request, "end", parse_time, None)
        start = params.param(request, "start", parse_time, None)
        if start is None:
            start = (end or time.time_ns()) - DEFAULT_RANGE_NS
        if end is not None and start > end:
            raise BadRequest("start is after end")
        per_key = params.param(request, "limit", params.whole(1, sql.MAX_FACET_VALUES), 8)
        q = request.query_params.get("q", "")
        t0 = time.perf_counter()
        found = await ctx.rows(sql.facets_sql(q, keys, start, end, ctx.tenant_where(request), per_key))
        out: dict[str, list[dict[str, Any]]] = {k: [] for k in keys}
        for r in found:
            out[r["field"]].append({"value": r["value"], "count": int(r["count"])})
        return _answer({"facets": out, "took_ms": round((time.perf_counter() - t0) * 1000, 2)})

    async def context(request: Request) -> Response:
        at = params.param(request, "time_ns", parse_time, None)
        if at is None:
            raise BadRequest("time_ns is required (the line's time in nanoseconds)")
        service = request.query_params.get("service", "")
        host = request.query_params.get("host", "")
        n = params.param(request, "n", params.whole(1, 200), 10)
        tw = ctx.tenant_where(request)
        # The line itself is the newest of the lines at or before its time.
        before = await ctx.rows(sql.context_sql(at, service, host, tw, n + 1, before=True))
        after = await ctx.rows(sql.context_sql(at, service, host, tw, n, before=False))
        return _answer({"before": before[::-1], "after": after})

    return [
        Route("/api/v1/ui/logs/facets", guard("ui_logs_facets", facets), methods=["GET"]),
        Route("/api/v1/ui/logs/context", guard("ui_logs_context", context), methods=["GET"]),
    ]
