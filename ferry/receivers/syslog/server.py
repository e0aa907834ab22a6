"""Syslog receiver (default 5514, UDP and TCP): frames lines and ships them raw to the syslog topic.

Parsing happens in the parser stage. Lines are batched (N lines or T seconds); while a batch cannot
be made durable, TCP connections stop being read (the sender blocks) and UDP datagrams are shed
and counted — UDP is the one place ferry may drop, and never silently.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque

import numpy as np
import pyarrow as pa
from nats.js import JetStreamContext

from ferry.bus import codec
from ferry.bus.publish import publish
from ferry.bus.topics import SYSLOG
from ferry.config.model import FerryConfig
from ferry.errors import DiskFull, FerryError
from ferry.receivers.backpressure import BackpressureMonitor
from ferry.receivers.syslog.framing import StreamFramer, split_datagram
from ferry.runtime.sockets import host_port, listening
from ferry.schema import RAW_LINES
from ferry.telemetry import metrics

log = logging.getLogger("ferry.syslog")

_TS = pa.timestamp("ns", tz="UTC")


def _to_strings(lines: list[bytes]) -> pa.Array:
    arr = pa.array(lines, pa.binary())
    try:
        return arr.cast(pa.string())
    except pa.ArrowInvalid:
        # Rare: some line is not UTF-8. Keep it, with replacement characters, rather than lose it.
        return pa.array([b.decode("utf-8", "replace") for b in lines], pa.string())


def _repeat(values: list[str], counts: np.ndarray) -> pa.Array:
    """values[i] repeated counts[i] times, as one string array."""
    distinct = list(dict.fromkeys(values))
    where = {v: i for i, v in enumerate(distinct)}
    index = np.repeat(np.fromiter((where[v] for v in values), np.int32, len(values)), counts)
    return pa.array(distinct, pa.string()).take(pa.array(index))


class LineBatcher:
    """Collects lines from every connection and publishes them as RAW_LINES batches.

    Reading and publishing overlap: up to `_IN_FLIGHT` batches are being made durable while
    connections keep being read. Connections pause only when the backlog passes a high watermark
    (or the bus refuses), and every paused connection resumes once the backlog is back under the
    low watermark — so memory is bounded and no connection is left paused.
    """

    _IN_FLIGHT = 3

    def __init__(self, js: JetStreamContext, cfg: FerryConfig, monitor: BackpressureMonitor) -> None:
        self.js, self.cfg, self.monitor = js, cfg, monitor
        sc = cfg.receivers.syslog
        self.max_lines = sc.batch_lines
        self.high = 4 * sc.batch_lines
        self.low = sc.batch_lines
        self.wait_s = sc.batch_wait_s
        self._lines: list[bytes] = []
        # (line count, peer, transport, received ns) per add(): the per-line columns are built with
        # numpy at flush time, not appended line by line (that was a quarter of the receive path).
        self._runs: deque[tuple[int, str, str, int]] = deque()
        self._flush_lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None
        self.blocked = asyncio.Event()  # set while the bus refuses our batches
        # Why lines are held back: UDP datagrams that arrive while too many lines are held are
        # dropped and counted under this reason.
        self.held_because = "overload"
        self._paused: set[asyncio.Transport] = set()
        self._task: asyncio.Task[None] | None = None

    def add(self, lines: list[bytes], peer: str, transport: str) -> None:
        self._lines.extend(lines)
        self._runs.append((len(lines), peer, transport, time.time_ns()))
        if len(self._lines) >= self.max_lines:
            self.kick()

    def over_high_water(self) -> bool:
        return self.blocked.is_set() or len(self._lines) >= self.high

    def pause(self, transport: asyncio.Transport) -> None:
        transport.pause_reading()
        self._paused.add(transport)

    def kick(self) -> None:
        """Start a flush unless one is running (it will pick up whatever arrived meanwhile)."""
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self.flush())

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.wait_s)
            self.kick()

    def _table(self, total: int) -> pa.Table:
        """The first `total` pending lines as one RAW_LINES table (nothing is removed)."""
        runs: list[tuple[int, str, str, int]] = []
        left = total
        for n, peer, transport, at in self._runs:
            runs.append((min(n, left), peer, transport, at))
            left -= runs[-1][0]
            if not left:
                break
        counts = np.fromiter((r[0] for r in runs), np.int64, len(runs))
        times = np.repeat(np.fromiter((r[3] for r in runs), np.int64, len(runs)), counts)
        return pa.Table.from_arrays(
            [
                pa.array(times).cast(_TS),
                _repeat([r[1] for r in runs], counts),
                _repeat([r[2] for r in runs], counts),
                _to_strings(self._lines[:total]),
            ],
            schema=RAW_LINES,
        )

    def _drop(self, total: int) -> None:
        del self._lines[:total]
        while total:
            n, peer, transport, at = self._runs[0]
            if n > total:
                self._runs[0] = (n - total, peer, transport, at)
                break
            self._runs.popleft()
            total -= n

    async def _publish(self, batch: codec.Batch) -> None:
        self.monitor.check()
        await publish(self.js, SYSLOG, batch)

    async def flush(self) -> None:
        async with self._flush_lock:
            while self._lines:
                total = min(len(self._lines), self.max_lines * self._IN_FLIGHT)
                bounds = [(i, min(i + self.max_lines, total)) for i in range(0, total, self.max_lines)]
                table = self._table(total)
                batches = [codec.Batch(table.slice(a, b - a), "logs", "raw_lines", "syslog", self.cfg.tenant) for a, b in bounds]
                while True:
                    results = await asyncio.gather(*(self._publish(b) for b in batches), return_exceptions=True)
                    failed = [b for b, r in zip(batches, results, strict=True) if isinstance(r, BaseException)]
                    if not failed:
                        break
                    err = next(r for r in results if isinstance(r, BaseException))
                    if not isinstance(err, FerryError):
                        raise err
                    # Keep the lines (a batch id retried is stored once) and stop reading TCP.
                    if not self.blocked.is_set():
                        log.warning("syslog: cannot ship %d lines (%s); pausing TCP reads", total, err)
                    self.blocked.set()
                    self.held_because = "disk_full" if isinstance(err, DiskFull) else "overload"
                    metrics.retried.labels("syslog", "backpressure").inc()
                    batches = failed
                    await asyncio.sleep(0.5)
                metrics.received.labels("logs", "syslog").inc(total)
                self._drop(total)
                if len(self._lines) < self.low:
                    self.blocked.clear()
                    self._resume_all()
                if len(self._lines) < self.max_lines:
                    break  # a partial batch waits for the timer, so batches stay full under load
            self.blocked.clear()
            self._resume_all()

    def _resume_all(self) -> None:
        for t in list(self._paused):
            if not t.is_closing():
                t.resume_reading()
        self._paused.clear()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        async with self._flush_lock:
            pass
        while self._lines:  # each flush ships everything pending, partial batch included
            await self.flush()


class _TcpProtocol(asyncio.Protocol):
    def __init__(self, batcher: LineBatcher, max_message: int) -> None:
        self.batcher = batcher
        self.framer = StreamFramer(max_message)
        self.peer = ""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = host_port(host, port)

    def data_received(self, data: bytes) -> None:
        before = self.framer.truncated
        lines = self.framer.feed(data)
        if self.framer.truncated > before:
            metrics.dropped.labels("syslog", "truncated").inc(self.framer.truncated - before)
        if lines:
            self.batcher.add(lines, self.peer, "tcp")
        if self.batcher.over_high_water() and self.transport is not None:
            self.batcher.pause(self.transport)
            self.batcher.kick()

    def connection_lost(self, exc: Exception | None) -> None:
        rest = self.framer.flush()
        if rest:
            self.batcher.add(rest, self.peer, "tcp")


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, batcher: LineBatcher) -> None:
        self.batcher = batcher

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        lines = split_datagram(data)
        if self.batcher.over_high_water():
            metrics.dropped.labels("syslog_udp", self.batcher.held_because).inc(len(lines))
            return
        self.batcher.add(lines, host_port(addr[0], addr[1]), "udp")


async def start(js: JetStreamContext, cfg: FerryConfig, monitor: BackpressureMonitor) -> tuple[LineBatcher, list[object]]:
    sc = cfg.receivers.syslog
    batcher = LineBatcher(js, cfg, monitor)
    batcher.start()
    loop = asyncio.get_running_loop()
    tcp_sock = listening(socket.SOCK_STREAM, cfg.listen, sc.tcp_port)
    tcp = await loop.create_server(lambda: _TcpProtocol(batcher, sc.max_message_bytes), sock=tcp_sock, backlog=512)
    udp_sock = listening(socket.SOCK_DGRAM, cfg.listen, sc.udp_port, rcvbuf=8 * 1024 * 1024)
    udp, _ = await loop.create_datagram_endpoint(lambda: _UdpProtocol(batcher), sock=udp_sock)
    return batcher, [tcp, udp]
