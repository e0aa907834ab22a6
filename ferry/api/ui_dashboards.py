"""The dashboards view's reads: the list of dashboards with the files that failed to load, and one
dashboard as JSON with its variables and built-ins substituted into each panel's query.

The folder is the shipped dashboards plus FERRY_DASHBOARDS_DIR, re-read at most every 2 s when asked.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ferry.api.context import ApiContext
from ferry.api.guard import guard
from ferry.dashboards.folder import Entry, Folder, folder_from_env
from ferry.dashboards.load import ALL, step_for, substitute
from ferry.dashboards.model import Dashboard
from ferry.errors import BadRequest
from ferry.query.timerange import parse_time

DEFAULT_RANGE_S = 3600


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status, media_type="application/json", headers={"Cache-Control": "no-cache"})


def _error(status: int, message: str) -> Response:
    return _json({"status": "error", "error": message}, status)


def _summary(e: Entry) -> dict[str, Any]:
    d = e.dashboard
    return {
        "name": e.name, "file": str(e.file), "error": e.error,
        "title": d.title if d else e.name, "description": d.description if d else "",
        "tags": d.tags if d else [], "panels": sum(len(r.panels) for r in d.rows) if d else 0,
        "served": d is not None,
    }


def chosen(dash: Dashboard, params: Any) -> dict[str, list[str]]:
    """Each variable's values: `var-NAME` from the request (repeatable; `$__all` for All), else its default."""
    out: dict[str, list[str]] = {}
    for v in dash.variables:
        given = [x for x in params.getlist(f"var-{v.name}") if x != ""]
        if not given:
            if v.default is not None:
                given = [v.default] if isinstance(v.default, str) else list(v.default)
            elif v.include_all:
                given = [ALL]
            elif v.values:
                given = [v.values[0]]
        if given:
            out[v.name] = given if v.multi else given[:1]
    return out


def resolved(name: str, dash: Dashboard, params: Any) -> dict[str, Any]:
    """The dashboard as the page draws it for a time range and variable values: each query's `expr`
    substituted (the file's text kept in `raw`), with the range and step the queries were made for."""
    try:
        end_ns = parse_time(params["end"]) if params.get("end") else time.time_ns()
        start_ns = parse_time(params["start"]) if params.get("start") else end_ns - DEFAULT_RANGE_S * 10**9
    except BadRequest as e:
        raise BadRequest(f"start/end: {e}") from None
    if start_ns >= end_ns:
        raise BadRequest("start must be before end")
    range_s = (end_ns - start_ns) / 1e9
    step_s = step_for(range_s)
    values = chosen(dash, params)
    body = dash.model_dump(by_alias=True)
    for row in body["rows"]:
        for panel in row["panels"]:
            q = panel["query"]
            q["raw"] = q["expr"]
            q["expr"] = substitute(q["expr"], values, range_s, step_s)
    for v, model in zip(body["variables"], dash.variables, strict=True):
        src = model.source()
        v["metric"], v["label_name"] = (src if src else (None, None))
        v["current"] = values.get(model.name, [])
    body.update(name=name, start_ns=start_ns, end_ns=end_ns, step_s=step_s)
    return body


def routes(ctx: ApiContext, folder: Folder | None = None) -> list[BaseRoute]:
    dashboards = folder or folder_from_env()
    dashboards.refresh()  # loaded at start: a broken shipped file is logged then

    async def listing(_: Request) -> Response:
        f = dashboards.fresh()
        return _json({"dashboards": [_summary(e) for e in f.listing()],
                      "errors": [{"name": e.name, "file": str(e.file), "error": e.error, "served": e.dashboard is not None}
                                 for e in f.errors()]})

    async def one(request: Request) -> Response:
        name = request.path_params["name"]
        entry = dashboards.fresh().get(name)
        if entry is None:
            return _error(404, f"no dashboard named {name!r} (the list is at /ui/dashboards)")
        if entry.dashboard is None:
            return _error(422, f"dashboard {name!r} cannot be shown: {entry.error}")
        try:
            body = resolved(name, entry.dashboard, request.query_params)
        except BadRequest as e:
            return _error(400, str(e))
        body["file"], body["error"] = str(entry.file), entry.error
        return _json(body)

    return [
        Route("/api/v1/ui/dashboards", guard("ui_dashboards", listing), methods=["GET"]),
        Route("/api/v1/ui/dashboards/{name}", guard("ui_dashboard", one), methods=["GET"]),
    ]
