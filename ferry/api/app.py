"""The HTTP API (JSON) on port 8686: log search and tail, traces, metric series, status, /metrics.

The CLI and the web UI use only this API; docs/api.md documents every route.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ferry.errors import BadRequest, FerryError
from ferry.query import logs_sql
from ferry.query import metrics as metrics_q
from ferry.query import traces as traces_q
from ferry.query.tail import compile_tail
from ferry.query.timerange import parse_since, parse_time
from ferry.receivers._status import status_of
from ferry.store.chdb_store import ChdbStore
from ferry.telemetry import metrics

LOG_COLUMNS = (
    "toUnixTimestamp64Nano(Timestamp) AS time_ns, ServiceName AS service, SeverityText AS level, "
    "Body AS body, TraceId AS trace_id, SpanId AS span_id, ResourceAttributes AS resource, "
    "LogAttributes AS attributes, Source AS source, toUnixTimestamp64Nano(IngestTime) AS ingest_ns"
)


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status, media_type="application/json")


def _range(request: Request, default_since: str = "1h") -> tuple[int, int | None]:
    """(start, end) in ns. With no explicit end the range is open: a host whose clock runs ahead
    must not have its lines hidden from "the last hour"."""
    q = request.query_params
    end = parse_time(q["end"]) if q.get("end") else None
    if q.get("start"):
        start = parse_time(q["start"])
    else:
        start = (end or time.time_ns()) - parse_since(q.get("since", default_since)) * 1_000_000_000
    if end is not None and start > end:
        raise BadRequest("start is after end")
    return start, end


def _limit(request: Request, default: int = 100, most: int = 10_000) -> int:
    raw = request.query_params.get("limit", str(default))
    if not raw.isdigit() or not 0 < int(raw) <= most:
        raise BadRequest(f"limit must be a whole number from 1 to {most}")
    return int(raw)


Handler = Callable[[Request], Awaitable[Response]]


def _guard(fn: Callable[[Request], Awaitable[Any]]) -> Handler:
    async def run(request: Request) -> Response:
        try:
            return _json(await fn(request))
        except FerryError as e:
            http, _, _ = status_of(e)
            return _json({"error": str(e)}, http)

    return run


def build_app(store: ChdbStore, lag: Callable[[], Any] | None = None) -> Starlette:
    started = time.time()

    async def rows(sql: str) -> list[dict[str, Any]]:
        return await asyncio.to_thread(store.query_rows, sql)

    async def search(request: Request) -> Any:
        start, end = _range(request)
        limit = _limit(request)
        q = request.query_params.get("q", "")
        sql = logs_sql.compile_logs(q, start_ns=start, end_ns=end, limit=limit, columns=LOG_COLUMNS)
        t0 = time.perf_counter()
        found = await rows(sql)
        return {"logs": found, "took_ms": round((time.perf_counter() - t0) * 1000, 2), "query": q}

    async def count(request: Request) -> Any:
        start, end = _range(request)
        q = request.query_params.get("q", "")
        by = request.query_params.get("by") or None
        step = request.query_params.get("step")
        if step is not None and not step.isdigit():
            raise BadRequest("step must be whole seconds")
        sql = logs_sql.compile_logs_count(q, start_ns=start, end_ns=end, group_by=by, step_s=int(step) if step else None)
        t0 = time.perf_counter()
        found = await rows(sql)
        took = round((time.perf_counter() - t0) * 1000, 2)
        if by is None and step is None:
            return {"count": int(found[0]["count"]) if found else 0, "took_ms": took}
        return {"groups": found, "took_ms": took}

    async def tail(request: Request) -> Any:
        q = request.query_params.get("q", "")
        after = request.query_params.get("after")
        cursor = int(after) if after and after.isdigit() else time.time_ns() - 10_000_000_000
        limit = _limit(request, 1000)
        sql = compile_tail(q, after_ingest_ns=cursor, limit=limit, columns=LOG_COLUMNS)
        found = await rows(sql)
        if found:
            cursor = max(int(r["ingest_ns"]) for r in found)
        return {"logs": found, "cursor": cursor}

    async def trace(request: Request) -> Any:
        tid = traces_q.check_trace_id(request.path_params["trace_id"])
        bounds = await rows(traces_q.time_bounds_sql(tid))
        start = end = None
        if bounds and int(bounds[0]["n"]):
            start, end = int(bounds[0]["s"]), int(bounds[0]["e"])
        spans, logs = await asyncio.gather(rows(traces_q.spans_sql(tid, start, end)), rows(traces_q.logs_sql(tid)))
        if not spans and not logs:
            return {"trace_id": tid, "spans": [], "logs": [], "found": False}
        return {"trace_id": tid, "spans": spans, "logs": logs, "found": True}

    async def series(request: Request) -> Any:
        qp = request.query_params
        name = qp.get("name")
        if not name:
            raise BadRequest("name is required")
        labels: dict[str, str] = {}
        for item in qp.getlist("label"):
            k, sep, v = item.partition("=")
            if not sep:
                raise BadRequest(f"label filter {item!r} must look like key=value")
            labels[k] = v
        start, end = _range(request)
        end = end or time.time_ns() + 3600 * 1_000_000_000
        step = qp.get("step", "60")
        if not step.isdigit():
            raise BadRequest("step must be whole seconds")
        found = await rows(metrics_q.series_sql(name, labels, start, end, int(step)))
        grouped: dict[tuple[str, str, str], dict[str, Any]] = {}
        for r in found:
            key = (r["kind"], r["service"], orjson.dumps(r["labels"], option=orjson.OPT_SORT_KEYS).decode())
            s = grouped.setdefault(
                key, {"kind": r["kind"], "service": r["service"], "labels": r["labels"], "points": [], "exemplars": []}
            )
            s["points"].append([int(r["t"]), r["v"]])
            s["exemplars"].extend(t for t in r["exemplar_trace_ids"] if t and t not in s["exemplars"])
        return {"name": name, "series": list(grouped.values())}

    async def status(_: Request) -> Any:
        counts = await rows(
            "SELECT 'logs' AS signal, count() AS n FROM otel_logs UNION ALL "
            "SELECT 'spans', count() FROM otel_traces UNION ALL "
            "SELECT 'metric_points', (SELECT count() FROM otel_metrics_gauge) + (SELECT count() FROM otel_metrics_sum) "
            "+ (SELECT count() FROM otel_metrics_histogram)"
        )
        # The store process measures the data disk and the bus with its gauges (runtime/roles.py).
        gauges = lag() if lag else []
        disk = {name: int(value) for name, _, _, value in gauges if name.startswith("ferry_data_disk_")}
        now = await asyncio.to_thread(metrics.current, "ferry_receivers_refusing", "ferry_spool_pending_batches")
        refusing, spool = now["ferry_receivers_refusing"], now["ferry_spool_pending_batches"]
        return {
            "pid": os.getppid(),
            "uptime_s": round(time.time() - started, 1),
            "stored": {r["signal"]: int(r["n"]) for r in counts},
            "disk": {"free_bytes": disk.get("ferry_data_disk_free_bytes"),
                     "min_free_bytes": disk.get("ferry_data_disk_min_free_bytes")},
            "refusing": sorted(labels["reason"] for labels, value in refusing if value),
            "lag_batches": {f"{labels['group']}/{labels['topic']}": int(value)
                            for name, _, labels, value in gauges if name == "ferry_consumer_lag_batches"},
            "spool_pending_batches": int(sum(value for _, value in spool)),
            "bus_restarts": int(next((v for name, _, _, v in gauges if name == "ferry_bus_server_restarts_total"), 0)),
        }

    async def prom(_: Request) -> Response:
        extra = metrics.CallbackCollector(lag) if lag else None
        body = await asyncio.to_thread(metrics.render, extra)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def health(_: Request) -> Response:
        return _json({"status": "ok"})

    return Starlette(
        routes=[
            Route("/api/v1/logs", _guard(search)),
            Route("/api/v1/logs/count", _guard(count)),
            Route("/api/v1/logs/tail", _guard(tail)),
            Route("/api/v1/traces/{trace_id}", _guard(trace)),
            Route("/api/v1/metrics/series", _guard(series)),
            Route("/api/v1/status", _guard(status)),
            Route("/metrics", prom),
            Route("/healthz", health),
        ]
    )
