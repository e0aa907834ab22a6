"""The ecosystem's query APIs on ferry's API port, each where Grafana's built-in data source looks
(Prometheus under /prometheus, Loki under /loki, Tempo under /tempo, Jaeger under /jaeger), and the web UI's reads.
"""

from __future__ import annotations

import importlib
import pkgutil

from starlette.routing import BaseRoute

import ferry.api
from ferry.api.context import ApiContext

# Each module has `routes(ctx: ApiContext) -> list[BaseRoute]` with full paths (/prometheus/api/v1/query).
MODULES = ("ferry.api.prometheus", "ferry.api.loki", "ferry.api.tempo", "ferry.api.jaeger")
# The web UI's own reads (ferry/ui): every `ferry/api/ui_<view>.py`, found by name.
UI_MODULES = tuple(sorted(f"ferry.api.{m.name}" for m in pkgutil.iter_modules(ferry.api.__path__)
                          if m.name.startswith("ui_")))


def compat_routes(ctx: ApiContext) -> list[BaseRoute]:
    out: list[BaseRoute] = []
    for name in (*MODULES, *UI_MODULES):
        out.extend(importlib.import_module(name).routes(ctx))
    return out
