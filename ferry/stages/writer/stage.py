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

# How far the bus's clock may be ahead of ours: the same clock when embedded, NTP-close otherwise.
_CLOCK_SLACK_S = 2.0


class WriterStage:
    group = WRITER

    def __init__(self, cfg: WriterConfig, store: ChdbStore, spool: Spool) -> None:
        self.cfg = cfg
        self.store = store
        self.spool = spool
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
            by_table[b.target].append(b)
        for table, group in by_table.items():
            await self._write(table, group)
        return []

    async def _write(self, table: str, group: list[codec.Batch]) -> None:
        delay = self.cfg.backoff_s
        for attempt in range(1, self.cfg.retries + 1):
            t0 = time.perf_counter()
            try:
                rows, skipped = await asyncio.to_thread(self.store.write_batches, table, group)
            except RetryableError as e:
                metrics.retried.labels("writer", "store_unavailable").inc()
                # A failed insert may have stored the rows but not their ledger entry.
                for b in group:
                    b.redelivered = True
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
        try:
            for b in group:
                self.spool.put(table, b)
        except OSError as e:
            # Most likely the same full disk that fails the store. The batches stay on the bus
            # (not acknowledged) and come back after a backoff; a spooled one is deduplicated then.
            raise RetryableError(f"store refused {len(group)} batches for {table} and the spool cannot take them: {e}") from e
        log.error("store refused %d batches for %s; spooled to %s", len(group), table, self.spool.root)

    async def close(self) -> None:
        return None
