"""Settings of the Loki push receiver (`receivers.loki` in the config file).

Imported by ferry.config.model and the registry before any role runs: pydantic only, nothing heavy.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ferry.listener import Listener


class LokiConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Take Loki pushes (POST /loki/api/v1/push; GET /ready answers 200).")
    port: int = Field(3100, description="TCP port of the Loki push API on `listen`, shared by every ingest worker.")
    max_request_bytes: int = Field(
        16 * 1024**2, gt=0, description="Larger requests get 413, compressed or decompressed."
    )
    read_timeout_s: float = Field(
        30.0, gt=0, description="A request's header and body must arrive within this, else the connection is closed."
    )
    max_connections: int = Field(
        4096, gt=0, description="Open connections per ingest process; more are closed at once (bounds descriptors)."
    )

    def listeners(self) -> list[Listener]:
        if not self.enabled:
            return []
        return [Listener("port", "tcp", self.port, "Loki push", scheme="http://", note="(/loki/api/v1/push)")]


Config = LokiConfig  # the section's model, as the registry finds it
