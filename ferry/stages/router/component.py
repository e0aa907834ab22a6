"""The router stage as the runtime builds it: the parser's stage class with routes only.

Built by ferry.registry in a parser-role process and run by runtime/runner.py.
"""

from __future__ import annotations

from ferry.registry import Context
from ferry.stages.contract import Stage
from ferry.stages.parser import component as parser_component
from ferry.stages.router.config import RouterConfig


def build(cfg: RouterConfig, ctx: Context) -> Stage:
    return parser_component.build(cfg, ctx)


def declare_metrics() -> None:
    parser_component.declare_metrics()
