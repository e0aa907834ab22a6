"""Jaeger's query API under /jaeger: services, operations, trace search and fetch, and the service
dependency graph, in Jaeger's JSON model, so Grafana's built-in Jaeger data source reads ferry.
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
from ferry.api.guard import Failure, guard
from ferry.api.tempo import duration_param, json_response, whole
from ferry.errors import BadRequest
from ferry.query import traceql
from ferry.query.timerange import parse_since
from ferry.query.traceql import parser as tql
from ferry.query.traceql import reads

DEFAULT_LOOKBACK_S = 3600  # Jaeger UI's default search window
LISTING_RANGE_S = 7 * 86400  # services and operations seen within the last week
DEFAULT_DEPENDENCY_LOOKBACK_MS = 86_400_000


def _answer(data: Any, status: int = 200, errors: list[dict[str, Any]] | None = None) -> Response:
    total = len(data) if isinstance(data, list) else 0
    return json_response({"data": data, "total": total, "limit": 0, "offset": 0, "errors": errors}, status)


def _error(status: int, message: str) -> Response:
    """Jaeger's error shape: no data, the error in `errors`."""
    return _answer(None, status, [{"code": status, "msg": message}])


def jaeger_error(f: Failure) -> Response:
    answer = _error(f.status, f.message)
    answer.headers.update(f.headers)
    return answer


def _micros_range(request: Request, default_lookback_s: int) -> tuple[int, int]:
    """[start, end) in ns from Jaeger's `start`/`end` (µs) or `end` minus `lookback` (1h, 2d)."""
    end_us = whole(request, "end", None)
    end_ns = end_us * 1000 + 1 if end_us is not None else time.time_ns() + 60 * 10**9
    start_us = whole(request, "start", None)
    if start_us is not None:
        start_ns = start_us * 1000
    else:
        raw = request.query_params.get("lookback", "").strip()
        try:
            lookback = parse_since(raw) if raw and raw != "custom" else default_lookback_s
        except BadRequest:
            raise BadRequest(f"lookback must be a duration such as 1h or 2d, got {raw[:40]!r}") from None
        start_ns = end_ns - lookback * 10**9
    if start_ns >= end_ns:
        raise BadRequest("start must be before end")
    return start_ns, end_ns


def _tag_pairs(request: Request) -> list[tuple[str, str]]:
    """Tags from `tags` (a JSON object, as Jaeger UI and Grafana send) and repeated `tag=key:value`."""
    pairs: list[tuple[str, str]] = []
    raw = request.query_params.get("tags", "").strip()
    if raw:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            obj = None
        if not isinstance(obj, dict):
            raise BadRequest(f'tags must be a JSON object such as {{"error":"true"}}, got {raw[:40]!r}')
        for k, v in obj.items():
            pairs.append((str(k), ("true" if v else "false") if isinstance(v, bool) else str(v)))
    for item in request.query_params.getlist("tag"):
        k, sep, v = item.partition(":")
        if not sep or not k:
            raise BadRequest(f"tag must look like key:value, got {item[:40]!r}")
        pairs.append((k, v))
    return pairs


_STATUS_OF_TAG = {"ERROR": "error", "OK": "ok", "UNSET": "unset"}


def _tag_cond(k: str, v: str) -> tql.Compare:
    """One Jaeger tag as a condition. The tags ferry derives from span fields (error, span.kind,
    otel.status_code, otel.status_description) match those fields."""
    if k == "error":
        if v not in ("true", "false"):
            raise BadRequest(f"tags: error takes true or false, got {v[:40]!r}")
        return tql.Compare(tql.Intrinsic("status"), "=" if v == "true" else "!=", tql.Keyword("error"))
    if k == "span.kind":
        if v not in tql.KIND_VALUES:
            raise BadRequest(f"tags: span.kind takes one of {', '.join(tql.KIND_VALUES)}, got {v[:40]!r}")
        return tql.Compare(tql.Intrinsic("kind"), "=", tql.Keyword(v))
    if k == "otel.status_code":
        if v.upper() not in _STATUS_OF_TAG:
            raise BadRequest(f"tags: otel.status_code takes OK, ERROR or UNSET, got {v[:40]!r}")
        return tql.Compare(tql.Intrinsic("status"), "=", tql.Keyword(_STATUS_OF_TAG[v.upper()]))
    if k == "otel.status_description":
        return tql.Compare(tql.Intrinsic("statusMessage"), "=", v)
    return tql.Compare(tql.Attr(None, k), "=", v)


def search_filter(request: Request) -> tql.Filter:
    """A Jaeger search as one spanset filter: service, operation, tags and duration on one span."""
    qp = request.query_params
    conds: list[tql.Compare] = []
    service = qp.get("service", "").strip()
    if not service:
        raise BadRequest("parameter 'service' is required")
    conds.append(tql.Compare(tql.Attr("resource", "service.name"), "=", service))
    operation = qp.get("operation", "")
    if operation:
        conds.append(tql.Compare(tql.Intrinsic("name"), "=", operation))
    conds += [_tag_cond(k, v) for k, v in _tag_pairs(request)]
    lo, hi = duration_param(request, "minDuration"), duration_param(request, "maxDuration")
    if lo is not None and hi is not None and lo > hi:
        raise BadRequest("minDuration must not exceed maxDuration")
    if lo is not None:
        conds.append(tql.Compare(tql.Intrinsic("duration"), ">=", tql.Duration(lo)))
    if hi is not None:
        conds.append(tql.Compare(tql.Intrinsic("duration"), "<=", tql.Duration(hi)))
    cond: tql.Cond = conds[0]
    for c in conds[1:]:
        cond = tql.BoolOp("&&", cond, c)
    return tql.Filter(cond)


# ---- Jaeger's model from stored rows --------------------------------------------------------------


def _tags(attrs: dict[str, str] | None) -> list[dict[str, Any]]:
    return [{"key": k, "type": "string", "value": v} for k, v in (attrs or {}).items()]


def _span_tags(r: dict[str, Any]) -> list[dict[str, Any]]:
    out = _tags(r["attributes"])
    if r["scope_name"]:
        out.append({"key": "otel.scope.name", "type": "string", "value": r["scope_name"]})
    if r["scope_version"]:
        out.append({"key": "otel.scope.version", "type": "string", "value": r["scope_version"]})
    kind = r["kind"].removeprefix("SPAN_KIND_").lower()
    if kind and kind != "unspecified":
        out.append({"key": "span.kind", "type": "string", "value": kind})
    status = r["status"].removeprefix("STATUS_CODE_")
    if status in ("OK", "ERROR"):
        out.append({"key": "otel.status_code", "type": "string", "value": status})
    if r["status_message"]:
        out.append({"key": "otel.status_description", "type": "string", "value": r["status_message"]})
    if status == "ERROR":
        out.append({"key": "error", "type": "bool", "value": True})
    return out


def jaeger_traces(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored span rows as Jaeger traces, in the order their traces first appear."""
    traces: dict[str, dict[str, Any]] = {}
    for r in rows:
        t = traces.setdefault(r["trace_id"], {"traceID": r["trace_id"], "spans": [], "processes": {},
                                              "warnings": None, "_procs": {}})
        resource = {k: v for k, v in (r["resource"] or {}).items() if k != "service.name"}
        pkey = orjson.dumps([r["service"], resource], option=orjson.OPT_SORT_KEYS)
        pid = t["_procs"].get(pkey)
        if pid is None:
            pid = t["_procs"][pkey] = f"p{len(t['_procs']) + 1}"
            t["processes"][pid] = {"serviceName": r["service"], "tags": _tags(resource)}
        refs = []
        if r["parent_span_id"]:
            refs.append({"refType": "CHILD_OF", "traceID": r["trace_id"], "spanID": r["parent_span_id"]})
        refs += [{"refType": "FOLLOWS_FROM", "traceID": lt, "spanID": ls}
                 for lt, ls in zip(r["link_trace_ids"], r["link_span_ids"], strict=False)]
        logs = [{"timestamp": int(ts) // 1000,
                 "fields": [{"key": "event", "type": "string", "value": name}, *_tags(attrs)]}
                for ts, name, attrs in zip(r["event_ns"], r["event_names"], r["event_attrs"], strict=False)]
        t["spans"].append({
            "traceID": r["trace_id"], "spanID": r["span_id"], "operationName": r["name"], "references": refs,
            "flags": 1, "startTime": int(r["start_ns"]) // 1000, "duration": int(r["duration_ns"]) // 1000,
            "tags": _span_tags(r), "logs": logs, "processID": pid, "warnings": None,
        })
    for t in traces.values():
        del t["_procs"]
    return list(traces.values())


def routes(ctx: ApiContext) -> list[BaseRoute]:
    def listing_range() -> tuple[int, int]:
        now = time.time_ns()
        return now - LISTING_RANGE_S * 10**9, now + 3600 * 10**9

    async def services(request: Request) -> Response:
        rows = await ctx.rows(reads.services_sql(ctx.tenant_where(request), *listing_range()))
        return _answer([r["service"] for r in rows])

    async def service_operations(request: Request) -> Response:
        rows = await ctx.rows(reads.operations_sql(ctx.tenant_where(request), request.path_params["service"], None,
                                                   *listing_range()))
        return _answer(sorted({r["name"] for r in rows}))

    async def operations(request: Request) -> Response:
        service = request.query_params.get("service", "").strip()
        if not service:
            raise BadRequest("parameter 'service' is required")
        kind = request.query_params.get("spanKind", "").strip().lower()
        if kind and kind not in tql.KIND_VALUES:
            raise BadRequest(f"spanKind must be one of {', '.join(tql.KIND_VALUES)}, got {kind[:40]!r}")
        stored = f"SPAN_KIND_{kind.upper()}" if kind else None
        rows = await ctx.rows(reads.operations_sql(ctx.tenant_where(request), service, stored, *listing_range()))
        out = []
        for r in rows:
            k = r["kind"].removeprefix("SPAN_KIND_").lower()
            out.append({"name": r["name"], "spanKind": "" if k == "unspecified" else k})
        return _answer(out)

    async def fetch(request: Request, ids: list[str]) -> list[dict[str, Any]]:
        rows = await ctx.rows(reads.full_spans_sql(ctx.tenant_where(request), ids))
        found = jaeger_traces(rows)
        order = {t: i for i, t in enumerate(ids)}
        return sorted(found, key=lambda t: order.get(t["traceID"], 0))

    async def trace(request: Request) -> Response:
        tid = reads.check_trace_id(request.path_params["trace_id"])
        found = await fetch(request, [tid])
        if not found:
            return _error(404, "trace not found")
        return _answer(found)

    async def search(request: Request) -> Response:
        ids = [reads.check_trace_id(t) for t in request.query_params.getlist("traceID")]
        if ids:
            return _answer(await fetch(request, ids))
        expr = search_filter(request)
        limit = whole(request, "limit", 100, 1, 10_000) or 100
        start_ns, end_ns = _micros_range(request, DEFAULT_LOOKBACK_S)
        p = traceql.plan(expr)  # one filter: SQL alone decides which traces match
        found = await ctx.rows(traceql.candidates_sql(p, ctx.tenant_where(request), start_ns, end_ns, limit))
        if not found:
            return _answer([])
        return _answer(await fetch(request, [r["trace_id"] for r in found]))

    async def dependencies(request: Request) -> Response:
        end_ms = whole(request, "endTs", None)
        end_ns = end_ms * 10**6 + 1 if end_ms is not None else time.time_ns() + 60 * 10**9
        lookback_ms = whole(request, "lookback", DEFAULT_DEPENDENCY_LOOKBACK_MS, 1) or DEFAULT_DEPENDENCY_LOOKBACK_MS
        rows = await ctx.rows(reads.dependencies_sql(ctx.tenant_where(request), end_ns - lookback_ms * 10**6, end_ns))
        return _answer([{"parent": r["parent"], "child": r["child"], "callCount": int(r["callCount"])} for r in rows])

    def route(path: str, name: str, fn: Callable[[Request], Awaitable[Response]]) -> Route:
        return Route("/jaeger" + path, guard(f"jaeger_{name}", fn, jaeger_error), methods=["GET"])

    return [
        route("/api/services", "services", services),
        route("/api/services/{service:path}/operations", "operations", service_operations),
        route("/api/operations", "operations", operations),
        route("/api/traces", "search", search),
        route("/api/traces/{trace_id}", "trace", trace),
        route("/api/dependencies", "dependencies", dependencies),
    ]
