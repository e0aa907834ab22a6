"""A private nats-server with ferry's topics declared, and a JetStream client on it, for tests that
drive the bus, the runner or a stage directly rather than through a whole `ferry run`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from ferry.bus import Bus
from ferry.bus.client import connect, declare
from ferry.bus.server import NatsServer
from ferry.config.model import BusConfig, FerryConfig
from ferry.testing.process import free_port


@contextlib.asynccontextmanager
async def private_bus(tmp: Path, max_payload: int = 8 * 1024**2) -> AsyncIterator[tuple[NatsServer, Bus]]:
    """(server, JetStream client) on a fresh server under `tmp` (generated credentials, as ferry's own)."""
    cfg = BusConfig(port=free_port(), monitor_port=free_port(), max_payload=max_payload)
    tmp.mkdir(parents=True, exist_ok=True)
    server = NatsServer(cfg, tmp)
    server.start()
    try:
        nc = await connect(server.url, "test")
        await declare(nc.jetstream(), FerryConfig(bus=cfg))
        try:
            yield server, nc.jetstream()
        finally:
            await nc.close()
    finally:
        server.stop()
