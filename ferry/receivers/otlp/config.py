"""Settings of the OTLP receiver (`receivers.otlp` in the config file): its gRPC and HTTP listeners.

Imported by ferry.config.model and the registry before any role runs: pydantic only, nothing heavy.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ferry.listener import Listener
from ferry.receivers.http_settings import HttpReceiverConfig


class OtlpGrpcConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Serve OTLP over gRPC.")
    port: int = Field(4317, description="TCP port of OTLP/gRPC on `listen`, shared by every ingest worker.")
    max_request_bytes: int = Field(
        16 * 1024**2, gt=0, description="Larger Export messages get RESOURCE_EXHAUSTED (after decompression too)."
    )
    read_timeout_s: float = Field(
        30.0, gt=0, description="A connection's HTTP/2 handshake, and each call's request message, must arrive within this."
    )
    idle_timeout_s: float = Field(300.0, gt=0, description="A connection with no call for this long is closed (GOAWAY).")


class OtlpHttpConfig(HttpReceiverConfig):
    enabled: bool = Field(True, description="Serve OTLP over HTTP (/v1/logs, /v1/traces, /v1/metrics).")
    port: int = Field(4318, description="TCP port of OTLP/HTTP on `listen`, shared by every ingest worker.")


class OtlpConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grpc: OtlpGrpcConfig = Field(OtlpGrpcConfig(), description="OTLP/gRPC listener.")
    http: OtlpHttpConfig = Field(OtlpHttpConfig(), description="OTLP/HTTP listener.")

    def listeners(self) -> list[Listener]:
        out = []
        if self.grpc.enabled:
            out.append(Listener("grpc.port", "tcp", self.grpc.port, "OTLP gRPC"))
        if self.http.enabled:
            out.append(Listener("http.port", "tcp", self.http.port, "OTLP HTTP", scheme="http://",
                                note="(/v1/logs, /v1/traces, /v1/metrics)"))
        return out


Config = OtlpConfig  # the section's model, as the registry finds it
