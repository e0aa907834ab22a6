"""The syslog receiver as the runtime starts it: UDP and TCP listeners and their line batcher.

Built by ferry.registry in an ingest process; settings in config.py.
"""

from __future__ import annotations

from typing import Any

from ferry.receivers.syslog.config import SyslogConfig
from ferry.registry import Context, Listener
from ferry.telemetry import events, metrics


class SyslogReceiver:
    def __init__(self, cfg: SyslogConfig, ctx: Context) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self._batcher: Any = None
        self._open: list[Any] = []

    def listeners(self) -> list[Listener]:
        return self.cfg.listeners()

    async def start(self) -> None:
        if not self.cfg.enabled:
            return
        from ferry.receivers.syslog import server

        self._batcher, self._open = await server.start(self.ctx.js, self.ctx.config, self.ctx.monitor)

    async def stop(self) -> None:
        # Stop reading (TCP connections too, their unterminated lines kept), then ship the rest.
        for lst in self._open:
            lst.close()
        if self._batcher is not None:
            await self._batcher.stop()


def build(cfg: SyslogConfig, ctx: Context) -> SyslogReceiver:
    return SyslogReceiver(cfg, ctx)


def declare_metrics() -> None:
    events.declare("received", "syslog", ("logs",))
    events.declare("dropped", "syslog_udp", ("logs",), ("overload", "disk_full", "udp_overflow"))
    # Lines cut at max_message_bytes, lost to a bug (internal), to a bus that refuses one line
    # (too_large) or to a bus still down at shutdown.
    events.declare("dropped", "syslog", ("logs",), ("truncated", "internal", "too_large", "shutdown"))
    events.declare("retried", "syslog", ("logs",), ("backpressure", "internal"))
    # Syslog hardening: refused and closed connections.
    metrics.refused_connections.labels("syslog_tcp", "too_many")
    metrics.closed_connections.labels("syslog_tcp", "idle")
    metrics.closed_connections.labels("syslog_tcp", "buffer_limit")
    metrics.open_connections.labels("syslog_tcp").set(0)
    # Moved by what every receiver shares: the backpressure monitor and bus/publish.py.
    metrics.refusing.labels("disk_full").set(0)
    metrics.refusing.labels("backpressure").set(0)
    events.declare("retried", "publish", reasons=("bus_unavailable",))
