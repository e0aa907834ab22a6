"""Prometheus' HTTP query API under /prometheus, where Grafana's Prometheus data source looks.

PromQL by ferry/query/promql over the store (ferry/query/prom_store.py); answers and errors in Prometheus' JSON.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson
import pyarrow as pa
from starlette.datastructures import MultiDict
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ferry.api.context import ApiContext
from ferry.api.guard import Failure, guard
from ferry.errors import BadRequest, QueryTimeout, QueryTooBig, RetryableError
from ferry.query.prom_store import PromStore, raw_answer_cap
from ferry.query.timerange import shown

if TYPE_CHECKING:
    from ferry.query.promql.source import Matcher

PREFIX = "/prometheus/api/v1"
log = logging.getLogger("ferry.api.prometheus")

# The Prometheus release whose API this one answers as: Grafana turns features on by version.
VERSION = "2.42.0"
MAX_POINTS = 11_000  # per series in a range query, as Prometheus
MAX_FORM_BYTES = 4 * 1024**2  # a POSTed query with thousands of match[] still fits
RETRY_AFTER_S = 5
# Prometheus' default start and end of /series, /labels and /label/<name>/values: all of time.
MIN_TIME_MS = 0
MAX_TIME_MS = 253_402_300_799_000  # 9999-12-31
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

# Prometheus' errorType -> HTTP status (web/api/v1 of 2.42).
_STATUS = {"bad_data": 400, "execution": 422, "timeout": 503, "canceled": 503, "unavailable": 503,
           "internal": 500, "not_found": 404}


def _answer(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status, headers=headers, media_type="application/json")


def _error_type(e: Exception) -> str:
    """Prometheus' errorType of a failed request."""
    error_type = getattr(e, "error_type", None)
    if isinstance(error_type, str) and error_type in _STATUS:
        return error_type
    if isinstance(e, BadRequest):
        return "bad_data"
    if isinstance(e, QueryTimeout):
        return "timeout"
    if isinstance(e, QueryTooBig):
        return "execution"
    if isinstance(e, RetryableError):
        return "unavailable"
    return "internal"


def _prometheus_error(f: Failure) -> Response:
    """Prometheus' error shape, with the status its errorType has in Prometheus 2.42."""
    error_type = _error_type(f.error)
    return _answer({"status": "error", "errorType": error_type, "error": f.message}, _STATUS[error_type], f.headers)


def _guard(handler: str, fn: Callable[[Request, MultiDict], Awaitable[Any]]) -> Callable[[Request], Awaitable[Response]]:
    """A handler answering `{"status":"success","data":...}` or Prometheus' error shape (api/guard.py)."""

    async def with_params(request: Request) -> Any:
        return {"status": "success", "data": await fn(request, await _params(request))}

    return guard(handler, with_params, _prometheus_error, _answer)


async def _params(request: Request) -> MultiDict:
    """Query string and, for a form POST (as Grafana sends), the form fields, as one multi-dict."""
    items = list(request.query_params.multi_items())
    if request.method == "POST":
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            raise BadRequest("a POST needs a form body (Content-Type: application/x-www-form-urlencoded)")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise BadRequest(f"the form body is larger than {MAX_FORM_BYTES} bytes")
        try:
            items += parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False)
        except (UnicodeDecodeError, ValueError) as e:
            raise BadRequest(f"the form body cannot be read: {e}") from None
    return MultiDict(items)


def _engine() -> Any:
    """The PromQL engine, imported on first use."""
    from ferry.query import promql

    return promql


def _time(params: MultiDict, name: str, default: int) -> int:
    raw = params.get(name, "")
    if raw == "":
        return default
    try:
        return int(_engine().parse_time_ms(raw))
    except BadRequest as e:
        raise BadRequest(f'invalid parameter "{name}": {e}') from None


def _duration(params: MultiDict, name: str) -> int | None:
    raw = params.get(name, "")
    if raw == "":
        return None
    try:
        return int(_engine().parse_duration_ms(raw))
    except BadRequest as e:
        raise BadRequest(f'invalid parameter "{name}": {e}') from None


def _limit(params: MultiDict) -> int | None:
    raw = params.get("limit", "")
    if raw == "":
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
        raise BadRequest(f'invalid parameter "limit": must be a whole number, got {shown(raw)}')
    return int(raw) or None  # 0 means no limit, as Prometheus reads it


def _selectors(params: MultiDict, required: bool) -> list[list[Matcher]]:
    raw = params.getlist("match[]")
    if required and not raw:
        raise BadRequest("no match[] parameter provided")
    out = []
    for text in raw:
        try:
            out.append(list(_engine().parse_selector(text)))
        except BadRequest as e:
            raise BadRequest(f'invalid parameter "match[]": {e}') from None
    return out


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def _within(coro: Awaitable[Any], params: MultiDict) -> Any:
    """Run `coro` under the request's `timeout` parameter, if it gave one (the API's own cap on
    each store read holds either way)."""
    timeout_ms = _duration(params, "timeout")
    if timeout_ms is None:
        return await coro
    try:
        return await asyncio.wait_for(coro, timeout_ms / 1000)
    except TimeoutError:
        raise QueryTimeout(f"query timed out in expression evaluation (timeout={timeout_ms / 1000:g}s)") from None


def routes(ctx: ApiContext) -> list[BaseRoute]:
    def store(request: Request) -> PromStore:
        return PromStore(ctx.rows, ctx.tenant_of(request), scope=ctx)

    async def evaluate(request: Request, params: MultiDict, run: Callable[[PromStore], Awaitable[Any]]) -> Any:
        """Run the engine and the rendering of its answer on a thread of its own, with its own event
        loop: their numpy work would otherwise hold this loop, and every other API request with it,
        for as long as they compute. Store reads come back to this loop, where the API's reader and
        its caps live."""
        loop = asyncio.get_running_loop()

        async def rows(sql: str) -> list[dict[str, Any]]:
            return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(ctx.rows(sql), loop))

        async def arrow(sql: str) -> pa.Table:
            assert ctx.arrow is not None
            cap = raw_answer_cap(ctx.limits.max_result_bytes)
            return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(ctx.arrow(sql, cap), loop))

        source = PromStore(rows, ctx.tenant_of(request), scope=ctx, arrow=arrow if ctx.arrow is not None else None)
        return await _within(asyncio.to_thread(asyncio.run, run(source)), params)

    async def query(request: Request, params: MultiDict) -> Any:
        q = params.get("query", "")
        if not q:
            raise BadRequest('invalid parameter "query": empty query')
        at = _time(params, "time", _now_ms())
        async def run(source: PromStore) -> Any:
            return (await _engine().instant_query(q, at, source)).to_json()

        return await evaluate(request, params, run)

    async def query_range(request: Request, params: MultiDict) -> Any:
        q = params.get("query", "")
        if not q:
            raise BadRequest('invalid parameter "query": empty query')
        for name in ("start", "end", "step"):
            if params.get(name, "") == "":
                raise BadRequest(f'invalid parameter "{name}": missing')
        start, end = _time(params, "start", 0), _time(params, "end", 0)
        step = _duration(params, "step") or 0
        if end < start:
            raise BadRequest('invalid parameter "end": end timestamp must not be before start time')
        if step <= 0:
            raise BadRequest('invalid parameter "step": zero or negative query resolution step widths are not '
                             "accepted. Try a positive integer")
        if (end - start) // step > MAX_POINTS:
            raise BadRequest("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query "
                             "resolution (?step=XX)")
        async def run(source: PromStore) -> Any:
            return (await _engine().range_query(q, start, end, step, source)).to_json()

        return await evaluate(request, params, run)

    def _span(params: MultiDict) -> tuple[int, int]:
        start, end = _time(params, "start", MIN_TIME_MS), _time(params, "end", MAX_TIME_MS)
        if end < start:
            raise BadRequest('invalid parameter "end": end timestamp must not be before start time')
        return start, end

    async def series(request: Request, params: MultiDict) -> Any:
        selectors = _selectors(params, required=True)
        start, end = _span(params)
        found = await _within(store(request).series_labels(selectors, start, end), params)
        found.sort(key=lambda labels: sorted(labels.items()))
        limit = _limit(params)
        return found[:limit] if limit else found

    async def labels(request: Request, params: MultiDict) -> Any:
        selectors = _selectors(params, required=False)
        start, end = _span(params)
        names = await _within(store(request).label_names(selectors, start, end), params)
        limit = _limit(params)
        return names[:limit] if limit else names

    async def label_values(request: Request, params: MultiDict) -> Any:
        name = request.path_params["name"]
        if name.startswith("U__"):  # Prometheus' escaping of names with other characters (3.x clients)
            raise BadRequest(f"invalid label name: {shown(name)}")
        if not _LABEL_NAME.match(name):
            raise BadRequest(f"invalid label name: {shown(name)}")
        selectors = _selectors(params, required=False)
        start, end = _span(params)
        values = await _within(store(request).label_values(name, selectors, start, end), params)
        limit = _limit(params)
        return values[:limit] if limit else values

    async def metadata(request: Request, params: MultiDict) -> Any:
        return await store(request).metadata(params.get("metric") or None, _limit(params))

    async def query_exemplars(request: Request, params: MultiDict) -> Any:
        q = params.get("query", "")
        if not q:
            raise BadRequest('invalid parameter "query": empty query')
        start, end = _span(params)
        selectors = [list(_engine().parse_selector(text)) for text in _selector_texts(q)]
        return await _within(store(request).exemplars(selectors, start, end), params)

    async def buildinfo(_: Request, __: MultiDict) -> Any:
        return {"version": VERSION, "revision": "ferry", "branch": "ferry", "buildUser": "ferry", "buildDate": "",
                "goVersion": "none (ferry answers as Prometheus 2.42 does)"}

    handlers: list[tuple[str, str, Callable[[Request, MultiDict], Awaitable[Any]], list[str]]] = [
        ("/query", "prom_query", query, ["GET", "POST"]),
        ("/query_range", "prom_query_range", query_range, ["GET", "POST"]),
        ("/series", "prom_series", series, ["GET", "POST"]),
        ("/labels", "prom_labels", labels, ["GET", "POST"]),
        ("/label/{name}/values", "prom_label_values", label_values, ["GET"]),
        ("/metadata", "prom_metadata", metadata, ["GET"]),
        ("/query_exemplars", "prom_query_exemplars", query_exemplars, ["GET", "POST"]),
        ("/status/buildinfo", "prom_buildinfo", buildinfo, ["GET"]),
    ]
    return [Route(PREFIX + path, _guard(name, fn), methods=methods) for path, name, fn, methods in handlers]


def _selector_texts(q: str) -> list[str]:
    """The vector selectors of a PromQL expression, as text (Prometheus' /query_exemplars reads the
    exemplars of every series any selector of the query names)."""
    import promql_parser

    try:
        root = promql_parser.parse(q)
    except (ValueError, RuntimeError) as e:
        raise BadRequest(f'invalid parameter "query": {e}') from None
    out: list[str] = []
    todo = [root]
    while todo:
        node = todo.pop()
        if type(node).__name__ == "VectorSelector":
            # The selector alone: its offset and @ modifiers do not change which series it names.
            text = str(node)
            out.append(re.split(r"\s+(?:offset|@)\s", text, maxsplit=1)[0])
            continue
        for attr in ("lhs", "rhs", "expr", "vector_selector", "param"):
            child = getattr(node, attr, None)
            if child is not None and not isinstance(child, str | int | float):
                todo.append(child)
        args = getattr(node, "args", None)
        if args is not None:
            todo.extend(args.args if hasattr(args, "args") else args)
    return out
