"""Syslog receiver (default 5514, UDP and TCP): frames lines and ships them raw to the syslog topic.

Parsing happens in the parser stage. Lines are batched (N lines or T seconds); while a batch cannot
be made durable, TCP connections stop being read (the sender blocks) and UDP datagrams are shed
and counted — UDP is the one place ferry may drop, and never silently.

No sender can stop the receiver: a failure that is not the bus being unavailable (a bug, a line
the bus refuses) is retried a few times, then its lines are dropped and counted, never held for
ever; TCP connections are capped in number, idle time and unterminated bytes held; datagrams the
kernel dropped for want of buffer space are counted (SO_RXQ_OVFL, /proc/net/udp).
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import socket
import sys
import time
from collections import deque

import numpy as np
import pyarrow as pa

from ferry.bus import Bus, codec
from ferry.bus.publish import payload_limit, publish
from ferry.bus.topics import SYSLOG
from ferry.config.model import FerryConfig, SyslogConfig
from ferry.errors import DiskFull, PermanentError, RetryableError
from ferry.host.faults import injected
from ferry.host.sockets import host_port, listening
from ferry.receivers.backpressure import BackpressureMonitor
from ferry.receivers.syslog.framing import StreamFramer, split_datagram
from ferry.schema import RAW_LINES
from ferry.telemetry import events, metrics

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


# Tests make publishing fail with a non-ferry error through this file, as the store's reliability
# tests do (store/chdb_store.py): while the file the variable names contains "syslog_publish", every
# syslog publish raises RuntimeError.


class LineBatcher:
    """Collects lines from every connection and publishes them as RAW_LINES batches.

    Reading and publishing overlap: up to `_IN_FLIGHT` batches are being made durable while
    connections keep being read. Connections pause only when the backlog passes a high watermark
    (or the bus refuses), and every paused connection resumes once the backlog is back under the
    low watermark — so memory is bounded and no connection is left paused.

    Only the bus being unavailable or full (RetryableError) holds lines for as long as it lasts; that
    is what a sender should wait for. A batch the bus refuses as too large is halved until the one
    line at fault is alone, and that line is dropped; any other failure (a bug) is retried
    `_INTERNAL_TRIES` times, then its lines are dropped. Both are logged and counted, so one bad
    line or one bug never stops every sender.
    """

    _IN_FLIGHT = 3
    _INTERNAL_TRIES = 3
    _HIGH_BYTES = 64 * 1024 * 1024
    # How long stop() keeps trying to ship what is held before counting it lost (reason shutdown):
    # the supervisor kills a role that takes more than 30 s, gRPC has up to 10 s of that.
    _STOP_WAIT_S = 15.0

    def __init__(self, js: Bus, cfg: FerryConfig, monitor: BackpressureMonitor) -> None:
        self.js, self.cfg, self.monitor = js, cfg, monitor
        sc = cfg.receivers.syslog
        self.max_lines = sc.batch_lines
        self.high = 4 * sc.batch_lines
        self.low = sc.batch_lines
        self.wait_s = sc.batch_wait_s
        # Lines held are bounded in bytes too: 4 batches of 64 KiB lines would be 1.3 GB.
        self.high_bytes = self._HIGH_BYTES
        self._bytes = 0  # about the bytes of the lines held (see add())
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

    def add(self, lines: list[bytes], peer: str, transport: str, nbytes: int = 0) -> None:
        """Hold `lines` for the next batch; `nbytes` is about their size (the bytes read for them),
        which callers know without measuring each line."""
        self._lines.extend(lines)
        self._runs.append((len(lines), peer, transport, time.time_ns()))
        self._bytes += nbytes
        if len(self._lines) >= self.max_lines:
            self.kick()

    def over_high_water(self) -> bool:
        return self.blocked.is_set() or len(self._lines) >= self.high or self._bytes >= self.high_bytes

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
        held = len(self._lines)
        self._bytes = self._bytes * (held - total) // held if held > total else 0
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
        if injected("syslog_publish"):
            raise RuntimeError("injected syslog publish fault (FERRY_FAULTS_FILE)")
        await publish(self.js, SYSLOG, batch)

    async def flush(self) -> None:
        async with self._flush_lock:
            while self._lines:
                total = min(len(self._lines), self.max_lines * self._IN_FLIGHT)
                stored = await self._ship(total)
                if stored:
                    events.received("syslog", "logs", stored)
                self._drop(total)
                if len(self._lines) < self.low:
                    self.blocked.clear()
                    self._resume_all()
                if len(self._lines) < self.max_lines:
                    break  # a partial batch waits for the timer, so batches stay full under load
            self.blocked.clear()
            self._resume_all()

    async def _ship(self, total: int) -> int:
        """Publish the first `total` pending lines; returns how many were stored once every one is
        stored or given up (dropped and counted)."""
        try:
            table = self._table(total)
        except Exception:
            # Cannot happen for lines the framer made; if it does, holding them would fail again.
            log.exception("syslog: could not build a batch of %d lines", total)
            events.dropped("syslog", "logs", "internal", total, detail="could not build a batch")
            return 0
        tenant = self.cfg.tenant
        pending = [
            codec.Batch(table.slice(a, self.max_lines), "logs", "raw_lines", "syslog", tenant)
            for a in range(0, total, self.max_lines)
        ]
        stored = 0
        internal_tries = 0
        while pending:
            results = await asyncio.gather(*(self._publish(b) for b in pending), return_exceptions=True)
            again: list[codec.Batch] = []
            unavailable: BaseException | None = None
            broken: list[codec.Batch] = []
            bug: BaseException | None = None
            for b, r in zip(pending, results, strict=True):
                if r is None:
                    stored += b.num_rows
                elif isinstance(r, RetryableError):
                    again.append(b)
                    unavailable = r
                elif isinstance(r, PermanentError):
                    again.extend(self._too_large(b, r))
                elif isinstance(r, Exception):
                    broken.append(b)
                    bug = r
                else:
                    raise r  # cancelled: stop() gave up waiting
            if broken:
                internal_tries += 1
                lines = sum(b.num_rows for b in broken)
                if internal_tries >= self._INTERNAL_TRIES:
                    log.error("syslog: publishing failed %d times", internal_tries, exc_info=bug)
                    events.dropped("syslog", "logs", "internal", lines,
                                   detail=f"{internal_tries} failed attempts to publish: {type(bug).__name__}: {bug}")
                else:
                    events.retried("syslog", "logs", "internal", len(broken),
                                   detail=f"publishing {lines} lines failed: {type(bug).__name__}: {bug}")
                    again.extend(broken)
            if unavailable is not None:
                # Keep the lines (a batch id retried is stored once) and stop reading TCP.
                if not self.blocked.is_set():
                    log.warning("syslog: cannot ship %d lines (%s); pausing TCP reads", total, unavailable)
                self.blocked.set()
                self.held_because = "disk_full" if isinstance(unavailable, DiskFull) else "overload"
                events.retried("syslog", "logs", "backpressure", detail=str(unavailable))
            pending = again
            if pending and (unavailable is not None or broken):
                await asyncio.sleep(0.5 * internal_tries if broken and unavailable is None else 0.5)
        return stored

    def _too_large(self, batch: codec.Batch, err: BaseException) -> list[codec.Batch]:
        """A batch the bus refused as too large (publish() already cut it to the payload limit, so
        some line cannot fit, or the server allows less than it announced): its halves to try
        again, or nothing once the line at fault is alone (dropped and counted)."""
        rows = batch.num_rows
        if rows <= 1:
            events.dropped("syslog", "logs", "too_large", rows, detail=f"the bus refuses the line: {err}")
            return []
        half = rows // 2
        # Ids derived from the parent's, so a retry of the same batch splits to the same ids.
        return [
            codec.Batch(batch.table.slice(0, half), batch.signal, batch.target, batch.source, batch.tenant,
                        f"{batch.batch_id}.a"),
            codec.Batch(batch.table.slice(half), batch.signal, batch.target, batch.source, batch.tenant,
                        f"{batch.batch_id}.b"),
        ]

    def _resume_all(self) -> None:
        for t in list(self._paused):
            if not t.is_closing():
                t.resume_reading()
        self._paused.clear()

    async def stop(self) -> None:
        """Ship everything held, for up to `_STOP_WAIT_S`; what the bus still refuses then is
        counted as dropped (reason shutdown) rather than waited for until the supervisor kills us."""
        if self._task:
            self._task.cancel()
        # Connections closed just before have their last lines added by connection_lost callbacks.
        await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._STOP_WAIT_S
        while self._lines and loop.time() < deadline:
            try:
                # each flush ships everything pending, partial batch included
                await asyncio.wait_for(self.flush(), max(deadline - loop.time(), 0.01))
            except TimeoutError:
                break
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        if self._lines:
            events.dropped("syslog", "logs", "shutdown", len(self._lines),
                           detail=f"not shipped within {self._STOP_WAIT_S:.0f} s of stopping")
            self._drop(len(self._lines))


def default_max_connections() -> int:
    """min(10000, half the open-files limit): each TCP sender is a descriptor, and the other half
    is left for OTLP clients, the bus and files, which a flood of syslog connections used to starve."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return 10000
    return max(1, min(10000, soft // 2))


class Connections:
    """Every open syslog TCP connection of this process, and the bounds that keep senders from
    taking the process's descriptors or memory: a cap on connections (more are closed at once), an
    idle timeout, and a cap on unterminated-line bytes held over all connections (the connections
    holding the most are closed). A closed connection's unterminated line is kept, as at any close.
    """

    def __init__(self, sc: SyslogConfig) -> None:
        self.max_connections = sc.max_connections or default_max_connections()
        self.max_buffered = sc.max_buffered_bytes
        self.idle_s = sc.idle_timeout_s
        self.open: set[_TcpProtocol] = set()
        self.buffered = 0  # sum of every open connection's `held`
        # A clock the sweeper advances: connections stamp their last read with it, which costs an
        # attribute read instead of a clock call per read.
        self.now = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._gauge = metrics.open_connections.labels("syslog_tcp")

    def start(self) -> None:
        self._task = asyncio.create_task(self._sweep())

    async def _sweep(self) -> None:
        every = min(1.0, self.idle_s / 4) if self.idle_s else 1.0
        while True:
            await asyncio.sleep(every)
            self.now = time.monotonic()
            if not self.idle_s:
                continue
            before = self.now - self.idle_s
            try:
                # A connection paused while the bus refuses is not idle: ferry is not reading it.
                for conn in [c for c in self.open if c.last < before and c.reading()]:
                    conn.cut("idle")
            except Exception:  # a bug here must not end idle timeouts for good
                log.exception("syslog: closing idle TCP connections failed")

    def admit(self, conn: _TcpProtocol) -> bool:
        if len(self.open) >= self.max_connections:
            return False
        self.open.add(conn)
        self._gauge.inc()
        return True

    def forget(self, conn: _TcpProtocol) -> None:
        self.open.discard(conn)
        self._gauge.dec()

    def shed(self) -> None:
        """Close the connections holding the most unterminated bytes until all together hold at most
        90 % of the cap (the margin keeps one connection's growth from closing another each read)."""
        target = self.max_buffered * 9 // 10
        biggest = sorted(self.open, key=lambda c: c.held, reverse=True)
        log.warning("syslog: %d TCP connections hold %d bytes of unterminated lines (max_buffered_bytes %d); "
                    "closing those holding the most", len(self.open), self.buffered, self.max_buffered)
        for conn in biggest:
            if self.buffered <= target or not conn.held:
                break
            conn.cut("buffer_limit")

    def close(self) -> None:
        """At shutdown: close every connection, so its unterminated line is shipped with the rest."""
        if self._task is not None:
            self._task.cancel()
        for conn in list(self.open):
            if conn.transport is not None:
                conn.transport.close()


class _TcpProtocol(asyncio.Protocol):
    def __init__(self, batcher: LineBatcher, conns: Connections, max_message: int) -> None:
        self.batcher = batcher
        self.conns = conns
        self.framer = StreamFramer(max_message)
        self.peer = ""
        self.transport: asyncio.Transport | None = None
        self.held = 0  # framer.buffered as last added to conns.buffered
        self.last = conns.now
        self.admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = host_port(host, port)
        if not self.conns.admit(self):
            metrics.refused_connections.labels("syslog_tcp", "too_many").inc()
            log.warning("syslog: %d TCP connections open (max_connections); closing a new one from %s",
                        len(self.conns.open), self.peer)
            transport.abort()
            return
        self.admitted = True

    def data_received(self, data: bytes) -> None:
        framer = self.framer
        before = framer.truncated
        lines = framer.feed(data)
        self.last = self.conns.now
        if framer.truncated > before:
            events.dropped("syslog", "logs", "truncated", framer.truncated - before,
                           detail=f"TCP line from {self.peer} over max_message_bytes")
        if lines:  # before shed(), which may flush this connection's next, unterminated line
            self.batcher.add(lines, self.peer, "tcp", len(data))
        held = framer.buffered
        if held != self.held:
            conns = self.conns
            conns.buffered += held - self.held
            self.held = held
            if conns.buffered > conns.max_buffered:
                conns.shed()
        if self.batcher.over_high_water() and self.transport is not None and not self.transport.is_closing():
            self.batcher.pause(self.transport)
            self.batcher.kick()

    def reading(self) -> bool:
        return self.transport is not None and self.transport.is_reading()

    def cut(self, reason: str) -> None:
        """Close this connection for `reason` (counted), keeping its unterminated line."""
        if self.transport is None or self.transport.is_closing():
            return
        metrics.closed_connections.labels("syslog_tcp", reason).inc()
        self._release()
        # An idle peer gets an orderly close; one over the memory cap is reset, since what it is
        # still sending is not going to be read.
        if reason == "idle":
            self.transport.close()
        else:
            self.transport.abort()

    def _release(self) -> None:
        """Ship the unterminated line and give back its bytes."""
        rest = self.framer.flush()
        if rest:
            self.batcher.add(rest, self.peer, "tcp", len(rest[0]))
        self.conns.buffered -= self.held
        self.held = 0

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.admitted:
            return
        self._release()
        self.conns.forget(self)


# Linux socket options the socket module does not name (asm-generic/socket.h).
_SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)
_U32 = 1 << 32


class UdpReader:
    """Reads the UDP socket itself: many datagrams per wakeup (asyncio's datagram transport reads
    one), and with each the kernel's count of datagrams dropped on this socket for want of buffer
    space (SO_RXQ_OVFL ancillary data), counted as dropped, reason udp_overflow.

    A datagram carries the count as of its own arrival, so drops after the last datagram of a burst
    would wait for the next one: `/proc/net/udp` (the same counter, `drops` column) is read every
    `_POLL_S` to see them too.
    """

    _PER_WAKEUP = 256  # then TCP connections get their turn
    _POLL_S = 2.0
    _MAX_DATAGRAM = 65535

    def __init__(self, sock: socket.socket, batcher: LineBatcher, max_message: int) -> None:
        self.sock = sock
        self.batcher = batcher
        self.max_message = max_message
        self.kernel_drops = 0  # the socket's drop counter as last seen (uint32, wraps)
        self._anc = 0
        try:
            sock.setsockopt(socket.SOL_SOCKET, _SO_RXQ_OVFL, 1)
            self._anc = socket.CMSG_SPACE(4)
        except OSError:
            log.info("syslog: SO_RXQ_OVFL not available; UDP drops are read from /proc/net/udp only")
        self._inode = os.fstat(sock.fileno()).st_ino
        self._proc = "/proc/net/udp6" if sock.family == socket.AF_INET6 else "/proc/net/udp"
        sock.setblocking(False)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._read)
        self._task = asyncio.create_task(self._poll())

    def _saw_drops(self, count: int) -> None:
        delta = (count - self.kernel_drops) % _U32
        # A count older than one already seen (read from /proc before this datagram was dequeued)
        # shows up as a huge wrapped delta.
        if delta and delta < _U32 // 2:
            self.kernel_drops = count
            events.dropped("syslog_udp", "logs", "udp_overflow", delta,
                           detail="the kernel's receive buffer overflowed")

    def _read(self) -> None:
        recvmsg = self.sock.recvmsg
        anc_size = self._anc
        limit = self.max_message
        lines: list[bytes] = []
        nbytes = 0
        addr: object = None
        truncated = 0
        drops = -1
        for _ in range(self._PER_WAKEUP):
            try:
                data, anc, _flags, frm = recvmsg(self._MAX_DATAGRAM, anc_size)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:  # e.g. an ICMP error queued on the socket: nothing to read here
                log.debug("syslog: UDP read failed: %s", e)
                break
            if anc:  # only once the socket has dropped something
                for level, kind, value in anc:
                    if level == socket.SOL_SOCKET and kind == _SO_RXQ_OVFL and len(value) >= 4:
                        drops = int.from_bytes(value[:4], sys.byteorder)
            if frm != addr:
                if lines:
                    self._add(lines, addr, nbytes)
                    lines = []
                    nbytes = 0
                addr = frm
            if len(data) > limit:
                data = data[:limit]
                truncated += 1
            lines += split_datagram(data)
            nbytes += len(data)
        if lines:
            self._add(lines, addr, nbytes)
        if drops >= 0:
            self._saw_drops(drops)
        if truncated:
            events.dropped("syslog", "logs", "truncated", truncated, detail="UDP datagram over max_message_bytes")

    def _add(self, lines: list[bytes], addr: object, nbytes: int) -> None:
        if self.batcher.over_high_water():
            events.dropped("syslog_udp", "logs", self.batcher.held_because, len(lines))
            return
        host, port = addr[:2]  # type: ignore[index]
        self.batcher.add(lines, host_port(host, port), "udp", nbytes)

    def _proc_drops(self) -> int | None:
        """This socket's `drops` column in /proc/net/udp(6), or None if it is not there."""
        inode = str(self._inode)
        try:
            with open(self._proc) as f:
                for line in f:
                    fields = line.split()
                    if len(fields) > 12 and fields[9] == inode:
                        return int(fields[-1])
        except (OSError, ValueError):
            return None
        return None

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._POLL_S)
            drops = await asyncio.to_thread(self._proc_drops)
            if drops is not None:
                self._saw_drops(drops)

    def close(self) -> None:
        self._loop.remove_reader(self.sock.fileno())
        self._task.cancel()
        self.sock.close()


def _fit_max_message(js: Bus, configured: int) -> int:
    """`configured`, or less if a line that long would not fit in one bus message: such a line
    could never be published, so it is truncated (and counted) on arrival instead."""
    # Room for the Arrow IPC framing, the other columns and LZ4's worst case on incompressible text.
    fit = payload_limit(js) * 15 // 16 - 8192
    if configured > fit:
        log.warning("syslog: max_message_bytes %d is more than the bus carries in one message; "
                    "truncating syslog messages at %d bytes", configured, fit)
        return fit
    return configured


async def start(js: Bus, cfg: FerryConfig, monitor: BackpressureMonitor) -> tuple[LineBatcher, list[object]]:
    """Start the syslog listeners. The returned objects' close() stops taking data (TCP
    connections included, their unterminated lines kept); the batcher's stop() then ships the rest."""
    sc = cfg.receivers.syslog
    max_message = _fit_max_message(js, sc.max_message_bytes)
    batcher = LineBatcher(js, cfg, monitor)
    batcher.start()
    conns = Connections(sc)
    conns.start()
    loop = asyncio.get_running_loop()
    tcp_sock = listening(socket.SOCK_STREAM, cfg.listen, sc.tcp_port)
    tcp = await loop.create_server(lambda: _TcpProtocol(batcher, conns, max_message), sock=tcp_sock, backlog=512)
    udp_sock = listening(socket.SOCK_DGRAM, cfg.listen, sc.udp_port, rcvbuf=sc.udp_receive_buffer_bytes)
    udp = UdpReader(udp_sock, batcher, max_message)
    return batcher, [tcp, conns, udp]
