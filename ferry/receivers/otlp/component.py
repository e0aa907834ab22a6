"""The OTLP receiver as the runtime starts it: gRPC and HTTP listeners behind one start/stop.

Built by ferry.registry in an ingest process; settings in config.py.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from ferry.receivers.otlp.config import OtlpConfig
from ferry.registry import Context, Listener
from ferry.telemetry import events, metrics


class OtlpReceiver:
    def __init__(self, cfg: OtlpConfig, ctx: Context) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self._grpc: Any = None
        self._http: Any = None
        self._serving: asyncio.Task[None] | None = None

    def listeners(self) -> list[Listener]:
        return self.cfg.listeners()

    async def start(self) -> None:
        from ferry.host.http_server import http_server
        from ferry.host.sockets import listening
        from ferry.receivers.otlp import grpc_server, http

        ctx, full = self.ctx, self.ctx.config
        if self.cfg.http.enabled:
            h = self.cfg.http
            sock = listening(socket.SOCK_STREAM, full.listen, h.port)
            # No uvicorn concurrency limit: it counts every open connection, so senders that hold sockets
            # open half-sent would refuse everyone else. The app bounds requests in flight and the protocol
            # bounds connections and how long a request may take to arrive.
            self._http = http_server(http.build_app(ctx.js, full, ctx.monitor), sock,
                                  http=http.protocol(h.read_timeout_s, h.max_connections))
            self._serving = asyncio.create_task(self._http.serve(sockets=[sock]))
        if self.cfg.grpc.enabled:
            self._grpc = grpc_server.build_server(ctx.js, full, ctx.monitor)
            await self._grpc.start()
        while self._http is not None and not self._http.started:
            if self._serving is not None and self._serving.done():  # uvicorn gave up; raise why
                await self._serving
                raise RuntimeError("the OTLP/HTTP server stopped during start-up")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        # Both stop taking data at once; calls in flight get the grace period to be answered.
        if self._http is not None:
            self._http.should_exit = True
        if self._grpc is not None:
            await self._grpc.stop(grace=10)
        if self._serving is not None:
            await asyncio.gather(self._serving, return_exceptions=True)


def build(cfg: OtlpConfig, ctx: Context) -> OtlpReceiver:
    return OtlpReceiver(cfg, ctx)


def declare_metrics() -> None:
    for r in ("otlp_http", "otlp_grpc"):
        events.declare("received", r)
        # A bad record (invalid_*) is refused alone, never a whole request.
        events.declare("refused", r, requests=("malformed", "too_large", "backpressure", "disk_full", "unavailable",
                                               "internal", "read_timeout"))
    metrics.refused_connections.labels("otlp_http", "read_timeout")
    metrics.refused_connections.labels("otlp_http", "too_many")
    # Moved by what every receiver shares: the backpressure monitor and bus/publish.py.
    metrics.refusing.labels("disk_full").set(0)
    metrics.refusing.labels("backpressure").set(0)
    events.declare("retried", "publish", reasons=("bus_unavailable",))
