"""Runs any stage: fetch from its topics' durable consumers, call it, publish, then acknowledge.

Input is acknowledged only after every output is durable (on the bus or in the store), so a crash
at any point means redelivery, never loss; batch ids make the redelivery harmless downstream.
Every batch in hand (being processed, fetched ahead, or held by the stage past one call) is kept
alive with in-progress acks, so the bus's short ack_wait redelivers only what a dead process or a
lost cluster node held.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ferry.bus import Bus, codec
from ferry.bus.client import IN_PROGRESS_EVERY_S, server_max_payload
from ferry.bus.consume import Consumer, Message
from ferry.bus.publish import publish
from ferry.bus.topics import Topic
from ferry.errors import ConfigError, RetryableError
from ferry.stages.contract import Output, Result, Stage
from ferry.telemetry import events

log = logging.getLogger("ferry.runner")

# A batch that has failed this many deliveries with a non-retryable error is set aside on disk
# (quarantine) instead of blocking its topic forever.
_MAX_POISON_DELIVERIES = 5
# Most bytes one pull asks for (see _fetch_size).
_FETCH_BYTES = 16 * 1024 * 1024
# Longest wait before input that failed for a retryable reason is redelivered.
_MAX_BACKOFF_S = 10.0


class StageRunner:
    """`inputs` are the topics the stage's consumer group reads (config `pipeline.stages.NAME.inputs`);
    `buses` are the other buses (by name) that the stage's outputs may name (Output.bus)."""

    def __init__(self, stage: Stage, js: Bus, data_dir: Path, inputs: Sequence[Topic],
                 buses: Mapping[str, Bus] | None = None) -> None:
        self.stage = stage
        self.inputs = list(inputs)
        # Self-metrics label a component by its kind (bounded); the instance name is its consumer group.
        self.component = stage.kind
        self.js = js
        self.buses = dict(buses or {})
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
        # Delivered and not yet acknowledged or nak'd: kept alive by _keep_alive.
        self._held: set[Message] = set()
        # The part of _held the stage holds past its process() call, by batch id, until release().
        self._deferred: dict[str, Message] = {}
        self._keepalive: asyncio.Task[None] | None = None
        # Whether the last gather held drained_min_rows: then this one is a burst's remainder.
        self._in_burst = False

    async def start(self) -> None:
        bind = getattr(self.stage, "bind", None)
        if bind is not None:
            bind(self)
        for topic in self.inputs:
            consumer = await Consumer.bind(self.js, self.stage.group, topic)
            self._tasks.append(asyncio.create_task(self._loop(topic, consumer), name=f"{self.stage.group}:{topic.name}"))
        self._keepalive = asyncio.create_task(self._keep_alive(), name=f"{self.stage.group}:in-progress")

    async def stop(self, drain_s: float = 5.0) -> None:
        """Finish the batch in hand, then stop fetching; the stage may release what it holds in close()."""
        self._stopping.set()
        done, pending = await asyncio.wait(self._tasks, timeout=drain_s) if self._tasks else (set(), set())
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        await self.stage.close()
        # Still held: handed back now, so another runner gets them at once rather than after ack_wait.
        left = list(self._deferred.values())
        self._deferred.clear()
        await self._nak(left, 0)
        if self._keepalive is not None:
            self._keepalive.cancel()
            await asyncio.gather(self._keepalive, return_exceptions=True)

    @property
    def held_ids(self) -> set[str]:
        """Batch ids the stage holds (returned in a Result.hold and not yet released)."""
        return set(self._deferred)

    async def release(self, batch_ids: Iterable[str], outputs: Sequence[Output] = ()) -> None:
        """StageContext.release: publish `outputs`, then acknowledge the held inputs `batch_ids`."""
        await self._publish(outputs)
        await self._ack([m for bid in batch_ids if (m := self._deferred.pop(bid, None)) is not None])

    async def _keep_alive(self) -> None:
        """Tell the bus, every IN_PROGRESS_EVERY_S, that each batch in hand is still being worked on.

        Without it a batch is redelivered after ack_wait (a few seconds) however healthy its
        consumer: an insert retried with backoff, a batch fetched ahead of a slow one, or one a
        stage holds for a decision window takes longer.
        """
        while True:
            await asyncio.sleep(IN_PROGRESS_EVERY_S)
            for m in list(self._held):
                try:
                    await m.in_progress()
                except RetryableError as e:  # bus unavailable: at worst the batch is redelivered (deduplicated)
                    log.debug("%s", e)
                    break

    def _fetch_size(self, msgs: int, rows: int) -> int:
        """How many messages to ask for next: enough to reach max_rows, never more than _FETCH_BYTES.

        A pull cannot be capped by bytes, and a server drops a client whose unread data passes
        its max_pending (64 MB by default): 256 batches of 5,000 rows did, and stalled the writer
        until ack_wait. So the count is sized from the batches seen so far.
        """
        policy = self.stage.fetch
        by_rows = (policy.max_rows - rows) / max(self._rows_per_msg, 1.0)
        by_bytes = _FETCH_BYTES / max(self._bytes_per_msg, 1.0)
        return max(1, min(policy.max_msgs - msgs, 256, math.ceil(by_rows), int(by_bytes)))

    async def _gather(self, consumer: Consumer) -> list[Message]:
        policy = self.stage.fetch
        msgs: list[Message] = []
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
                got = await consumer.fetch(self._fetch_size(len(msgs), rows), remaining)
            except RetryableError as e:  # the bus restarting or unreachable: what is in hand goes on
                log.debug("%s: %s", self.stage.group, e)
                if msgs:
                    break
                await asyncio.sleep(0.5)
                continue
            if not got:
                if msgs:
                    break
                continue
            for m in got:
                msgs.append(m)
                self._held.add(m)
                n = m.rows
                rows += n
                # Moving averages: batch sizes change with load, so recent ones count most.
                self._rows_per_msg += (n - self._rows_per_msg) / 16
                self._bytes_per_msg += (len(m.data) - self._bytes_per_msg) / 16
            drained = got[-1].num_pending == 0
        if msgs:
            self._in_burst = rows >= policy.drained_min_rows
        return msgs

    async def _loop(self, topic: Topic, consumer: Consumer) -> None:
        backoff = 0.25
        # The next input is fetched while the current one is processed: a fetch waits on the bus
        # (measured: the writer sat idle a third of the time between inserts without this).
        ahead = asyncio.create_task(self._gather(consumer))
        try:
            while not self._stopping.is_set():
                try:
                    msgs = await ahead
                except Exception as e:  # not a bus outage (those are retried inside _gather): say so
                    log.warning("%s: fetch from %s failed: %r", self.stage.group, topic.name, e)
                    await asyncio.sleep(0.5)
                    msgs = None
                ahead = asyncio.create_task(self._gather(consumer))
                if msgs is not None:
                    backoff = await self._handle(topic, msgs, backoff)
        finally:
            # Whatever was fetched ahead goes back to the bus now rather than after ack_wait.
            if not ahead.done():
                ahead.cancel()
            left = await asyncio.gather(ahead, return_exceptions=True)
            if isinstance(left[0], list):
                await self._nak(left[0], 0)

    async def _handle(self, topic: Topic, msgs: list[Message], backoff: float) -> float:
        """Process one fetched input; returns the backoff for the next failure."""
        if not msgs:
            self.idle = True
            return backoff
        self.idle = len(msgs) < self.stage.fetch.max_msgs
        batches, good = self._decode(topic, msgs)
        if len(good) < len(msgs):
            # The undecodable are in quarantine now, whatever becomes of the rest: done with them
            # (kept in hand, they would be kept alive with in-progress acks forever).
            kept = set(good)
            await self._ack([m for m in msgs if m not in kept])
        # Inputs the stage keeps past this call: from here on only release() acknowledges them,
        # and a failure below does not hand them back (the stage has them in its state).
        held: set[Message] = set()
        try:
            result = await self.stage.process(topic.name, batches) if batches else []
            if isinstance(result, Result):
                outputs = result.outputs
                for b, m in zip(batches, good, strict=True):
                    if b.batch_id in result.hold:
                        self._deferred[b.batch_id] = m
                        held.add(m)
            else:
                outputs = result
            await self._publish(outputs)
        except RetryableError as e:
            events.retried(self.component, topic.signal, "unavailable",
                           detail=f"{topic.name}: {e}; next in {backoff:.1f} s")
            await self._nak([m for m in good if m not in held], backoff)
            return min(backoff * 2, _MAX_BACKOFF_S)
        except Exception as e:
            log.exception("%s: batch from %s failed", self.stage.group, topic.name)
            await self._poison(topic, [m for m in good if m not in held], e)
            return backoff
        await self._ack([m for m in good if m not in held])
        return 0.25

    async def _publish(self, outputs: Sequence[Output]) -> None:
        """Make every output durable on its bus, or raise the first failure.

        All are in flight at once: each publish waits for its bus to fsync, and waiting for them one
        by one left the stage idle. A partial failure republishes them all; batch ids make the
        repeats harmless.
        """
        sent = await asyncio.gather(*(publish(self._bus(o), o.topic, o.batch) for o in outputs), return_exceptions=True)
        failed = next((r for r in sent if isinstance(r, BaseException)), None)
        if failed is not None:
            raise failed

    def _bus(self, o: Output) -> Bus:
        if o.bus is None:
            return self.js
        try:
            return self.buses[o.bus]
        except KeyError:
            raise ConfigError(f"{self.stage.group}: an output names bus {o.bus!r}, which this stage was not given") from None

    async def _ack(self, msgs: Iterable[Message]) -> None:
        for m in msgs:
            # Let go first: a batch whose ack fails must be redelivered after ack_wait, not kept alive.
            self._held.discard(m)
            try:
                await m.ack()
            except RetryableError as e:  # redelivered after ack_wait, then deduplicated by its batch id
                log.debug("%s: %s", self.stage.group, e)

    def _decode(self, topic: Topic, msgs: list[Message]) -> tuple[list[codec.Batch], list[Message]]:
        batches, good = [], []
        for m in msgs:
            try:
                batches.append(codec.from_message(m.data, m.headers, m.num_delivered > 1, m.published.timestamp()))
                good.append(m)
            except Exception as e:
                self._quarantine(topic, m, "undecodable", f"undecodable batch: {e!r}")
        return batches, good

    async def _nak(self, msgs: list[Message], delay: float) -> None:
        for m in msgs:
            self._held.discard(m)
            await m.nak(delay)  # best effort: an unsent nak is a redelivery after ack_wait
        await asyncio.sleep(delay)

    async def _poison(self, topic: Topic, msgs: list[Message], err: Exception) -> None:
        for m in msgs:
            if m.num_delivered >= _MAX_POISON_DELIVERIES:
                self._quarantine(topic, m, "failed", repr(err))
                await self._ack([m])
            else:
                self._held.discard(m)
                await m.nak(1.0)

    def _quarantine(self, topic: Topic, m: Message, reason: str, why: str) -> None:
        d = self.quarantine_dir / topic.name
        d.mkdir(parents=True, exist_ok=True)
        bid = m.batch_id
        (d / f"{bid}.arrows").write_bytes(m.data)
        (d / f"{bid}.why").write_text(why + "\n" + repr(m.headers) + "\n")
        events.quarantined(self.component, topic.signal, reason, m.rows,
                           detail=f"batch {bid} from {topic.name}, in {d}: {why}")
