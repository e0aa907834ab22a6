"""The metrics explorer's read (web UI, /ui/metrics): the catalogue of series names with their type, unit,
help, series count and label cardinalities, in one request instead of one /series call per metric.

GET /api/v1/ui/metrics?start=&end=&q= (times as the rest of the API takes them; default the last hour).
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from ferry.api.context import ApiContext
from ferry.errors import BadRequest
from ferry.query.prom_store import PromStore
from ferry.query.timerange import parse_time, shown
from ferry.query.ui_metrics import catalogue

DEFAULT_SPAN_NS = 3600 * 1_000_000_000


def _time_ns(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name, "")
    if raw == "":
        return default
    try:
        return parse_time(raw)
    except BadRequest as e:
        raise BadRequest(f'invalid parameter "{name}": {e}') from None
    except ValueError:
        raise BadRequest(f'invalid parameter "{name}": not a time: {shown(raw)}') from None


def routes(ctx: ApiContext) -> list[BaseRoute]:
    # The API's own error answers and request counting (ferry.api.app is loaded by the time routes are built).
    from ferry.api.app import guard

    async def ui_metrics_catalogue(request: Request) -> Any:
        end = _time_ns(request, "end", time.time_ns())
        start = _time_ns(request, "start", end - DEFAULT_SPAN_NS)
        if start > end:
            raise BadRequest("start is after end")
        store = PromStore(ctx.rows, ctx.tenant_of(request), scope=ctx)
        return await catalogue(store, start // 1_000_000, end // 1_000_000, request.query_params.get("q", ""))

    return [Route("/api/v1/ui/metrics", guard(ui_metrics_catalogue), methods=["GET"])]
