"""Grafana Tempo's HTTP API under /tempo: traces by id (OTLP JSON or protobuf), TraceQL search, tag
names and values, echo and build info, so Grafana's built-in Tempo data source reads ferry.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ferry.api.context import ApiContext
from ferry.api.guard import Failure, guard
from ferry.errors import BadRequest
from ferry.query import traceql
from ferry.query.traceql import parser as tql
from ferry.query.traceql import reads
from ferry.query.traceql.compile import cond_sql

log = logging.getLogger("ferry.api")

RETRY_AFTER_S = 5
DEFAULT_RANGE_S = 24 * 3600  # a search or tag lookup naming no time range covers the last day
PROTOBUF_TYPES = ("application/protobuf", "application/x-protobuf")
# The Tempo version Grafana is told: it picks the API features it uses from it.
TEMPO_VERSION = "2.6.0"
INTRINSIC_TAGS = sorted(tql.INTRINSICS)

_KIND_NUMBER = {f"SPAN_KIND_{k}": i for i, k in
                enumerate(("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"))}
_STATUS_NUMBER = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}

def text_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """Tempo answers errors as plain text (Go's http.Error); Grafana shows the text."""
    return Response(message + "\n", status, headers=headers, media_type="text/plain")


def tempo_error(f: Failure) -> Response:
    return text_error(f.status, f.message, f.headers)


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status, media_type="application/json")


def whole(request: Request, name: str, default: int | None, least: int = 0, most: int = 2**62) -> int | None:
    raw = request.query_params.get(name, "").strip()
    if raw == "":
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19 and least <= int(raw) <= most):
        raise BadRequest(f"{name} must be a whole number from {least} to {most}, got {raw[:40]!r}")
    return int(raw)


def seconds_range(request: Request) -> tuple[int, int]:
    """[start, end) in ns from Tempo's `start` and `end` (Unix seconds); the last day by default."""
    end_s = whole(request, "end", None)
    end_ns = (end_s + 1) * 10**9 if end_s is not None else time.time_ns() + 60 * 10**9
    start_s = whole(request, "start", None)
    start_ns = start_s * 10**9 if start_s is not None else end_ns - DEFAULT_RANGE_S * 10**9
    if start_ns >= end_ns:
        raise BadRequest("start must be before end")
    return start_ns, end_ns


def duration_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name, "").strip()
    if not raw:
        return None
    try:
        return tql.parse_duration(raw)
    except BadRequest as e:
        raise BadRequest(f"{name} {e}") from None


# ---- OTLP traces from stored rows -----------------------------------------------------------------


def _kv(attrs: dict[str, str] | None) -> list[common_pb2.KeyValue]:
    # Stored values are text (receivers keep every attribute as a string): given back as strings.
    return [common_pb2.KeyValue(key=k, value=common_pb2.AnyValue(string_value=v)) for k, v in (attrs or {}).items()]


def _span(r: dict[str, Any]) -> trace_pb2.Span:
    start = int(r["start_ns"])
    span = trace_pb2.Span(
        trace_id=bytes.fromhex(r["trace_id"]), span_id=bytes.fromhex(r["span_id"]), trace_state=r["trace_state"],
        name=r["name"], kind=_KIND_NUMBER.get(r["kind"], 0), start_time_unix_nano=start,  # type: ignore[arg-type]
        end_time_unix_nano=start + int(r["duration_ns"]), attributes=_kv(r["attributes"]),
        status=trace_pb2.Status(code=_STATUS_NUMBER.get(r["status"], 0), message=r["status_message"]),  # type: ignore[arg-type]
    )
    if r["parent_span_id"]:
        span.parent_span_id = bytes.fromhex(r["parent_span_id"])
    for ts, name, attrs in zip(r["event_ns"], r["event_names"], r["event_attrs"], strict=False):
        span.events.add(time_unix_nano=int(ts), name=name, attributes=_kv(attrs))
    for tid, sid, state, attrs in zip(r["link_trace_ids"], r["link_span_ids"], r["link_states"], r["link_attrs"],
                                      strict=False):
        span.links.add(trace_id=bytes.fromhex(tid), span_id=bytes.fromhex(sid), trace_state=state,
                       attributes=_kv(attrs))
    return span


def traces_data(rows: list[dict[str, Any]]) -> trace_pb2.TracesData:
    """Stored span rows as OTLP: one ResourceSpans per resource, one ScopeSpans per scope in it."""
    out = trace_pb2.TracesData()
    resources: dict[bytes, tuple[trace_pb2.ResourceSpans, dict[tuple[str, str], trace_pb2.ScopeSpans]]] = {}
    for r in rows:
        res = dict(r["resource"] or {})
        if r["service"] and "service.name" not in res:
            res["service.name"] = r["service"]
        key = orjson.dumps(res, option=orjson.OPT_SORT_KEYS)
        if key not in resources:
            rs = out.resource_spans.add(resource=resource_pb2.Resource(attributes=_kv(res)))
            resources[key] = (rs, {})
        rs, scopes = resources[key]
        skey = (r["scope_name"], r["scope_version"])
        if skey not in scopes:
            scopes[skey] = rs.scope_spans.add(scope=common_pb2.InstrumentationScope(name=skey[0], version=skey[1]))
        scopes[skey].spans.append(_span(r))
    return out


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def wants_protobuf(request: Request) -> bool:
    accept = request.headers.get("accept", "").lower()
    return any(t in accept for t in PROTOBUF_TYPES)


# ---- search ---------------------------------------------------------------------------------------

_LOGFMT = re.compile(r'\s*([^\s=]+)=("(?:[^"\\]|\\.)*"|[^\s]*)')


def logfmt(text: str) -> list[tuple[str, str]]:
    """`k=v k2="v 2"` pairs (Tempo's `tags` parameter); BadRequest on anything else."""
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _LOGFMT.match(text, pos)
        if not m:
            raise BadRequest(f"tags must be logfmt (key=value key2=\"value 2\"), got {text[pos:pos + 40]!r}")
        k, v = m.group(1), m.group(2)
        if v.startswith('"'):
            v = orjson.loads(v)
        out.append((k, v))
        pos = m.end()
    return out


def tag_filter(pairs: list[tuple[str, str]]) -> tql.Filter:
    """Tempo's tag search as one spanset filter: every pair on the same span. Intrinsic names (name,
    status, kind, statusMessage) are the span's fields, other keys unscoped attributes."""
    cond: tql.Cond | None = None
    for k, v in pairs:
        field: tql.Field
        value: tql.Value = v
        if k in ("status", "kind"):
            field = tql.Intrinsic(k)
            allowed = tql.STATUS_VALUES if k == "status" else tql.KIND_VALUES
            if v not in allowed:
                raise BadRequest(f"tags: {k} takes one of {', '.join(allowed)}, got {v[:40]!r}")
            value = tql.Keyword(v)
        elif k in ("name", "statusMessage"):
            field = tql.Intrinsic(k)
        else:
            field = tql.Attr(None, k)
        c = tql.Compare(field, "=", value)
        cond = c if cond is None else tql.BoolOp("&&", cond, c)
    return tql.Filter(cond or tql.Everything())


def _span_attrs(p: traceql.Plan, s: dict[str, Any]) -> list[dict[str, Any]]:
    out = [{"key": "service.name", "value": {"stringValue": s["service"]}}]
    for i, f in enumerate(p.shown):
        v = s.get(f"a{i}")
        if v in (None, ""):
            continue
        if isinstance(f, tql.Intrinsic):
            if f.name == "status":
                v = v.removeprefix("STATUS_CODE_").lower()
            elif f.name == "kind":
                v = v.removeprefix("SPAN_KIND_").lower()
            key = f.name
        else:
            key = f.key
        if key != "service.name":
            out.append({"key": key, "value": {"stringValue": str(v)}})
    return out


def trace_summary(trace_id: str, spans: list[dict[str, Any]]) -> dict[str, Any]:
    """Tempo's search hit for a trace: its root span's service and name, start and duration."""
    starts = [int(s["start_ns"]) for s in spans]
    ends = [int(s["start_ns"]) + int(s["duration_ns"]) for s in spans]
    roots = [s for s in spans if not s["parent_id"]]
    root = min(roots, key=lambda s: int(s["start_ns"])) if roots else None
    out: dict[str, Any] = {
        "traceID": trace_id,
        "rootServiceName": root["service"] if root else "<root span not yet received>",
        "startTimeUnixNano": str(min(starts)),
        "durationMs": (max(ends) - min(starts)) // 1_000_000,
    }
    if root:
        out["rootTraceName"] = root["name"]
    return out


async def search_traces(ctx: ApiContext, request: Request, expr: tql.Spanset, start_ns: int, end_ns: int, limit: int,
                        min_trace_ns: int | None = None, max_trace_ns: int | None = None,
                        ) -> tuple[traceql.Plan, list[tuple[str, list[dict[str, Any]], list[dict[str, Any]]]], int]:
    """(plan, [(trace id, its spans, the spans the query matched)] newest first, traces inspected)."""
    p = traceql.plan(expr)
    tenant = ctx.tenant_where(request)
    # With a structural operator SQL only narrows the candidates: read more, keep those that match.
    want = limit if p.exact else min(limit * 10, 5000)
    cands = [r["trace_id"] for r in await ctx.rows(
        traceql.candidates_sql(p, tenant, start_ns, end_ns, want, min_trace_ns, max_trace_ns))]
    if not cands:
        return p, [], 0
    by_trace: dict[str, list[dict[str, Any]]] = {}
    for s in await ctx.rows(traceql.spans_sql(p, tenant, cands)):
        by_trace.setdefault(s["trace_id"], []).append(s)
    out = []
    for tid in cands:
        spans = by_trace.get(tid, [])
        matched = traceql.evaluate(p.expr, spans)
        if matched:
            out.append((tid, spans, matched))
            if len(out) >= limit:
                break
    return p, out, len(cands)


def routes(ctx: ApiContext) -> list[BaseRoute]:
    async def echo(_: Request) -> Response:
        return Response("echo", media_type="text/plain")

    async def ready(_: Request) -> Response:
        return Response("ready", media_type="text/plain")

    async def buildinfo(_: Request) -> Response:
        return json_response({"version": TEMPO_VERSION, "revision": "ferry", "branch": "", "buildUser": "",
                              "buildDate": "", "goVersion": ""})

    async def trace_rows(request: Request) -> list[dict[str, Any]]:
        tid = reads.check_trace_id(request.path_params["trace_id"])
        start_s, end_s = whole(request, "start", None), whole(request, "end", None)
        return await ctx.rows(reads.full_spans_sql(
            ctx.tenant_where(request), [tid], start_s * 10**9 if start_s is not None else None,
            (end_s + 1) * 10**9 if end_s is not None else None))

    async def trace_v1(request: Request) -> Response:
        rows = await trace_rows(request)
        if not rows:
            return text_error(404, "trace not found")
        data = traces_data(rows)
        if wants_protobuf(request):
            # Tempo's v1 Trace message has the field layout of OTLP TracesData (batches = field 1).
            return Response(data.SerializeToString(), media_type="application/protobuf")
        return json_response({"batches": MessageToDict(data).get("resourceSpans", [])})

    async def trace_v2(request: Request) -> Response:
        rows = await trace_rows(request)
        if not rows:
            return text_error(404, "trace not found")
        data = traces_data(rows)
        if wants_protobuf(request):
            # TraceByIDResponse: field 1 is the trace (same layout as TracesData), length-delimited.
            body = data.SerializeToString()
            return Response(b"\x0a" + _varint(len(body)) + body, media_type="application/protobuf")
        return json_response({"trace": MessageToDict(data)})

    async def search(request: Request) -> Response:
        qp = request.query_params
        q = qp.get("q", "").strip()
        tags = qp.get("tags", "").strip()
        exprs: list[tql.Spanset] = []
        if q:
            exprs.append(tql.parse(q))
        if tags:
            exprs.append(tag_filter(logfmt(tags)))
        expr: tql.Spanset = tql.Filter(tql.Everything()) if not exprs else exprs[0]
        if len(exprs) == 2:
            expr = tql.SpansetOp("&&", exprs[0], exprs[1])
        limit = whole(request, "limit", 20, 1, 10_000) or 20
        spss = whole(request, "spss", 3, 1, 10_000) or 3
        start_ns, end_ns = seconds_range(request)
        lo, hi = duration_param(request, "minDuration"), duration_param(request, "maxDuration")
        if lo is not None and hi is not None and lo > hi:
            raise BadRequest("minDuration must not exceed maxDuration")
        p, found, inspected = await search_traces(ctx, request, expr, start_ns, end_ns, limit, lo, hi)
        traces = []
        for tid, spans, matched in found:
            hit = trace_summary(tid, spans)
            spanset = {
                "spans": [{"spanID": s["span_id"], "name": s["name"], "startTimeUnixNano": str(int(s["start_ns"])),
                           "durationNanos": str(int(s["duration_ns"])), "attributes": _span_attrs(p, s)}
                          for s in matched[:spss]],
                "matched": len(matched),
            }
            hit["spanSet"] = spanset
            hit["spanSets"] = [spanset]
            traces.append(hit)
        return json_response({"traces": traces, "metrics": {"inspectedTraces": inspected, "inspectedBytes": "0",
                                                            "completedJobs": 1, "totalJobs": 1}})

    def _scopes(request: Request) -> tuple[str, ...]:
        scope = request.query_params.get("scope", "").strip() or "all"
        if scope not in ("all", "span", "resource", "intrinsic", "none"):
            raise BadRequest(f"scope must be span, resource, intrinsic or none, got {scope[:40]!r}")
        return {"all": ("span", "resource", "intrinsic"), "none": ("span", "resource")}.get(scope, (scope,))

    async def _names(request: Request, scope: str) -> list[str]:
        if scope == "intrinsic":
            return INTRINSIC_TAGS
        start_ns, end_ns = seconds_range(request)
        limit = whole(request, "limit", 5000, 1, 100_000) or 5000
        return [r["tag"] for r in await ctx.rows(
            reads.tag_names_sql(ctx.tenant_where(request), scope, start_ns, end_ns, limit))]

    async def tags_v1(request: Request) -> Response:
        scopes = _scopes(request)
        names: set[str] = set()
        for scope in scopes:
            if scope != "intrinsic" or len(scopes) == 1:
                names.update(await _names(request, scope))
        return json_response({"tagNames": sorted(names)})

    async def tags_v2(request: Request) -> Response:
        return json_response({"scopes": [{"name": s, "tags": await _names(request, s)} for s in _scopes(request)]})

    async def _values(request: Request, field: tql.Field) -> list[dict[str, str]]:
        if isinstance(field, tql.Intrinsic) and field.name in ("status", "kind"):
            words = tql.STATUS_VALUES if field.name == "status" else tql.KIND_VALUES
            return [{"type": "keyword", "value": w} for w in words]
        if isinstance(field, tql.Intrinsic) and field.name == "duration":
            return []
        start_ns, end_ns = seconds_range(request)
        limit = whole(request, "limit", 1000, 1, 100_000) or 1000
        cond = ""
        q = request.query_params.get("q", "").strip()
        if q:
            # Grafana narrows the values to the query being written; one that does not parse yet
            # (still being typed) narrows nothing.
            try:
                expr = tql.parse(q)
            except BadRequest:
                expr = None
            if isinstance(expr, tql.Filter):
                cond = cond_sql(expr.cond)
        rows = await ctx.rows(reads.tag_values_sql(ctx.tenant_where(request), field, start_ns, end_ns, limit, cond))
        return [{"type": "string", "value": str(r["value"])} for r in rows]

    async def tag_values_v1(request: Request) -> Response:
        tag = request.path_params["tag"]
        field: tql.Field = tql.Intrinsic(tag) if tag in ("name", "status", "kind") else reads.unscoped(tag)
        return json_response({"tagValues": [v["value"] for v in await _values(request, field)]})

    async def tag_values_v2(request: Request) -> Response:
        field = tql.parse_field(request.path_params["tag"])
        return json_response({"tagValues": await _values(request, field)})

    def route(path: str, name: str, fn: Callable[[Request], Awaitable[Response]]) -> Route:
        return Route("/tempo" + path, guard(f"tempo_{name}", fn, tempo_error), methods=["GET"])

    return [
        route("/api/echo", "echo", echo),
        route("/ready", "ready", ready),
        route("/api/status/buildinfo", "buildinfo", buildinfo),
        route("/api/traces/{trace_id}", "trace", trace_v1),
        route("/api/v2/traces/{trace_id}", "trace", trace_v2),
        route("/api/search", "search", search),
        route("/api/search/tags", "tags", tags_v1),
        route("/api/v2/search/tags", "tags", tags_v2),
        route("/api/search/tag/{tag:path}/values", "tag_values", tag_values_v1),
        route("/api/v2/search/tag/{tag:path}/values", "tag_values", tag_values_v2),
    ]
