"""Writing outside the bus (the store, later an exporter's peer): retry with capped backoff, then an
on-disk spool that a background task resubmits while fresh traffic keeps priority.

A stage that writes anywhere but the bus hands its batches to one `Sink`; the counters
(`ferry_retried_batches_total`, `ferry_spooled_batches_total`, `ferry_spool_resubmitted_batches_total`,
`ferry_spool_pending_batches`) are kept here, once, for every such stage.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from ferry.bus import codec
from ferry.errors import RetryableError
from ferry.telemetry import events, metrics

log = logging.getLogger("ferry.sink")

# `write(key, batches)`: make the batches durable at the destination `key` (a store table, a peer),
# raising RetryableError when it is unavailable. It counts what it wrote itself (rows, duplicates).
Write = Callable[[str, list[codec.Batch]], Awaitable[None]]


@dataclass(frozen=True)
class SinkPolicy:
    retries: int = 4  # attempts before the batches are spooled
    backoff_s: float = 0.25  # first retry delay; doubles each attempt ...
    # ... up to this: with many retries an uncapped delay grew to minutes while the topic stood still.
    backoff_max_s: float = 5.0
    spool_retry_s: float = 5.0  # how often the spool is tried again


class Spool:
    """Batches a destination kept refusing, one file each under `root/<key>/`.

    Files are written to a temp name, fsynced and renamed, so a crash never leaves half a batch.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        # inc, not set: a process may run several sinks, each with its own spool, on one gauge.
        metrics.spool_pending.inc(self.pending())

    def put(self, key: str, batch: codec.Batch) -> None:
        """Park one batch for `key` on disk (counting it as pending; the caller tells the spooled event)."""
        d = self.root / key
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
        metrics.spool_pending.inc()

    def pending(self) -> int:
        return sum(1 for _ in self.root.glob("*/*.spool"))

    def files(self) -> list[tuple[str, Path]]:
        """(key, path) of every spooled batch, oldest first."""
        return sorted(((p.parent.name, p) for p in self.root.glob("*/*.spool")), key=lambda x: x[1].stat().st_mtime)

    @staticmethod
    def read(key: str, path: Path) -> codec.Batch:
        raw = path.read_bytes()
        n = int.from_bytes(raw[:4], "big")
        meta = orjson.loads(raw[4 : 4 + n])
        if "Nats-Msg-Id" not in meta:  # spooled by ferry before its meta held the bus headers
            meta = {"Ferry-Signal": meta["signal"], "Ferry-Source": meta["source"], "Ferry-Tenant": meta["tenant"],
                    "Nats-Msg-Id": meta["batch_id"]}
        meta["Ferry-Table"] = key
        return codec.from_message(raw[4 + n :], meta, redelivered=True)

    def done(self, key: str, path: Path) -> None:
        path.unlink()
        metrics.spool_pending.dec()
        metrics.unspooled.labels(key).inc()


class Sink:
    """Retry, spool and resubmit around one `write`; `name` is the component its events count under,
    `reason` the retried reason of a failed write (events.py holds the allowed ones)."""

    def __init__(self, name: str, write: Write, spool: Spool, policy: SinkPolicy, reason: str = "unavailable") -> None:
        self.name = name
        self.write = write
        self.spool = spool
        self.policy = policy
        self.reason = reason
        events.declare("retried", name, reasons=(reason,))

    async def submit(self, key: str, batches: list[codec.Batch]) -> None:
        """Return once the batches are written or spooled: either way durable, so the input may be acked.

        Raises RetryableError only when the spool cannot take them either (most likely the same full
        disk): the input then stays on the bus and comes back, and what was spooled is deduplicated.
        """
        delay = self.policy.backoff_s
        for attempt in range(1, self.policy.retries + 1):
            try:
                await self.write(key, batches)
                return
            except RetryableError as e:
                # One retry of the whole write, counted under the signal of its first batch (a write
                # goes to one table, so all are the same).
                events.retried(self.name, batches[0].signal, self.reason,
                               detail=f"writing to {key} failed (attempt {attempt}/{self.policy.retries}): {e}")
                # A failed write may have landed in part: the batches now count as maybe seen before,
                # so the destination's dedupe checks them in full.
                for b in batches:
                    b.redelivered = True
                if attempt < self.policy.retries:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.policy.backoff_max_s)
        # Retries exhausted: park the batches on disk so the topic keeps flowing.
        try:
            for b in batches:
                self.spool.put(key, b)
        except OSError as e:
            raise RetryableError(f"{self.name}: {key} refused {len(batches)} batches and the spool cannot take them: {e}") from e
        events.spooled(self.name, key, len(batches), detail=f"{key} kept refusing; in {self.spool.root}")

    async def resubmit_forever(self, idle: Callable[[], bool]) -> None:
        """Retry spooled batches one at a time, every spool_retry_s, and only while `idle()` says the
        stage has no backlog: fresh traffic goes first, the spool fills the gaps."""
        while True:
            await asyncio.sleep(self.policy.spool_retry_s)
            await self.resubmit_once(idle)

    async def resubmit_once(self, idle: Callable[[], bool]) -> None:
        for key, path in self.spool.files():
            if not idle():
                return
            try:
                batch = Spool.read(key, path)
                await self.write(key, [batch])
            except RetryableError as e:
                log.info("%s: %s still refusing (%s); %d spooled batches wait", self.name, key, e, self.spool.pending())
                return
            except Exception:
                log.exception("%s: spooled batch %s is unreadable; left in place", self.name, path)
                continue
            self.spool.done(key, path)
