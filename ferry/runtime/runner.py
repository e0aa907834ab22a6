"""Runs any stage: fetch from its topics' durable consumers, call it, publish, then acknowledge.

Input is acknowledged only after every output is durable (on the bus or in the store), so a crash
at any point means redelivery, never loss; batch ids make the redelivery harmless downstream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from ferry.bus import codec
from ferry.bus.publish import publish
from ferry.bus.topics import Topic, inputs_of
from ferry.errors import RetryableError
from ferry.runtime.stage import Stage
from ferry.telemetry import metrics

log = logging.getLogger("ferry.runner")

# A batch that has failed this many deliveries with a non-retryable error is set aside on disk
# (quarantine) instead of blocking its topic forever.
_MAX_POISON_DELIVERIES = 5


class StageRunner:
    def __init__(self, stage: Stage, js: JetStreamContext, data_dir: Path) -> None:
        self.stage = stage
        self.js = js
        self.quarantine_dir = data_dir / "quarantine"
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.idle = True

    async def start(self) -> None:
        for topic in inputs_of(self.stage.group):
            sub = await self.js.pull_subscribe_bind(durable=self.stage.group, stream=topic.stream)
            self._tasks.append(asyncio.create_task(self._loop(topic, sub), name=f"{self.stage.group}:{topic.name}"))

    async def stop(self, drain_s: float = 5.0) -> None:
        """Finish the batch in hand, then stop fetching."""
        self._stopping.set()
        done, pending = await asyncio.wait(self._tasks, timeout=drain_s) if self._tasks else (set(), set())
        for t in pending:
            t.cancel()
        await self.stage.close()

    async def _gather(self, sub: object) -> list[Msg]:
        policy = self.stage.fetch
        msgs: list[Msg] = []
        rows = 0
        deadline = time.monotonic() + policy.max_wait_s
        first_wait = 1.0
        while len(msgs) < policy.max_msgs and rows < policy.max_rows and not self._stopping.is_set():
            remaining = deadline - time.monotonic() if msgs else first_wait
            if remaining <= 0:
                break
            try:
                got = await sub.fetch(batch=min(policy.max_msgs - len(msgs), 256), timeout=max(remaining, 0.01))  # type: ignore[attr-defined]
            except (TimeoutError, nats.errors.TimeoutError):
                if msgs:
                    break
                continue
            except nats.errors.ConnectionClosedError:
                await asyncio.sleep(0.5)
                continue
            for m in got:
                msgs.append(m)
                rows += int((m.headers or {}).get("Ferry-Rows", "0") or 0)
            if msgs and not got:
                break
        return msgs

    async def _loop(self, topic: Topic, sub: object) -> None:
        backoff = 0.25
        while not self._stopping.is_set():
            try:
                msgs = await self._gather(sub)
            except Exception as e:  # bus hiccup around a server restart
                log.warning("%s: fetch from %s failed: %r", self.stage.group, topic.name, e)
                await asyncio.sleep(0.5)
                continue
            if not msgs:
                self.idle = True
                continue
            self.idle = len(msgs) < self.stage.fetch.max_msgs
            batches, good = self._decode(topic, msgs)
            try:
                outputs = await self.stage.process(topic.name, batches) if batches else []
                for out in outputs:
                    await publish(self.js, out.topic, out.batch)
            except RetryableError as e:
                metrics.retried.labels(self.stage.group, "unavailable").inc()
                log.warning("%s: %s; will retry in %.1fs", self.stage.group, e, backoff)
                await self._nak(good, backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            except Exception as e:
                log.exception("%s: batch from %s failed", self.stage.group, topic.name)
                await self._poison(topic, good, e)
                continue
            backoff = 0.25
            for m in msgs:
                await m.ack()

    def _decode(self, topic: Topic, msgs: list[Msg]) -> tuple[list[codec.Batch], list[Msg]]:
        batches, good = [], []
        for m in msgs:
            try:
                batches.append(codec.from_message(m.data, m.headers, m.metadata.num_delivered > 1))
                good.append(m)
            except Exception as e:
                self._quarantine(topic, m, f"undecodable batch: {e!r}")
        return batches, good

    async def _nak(self, msgs: list[Msg], delay: float) -> None:
        for m in msgs:
            try:
                await m.nak(delay=delay)
            except Exception:  # redelivered after ack_wait anyway
                pass
        await asyncio.sleep(delay)

    async def _poison(self, topic: Topic, msgs: list[Msg], err: Exception) -> None:
        for m in msgs:
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
