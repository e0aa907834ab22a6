"""Tells receivers when to refuse: the data disk is nearly full, the bus is near its size limit or
the writers lag too far.

Checked in the background every 0.5 s (disk free space, JetStream consumer and stream state), so
the request path only reads a field.
"""

from __future__ import annotations

import asyncio
import logging

from ferry.bus import Bus
from ferry.bus.probe import probe
from ferry.bus.topics import topics
from ferry.config.model import FerryConfig
from ferry.errors import Backpressure, DiskFull
from ferry.host.disk import check_free
from ferry.telemetry import metrics

log = logging.getLogger("ferry.backpressure")


class BackpressureMonitor:
    def __init__(self, js: Bus, cfg: FerryConfig) -> None:
        self.js = js
        self.cfg = cfg
        self.reason: str | None = None
        self.disk_full: DiskFull | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def check(self) -> None:
        """Raise Backpressure (DiskFull for the disk) if ferry is over a bound right now."""
        if self.disk_full is not None:
            raise self.disk_full
        if self.reason is not None:
            raise Backpressure(self.reason, self.cfg.backpressure.retry_after_s)

    def start(self) -> None:
        # Two loops: a bus in trouble (a full disk among the causes) may answer its probes slowly,
        # and must not hold up the disk check, nor the resuming once space is back.
        self._tasks = [asyncio.create_task(self._watch_disk()), asyncio.create_task(self._watch_bus())]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()

    async def _watch_disk(self) -> None:
        bp = self.cfg.backpressure
        # The floor guards the disk the private bus writes to (the data directory's). With bus.url
        # the bus's disk is the cluster's, and this host's may hold nothing of ferry's at all.
        floor = bp.min_free_disk_bytes if self.cfg.bus.url is None else 0
        while True:
            try:
                check_free(self.cfg.data_dir, floor, bp.retry_after_s)
                if self.disk_full is not None:
                    log.warning("disk space is back above backpressure.min_free_disk_bytes; taking data again")
                self.disk_full = None
            except DiskFull as e:
                if self.disk_full is None:
                    log.error("refusing data: %s", e)
                self.disk_full = e
            metrics.refusing.labels("disk_full").set(self.disk_full is not None)
            await asyncio.sleep(0.5)

    async def _watch_bus(self) -> None:
        while True:
            try:
                self.reason = await self._measure()
            except Exception as e:  # bus restarting: publishes will fail and say so themselves
                log.debug("backpressure probe failed: %r", e)
            metrics.refusing.labels("backpressure").set(self.reason is not None)
            await asyncio.sleep(0.5)

    async def _measure(self) -> str | None:
        limit = self.cfg.backpressure.max_pending_batches
        max_bytes = self.cfg.bus.max_bytes_per_topic
        for state in await probe(self.js, list(topics(self.cfg).values())):
            if state.bytes >= 0.9 * max_bytes:
                return f"topic {state.topic} is {state.bytes} bytes, over 90% of its limit"
            for group, pending in state.lag.items():
                if pending > limit:
                    return f"{group} is {pending} batches behind on {state.topic}"
        return None
