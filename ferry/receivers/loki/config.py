"""Settings of the Loki push receiver (`receivers.loki` in the config file).

Imported by ferry.config.model and the registry before any role runs: pydantic only, nothing heavy.
"""

from __future__ import annotations

from pydantic import Field

from ferry.listener import Listener
from ferry.receivers.http_settings import HttpReceiverConfig


class LokiConfig(HttpReceiverConfig):
    enabled: bool = Field(True, description="Take Loki pushes (POST /loki/api/v1/push; GET /ready answers 200).")
    port: int = Field(3100, description="TCP port of the Loki push API on `listen`, shared by every ingest worker.")
    max_request_bytes: int = Field(
        16 * 1024**2, gt=0, description="Larger requests get 413, compressed or decompressed."
    )

    def listeners(self) -> list[Listener]:
        if not self.enabled:
            return []
        return [Listener("port", "tcp", self.port, "Loki push", scheme="http://", note="(/loki/api/v1/push)")]


Config = LokiConfig  # the section's model, as the registry finds it
