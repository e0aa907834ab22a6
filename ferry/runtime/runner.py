"""Runs any stage: fetch from its topics' durable consumers, call it, publish, then acknowledge.

Input is acknowledged only after every output is durable (on the bus or in the store), so a crash
at any point means redelivery, never loss; batch ids make the redelivery harmless downstream.
Every batch in hand (being processed, or fetched ahead) is kept alive with in-progress acks, so the
bus's short ack_wait redelivers only what a dead process or a lost cluster node held.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from pathlib import Path

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from ferry.bus import codec
from ferry.bus.client import IN_PROGRESS_EVERY_S, server_max_payload
from ferry.bus.publish import publish
from ferry.bus.topics import Topic, inputs_of
from ferry.errors import RetryableError
from ferry.runtime.stage import Stage
from ferry.telemetry import metrics

log = logging.getLogger("ferry.runner")

# A batch that has failed this many deliveries with a non-retryable error is set aside on disk
# (quarantine) instead of blocking its topic forever.
_MAX_POISON_DELIVERIES = 5
# Most bytes one pull asks for (see _fetch_size).
_FETCH_BYTES = 16 * 1024 * 1024


class StageRunner:
    def __init__(self, stage: Stage, js: JetStreamContext, data_dir: Path) -> None:
        self.stage = stage
        self.js = js
        self.quarantine_dir = data_dir / "quarantine"
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.idle = True
        # Until batches are seen, assume large ones so that the first fetch is small: as large as
        # the server lets a message be (a stock cluster allows 1 MiB, ferry's own server 8 MiB).
        self._rows_per_msg = 50_000.0
        nc = getattr(js, "_nc", None)
        largest = server_max_payload(nc) if nc is not None else _FETCH_BYTES
        self._bytes_per_msg = float(min(_FETCH_BYTES / 4, largest))
        # Delivered and not yet acknowledged or nak'd (by id(): Msg is not hashable).
        self._held: dict[int, Msg] = {}
        self._keepalive: asyncio.Task[None] | None = None
        # Whether the last gather held drained_min_rows: then this one is a burst's remainder.
        self._in_burst = False

    async def start(self) -> None:
        for topic in inputs_of(self.stage.group):
            sub = await self.js.pull_subscribe_bind(durable=self.stage.group, stream=topic.stream)
            self._tasks.append(asyncio.create_task(self._loop(topic, sub), name=f"{self.stage.group}:{topic.name}"))
        self._keepalive = asyncio.create_task(self._keep_alive(), name=f"{self.stage.group}:in-progress")

    async def stop(self, drain_s: float = 5.0) -> None:
        """Finish the batch in hand, then stop fetching."""
        self._stopping.set()
        done, pending = await asyncio.wait(self._tasks, timeout=drain_s) if self._tasks else (set(), set())
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if self._keepalive is not None:
            self._keepalive.cancel()
            await asyncio.gather(self._keepalive, return_exceptions=True)
        await self.stage.close()

    async def _keep_alive(self) -> None:
        """Tell the bus, every IN_PROGRESS_EVERY_S, that each batch in hand is still being worked on.

        Without it a batch is redelivered after ack_wait (a few seconds) however healthy its
        consumer: an insert retried with backoff, or a batch fetched ahead of a slow one, takes longer.
        """
        while True:
            await asyncio.sleep(IN_PROGRESS_EVERY_S)
            for m in list(self._held.values()):
                try:
                    await m.in_progress()
                except Exception as e:  # bus unavailable: at worst the batch is redelivered (deduplicated)
                    log.debug("in-progress ack failed: %r", e)
                    break

    def _fetch_size(self, msgs: int, rows: int) -> int:
        """How many messages to ask for next: enough to reach max_rows, never more than _FETCH_BYTES.

        nats-py cannot cap a pull by bytes, and a server drops a client whose unread data passes
        its max_pending (64 MB by default): 256 batches of 5,000 rows did, and stalled the writer
        until ack_wait. So the count is sized from the batches seen so far.
        """
        policy = self.stage.fetch
        by_rows = (policy.max_rows - rows) / max(self._rows_per_msg, 1.0)
        by_bytes = _FETCH_BYTES / max(self._bytes_per_msg, 1.0)
        return max(1, min(policy.max_msgs - msgs, 256, math.ceil(by_rows), int(by_bytes)))

    async def _gather(self, sub: object) -> list[Msg]:
        policy = self.stage.fetch
        msgs: list[Msg] = []
        rows = 0
        started = time.monotonic()
        deadline = started + policy.max_wait_s
        # Once the topic has nothing more waiting, the call goes out drained_wait_s after the
        # gather began instead: a fetch asking for more than is there blocks until its timeout.
        drained_deadline = started + (policy.drained_wait_s if policy.drained_wait_s is not None else policy.max_wait_s)
        drained = False
        first_wait = 1.0
        while len(msgs) < policy.max_msgs and rows < policy.max_rows and not self._stopping.is_set():
            # A small gather right after a large one is the end of a burst and goes out once the
            # topic is drained too (it waited out max_wait_s, ~1 s, at the end of every burst); a
            # trickle has no large gather, so it still makes one call per max_wait_s.
            early = drained and (rows >= policy.drained_min_rows or self._in_burst)
            remaining = (min(deadline, drained_deadline) if early else deadline) - time.monotonic() if msgs else first_wait
            if remaining <= 0:
                break
            try:
                got = await sub.fetch(batch=self._fetch_size(len(msgs), rows), timeout=max(remaining, 0.01))  # type: ignore[attr-defined]
            except (TimeoutError, nats.errors.TimeoutError):
                if msgs:
                    break
                continue
            except nats.errors.ConnectionClosedError:
                await asyncio.sleep(0.5)
                continue
            for m in got:
                msgs.append(m)
                self._held[id(m)] = m
                n = int((m.headers or {}).get("Ferry-Rows", "0") or 0)
                rows += n
                # Moving averages: batch sizes change with load, so recent ones count most.
                self._rows_per_msg += (n - self._rows_per_msg) / 16
                self._bytes_per_msg += (len(m.data) - self._bytes_per_msg) / 16
            if msgs and not got:
                break
            if got:
                drained = got[-1].metadata.num_pending == 0
        if msgs:
            self._in_burst = rows >= policy.drained_min_rows
        return msgs

    async def _loop(self, topic: Topic, sub: object) -> None:
        backoff = 0.25
        # The next input is fetched while the current one is processed: a fetch waits on the bus
        # (measured: the writer sat idle a third of the time between inserts without this).
        ahead = asyncio.create_task(self._gather(sub))
        try:
            while not self._stopping.is_set():
                try:
                    msgs = await ahead
                except Exception as e:  # bus hiccup around a server restart
                    log.warning("%s: fetch from %s failed: %r", self.stage.group, topic.name, e)
                    await asyncio.sleep(0.5)
                    msgs = None
                ahead = asyncio.create_task(self._gather(sub))
                if msgs is not None:
                    backoff = await self._handle(topic, msgs, backoff)
        finally:
            # Whatever was fetched ahead goes back to the bus now rather than after ack_wait.
            if not ahead.done():
                ahead.cancel()
            left = await asyncio.gather(ahead, return_exceptions=True)
            if isinstance(left[0], list):
                await self._nak(left[0], 0)

    async def _handle(self, topic: Topic, msgs: list[Msg], backoff: float) -> float:
        """Process one fetched input; returns the backoff for the next failure."""
        if not msgs:
            self.idle = True
            return backoff
        self.idle = len(msgs) < self.stage.fetch.max_msgs
        batches, good = self._decode(topic, msgs)
        if len(good) < len(msgs):
            # The undecodable are in quarantine now, whatever becomes of the rest: done with them
            # (kept in hand, they would be kept alive with in-progress acks forever).
            kept = {id(m) for m in good}
            for m in msgs:
                if id(m) not in kept:
                    self._held.pop(id(m), None)
                    await m.ack()
        try:
            outputs = await self.stage.process(topic.name, batches) if batches else []
            # All outputs in flight at once: each publish waits for the bus to fsync, and waiting
            # for them one by one left the stage idle. A partial failure republishes them all;
            # batch ids make the repeats harmless.
            sent = await asyncio.gather(*(publish(self.js, o.topic, o.batch) for o in outputs), return_exceptions=True)
            failed = next((r for r in sent if isinstance(r, BaseException)), None)
            if failed is not None:
                raise failed
        except RetryableError as e:
            metrics.retried.labels(self.stage.group, "unavailable").inc()
            log.warning("%s: %s; will retry in %.1fs", self.stage.group, e, backoff)
            await self._nak(good, backoff)
            return min(backoff * 2, 10.0)
        except Exception as e:
            log.exception("%s: batch from %s failed", self.stage.group, topic.name)
            await self._poison(topic, good, e)
            return backoff
        for m in good:
            # Let go first: a batch whose ack fails must be redelivered after ack_wait, not kept alive.
            self._held.pop(id(m), None)
            await m.ack()
        return 0.25

    def _decode(self, topic: Topic, msgs: list[Msg]) -> tuple[list[codec.Batch], list[Msg]]:
        batches, good = [], []
        for m in msgs:
            try:
                meta = m.metadata
                batches.append(codec.from_message(m.data, m.headers, meta.num_delivered > 1, meta.timestamp.timestamp()))
                good.append(m)
            except Exception as e:
                self._quarantine(topic, m, f"undecodable batch: {e!r}")
        return batches, good

    async def _nak(self, msgs: list[Msg], delay: float) -> None:
        for m in msgs:
            self._held.pop(id(m), None)
            try:
                await m.nak(delay=delay)
            except Exception:  # redelivered after ack_wait anyway
                pass
        await asyncio.sleep(delay)

    async def _poison(self, topic: Topic, msgs: list[Msg], err: Exception) -> None:
        for m in msgs:
            self._held.pop(id(m), None)
            if m.metadata.num_delivered >= _MAX_POISON_DELIVERIES:
                self._quarantine(topic, m, repr(err))
                await m.ack()
            else:
                await m.nak(delay=1.0)

    def _quarantine(self, topic: Topic, m: Msg, why: str) -> None:
        d = self.quarantine_dir / topic.name
        d.mkdir(parents=True, exist_ok=True)
        bid = (m.headers or {}).get("Nats-Msg-Id") or f"seq{m.metadata.sequence.stream}"
        (d / f"{bid}.arrows").write_bytes(m.data)
        (d / f"{bid}.why").write_text(why + "\n" + repr(m.headers) + "\n")
        rows = int((m.headers or {}).get("Ferry-Rows", "0") or 0)
        metrics.dropped.labels(self.stage.group, "quarantined").inc(rows)
        log.error("%s: quarantined batch %s from %s (%d rows): %s", self.stage.group, bid, topic.name, rows, why)
