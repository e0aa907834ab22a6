"""The UI's routes: one HTML shell per view (the view's script fills it in) and the static assets.

The shell is the same for every view; what a view shows comes from ferry's API (and the PromQL API)
through the view's own script, so every page works offline from the installed package.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"


@dataclass(frozen=True)
class View:
    name: str  # its script is static/views/<name>.js, its stylesheet static/views/<name>.css if present
    path: str  # where it is served
    title: str
    nav: str | None  # its label in the top bar (None: reached by a link only, e.g. one trace)
    charts: bool = False  # needs uPlot


VIEWS: list[View] = [
    View("logs", "/", "Logs", "Logs", charts=True),
    View("traces", "/ui/traces", "Traces", "Traces", charts=True),
    View("trace", "/ui/traces/{trace_id}", "Trace", None),
    View("services", "/ui/services", "Services", "Services", charts=True),
    View("metrics", "/ui/metrics", "Metrics", "Metrics", charts=True),
    View("dashboards", "/ui/dashboards", "Dashboards", "Dashboards", charts=True),
    View("dashboard", "/ui/dashboards/{name}", "Dashboard", None, charts=True),
    View("status", "/ui/status", "Status", "Status"),
    View("target", "/ui/target", "Target", None, charts=True),  # a host or service: every signal in the window
]


def _shell(view: View) -> str:
    nav = "".join(
        f'<a href="{v.path}" data-view="{v.name}"{" aria-current=page" if v.name == view.name else ""}>{v.nav}</a>'
        for v in VIEWS if v.nav
    )
    css = f'<link rel="stylesheet" href="/ui/static/views/{view.name}.css">' if (STATIC / "views" / f"{view.name}.css").exists() else ""
    charts = ('<link rel="stylesheet" href="/ui/static/vendor/uPlot.min.css">'
              '<script src="/ui/static/vendor/uPlot.iife.min.js" defer></script>') if view.charts else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(view.title)} · ferry</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/ui/static/ferry.css">{css}{charts}
<script src="/ui/static/ferry.js" defer></script>
<script src="/ui/static/views/{view.name}.js" defer></script>
</head><body data-view="{view.name}">
<header class="top"><a class="brand" href="/">ferry</a><nav>{nav}</nav><span class="grow"></span><span class="tenant-picker" data-tenant-picker hidden></span><a class="api-link" href="/api">API</a></header>
<main id="view"><noscript>ferry's UI needs JavaScript; the API at /api works without it.</noscript></main>
</body></html>"""


def start_page() -> HTMLResponse:
    """The logs explorer, which the API serves at `/` to browsers (a JSON client gets the API index)."""
    return HTMLResponse(_shell(VIEWS[0]), headers={"Cache-Control": "no-cache"})


def routes() -> list[BaseRoute]:
    """Every view but the start page (`/`, see start_page), and the static assets."""
    out: list[BaseRoute] = []
    for view in VIEWS[1:]:
        page = _shell(view)

        async def serve(_: Request, page: str = page) -> Response:
            return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

        out.append(Route(view.path, serve, methods=["GET"], name=f"ui_{view.name}"))
    out.append(Mount("/ui/static", StaticFiles(directory=STATIC), name="ui_static"))
    return out
