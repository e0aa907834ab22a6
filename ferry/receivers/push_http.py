"""What the remote_write and Loki push receivers share: one POST handler shape over OTLP/HTTP's bounded
h11 protocol, snappy bodies, publishing with a request id, and the uvicorn server's start and stop.

Both answer only once the bus acknowledged (durable): 204 on success, 400 naming what was refused (the
rest of the request is stored), 413 over the size limit, 429 / 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Any

import cramjam
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from ferry.bus import Bus, codec
from ferry.bus.publish import publish
from ferry.bus.topics import LOGGING, METRICS
from ferry.errors import Backpressure, BadRequest, TooLarge
from ferry.listener import Listener
from ferry.receivers.http_settings import HttpReceiverConfig
from ferry.receivers.otlp._publish import refuse_all, request_id
from ferry.receivers.otlp.decode import Decoded
from ferry.registry import Context
from ferry.status import as_ferry_error, retry_after, status_of
from ferry.telemetry import events
from ferry.tenancy import tenant_of_headers

TOPIC_OF = {"logs": LOGGING, "metrics": METRICS}


# (body, request headers, tenant, now in ns) -> what it decoded to; runs in a worker thread.
Decoder = Callable[[bytes, Any, str, int], Decoded]


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused (TooLarge) as soon as it is known to be over `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"request body of {declared} bytes is over the {limit}-byte limit")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"request body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def unsnappy(body: bytes, limit: int) -> bytes:
    """A snappy block-format body (no framing), checked against `limit` before it is inflated: the
    block starts with its uncompressed length as a varint."""
    size, shift = 0, 0
    for i, byte in enumerate(body[:10]):
        size |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            break
        if i == 9:
            raise BadRequest("body is not valid snappy: bad length header")
    else:
        raise BadRequest("body is not valid snappy: it is empty")
    if size > limit:
        raise TooLarge(f"decompressed body of {size} bytes is over the {limit}-byte limit")
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except Exception as e:  # cramjam raises its own DecompressionError
        raise BadRequest(f"body is not valid snappy (block format): {e}") from None


async def publish_tables(js: Bus, signal: str, decoded: Decoded, tenant: str, component: str, source: str,
                         payload: bytes) -> None:
    """Publish every table of `decoded` and wait for the bus's acks; count what was taken and refused.
    The batch ids derive from the request bytes, so a sender's retry of the same request dedupes."""
    rid = request_id(payload, f"{source}/{signal}", tenant)
    batches = [
        codec.Batch(t, signal, name, source, tenant, f"{rid}-{i}")
        for i, (name, t) in enumerate(sorted(decoded.tables.items()))
        if t.num_rows
    ]
    await asyncio.gather(*(publish(js, TOPIC_OF[signal], b) for b in batches))
    events.received(component, signal, decoded.accepted)
    for reason, n in decoded.reasons.items():
        events.refused(component, signal, reason, n, detail=decoded.message)


def push_route(path: str, *, ctx: Context, settings: HttpReceiverConfig, signal: str, component: str, source: str,
               decoder: Decoder, inflight: list[int]) -> Route:
    """A POST route that decodes, publishes, then answers 204 (or the error's status, as text)."""
    cfg, js, monitor = ctx.config, ctx.js, ctx.monitor
    assert js is not None and monitor is not None, "a receiver runs in an ingest process"
    most = cfg.receivers.max_inflight_requests
    limit = settings.max_request_bytes

    async def push(request: Request) -> Response:
        decoded: Decoded | None = None
        inflight[0] += 1
        try:
            if inflight[0] > most:
                raise Backpressure(f"more than {most} {component} requests in flight", retry_after=1)
            monitor.check()
            body = await read_body(request, limit)
            tenant = tenant_of_headers(request.headers, cfg.tenant)
            decoded = await asyncio.to_thread(decoder, body, request.headers, tenant, time.time_ns())
            await publish_tables(js, signal, decoded, tenant, component, source, body)
        except ClientDisconnect:
            return Response(status_code=400)  # no one left to answer; nothing was taken
        except Exception as exc:
            e = as_ferry_error(exc, signal, component)
            http, _, reason = status_of(e)
            refuse_all(signal, component, reason, decoded, detail=str(e) if http == 400 else None)
            headers = {}
            ra = retry_after(e, cfg.backpressure.retry_after_s)
            if ra is not None:
                headers["Retry-After"] = str(ra)
            return PlainTextResponse(f"{e}\n", http, headers=headers)
        finally:
            inflight[0] -= 1
        if decoded.rejected:
            # The good part is stored; 4xx tells the sender not to retry, which would not help.
            return PlainTextResponse(f"stored {decoded.accepted}, refused {decoded.rejected}: {decoded.message}\n", 400)
        return Response(status_code=204)

    return Route(path, push, methods=["POST"])


class HttpReceiver:
    """One HTTP listener (uvicorn on ferry's bounded h11 protocol) serving `app`."""

    def __init__(self, settings: HttpReceiverConfig, ctx: Context, component: str,
                 build_app: Callable[[], Starlette]) -> None:
        self.settings = settings
        self.ctx = ctx
        self.component = component
        self._build_app = build_app
        self._http: Any = None
        self._serving: asyncio.Task[None] | None = None

    def listeners(self) -> list[Listener]:
        return self.settings.listeners()

    async def start(self) -> None:
        from ferry.host.http_server import http_server
        from ferry.host.sockets import listening
        from ferry.receivers.otlp._connections import protocol

        s = self.settings
        if not s.enabled:
            return
        sock = listening(socket.SOCK_STREAM, self.ctx.config.listen, s.port)
        # OTLP/HTTP's protocol, its refusals counted under this receiver's component.
        proto = type(f"{self.component}Protocol", (protocol(s.read_timeout_s, s.max_connections),),
                     {"receiver": self.component})
        self._http = http_server(self._build_app(), sock, http=proto)
        self._serving = asyncio.create_task(self._http.serve(sockets=[sock]))
        while not self._http.started:
            if self._serving.done():
                await self._serving
                raise RuntimeError(f"the {self.component} HTTP server stopped during start-up")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        # Stops taking requests; those in flight get uvicorn's grace period to be published and answered.
        if self._http is not None:
            self._http.should_exit = True
        if self._serving is not None:
            await asyncio.gather(self._serving, return_exceptions=True)


def declare(component: str, signal: str, record_reasons: tuple[str, ...]) -> None:
    """The self-metric series a push receiver can move, at 0."""
    from ferry.telemetry import metrics

    events.declare("received", component, (signal,))
    events.declare("refused", component, (signal,),
                   reasons=("malformed", "too_large", "backpressure", "disk_full", "unavailable", "internal",
                            *record_reasons),
                   requests=("malformed", "too_large", "backpressure", "disk_full", "unavailable", "internal"))
    metrics.refused_connections.labels(component, "read_timeout")
    metrics.refused_connections.labels(component, "too_many")
    metrics.refusing.labels("disk_full").set(0)
    metrics.refusing.labels("backpressure").set(0)
    events.declare("retried", "publish", reasons=("bus_unavailable",))
