"""The parser stage as the runtime builds it; settings in config.py.

Built by ferry.registry in a parser process and run by runtime/runner.py.
"""

from __future__ import annotations

from ferry.registry import Context
from ferry.stages.contract import Stage
from ferry.stages.parser.config import ParserConfig
from ferry.telemetry import events, metrics


def build(cfg: ParserConfig, ctx: Context) -> Stage:
    from ferry.stages.parser.stage import ParserStage

    return ParserStage()  # type: ignore[return-value]


def declare_metrics() -> None:
    metrics.processed.labels("parser")
    events.declare("retried", "parser", reasons=("unavailable",))
    events.declare("quarantined", "parser")
