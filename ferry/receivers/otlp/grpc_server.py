"""OTLP/gRPC receiver (default port 4317): the Logs, Trace and Metrics Export services.

Requests are taken as raw bytes and decoded by the same code as OTLP/HTTP, so a malformed message
is INVALID_ARGUMENT naming the problem. Replies only after the data is durable on the bus;
backpressure is RESOURCE_EXHAUSTED with a google.rpc.RetryInfo, which OTLP exporters honour.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from nats.js import JetStreamContext

from ferry.config.model import FerryConfig
from ferry.receivers._status import as_ferry_error, retry_after, status_of
from ferry.receivers.backpressure import BackpressureMonitor
from ferry.receivers.otlp import decode
from ferry.receivers.otlp._publish import publish_decoded, refuse_all
from ferry.receivers.otlp.http import _response
from ferry.runtime.sockets import host_port

_SERVICES = {
    "logs": ("opentelemetry.proto.collector.logs.v1.LogsService", decode.decode_logs),
    "traces": ("opentelemetry.proto.collector.trace.v1.TraceService", decode.decode_traces),
    "metrics": ("opentelemetry.proto.collector.metrics.v1.MetricsService", decode.decode_metrics),
}


def _export_handler(signal: str, js: JetStreamContext, cfg: FerryConfig, monitor: BackpressureMonitor) -> Any:
    decoder = _SERVICES[signal][1]

    async def export(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            monitor.check()
            md = dict(context.invocation_metadata() or ())
            tenant = str(md.get("x-ferry-tenant", cfg.tenant))
            decoded = await asyncio.to_thread(decoder, request, "protobuf", tenant=tenant, now_ns=time.time_ns())
            await publish_decoded(js, signal, decoded, tenant, "otlp_grpc", request)
        except Exception as exc:
            e = as_ferry_error(exc, signal, "otlp_grpc")
            _, code, reason = status_of(e)
            refuse_all(signal, "otlp_grpc", reason)
            ra = retry_after(e, cfg.backpressure.retry_after_s)
            if ra is not None:
                detail = any_pb2.Any()
                detail.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=ra)))
                st = status_pb2.Status(code=code.value[0], message=str(e), details=[detail])
                context.set_trailing_metadata((("grpc-status-details-bin", st.SerializeToString()),))
            await context.abort(code, str(e))
        return _response(signal, decoded.rejected, decoded.message).SerializeToString()

    return grpc.unary_unary_rpc_method_handler(export)  # raw bytes in and out


def build_server(js: JetStreamContext, cfg: FerryConfig, monitor: BackpressureMonitor) -> grpc.aio.Server:
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", cfg.receivers.otlp.http.max_request_bytes),
            ("grpc.so_reuseport", 1),
        ],
        maximum_concurrent_rpcs=cfg.receivers.max_inflight_requests,
    )
    for signal, (service, _) in _SERVICES.items():
        handler = grpc.method_handlers_generic_handler(service, {"Export": _export_handler(signal, js, cfg, monitor)})
        server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(host_port(cfg.listen, cfg.receivers.otlp.grpc.port))
    return server
