"""The HTTP API (JSON) on port 8686: log search and tail, traces, metric series, status, /metrics.

The CLI and the web UI use only this API; docs/api.md documents every route.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pyarrow as pa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ferry.api import params
from ferry.api.compat import compat_routes
from ferry.api.context import ApiContext
from ferry.api.guard import RETRY_AFTER_S, guard, json_answer
from ferry.config.model import ApiConfig
from ferry.errors import Backpressure, BadRequest, QueryTimeout
from ferry.query import discover, logs_sql
from ferry.query import metrics as metrics_q
from ferry.query import related as related_q
from ferry.query import traces as traces_q
from ferry.query.tail import compile_tail
from ferry.query.timerange import parse_time, shown
from ferry.store import QueryLimits, Store
from ferry.telemetry import metrics
from ferry.ui import routes as ui

LOG_COLUMNS = (
    "toUnixTimestamp64Nano(Timestamp) AS time_ns, ServiceName AS service, SeverityText AS level, "
    "Body AS body, TraceId AS trace_id, SpanId AS span_id, ResourceAttributes AS resource, "
    "LogAttributes AS attributes, Source AS source, toUnixTimestamp64Nano(IngestTime) AS ingest_ns"
)

# Where GET /api/v1/siem/events searches: the security events a pipeline routes there.
SIEM_TABLE = "siem_events"

log = logging.getLogger("ferry.api")

# Status of each failure an API read can end in. A timeout is 504 and carries no Retry-After: the
# store is fine, but the same query will take as long again; the client has to narrow it. A query
# over its memory or answer-size cap is 422 for the same reason. 503 + Retry-After is kept for
# trouble in the store itself (retrying later may work), 429 + Retry-After for "too many at once".

Handler = Callable[[Request], Awaitable[Response]]


LOOPBACK_NAMES = frozenset({"localhost"})


def _host_of(header: str) -> str:
    """The host in a Host header, without port or brackets, lower case, no trailing dot."""
    h = header.strip().lower()
    if h.startswith("["):
        h = h[1:].partition("]")[0]
    elif h.count(":") == 1:
        h = h.partition(":")[0]
    return h.rstrip(".")


class HostCheck:
    """Refuses (403) requests naming a host ferry was not told it is, against DNS rebinding: a web
    page on evil.example whose name is re-pointed at 127.0.0.1 must not read the API from the
    victim's browser. On a loopback `listen` only localhost, loopback addresses, the listen address
    and `api.allowed_hosts` pass; on another address the check is on only with `api.allowed_hosts`
    set, and then any IP address passes too (scrapers use addresses, and an address cannot be
    re-pointed). A request with no Host header passes: browsers always send one."""

    def __init__(self, app: Any, listen: str, allowed_hosts: list[str]) -> None:
        self.app = app
        self.allowed = set(allowed_hosts)
        try:
            bound = ipaddress.ip_address(listen.strip("[]"))
            self.listen, loopback = bound.compressed, bound.is_loopback
        except ValueError:
            self.listen, loopback = listen.lower(), listen.lower() in LOOPBACK_NAMES
        self.active = loopback or bool(self.allowed)
        self.any_address = not loopback
        metrics.api_requests.labels("host_check", "forbidden_host")

    def permits(self, host: str) -> bool:
        if host in LOOPBACK_NAMES or host in self.allowed:
            return True
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return any(a.startswith("*.") and host.endswith(a[1:]) for a in self.allowed)
        return self.any_address or addr.is_loopback or addr.compressed in (self.listen, *self.allowed)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # WebSockets too (Loki's tail): a page on a rebound name must not open one either.
        if self.active and scope["type"] in ("http", "websocket"):
            header = next((v for k, v in scope["headers"] if k == b"host"), None)
            host = _host_of(header.decode("latin-1")) if header is not None else None
            if host is not None and not self.permits(host):
                metrics.api_requests.labels("host_check", "forbidden_host").inc()
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                answer = json_answer({"error": f"host {shown(host)} is not served here; "
                                         "if it is this ferry's name, add it to api.allowed_hosts"}, 403)
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)


def build_app(
    store: Store, lag: Callable[[], Any] | None = None, api: ApiConfig | None = None, listen: str = "127.0.0.1",
    pipeline: Callable[[], dict[str, Any]] | None = None, tenant: str = "default",
) -> Starlette:
    started = time.time()
    api = api or ApiConfig()
    limits = QueryLimits(
        max_seconds=api.max_query_seconds,
        max_memory_bytes=api.max_query_memory_bytes or store.max_memory_bytes // 4,
        max_result_bytes=api.max_result_bytes,
    )
    # API reads get threads of their own: on the default executor, a few slow queries would hold
    # every thread the writer's inserts need (it runs them there) and stall ingestion behind them.
    readers = ThreadPoolExecutor(api.max_concurrent_queries, thread_name_prefix="ferry-api")
    turns = asyncio.Semaphore(api.max_concurrent_queries)
    # The store stops a query at the first check past its limit, but it does not check while it
    # evaluates skip indexes: a pathological search (64 adjacent-word terms over 2 KB bodies, 1 s
    # limit) stopped only after 2.5-5 s. The client is answered (504) a second past the limit all
    # the same; the query's turn is given back only when the store is done with it, so the work
    # in the store stays bounded by max_concurrent_queries.
    grace_s = 1.0

    def done(job: asyncio.Future[Any]) -> None:
        turns.release()
        metrics.api_queries_running.dec()
        if not job.cancelled():
            job.exception()  # read, so that an answer given up on is not reported as never retrieved

    async def rows(sql: str) -> list[dict[str, Any]]:
        """An API read: waits its turn, then runs under `limits`. The wait is bounded by half the
        query limit, so that a request's whole time stays within 1.5 x max_query_seconds (+ grace)."""
        return await read(store.read_rows, sql)

    async def arrow(sql: str, max_result_bytes: int | None = None) -> pa.Table:
        """`rows` answering one Arrow table; `max_result_bytes` in place of the API's answer cap
        (the PromQL sample reads count theirs in samples, see ferry/query/prom_store.py)."""
        caps = limits if max_result_bytes is None else replace(limits, max_result_bytes=max_result_bytes)
        return await read(store.read_arrow, sql, caps)

    async def read(reader: Callable[[str, QueryLimits], Any], sql: str, caps: QueryLimits | None = None) -> Any:
        try:
            await asyncio.wait_for(turns.acquire(), api.max_query_seconds / 2)
        except TimeoutError:
            raise Backpressure("the store is busy with other queries; retry later", RETRY_AFTER_S) from None
        metrics.api_queries_running.inc()
        job = asyncio.get_running_loop().run_in_executor(readers, reader, sql, caps or limits)
        job.add_done_callback(done)
        try:
            return await asyncio.wait_for(asyncio.shield(job), limits.max_seconds + grace_s)
        except TimeoutError:
            raise QueryTimeout(limits.describe("timeout")) from None

    async def search_in(request: Request, table: str) -> Any:
        start, end = params.time_range(request)
        limit = params.limit(request)
        after = params.param(request, "cursor", params.cursor, None)
        q = request.query_params.get("q", "")
        tenant = ctx.tenant_of(request)
        sql = logs_sql.compile_logs(q, start_ns=start, end_ns=end, limit=limit, columns=LOG_COLUMNS, after=after,
                                    table=table, tenant=tenant)
        t0 = time.perf_counter()
        found = await rows(sql)
        took = round((time.perf_counter() - t0) * 1000, 2)
        warnings = await discover.warnings(rows, q, start, end, found_any=bool(found), table=table, tenant=tenant)
        # A full page may have a next one: its cursor resumes strictly after this page's last row.
        more = f"{found[-1][logs_sql.CURSOR_TS]}:{found[-1][logs_sql.CURSOR_KEY]}" if len(found) == limit else None
        return {"logs": found, "took_ms": took, "query": q, "warnings": warnings, "cursor": more}

    async def count_in(request: Request, table: str) -> Any:
        start, end = params.time_range(request)
        q = request.query_params.get("q", "")
        by = request.query_params.get("by") or None
        step = params.step(request, start, end)
        tenant = ctx.tenant_of(request)
        sql = logs_sql.compile_logs_count(q, start_ns=start, end_ns=end, group_by=by, step_s=step, table=table,
                                          tenant=tenant)
        t0 = time.perf_counter()
        found = await rows(sql)
        took = round((time.perf_counter() - t0) * 1000, 2)
        warnings = await discover.warnings(rows, q, start, end, found_any=any(int(r["count"]) for r in found),
                                           table=table, tenant=tenant)
        if by is None and step is None:
            return {"count": int(found[0]["count"]) if found else 0, "took_ms": took, "warnings": warnings}
        return {"groups": found, "took_ms": took, "warnings": warnings}

    async def search(request: Request) -> Any:
        return await search_in(request, "otel_logs")

    async def count(request: Request) -> Any:
        return await count_in(request, "otel_logs")

    async def siem_search(request: Request) -> Any:
        return await search_in(request, SIEM_TABLE)

    async def siem_count(request: Request) -> Any:
        return await count_in(request, SIEM_TABLE)

    async def related(request: Request) -> Any:
        root = related_q.check_id(request.query_params.get("id", ""))
        depth = params.param(request, "depth", params.whole(1, related_q.MAX_DEPTH), related_q.DEFAULT_DEPTH)
        fanout = params.param(request, "fanout", params.whole(1, related_q.MAX_FANOUT), related_q.DEFAULT_FANOUT)
        limit = params.limit(request)
        # Ids are rare and both lookups use indexes, so with no time given the whole retention is read.
        qp = request.query_params
        start, end = params.time_range(request) if any(qp.get(k) for k in ("since", "start", "end")) else (None, None)
        t0 = time.perf_counter()
        tenant = ctx.tenant_of(request)
        found, cut = await related_q.walk(rows, root, depth=depth, fanout=fanout, start_ns=start, end_ns=end,
                                          tenant=tenant)
        ids = [root, *(r["id"] for r in found)]
        logs, more = await related_q.lines(rows, ids, columns=LOG_COLUMNS, limit=limit, start_ns=start, end_ns=end,
                                           tenant=tenant)
        took = round((time.perf_counter() - t0) * 1000, 2)
        return {"id": root, "related": found, "logs": logs, "truncated": cut or more, "took_ms": took}

    async def tail(request: Request) -> Any:
        q = request.query_params.get("q", "")
        cursor = params.param(request, "after", parse_time, time.time_ns() - 10_000_000_000)
        limit = params.limit(request, 1000)
        tenant = ctx.tenant_of(request)
        sql = compile_tail(q, after_ingest_ns=cursor, limit=limit, columns=LOG_COLUMNS, tenant=tenant)
        found = await rows(sql)
        if found:
            cursor = max(int(r["ingest_ns"]) for r in found)
        # Only a tail's first poll checks its keys (over the last hour): the later ones repeat it each second.
        warnings = [] if "after" in request.query_params else await discover.warnings(
            rows, q, time.time_ns() - 3600 * 1_000_000_000, None, found_any=True, tenant=tenant)
        return {"logs": found, "cursor": cursor, "warnings": warnings}

    async def trace(request: Request) -> Any:
        tid = traces_q.check_trace_id(request.path_params["trace_id"])
        bounds = await rows(traces_q.time_bounds_sql(tid))
        start = end = None
        if bounds and int(bounds[0]["n"]):
            start, end = int(bounds[0]["s"]), int(bounds[0]["e"])
        tenant = ctx.tenant_of(request)
        spans, logs = await asyncio.gather(rows(traces_q.spans_sql(tid, start, end, tenant)),
                                           rows(traces_q.logs_sql(tid, tenant)))
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
        start, end = params.time_range(request)
        end = end or time.time_ns() + 3600 * 1_000_000_000
        step = params.step(request, start, end, 60) or 60
        tenant = ctx.tenant_of(request)
        found, whole = await asyncio.gather(rows(metrics_q.series_sql(name, labels, start, end, step, tenant)),
                                            rows(metrics_q.series_sql(name, labels, start, end, None, tenant)))
        return {"name": name, "series": metrics_q.group_series(found, whole)}

    async def metric_names(request: Request) -> Any:
        start, end = params.time_range(request)
        labels = metrics_q.parse_labels(request.query_params.getlist("label"))
        found = await rows(metrics_q.names_sql(labels, start, end or time.time_ns() + 3600 * 1_000_000_000,
                                               ctx.tenant_of(request)))
        return {"metrics": found}

    async def services(request: Request) -> Any:
        start, end = params.time_range(request, "1d")
        return {"services": await rows(discover.services_sql(start, end, ctx.tenant_of(request)))}

    async def tenants(request: Request) -> Any:
        start, end = params.time_range(request, "7d")
        return {"default": ctx.tenant, "current": ctx.tenant_of(request),
                "tenants": await rows(discover.tenants_sql(start, end))}

    async def fields(request: Request) -> Any:
        start, end = params.time_range(request)
        service = request.query_params.get("service") or None
        found = await rows(discover.fields_sql(start, end, service, tenant=ctx.tenant_of(request)))
        lines = next((int(r["lines"]) for r in found if r["field"] == ""), 0)
        return {
            "lines_read": lines, "most_lines_read": discover.FIELDS_SAMPLE,
            "fields": [{"field": r["field"], "kind": r["kind"], "aliases": discover.aliases_of(r["field"]),
                        "lines": int(r["lines"]), "distinct_values": int(r["distinct_values"]),
                        "top": [{"value": v, "lines": int(n)} for v, n in r["top"]]}
                       for r in found if r["field"]],
        }

    async def root(request: Request) -> Response:
        """The web UI's start page for a browser; the API index for a client that asks for JSON."""
        if "application/json" in request.headers.get("accept", ""):
            return await index(request)
        return ui.start_page()

    async def index(request: Request) -> Response:
        """What the API serves, as a page that links its routes or, asked for JSON, as JSON."""
        if "application/json" in request.headers.get("accept", ""):
            return json_answer({"name": "ferry API", "docs": "docs/api.md",
                          "routes": [{"path": p, "about": a} for p, a, _ in discover.API_ROUTES]})
        items = "\n".join(f'<li><a href="{link}"><code>{p}</code></a> — {a}</li>' if link else
                           f"<li><code>{p}</code> — {a}</li>" for p, a, link in discover.API_ROUTES)
        page = (f"<!doctype html><html><head><meta charset=utf-8><title>ferry API</title></head><body>"
                f"<h1>ferry API</h1><p>JSON over HTTP; every route is described in <code>docs/api.md</code>. "
                f"The <code>ferry</code> command line reads only this API.</p><ul>\n{items}\n</ul></body></html>")
        return Response(page, media_type="text/html; charset=utf-8")

    async def pipeline_view(_: Request) -> Any:
        if pipeline is None:
            raise BadRequest("this API serves no pipeline (it runs without the bus)")
        return pipeline()

    async def status(_: Request) -> Any:
        counts = await rows(discover.stored_sql())  # every table of the catalogue (ferry/schema)
        # The store process measures the data disk and the bus with its gauges (runtime/roles.py).
        gauges = lag() if lag else []
        disk = {name: int(value) for name, _, _, value in gauges if name.startswith("ferry_data_disk_")}
        now = await asyncio.to_thread(metrics.current, "ferry_receivers_refusing", "ferry_spool_pending_batches")
        refusing, spool = now["ferry_receivers_refusing"], now["ferry_spool_pending_batches"]
        return {
            # The process to stop: set by `ferry run` (the supervisor, or the lone store role itself).
            "pid": int(os.environ.get("FERRY_PID") or os.getppid()),
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
        return json_answer({"status": "ok"})

    ctx = ApiContext(rows=rows, limits=limits, store=store, tenant=tenant,
                     arrow=arrow if hasattr(store, "read_arrow") else None)
    app = Starlette(
        routes=[
            # The ecosystem's APIs, each mounted where Grafana's data source of that kind looks.
            *compat_routes(ctx),
            Route("/api/v1/logs", guard("search", search)),
            Route("/api/v1/logs/count", guard("count", count)),
            Route("/api/v1/logs/tail", guard("tail", tail)),
            Route("/api/v1/siem/events", guard("siem_search", siem_search)),
            Route("/api/v1/siem/events/count", guard("siem_count", siem_count)),
            Route("/api/v1/related", guard("related", related)),
            Route("/api/v1/traces/{trace_id}", guard("trace", trace)),
            Route("/api/v1/metrics/series", guard("series", series)),
            Route("/api/v1/metrics", guard("metric_names", metric_names)),
            Route("/api/v1/services", guard("services", services)),
            Route("/api/v1/fields", guard("fields", fields)),
            Route("/api/v1/tenants", guard("tenants", tenants)),
            Route("/", root),
            Route("/api", index),
            *ui.routes(),
            Route("/api/v1/status", guard("status", status)),
            Route("/api/v1/pipeline", guard("pipeline_view", pipeline_view)),
            Route("/metrics", prom),
            Route("/healthz", health),
        ]
    )
    app.add_middleware(HostCheck, listen=listen, allowed_hosts=api.allowed_hosts)
    return app
