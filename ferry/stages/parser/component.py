"""The parser stage as the runtime builds it, for one instance of `pipeline.stages`; settings in config.py.

Built by ferry.registry in a parser-role process and run by runtime/runner.py.
"""

from __future__ import annotations

import os
from pathlib import Path

from ferry.registry import Context
from ferry.stages.contract import Stage
from ferry.stages.instance import Routed
from ferry.telemetry import events, metrics


def build(cfg: Routed, ctx: Context) -> Stage:
    from ferry.stages.parser.stage import ParserStage

    # `ferry run` puts the config file's folder here (cli/main.py): relative paths in transforms start there.
    config_dir = Path(os.environ.get("FERRY_CONFIG_DIR") or Path.cwd())
    stage = ParserStage(ctx.instance, cfg, ctx.config.pipeline, config_dir)
    metrics.processed.labels(ctx.instance)
    for r in cfg.routes:
        metrics.route_records.labels(ctx.instance, r.name)
    return stage  # type: ignore[return-value]


def declare_metrics() -> None:
    for kind in ("parser", "router"):
        events.declare("retried", kind, reasons=("unavailable",))
        events.declare("quarantined", kind)
        events.declare("routed", kind)
        events.declare("sampled_out", kind, reasons=("filter", "sample"))
