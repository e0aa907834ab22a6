"""Settings of the Prometheus remote_write receiver (`receivers.prometheus` in the config file).

Imported by ferry.config.model and the registry before any role runs: pydantic only, nothing heavy.
"""

from __future__ import annotations

from pydantic import Field

from ferry.listener import Listener
from ferry.receivers.http_settings import HttpReceiverConfig


class PrometheusConfig(HttpReceiverConfig):
    enabled: bool = Field(True, description="Take Prometheus remote_write (POST /api/v1/write and /api/v1/push).")
    port: int = Field(9201, description="TCP port of remote_write on `listen`, shared by every ingest worker.")
    max_request_bytes: int = Field(
        32 * 1024**2, gt=0,
        description="Larger requests get 413, compressed or decompressed (Prometheus sends a few hundred KB).",
    )

    def listeners(self) -> list[Listener]:
        if not self.enabled:
            return []
        return [Listener("port", "tcp", self.port, "remote_write", scheme="http://",
                         note="(/api/v1/write)")]


Config = PrometheusConfig  # the section's model, as the registry finds it
