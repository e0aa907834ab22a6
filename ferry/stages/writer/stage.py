"""The writer stage: bulk-inserts *_commit batches into their store tables, exactly once.

Retries, the spool and resubmission are the Sink's (ferry/stages/sink.py): an insert that keeps
failing is spooled, so the topic keeps moving; nothing is acknowledged before it is durable.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

from ferry.bus import codec
from ferry.stages.contract import FetchPolicy, Output
from ferry.stages.sink import Sink, SinkPolicy, Spool
from ferry.stages.writer.config import WriterConfig
from ferry.store import Store
from ferry.telemetry import events, metrics

# How far the bus's clock may be ahead of ours: the same clock when embedded, NTP-close otherwise.
_CLOCK_SLACK_S = 2.0


class WriterStage:
    kind = "writer"

    def __init__(self, name: str, cfg: WriterConfig, store: Store, spool: Spool) -> None:
        self.group = name
        self.cfg = cfg
        self.store = store
        self.spool = spool
        policy = SinkPolicy(retries=cfg.retries, backoff_s=cfg.backoff_s, backoff_max_s=cfg.backoff_max_s,
                            spool_retry_s=cfg.spool_retry_s)
        self.sink = Sink("writer", self._insert, spool, policy, reason="store_unavailable")
        self.fetch = FetchPolicy(
            max_msgs=2000,
            max_rows=cfg.max_rows,
            max_wait_s=cfg.max_wait_s,
            drained_wait_s=cfg.drained_wait_s,
            drained_min_rows=cfg.max_rows // 10,
        )
        self.started = time.time()

    async def process(self, topic: str, batches: list[codec.Batch]) -> list[Output]:
        by_table: dict[str, list[codec.Batch]] = defaultdict(list)
        for b in batches:
            # A batch the bus held before this writer started may have been written by the one
            # before it, and a nats-server killed with it can forget the delivery count that
            # would say so: such batches are checked in the data table, not only the ledger.
            if b.published is None or b.published < self.started + _CLOCK_SLACK_S:
                b.redelivered = True
            # A writer with a table of its own (the SIEM writer) stores every batch there, whatever
            # table the parser chose; the ledger is per table, so the copy is not a duplicate.
            by_table[self.cfg.table or b.target].append(b)
        for table, group in by_table.items():
            await self.sink.submit(table, group)
        return []

    async def _insert(self, table: str, group: list[codec.Batch]) -> None:
        t0 = time.perf_counter()
        rows, skipped = await asyncio.to_thread(self.store.write_batches, table, group)
        metrics.insert_seconds.labels(table).observe(time.perf_counter() - t0)
        metrics.written.labels(table).inc(rows)
        if skipped:
            events.deduplicated(self.kind, table, skipped)

    async def close(self) -> None:
        return None
