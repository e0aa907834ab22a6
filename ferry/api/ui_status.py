"""The status page's reads (web UI, /ui/status) beyond /api/v1/status and /api/v1/pipeline: the store's
tables (rows, bytes, partitions, retention from their TTL) and what receivers refused or dropped, by reason.

GET /api/v1/ui/status/store and GET /api/v1/ui/status/refused.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from ferry.api.context import ApiContext
from ferry.api.guard import guard
from ferry.query import ui_status
from ferry.telemetry import metrics

# The counters of data not taken (ferry/telemetry/events.py), each with component, signal and reason labels.
REFUSAL_COUNTERS = ("ferry_refused_requests_total", "ferry_refused_records_total", "ferry_dropped_records_total")


def routes(ctx: ApiContext) -> list[BaseRoute]:

    async def ui_status_store(_: Request) -> Any:
        # Store-wide, as /api/v1/status: table sizes are not kept per tenant.
        parts, defs = await asyncio.gather(ctx.rows(ui_status.parts_sql()), ctx.rows(ui_status.tables_sql()))
        return {"tables": ui_status.tables(parts, defs)}

    async def ui_status_refused(_: Request) -> Any:
        now = await asyncio.to_thread(metrics.current, *REFUSAL_COUNTERS)
        out = []
        for name in REFUSAL_COUNTERS:
            for labels, value in now[name]:
                if value:
                    out.append({"counter": name, "component": labels.get("component", ""),
                                "signal": labels.get("signal", ""), "reason": labels.get("reason", ""),
                                "count": int(value)})
        out.sort(key=lambda r: (r["counter"], -r["count"]))
        return {"counts": out}

    return [Route("/api/v1/ui/status/store", guard("ui_status_store", ui_status_store), methods=["GET"]),
            Route("/api/v1/ui/status/refused", guard("ui_status_refused", ui_status_refused), methods=["GET"])]
