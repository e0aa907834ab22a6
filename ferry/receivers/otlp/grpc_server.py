"""OTLP/gRPC receiver (default port 4317): the Logs, Trace and Metrics Export services.

Requests are taken as raw bytes and decoded by the same code as OTLP/HTTP, so a malformed message
is INVALID_ARGUMENT naming the problem. Replies only after the data is durable on the bus;
backpressure is RESOURCE_EXHAUSTED with a google.rpc.RetryInfo, which OTLP exporters honour.
A request message must arrive within receivers.otlp.grpc.read_timeout_s (DEADLINE_EXCEEDED, counted).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from ferry.bus import Bus
from ferry.config.model import FerryConfig
from ferry.errors import Backpressure, TooLarge
from ferry.host.sockets import host_port
from ferry.receivers.backpressure import BackpressureMonitor
from ferry.receivers.otlp import decode
from ferry.receivers.otlp._publish import publish_decoded, refuse_all
from ferry.receivers.otlp.http import _response
from ferry.status import as_ferry_error, retry_after, status_of
from ferry.tenancy import tenant_of_headers

_SERVICES = {
    "logs": ("opentelemetry.proto.collector.logs.v1.LogsService", decode.decode_logs),
    "traces": ("opentelemetry.proto.collector.trace.v1.TraceService", decode.decode_traces),
    "metrics": ("opentelemetry.proto.collector.metrics.v1.MetricsService", decode.decode_metrics),
}


def _export_handler(
    signal: str, js: Bus, cfg: FerryConfig, monitor: BackpressureMonitor, inflight: list[int]
) -> Any:
    decoder = _SERVICES[signal][1]
    g = cfg.receivers.otlp.grpc
    most = cfg.receivers.max_inflight_requests

    async def export(_: Any, context: grpc.aio.ServicerContext) -> bytes:
        decoded: decode.Decoded | None = None
        inflight[0] += 1
        try:
            try:
                if inflight[0] > most:
                    raise Backpressure(f"more than {most} OTLP/gRPC calls in flight", retry_after=1)
                monitor.check()
                request = await _read_request(context, g.read_timeout_s, signal)
                if request is None:
                    refuse_all(signal, "otlp_grpc", "read_timeout", None)
                    await context.abort(
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        f"the request message did not arrive within {g.read_timeout_s:g} s "
                        "(receivers.otlp.grpc.read_timeout_s)",
                    )
                # No message: gRPC refused one over max_receive_message_length (see _read_request); a
                # client that cancels while still sending looks the same. Exporters always send one.
                if request is grpc.aio.EOF or len(request) > g.max_request_bytes:
                    raise TooLarge(f"request message over the {g.max_request_bytes}-byte limit")
                md = dict(context.invocation_metadata() or ())
                tenant = tenant_of_headers(md, cfg.tenant)
                decoded = await asyncio.to_thread(decoder, request, "protobuf", tenant=tenant, now_ns=time.time_ns())
                await publish_decoded(js, signal, decoded, tenant, "otlp_grpc", request)
            except Exception as exc:
                if isinstance(exc, grpc.aio.AbortError):
                    raise
                e = as_ferry_error(exc, signal, "otlp_grpc")
                _, code, reason = status_of(e)
                refuse_all(signal, "otlp_grpc", reason, decoded)
                ra = retry_after(e, cfg.backpressure.retry_after_s)
                if ra is not None:
                    detail = any_pb2.Any()
                    detail.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=ra)))
                    st = status_pb2.Status(code=code.value[0], message=str(e), details=[detail])
                    context.set_trailing_metadata((("grpc-status-details-bin", st.SerializeToString()),))
                await context.abort(code, str(e))
        finally:
            inflight[0] -= 1
        return _response(signal, decoded.rejected, decoded.message).SerializeToString()

    # Request-streaming on our side (the wire is the same as unary's): the handler runs as soon as the
    # call opens, so it can bound how long the request message takes to arrive. A unary handler is
    # only called once the message is in, and a call that never sends one would hold its slot forever.
    return grpc.stream_unary_rpc_method_handler(export)  # raw bytes in and out


async def _read_request(context: grpc.aio.ServicerContext, timeout: float, signal: str) -> Any:
    """The call's request message, grpc.aio.EOF if it ended without one, None if none came in time."""
    read = asyncio.ensure_future(context.read())
    try:
        done, _ = await asyncio.wait({read}, timeout=timeout)
    except asyncio.CancelledError:
        # gRPC ends a call whose message is over max_receive_message_length by handing us no message
        # and then cancelling the call (it answers RESOURCE_EXHAUSTED itself). The cancellation often
        # arrives before this task resumes, so the refusal is counted here or not at all.
        if read.done() and not read.cancelled() and read.exception() is None and read.result() is grpc.aio.EOF:
            refuse_all(signal, "otlp_grpc", "too_large", None)
        raise
    if done:
        return read.result()
    # Not cancelled: the pending read is gRPC's own operation; answering the call ends it.
    read.add_done_callback(lambda t: t.cancelled() or t.exception())
    return None


def build_server(js: Bus, cfg: FerryConfig, monitor: BackpressureMonitor) -> grpc.aio.Server:
    g = cfg.receivers.otlp.grpc
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", g.max_request_bytes),
            ("grpc.so_reuseport", 1),
            # A connection that has not finished its HTTP/2 preface and settings in time is closed.
            ("grpc.server_handshake_timeout_ms", int(g.read_timeout_s * 1000)),
            # One with no call for this long gets GOAWAY; exporters reconnect on their next export.
            ("grpc.max_connection_idle_ms", int(g.idle_timeout_s * 1000)),
        ],
        # Calls in flight are bounded in export() instead, so that a refusal is counted and carries
        # RetryInfo (gRPC's own limiter answers RESOURCE_EXHAUSTED with neither).
        maximum_concurrent_rpcs=None,
    )
    inflight = [0]
    for signal, (service, _) in _SERVICES.items():
        handler = grpc.method_handlers_generic_handler(
            service, {"Export": _export_handler(signal, js, cfg, monitor, inflight)}
        )
        server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(host_port(cfg.listen, g.port))
    return server
