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

from ferry.api.context import ApiContext
from ferry.api.tempo import guarded
from ferry.errors import BadRequest
from ferry.query import ui_logs as sql
from ferry.query.timerange import parse_time, shown

DEFAULT_RANGE_NS = 3600 * 10**9


def _answer(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status, media_type="application/json")


def _error(status: int, message: str) -> Response:
    return _answer({"error": message}, status)


def _time(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name, "").strip()
    if not raw:
        return None
    try:
        return parse_time(raw)
    except BadRequest as e:
        raise BadRequest(f"{name}: {e}") from None


def _count(request: Request, name: str, default: int, most: int) -> int:
    raw = request.query_params.get(name, "").strip()
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6 and 1 <= int(raw) <= most):
        raise BadRequest(f"{name}: must be a whole number from 1 to {most}, got {shown(raw)}")
    return int(raw)


def routes(ctx: ApiContext) -> list[BaseRoute]:
    async def facets(request: Request) -> Response:
        keys = list(dict.fromkeys(k for k in request.query_params.getlist("key") if k))
        if not keys:
            raise BadRequest("key is required (repeat it: key=service&key=level)")
        if len(keys) > sql.MAX_FACET_KEYS:
            raise BadRequest(f"key: at most {sql.MAX_FACET_KEYS} keys, got {len(keys)}")
        end = _time(request, "end")
        start = _time(request, "start")
        if start is None:
            start = (end or time.time_ns()) - DEFAULT_RANGE_NS
        if end is not None and start > end:
            raise BadRequest("start is after end")
        per_key = _count(request, "limit", 8, sql.MAX_FACET_VALUES)
        q = request.query_params.get("q", "")
        t0 = time.perf_counter()
        found = await ctx.rows(sql.facets_sql(q, keys, start, end, ctx.tenant_where(request), per_key))
        out: dict[str, list[dict[str, Any]]] = {k: [] for k in keys}
        for r in found:
            out[r["field"]].append({"value": r["value"], "count": int(r["count"])})
        return _answer({"facets": out, "took_ms": round((time.perf_counter() - t0) * 1000, 2)})

    async def context(request: Request) -> Response:
        at = _time(request, "time_ns")
        if at is None:
            raise BadRequest("time_ns is required (the line's time in nanoseconds)")
        service = request.query_params.get("service", "")
        host = request.query_params.get("host", "")
        n = _count(request, "n", 10, 200)
        tw = ctx.tenant_where(request)
        # The line itself is the newest of the lines at or before its time.
        before = await ctx.rows(sql.context_sql(at, service, host, tw, n + 1, before=True))
        after = await ctx.rows(sql.context_sql(at, service, host, tw, n, before=False))
        return _answer({"before": before[::-1], "after": after})

    return [
        Route("/api/v1/ui/logs/facets", guarded("ui_logs_facets", facets, _error), methods=["GET"]),
        Route("/api/v1/ui/logs/context", guarded("ui_logs_context", context, _error), methods=["GET"]),
    ]
