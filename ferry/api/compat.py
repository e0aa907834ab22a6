"""The ecosystem's query APIs on ferry's API port, each where Grafana's built-in data source looks:
Prometheus under /prometheus, Loki under /loki, Tempo under /tempo, Jaeger under /jaeger.
"""

from __future__ import annotations

import importlib

from starlette.routing import BaseRoute

from ferry.api.context import ApiContext

# Each module has `routes(ctx: ApiContext) -> list[BaseRoute]` with full paths (/prometheus/api/v1/query).
MODULES = ("ferry.api.prometheus", "ferry.api.loki", "ferry.api.tempo", "ferry.api.jaeger")


def compat_routes(ctx: ApiContext) -> list[BaseRoute]:
    out: list[BaseRoute] = []
    for name in MODULES:
        out.extend(importlib.import_module(name).routes(ctx))
    return out
