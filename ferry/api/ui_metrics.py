"""The metrics explorer's read (web UI, /ui/metrics): the catalogue of series names with their type, unit,
help, series count and label cardinalities, in one request instead of one /series call per metric.

GET /api/v1/ui/metrics?start=&end=&q= (times as the rest of the API takes them; default the last hour).
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from ferry.api import params
from ferry.api.context import ApiContext
from ferry.api.guard import guard
from ferry.errors import BadRequest
from ferry.query.prom_store import PromStore
from ferry.query.timerange import parse_time
from ferry.query.ui_metrics import catalogue

DEFAULT_SPAN_NS = 3600 * 1_000_000_000


def routes(ctx: ApiContext) -> list[BaseRoute]:

    async def ui_metrics_catalogue(request: Request) -> Any:
        end = params.param(request, "end", parse_time, time.time_ns())
        start = params.param(request, "start", parse_time, end - DEFAULT_SPAN_NS)
        if start > end:
            raise BadRequest("start is after end")
        store = PromStore(ctx.rows, ctx.tenant_of(request), scope=ctx)
        return await catalogue(store, start // 1_000_000, end // 1_000_000, request.query_params.get("q", ""))

    return [Route("/api/v1/ui/metrics", guard("ui_metrics_catalogue", ui_metrics_catalogue), methods=["GET"])]
