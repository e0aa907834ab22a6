"""The on-disk spool: batches the store kept refusing wait here, and a worker resubmits them later.

Files are written to a temp name, fsynced and renamed, so a crash never leaves half a batch.
Resubmission yields to fresh traffic: it only runs while the writer is idle.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

import orjson

from ferry.bus import codec
from ferry.errors import RetryableError
from ferry.store.chdb_store import ChdbStore
from ferry.telemetry import metrics

log = logging.getLogger("ferry.spool")


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        metrics.spool_pending.set(self.pending())

    def put(self, table: str, batch: codec.Batch) -> None:
        d = self.root / table
        d.mkdir(parents=True, exist_ok=True)
        # The meta is the batch's bus headers, so a spooled batch reads back like a bus message.
        meta = orjson.dumps(batch.headers())
        data = batch.payload()
        tmp = d / f".{batch.batch_id}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(len(meta).to_bytes(4, "big") + meta + data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, d / f"{batch.batch_id}.spool")
        except OSError:
            tmp.unlink(missing_ok=True)  # a full disk leaves no half-written file behind
            raise
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        metrics.spooled.labels(table).inc()
        metrics.spool_pending.inc()

    def pending(self) -> int:
        return sum(1 for _ in self.root.glob("*/*.spool"))

    def files(self) -> list[tuple[str, Path]]:
        return sorted(((p.parent.name, p) for p in self.root.glob("*/*.spool")), key=lambda x: x[1].stat().st_mtime)

    @staticmethod
    def read(table: str, path: Path) -> codec.Batch:
        raw = path.read_bytes()
        n = int.from_bytes(raw[:4], "big")
        meta = orjson.loads(raw[4 : 4 + n])
        if "Nats-Msg-Id" not in meta:  # spooled by ferry before its meta held the bus headers
            meta = {"Ferry-Signal": meta["signal"], "Ferry-Source": meta["source"], "Ferry-Tenant": meta["tenant"],
                    "Nats-Msg-Id": meta["batch_id"]}
        meta["Ferry-Table"] = table
        return codec.from_message(raw[4 + n :], meta, redelivered=True)


async def resubmit_forever(spool: Spool, store: ChdbStore, every_s: float, writer_idle: Callable[[], bool]) -> None:
    """Separate worker: retry spooled batches, one at a time, whenever the writer has no backlog."""
    while True:
        await asyncio.sleep(every_s)
        for table, path in spool.files():
            if not writer_idle():
                break
            try:
                batch = Spool.read(table, path)
                rows, skipped = await asyncio.to_thread(store.write_batches, table, [batch])
            except RetryableError as e:
                log.info("spool: store still refusing (%s); %d batches wait", e, spool.pending())
                break
            except Exception:
                log.exception("spool: %s is unreadable; left in place", path)
                continue
            path.unlink()
            metrics.spool_pending.dec()
            metrics.unspooled.labels(table).inc()
            metrics.written.labels(table).inc(rows)
            if skipped:
                metrics.deduplicated.labels(table).inc(skipped)
