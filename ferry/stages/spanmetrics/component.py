"""The spanmetrics stage as the runtime builds it, for one instance of `pipeline.stages`; settings in config.py.

Built by ferry.registry in a parser-role process and run by runtime/runner.py.
"""

from __future__ import annotations

from ferry.registry import Context
from ferry.stages.contract import Stage
from ferry.stages.spanmetrics.config import SpanMetricsConfig
from ferry.telemetry import events

COMPONENT = "spanmetrics"


def build(cfg: SpanMetricsConfig, ctx: Context) -> Stage:
    from ferry.stages.spanmetrics.stage import SpanMetricsStage

    return SpanMetricsStage(ctx.instance, cfg)  # type: ignore[return-value]


def declare_metrics() -> None:
    events.declare("received", COMPONENT, ("traces",))
    events.declare("dropped", COMPONENT, ("traces",), ("size_limit",))
    events.declare("retried", COMPONENT, reasons=("unavailable",))
    events.declare("quarantined", COMPONENT)
