"""HTTP/1.1 connections of the OTLP/HTTP receiver, bounded in number and in how long a request may take to arrive.
uvicorn's h11 protocol with a read deadline and a connection cap; what they close is counted.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from ferry.telemetry import metrics


class _BoundedH11(H11Protocol):
    """A connection must deliver each whole request (header and body) within `read_timeout_s` of
    opening or of its previous answer; past that it is closed, since a sender that slow (or one that
    sends half a header and waits) would otherwise hold a socket and a slot for as long as it likes.
    Idle keep-alive connections are still closed after uvicorn's shorter `timeout_keep_alive`, uncounted:
    that is ordinary connection reuse, not a refusal."""

    read_timeout_s = 30.0
    max_connections = 4096
    receiver = "otlp_http"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            # Closed at once rather than left in the kernel's backlog: the sender learns now, and
            # descriptors stay free for syslog, gRPC and the bus connection of the same process.
            metrics.refused_connections.labels(self.receiver, "too_many").inc()
            transport.close()
            return
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.read_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _request_in_hand(self) -> bool:
        """The current request has fully arrived and is not answered yet: the app has it."""
        c = self.cycle
        return c is not None and not c.more_body and not c.response_complete

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._request_in_hand():
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self._request_in_hand():
            self._arm()  # the next request on this connection gets the same time

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self._request_in_hand():
            return
        metrics.refused_connections.labels(self.receiver, "read_timeout").inc()
        self.transport.close()


def protocol(read_timeout_s: float, max_connections: int) -> type[asyncio.Protocol]:
    """The protocol class to give uvicorn (`Config(http=...)`) for these bounds."""
    return type(
        "OtlpHttpProtocol",
        (_BoundedH11,),
        {"read_timeout_s": read_timeout_s, "max_connections": max_connections},
    )
