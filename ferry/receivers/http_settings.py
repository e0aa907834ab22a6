"""The settings every HTTP receiver has (OTLP/HTTP, remote_write, Loki push), written once.

Pydantic only, like every receiver's config.py that builds on it: imported before any role runs.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ferry.listener import Listener


class HttpReceiverConfig(BaseModel):
    """A receiver's HTTP listener; a receiver's own model gives `port` its default and may say more of
    `enabled` and `max_request_bytes`."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Serve this receiver.")
    port: int = Field(description="TCP port on `listen`, shared by every ingest worker.")
    max_request_bytes: int = Field(16 * 1024**2, gt=0, description="Larger requests get 413 (after decompression too).")
    read_timeout_s: float = Field(
        30.0, gt=0, description="A request's header and body must arrive within this, else the connection is closed."
    )
    max_connections: int = Field(
        4096, gt=0, description="Open connections per ingest process; more are closed at once (bounds descriptors)."
    )

    def listeners(self) -> list[Listener]:
        """What it opens when enabled, for the banner and the port check (each receiver says)."""
        raise NotImplementedError
