"""Settings of the syslog receiver (`receivers.syslog` in the config file): UDP and TCP listeners.

Imported by ferry.config.model and the registry before any role runs: pydantic only, nothing heavy.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ferry.listener import Listener


class SyslogConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Serve syslog on UDP and TCP.")
    udp_port: int = Field(5514, description="UDP port of syslog on `listen` (one message a datagram).")
    tcp_port: int = Field(5514, description="TCP port of syslog on `listen` (newline or octet-counted framing).")
    max_message_bytes: int = Field(64 * 1024, description="Longer messages are truncated and counted.")
    batch_lines: int = Field(5000, description="Lines per bus batch.")
    batch_wait_s: float = Field(0.2, description="Longest a line waits for its batch to fill.")
    idle_timeout_s: float = Field(
        300.0, ge=0, description="A TCP connection silent this long is closed (its unterminated line is kept); 0 = never."
    )
    max_connections: int = Field(
        0,
        ge=0,
        description="Open TCP connections per ingest worker; more are closed at once and counted. "
        "0 = min(10000, half the open-files limit), leaving descriptors for OTLP and the bus.",
    )
    max_buffered_bytes: int = Field(
        256 * 1024**2,
        gt=0,
        description="Unterminated-line bytes held over all TCP connections of an ingest worker; above it "
        "the connections holding the most are closed (their lines kept) and counted.",
    )
    udp_receive_buffer_bytes: int = Field(
        32 * 1024**2,
        gt=0,
        description="Kernel receive buffer of the UDP socket (forced as root, else capped by net.core.rmem_max); "
        "datagrams it cannot hold are counted as dropped, reason udp_overflow.",
    )

    def listeners(self) -> list[Listener]:
        if not self.enabled:
            return []
        # UDP first: the banner shows both on one line, in this order.
        return [Listener("udp_port", "udp", self.udp_port, "syslog", scheme="udp://"),
                Listener("tcp_port", "tcp", self.tcp_port, "syslog", scheme="tcp://")]


Config = SyslogConfig  # the section's model, as the registry finds it
