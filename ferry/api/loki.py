"""Grafana Loki's read API (/loki/api/v1/...) over otel_logs, for Grafana's built-in Loki data source.

LogQL runs in ferry/query/logql; stream labels are mapped as its sql.py says. Errors are Loki's: plain text.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import orjson
from starlette.datastructures import ImmutableMultiDict
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ferry.api.context import ApiContext
from ferry.api.guard import Failure, guard
from ferry.errors import BadRequest, FerryError
from ferry.query.logql import ast
from ferry.query.logql import pipeline as pipe
from ferry.query.logql import sql as q
from ferry.query.logql.engine import Engine, Scalar, Series, step_times
from ferry.query.logql.parser import parse, parse_bytes, parse_duration_ns
from ferry.query.timerange import parse_time, shown
from ferry.store.sql import literal
from ferry.telemetry import metrics
from ferry.tenancy import tenant_of_headers

log = logging.getLogger("ferry.api.loki")

PREFIX = "/loki/api/v1"
DEFAULT_LIMIT = 100
MAX_LIMIT = 5000  # Loki's default max_entries_limit_per_query
MAX_LABEL_VALUES = 5000
MAX_SERIES = 10_000
CATEGORIZE_HEADER = "x-loki-response-encoding-flags"
TAIL_POLL_S = 1.0
# Tails open at once (Loki's max_concurrent_tail_requests defaults to 10).
MAX_TAILS = 32
BUILD_VERSION = "3.1.0"  # the Loki API level this answers as (Grafana reads it to enable features)

Params = ImmutableMultiDict[str, str]


def _json(data: Any, status: int = 200) -> Response:
    if isinstance(data, Response):
        return data
    return Response(orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY), status, media_type="application/json")


def _text_error(f: Failure) -> Response:
    """Loki answers errors as plain text; the status comes from ferry's one error table."""
    return PlainTextResponse(f.message, f.status, headers=f.headers or None)


def _guard(name: str, fn: Callable[[Request, Params], Awaitable[Any]]) -> Callable[[Request], Awaitable[Response]]:
    async def with_params(request: Request) -> Any:
        return await fn(request, await _params(request))

    return guard(f"loki_{name}", with_params, _text_error, _json)


async def _params(request: Request) -> Params:
    """Query string, plus the form body of a POST (Loki takes both)."""
    items = list(request.query_params.multi_items())
    if request.method == "POST" and "form" in request.headers.get("content-type", ""):
        form = await request.form()
        items += [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
    return ImmutableMultiDict(items)


# -- parameters -----------------------------------------------------------------------------------


def _time(params: Params, name: str, default: int) -> int:
    raw = params.get(name, "")
    if raw == "":
        return default
    try:
        return parse_time(raw)
    except BadRequest:
        raise BadRequest(f"invalid {name}: cannot parse {shown(raw)} as a timestamp (unix ns, seconds or RFC 3339)") from None


def _range(params: Params) -> tuple[int, int]:
    now = time.time_ns()
    end = _time(params, "end", now)
    since = params.get("since", "")
    default_start = end - (_duration(since, "since") if since else 3600 * 10**9)
    start = _time(params, "start", default_start)
    if end < start:
        raise BadRequest("the end timestamp must not be before the start time")
    return start, end


def _duration(raw: str, name: str) -> int:
    try:
        return parse_duration_ns(raw)
    except ValueError:
        pass
    try:
        seconds = float(raw)
    except ValueError:
        raise BadRequest(f"invalid {name}: cannot parse {shown(raw)} as a duration (15s) or seconds (15)") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise BadRequest(f"invalid {name}: must be a positive duration")
    return int(round(seconds * 1e9))


def _limit(params: Params) -> int:
    raw = params.get("limit", "")
    if raw == "":
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 12):
        raise BadRequest(f"invalid limit: {shown(raw)} is not a whole number")
    limit = int(raw)
    if limit <= 0:
        raise BadRequest("limit must be a positive value")
    if limit > MAX_LIMIT:
        raise BadRequest(f"max entries limit per query exceeded, limit > max_entries_limit ({limit} > {MAX_LIMIT})")
    return limit


def _backward(params: Params) -> bool:
    raw = params.get("direction", "backward").lower() or "backward"
    if raw not in ("backward", "forward"):
        raise BadRequest(f"invalid direction {shown(raw)}: use backward or forward")
    return raw == "backward"


def _query(params: Params, required: bool = True) -> ast.Expr | None:
    text = params.get("query", "")
    if not text.strip():
        if required:
            raise BadRequest("query is required (a LogQL expression such as {service_name=\"api\"})")
        return None
    return parse(text)


def _selector(expr: ast.Expr | None) -> tuple[ast.Matcher, ...]:
    """The stream selector of the first log query inside `expr` (what the index routes look at)."""
    if expr is None:
        return ()
    if isinstance(expr, ast.LogQuery):
        return expr.matchers
    if isinstance(expr, ast.RangeAgg):
        return expr.query.matchers
    if isinstance(expr, ast.VectorAgg | ast.LabelReplace):
        return _selector(expr.expr)
    if isinstance(expr, ast.BinOp):
        return _selector(expr.left) or _selector(expr.right)
    return ()


def _where(ctx: ApiContext, request: HTTPConnection, matchers: tuple[ast.Matcher, ...], start: int, end: int) -> str:
    where = q.where_sql(ast.LogQuery(matchers), _tenant_where(ctx, request), start, end, filters=[])
    return where


def _tenant_where(ctx: ApiContext, conn: HTTPConnection) -> str:
    return f"Tenant = {literal(tenant_of_headers(conn.headers, ctx.tenant))}"


# -- answers --------------------------------------------------------------------------------------


def _fmt(v: float) -> str:
    """A sample value as Loki writes it (Go's FormatFloat 'f', -1)."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return np.format_float_positional(v, trim="-")


def _t(ns: int) -> float | int:
    s = round(ns / 1e9, 3)
    return int(s) if s == int(s) else s


def streams_of(lines: pipe.Lines, backward: bool, categorize: bool) -> list[dict[str, Any]]:
    """Loki streams: lines grouped by label set, each stream's values [ns string, line(, metadata)]."""
    df = lines.df
    if df.height == 0:
        return []
    labels = lines.labels
    stream_names = [n for n in labels if lines.kinds.get(n) == pipe.STREAM] if categorize else labels
    extra = [n for n in labels if n not in stream_names]
    df = df.with_columns(pipe.series_key(lines, stream_names).alias("@key"))
    df = df.sort(pipe.TS, descending=backward, maintain_order=True)
    out = []
    for (key,), group in df.group_by("@key", maintain_order=True):
        ts = [str(t) for t in group.get_column(pipe.TS).to_list()]
        text = group.get_column(pipe.LINE).to_list()
        if categorize and extra:
            metas = group.select(extra).to_dicts()
            values: list[list[Any]] = []
            for t, line, m in zip(ts, text, metas, strict=True):
                entry: dict[str, dict[str, str]] = {}
                for k, v in m.items():
                    if v is not None:
                        kind = "structuredMetadata" if lines.kinds.get(k) == pipe.METADATA else "parsed"
                        entry.setdefault(kind, {})[k] = v
                values.append([t, line, entry] if entry else [t, line])
        else:
            values = [[t, line] for t, line in zip(ts, text, strict=True)]
        out.append({"stream": pipe.key_labels(str(key)), "values": values})
    return out


def _matrix(series: list[Series], times: np.ndarray) -> list[dict[str, Any]]:
    out = []
    for s in sorted(series, key=lambda s: sorted(s.labels.items())):
        idx = np.flatnonzero(~np.isnan(s.values))
        out.append({"metric": s.labels, "values": [[_t(int(times[i])), _fmt(float(s.values[i]))] for i in idx]})
    return out


def _vector(series: list[Series], t: int) -> list[dict[str, Any]]:
    return [{"metric": s.labels, "value": [_t(t), _fmt(float(s.values[0]))]} for s in series
            if not math.isnan(s.values[0])]


def _success(result_type: str, result: Any, engine: Engine, returned: int, extra: dict[str, Any] | None = None
             ) -> dict[str, Any]:
    data: dict[str, Any] = {"resultType": result_type, "result": result, "stats": engine.stats.summary(returned)}
    if extra:
        data.update(extra)
    answer: dict[str, Any] = {"status": "success", "data": data}
    if engine.stats.warnings:
        answer["warnings"] = engine.stats.warnings
    return answer


def _categorize(request: HTTPConnection) -> bool:
    flags = request.headers.get(CATEGORIZE_HEADER, "")
    return "categorize-labels" in [f.strip() for f in flags.split(",")]


def routes(ctx: ApiContext) -> list[BaseRoute]:
    async def run_query(request: Request, expr: ast.Expr, start: int, end: int, step: int | None, limit: int,
                        backward: bool, instant: bool) -> dict[str, Any]:
        engine = Engine(ctx.rows, _tenant_where(ctx, request))
        if isinstance(expr, ast.LogQuery):
            if instant:
                raise BadRequest("log queries are not supported as an instant query type, please change your "
                                 "query to a range query type")
            if expr.unwrap is not None:
                raise BadRequest("| unwrap belongs in a metric query such as sum_over_time({...} | unwrap x [5m])")
            categorize = _categorize(request)
            lines = await engine.lines(expr, start, end, limit, backward)
            result = streams_of(lines, backward, categorize)
            extra = {"encodingFlags": ["categorize-labels"]} if categorize else None
            return _success("streams", result, engine, lines.df.height, extra)
        times = np.array([end], dtype=np.int64) if instant else step_times(start, end, step or 1)
        value = await engine.evaluate(expr, times)
        if isinstance(value, Scalar):
            if instant:
                return _success("scalar", [_t(end), _fmt(float(value.values[0]))], engine, 1)
            value = [Series({}, value.values)]
        if instant:
            return _success("vector", _vector(value, end), engine, len(value))
        return _success("matrix", _matrix(value, times), engine, len(value))

    async def query_range(request: Request, params: Params) -> Any:
        expr = _query(params)
        assert expr is not None
        start, end = _range(params)
        raw_step = params.get("step", "")
        if raw_step:
            step = _duration(raw_step, "step")
        else:  # Loki's default: a 250th of the range, at least a second
            step = max(1, (end - start) // 10**9 // 250) * 10**9
        return await run_query(request, expr, start, end, step, _limit(params), _backward(params), False)

    async def query(request: Request, params: Params) -> Any:
        expr = _query(params)
        assert expr is not None
        t = _time(params, "time", time.time_ns())
        return await run_query(request, expr, t, t, None, _limit(params), _backward(params), True)

    async def labels(request: Request, params: Params) -> Any:
        start, end = _range(params)
        where = _where(ctx, request, _selector(_query(params, required=False)), start, end) if params.get(
            "query") else _plain_where(ctx, request, start, end)
        rows = await ctx.rows(
            "SELECT groupUniqArrayArray(100000)(mapKeys(ResourceAttributes)) AS keys, max(ServiceName != '') AS svc, "
            "max(Source != '') AS src, max(SeverityText != '' OR SeverityNumber > 0) AS lvl "
            f"FROM {q.TABLE} WHERE {where}")
        names: set[str] = set()
        if rows and rows[0].get("keys") is not None:
            r = rows[0]
            names = {k.replace(".", "_") for k in r["keys"]}
            names |= {n for n, flag in (("service_name", r["svc"]), ("source", r["src"]), ("level", r["lvl"]))
                      if int(flag)}
        return {"status": "success", "data": sorted(names)}

    async def label_values(request: Request, params: Params) -> Any:
        name = request.path_params["name"]
        if not q.LABEL_NAME_RE.fullmatch(name):
            raise BadRequest(f"invalid label name {shown(name)}")
        start, end = _range(params)
        expr = _query(params, required=False)
        where = _where(ctx, request, _selector(expr), start, end) if expr else _plain_where(ctx, request, start, end)
        rows = await ctx.rows(f"SELECT DISTINCT {q.label_sql(name)} AS v FROM {q.TABLE} WHERE {where} AND v != '' "
                              f"ORDER BY v LIMIT {MAX_LABEL_VALUES}")
        return {"status": "success", "data": [r["v"] for r in rows]}

    async def series(request: Request, params: Params) -> Any:
        start, end = _range(params)
        matches = params.getlist("match[]") or params.getlist("match")
        if not matches:
            raise BadRequest("at least one match[] selector is required, e.g. match[]={service_name=\"api\"}")
        found: dict[str, dict[str, str]] = {}
        for text in matches:
            expr = parse(text)
            if not isinstance(expr, ast.LogQuery):
                raise BadRequest(f"match[] must be a stream selector, got {shown(text)}")
            rows = await ctx.rows(f"SELECT DISTINCT {q.LABELS_SQL} AS labels FROM {q.TABLE} "
                                  f"WHERE {_where(ctx, request, expr.matchers, start, end)} LIMIT {MAX_SERIES}")
            for r in rows:
                found[orjson.dumps(r["labels"], option=orjson.OPT_SORT_KEYS).decode()] = r["labels"]
        return {"status": "success", "data": list(found.values())}

    async def index_stats(request: Request, params: Params) -> Any:
        start, end = _range(params)
        where = _where(ctx, request, _selector(_query(params)), start, end)
        rows = await ctx.rows(f"SELECT uniqExact({q.LABELS_SQL}) AS streams, uniqExact(_part) AS chunks, "
                              f"count() AS entries, sum(length(Body)) AS bytes FROM {q.TABLE} WHERE {where}")
        r = rows[0] if rows else {}
        return {k: int(r.get(k) or 0) for k in ("streams", "chunks", "entries", "bytes")}

    def _volume_keys(params: Params, expr: ast.Expr | None) -> tuple[str, ...]:
        target = [t.strip() for t in params.get("targetLabels", "").split(",") if t.strip()]
        for t in target:
            if not q.LABEL_NAME_RE.fullmatch(t):
                raise BadRequest(f"invalid label name {shown(t)} in targetLabels")
        return tuple(dict.fromkeys(target or [m.name for m in _selector(expr)]))

    async def volume(request: Request, params: Params) -> Any:
        start, end = _range(params)
        expr = _query(params)
        keys = _volume_keys(params, expr)
        limit = _limit(params)
        where = _where(ctx, request, _selector(expr), start, end)
        labels = "map(" + ", ".join(f"{literal(k)}, {q.label_sql(k)}" for k in keys) + ")" if keys else "map()"
        rows = await ctx.rows(f"SELECT {labels} AS labels, sum(length(Body)) AS bytes FROM {q.TABLE} WHERE {where} "
                              f"GROUP BY labels ORDER BY bytes DESC LIMIT {limit}")
        result = [{"metric": {k: v for k, v in r["labels"].items() if v}, "value": [_t(end), str(int(r["bytes"]))]}
                  for r in rows]
        return {"status": "success", "data": {"resultType": "vector", "result": result, "stats": {"summary": {}}}}

    async def volume_range(request: Request, params: Params) -> Any:
        start, end = _range(params)
        expr = _query(params)
        keys = _volume_keys(params, expr)
        raw_step = params.get("step", "")
        step = _duration(raw_step, "step") if raw_step else max(1, (end - start) // 10**9 // 250) * 10**9
        times = step_times(start, end, step)
        where = _where(ctx, request, _selector(expr), start, end)
        labels = "map(" + ", ".join(f"{literal(k)}, {q.label_sql(k)}" for k in keys) + ")" if keys else "map()"
        bucket = f"intDiv(toUnixTimestamp64Nano(Timestamp) - {start}, {step})"
        rows = await ctx.rows(f"SELECT {labels} AS labels, {bucket} AS k, sum(length(Body)) AS bytes FROM {q.TABLE} "
                              f"WHERE {where} GROUP BY labels, k")
        by: dict[str, Series] = {}
        for r in rows:
            lab = {k: v for k, v in r["labels"].items() if v}
            s = by.setdefault(orjson.dumps(lab, option=orjson.OPT_SORT_KEYS).decode(),
                              Series(lab, np.full(len(times), np.nan)))
            k = int(r["k"])
            if 0 <= k < len(times):
                s.values[k] = np.nan_to_num(s.values[k]) + int(r["bytes"])
        return {"status": "success", "data": {"resultType": "matrix", "result": _matrix(list(by.values()), times),
                                              "stats": {"summary": {}}}}

    async def detected_fields(request: Request, params: Params) -> Any:
        expr = _query(params)
        if not isinstance(expr, ast.LogQuery):
            raise BadRequest("detected_fields needs a log query such as {service_name=\"api\"}")
        start, end = _range(params)
        raw = params.get("line_limit", "")
        if raw and not (raw.isascii() and raw.isdigit() and len(raw) <= 12 and int(raw) > 0):
            raise BadRequest(f"invalid line_limit: {shown(raw)} is not a positive whole number")
        line_limit = int(raw) if raw else 1000
        engine = Engine(ctx.rows, _tenant_where(ctx, request))
        lines = await engine.lines(expr, start, end, min(line_limit, MAX_LIMIT), True)
        return {"fields": detect_fields(lines), "limit": 1000}

    async def detected_labels(request: Request, params: Params) -> Any:
        start, end = _range(params)
        expr = _query(params, required=False)
        where = _where(ctx, request, _selector(expr), start, end) if expr else _plain_where(ctx, request, start, end)
        rows = await ctx.rows(f"SELECT kv.1 AS label, uniqExact(kv.2) AS cardinality FROM {q.TABLE} "
                              f"ARRAY JOIN CAST({q.LABELS_SQL}, 'Array(Tuple(String, String))') AS kv "
                              f"WHERE {where} GROUP BY label ORDER BY label")
        return {"detectedLabels": [{"label": r["label"], "cardinality": int(r["cardinality"])} for r in rows]}

    async def buildinfo(_: Request, __: Params) -> Any:
        return {"version": BUILD_VERSION, "revision": "ferry", "branch": "ferry", "buildUser": "ferry",
                "buildDate": "", "goVersion": ""}

    async def ready(_: Request, __: Params) -> Any:
        return PlainTextResponse("ready")

    tails = [0]  # open tail sockets: each polls the store every TAIL_POLL_S on the API's query pool

    async def tail(ws: WebSocket) -> None:
        if tails[0] >= MAX_TAILS:
            # As Loki's max_concurrent_tail_requests: more tails would take every query turn the API has.
            metrics.api_requests.labels("loki_tail", "busy").inc()
            await ws.accept()  # so that the client reads why
            await ws.close(code=1013, reason=f"more than {MAX_TAILS} tails are open; try again later")
            return
        tails[0] += 1
        try:
            await _tail(ws)
        finally:
            tails[0] -= 1

    async def _tail(ws: WebSocket) -> None:
        await ws.accept()
        params: Params = ImmutableMultiDict(list(ws.query_params.multi_items()))
        try:
            expr = _query(params)
            if not isinstance(expr, ast.LogQuery):
                raise BadRequest("tail needs a log query such as {service_name=\"api\"}")
            limit = _limit(params)
            cursor = _time(params, "start", time.time_ns() - 3600 * 10**9)
        except FerryError as e:
            await ws.close(code=1008, reason=str(e)[:120])
            return
        metrics.api_requests.labels("loki_tail", "ok").inc()
        pushed, rest = q.pushed_filters(expr)
        tenant = _tenant_where(ctx, ws)
        closed = asyncio.create_task(_wait_closed(ws))
        try:
            while not closed.done():
                where = q.where_sql(expr, tenant, 0, 2**63 - 1, filters=pushed)
                rows = await ctx.rows(f"SELECT {q.TAIL_COLUMNS} FROM {q.TABLE} WHERE {where} AND IngestTime > "
                                      f"fromUnixTimestamp64Nano({cursor}) ORDER BY IngestTime ASC, Timestamp ASC "
                                      f"LIMIT {limit}")
                if rows:
                    cursor = max(int(r["ingest_ns"]) for r in rows)
                    lines = pipe.run(pipe.from_rows(rows), rest)
                    found = streams_of(lines, False, False)
                    if found:
                        await ws.send_text(orjson.dumps({"streams": found, "dropped_entries": None}).decode())
                await asyncio.wait([closed], timeout=TAIL_POLL_S)
        except (WebSocketDisconnect, RuntimeError):
            pass
        except FerryError as e:
            await _close(ws, 1011, str(e)[:120])
        finally:
            closed.cancel()

    get_post = ["GET", "POST"]
    return [
        Route(f"{PREFIX}/query", _guard("query", query), methods=get_post),
        Route(f"{PREFIX}/query_range", _guard("query_range", query_range), methods=get_post),
        Route(f"{PREFIX}/labels", _guard("labels", labels), methods=get_post),
        Route(f"{PREFIX}/label", _guard("labels", labels), methods=get_post),
        Route(f"{PREFIX}/label/{{name}}/values", _guard("label_values", label_values), methods=get_post),
        Route(f"{PREFIX}/series", _guard("series", series), methods=get_post),
        Route(f"{PREFIX}/index/stats", _guard("index_stats", index_stats), methods=get_post),
        Route(f"{PREFIX}/index/volume", _guard("volume", volume), methods=get_post),
        Route(f"{PREFIX}/index/volume_range", _guard("volume_range", volume_range), methods=get_post),
        Route(f"{PREFIX}/detected_fields", _guard("detected_fields", detected_fields), methods=get_post),
        Route(f"{PREFIX}/detected_labels", _guard("detected_labels", detected_labels), methods=get_post),
        Route(f"{PREFIX}/status/buildinfo", _guard("buildinfo", buildinfo)),
        Route("/loki/ready", _guard("ready", ready)),
        Route("/ready", _guard("ready", ready)),
        WebSocketRoute(f"{PREFIX}/tail", tail),
    ]


def _plain_where(ctx: ApiContext, conn: HTTPConnection, start: int, end: int) -> str:
    return (f"{_tenant_where(ctx, conn)} AND Timestamp >= fromUnixTimestamp64Nano({int(start)}) "
            f"AND Timestamp < fromUnixTimestamp64Nano({int(end)})")


async def _wait_closed(ws: WebSocket) -> None:
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    try:
        await ws.close(code=code, reason=reason)
    except RuntimeError:
        pass


# -- detected fields ------------------------------------------------------------------------------

_INT = re.compile(r"-?\d+")
_FLOAT = re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?")


def _type_of(values: list[str]) -> str:
    def every(test: Callable[[str], bool]) -> bool:
        return all(test(v) for v in values)

    def is_duration(v: str) -> bool:
        try:
            parse_duration_ns(v)
            return True
        except ValueError:
            return False

    def is_bytes(v: str) -> bool:
        try:
            parse_bytes(v)
            return True
        except ValueError:
            return False

    if not values:
        return "string"
    if every(lambda v: v in ("true", "false")):
        return "boolean"
    if every(lambda v: _INT.fullmatch(v) is not None):
        return "int"
    if every(lambda v: _FLOAT.fullmatch(v) is not None):
        return "float"
    if every(is_duration):
        return "duration"
    if every(is_bytes):
        return "bytes"
    return "string"


def detect_fields(lines: pipe.Lines) -> list[dict[str, Any]]:
    """Fields of the lines that are not stream labels: structured metadata, and what | json or | logfmt
    would extract (each with the parsers that find it), with a type and a distinct-value count."""
    found: dict[str, tuple[set[str], list[str]]] = {}
    for name in lines.labels:
        if lines.kinds.get(name) == pipe.METADATA:
            values = lines.df.get_column(name).drop_nulls().unique().to_list()
            found[name] = (set(), values)
    if lines.df.height:
        base = pipe.Lines(lines.df.select(pipe.TS, pipe.LINE), {})
        json_like = lines.df.get_column(pipe.LINE).str.strip_chars_start().str.starts_with("{")
        for parser, subset in (("json", json_like), ("logfmt", ~json_like)):
            part = pipe.Lines(base.df.filter(subset), {})
            if part.df.height == 0:
                continue
            parsed = pipe.run(part, [ast.Parser(parser)])  # type: ignore[arg-type]
            for name in parsed.labels:
                if name.startswith("__"):
                    continue
                col = parsed.df.get_column(name).drop_nulls()
                if col.len() == 0:
                    continue
                parsers, values = found.setdefault(name, (set(), []))
                parsers.add(parser)
                values.extend(col.unique().to_list())
    out = []
    for name, (parsers, values) in sorted(found.items()):
        distinct = list(dict.fromkeys(values))
        field: dict[str, Any] = {"label": name, "type": _type_of(distinct), "cardinality": len(distinct),
                                 "parsers": sorted(parsers) or None}
        if "json" in parsers:
            field["jsonPath"] = [name]
        out.append(field)
    return out

