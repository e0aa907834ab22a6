"""The writer stage: bulk-inserts *_commit batches into their store tables, exactly once.

An insert that keeps failing after retries with backoff goes to the spool, so the topic keeps
moving and the batch is resubmitted later; nothing is acknowledged before it is durable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

from ferry.bus import codec
from ferry.bus.topics import WRITER
from ferry.config.model import WriterConfig
from ferry.errors import RetryableError
from ferry.runtime.stage import FetchPolicy, Output
from ferry.stages.writer.spool import Spool
from ferry.store.chdb_store import ChdbStore
from ferry.telemetry import metrics

log = logging.getLogger("ferry.writer")

_VERIFY_AFTER_START_S = 120.0


class WriterStage:
    group = WRITER

    def __init__(self, cfg: WriterConfig, store: ChdbStore, spool: Spool) -> None:
        self.cfg = cfg
        self.store = store
        self.spool = spool
        self.fetch = FetchPolicy(max_msgs=2000, max_rows=cfg.max_rows, max_wait_s=cfg.max_wait_s)
        self.started = time.monotonic()

    async def process(self, topic: str, batches: list[codec.Batch]) -> list[Output]:
        by_table: dict[str, list[codec.Batch]] = defaultdict(list)
        for b in batches:
            by_table[b.target].append(b)
        for table, group in by_table.items():
            await self._write(table, group)
        return []

    async def _write(self, table: str, group: list[codec.Batch]) -> None:
        delay = self.cfg.backoff_s
        for attempt in range(1, self.cfg.retries + 1):
            t0 = time.perf_counter()
            try:
                # Just after a (re)start the bus may lack delivery counts from before a crash:
                # check every batch against the data table too, not only the ledger.
                verify = time.monotonic() - self.started < _VERIFY_AFTER_START_S
                rows, skipped = await asyncio.to_thread(self.store.write_batches, table, group, verify=verify)
            except RetryableError as e:
                metrics.retried.labels("writer", "store_unavailable").inc()
                log.warning("insert into %s failed (attempt %d/%d): %s", table, attempt, self.cfg.retries, e)
                if attempt < self.cfg.retries:
                    await asyncio.sleep(delay)
                    delay *= 2
                continue
            metrics.insert_seconds.labels(table).observe(time.perf_counter() - t0)
            metrics.written.labels(table).inc(rows)
            if skipped:
                metrics.deduplicated.labels(table).inc(skipped)
            return
        # Retries exhausted: park the batches on disk so the topic keeps flowing.
        for b in group:
            self.spool.put(table, b)
        log.error("store refused %d batches for %s; spooled to %s", len(group), table, self.spool.root)

    async def close(self) -> None:
        return None
