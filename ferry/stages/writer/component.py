"""The writer stage as the runtime builds it, per instance: inserts into ctx.store, spools under the data dir.

Built by ferry.registry in the store process and run by runtime/runner.py; settings in config.py.
"""

from __future__ import annotations

from ferry.registry import Context
from ferry.schema.tables import TABLE_NAMES
from ferry.stages.contract import Stage
from ferry.stages.writer.config import WriterConfig
from ferry.telemetry import events, metrics


def build(cfg: WriterConfig, ctx: Context) -> Stage:
    from ferry.stages.sink import Spool
    from ferry.stages.writer.stage import WriterStage

    assert ctx.store is not None, "the writer runs in the role that opens the store"
    # The shipped writer keeps the spool folder ferry always had; another instance gets its own.
    spool = ctx.data_dir / ("spool" if ctx.instance == "writer" else f"spool-{ctx.instance}")
    return WriterStage(ctx.instance, cfg, ctx.store, Spool(spool))  # type: ignore[return-value]


def declare_metrics() -> None:
    # The store's own upkeep (size cap, late index builds) runs beside the writer, the store
    # role's one stage, so its series are declared with it.
    events.declare("dropped", "store", reasons=("size_limit",))
    for t in TABLE_NAMES:
        metrics.written.labels(t)
        metrics.unspooled.labels(t)
        metrics.indexed_late.labels(t)
    events.declare("deduplicated", "writer", TABLE_NAMES)
    events.declare("spooled", "writer", TABLE_NAMES)
    events.declare("retried", "writer", reasons=("store_unavailable", "unavailable"))
    events.declare("quarantined", "writer")
