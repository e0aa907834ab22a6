"""OTLP/HTTP receiver (default port 4318): POST /v1/logs, /v1/traces, /v1/metrics.

Accepts binary protobuf and JSON, gzip or not; answers 200 with partial_success only after the
data is durable on the bus; 400/413/429/503 otherwise, in the request's own encoding.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from typing import Any

import orjson
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from ferry.bus import Bus
from ferry.config.model import FerryConfig
from ferry.errors import Backpressure, BadRequest, TooLarge
from ferry.receivers.backpressure import BackpressureMonitor
from ferry.receivers.otlp import decode
from ferry.receivers.otlp._connections import protocol as protocol  # the server side of this app
from ferry.receivers.otlp._publish import publish_decoded, refuse_all
from ferry.receivers.push_http import read_body
from ferry.status import as_ferry_error, retry_after, status_of
from ferry.tenancy import tenant_of_headers

_DECODERS = {"logs": decode.decode_logs, "traces": decode.decode_traces, "metrics": decode.decode_metrics}


def _response(signal: str, rejected: int, message: str) -> Any:
    if signal == "logs":
        r = logs_service_pb2.ExportLogsServiceResponse()
        if rejected:
            r.partial_success.rejected_log_records = rejected
    elif signal == "traces":
        r = trace_service_pb2.ExportTraceServiceResponse()
        if rejected:
            r.partial_success.rejected_spans = rejected
    else:
        r = metrics_service_pb2.ExportMetricsServiceResponse()
        if rejected:
            r.partial_success.rejected_data_points = rejected
    if rejected:
        r.partial_success.error_message = message
    return r


def _encode(msg: Any, fmt: str, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    if fmt == "json":
        body = json_format.MessageToJson(msg, indent=None).encode()
        return Response(body, status, headers=headers, media_type="application/json")
    return Response(msg.SerializeToString(), status, headers=headers, media_type="application/x-protobuf")


def _format_of(request: Request) -> str:
    ctype = request.headers.get("content-type", "application/x-protobuf").split(";")[0].strip().lower()
    if ctype == "application/json":
        return "json"
    if ctype in ("application/x-protobuf", "application/protobuf", "application/octet-stream"):
        return "protobuf"
    raise BadRequest(f"unsupported Content-Type {ctype!r}: use application/x-protobuf or application/json")


async def _read_body(request: Request, limit: int) -> bytes:
    body = await read_body(request, limit)
    encoding = request.headers.get("content-encoding", "").lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise BadRequest(f"unsupported Content-Encoding {encoding!r}: use gzip or none")
    return _inflate(body, encoding, limit)


def _inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """The decompressed body, which must be whole streams with nothing after them.

    gzip allows several members back to back (Go's reader, which the Collector uses, reads them all);
    anything else after the end of a stream, or a stream that stops short, is a broken body: taking the
    part that inflated would store a request the client never finished or never meant.
    """
    if not body:
        return body
    out: list[bytes] = []
    size = 0
    rest = body
    while True:
        d = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
        try:
            piece = d.decompress(rest, limit + 1 - size)  # never 0 (= unbounded): size <= limit here
        except zlib.error as e:
            raise BadRequest(f"body is not valid {encoding}: {e}") from e
        size += len(piece)
        if size > limit or d.unconsumed_tail:
            raise TooLarge(f"decompressed body is over the {limit}-byte limit")
        if not d.eof:
            raise BadRequest(f"body is truncated {encoding}: the stream does not end")
        out.append(piece)
        rest = d.unused_data
        if not rest:
            return b"".join(out)
        if encoding != "gzip" or not rest.startswith(b"\x1f\x8b"):
            raise BadRequest(f"body has {len(rest)} bytes of trailing data after the {encoding} stream")


def build_app(js: Bus, cfg: FerryConfig, monitor: BackpressureMonitor) -> Starlette:
    limit = cfg.receivers.otlp.http.max_request_bytes
    # Requests from the moment their header is in until they are answered, body read included: this
    # bounds memory. Connections still sending a header hold no slot (their read deadline bounds them).
    most = cfg.receivers.max_inflight_requests
    inflight = 0

    def handler(signal: str) -> Any:
        async def export(request: Request) -> Response:
            nonlocal inflight
            fmt = "json"  # until the request says otherwise: an unsupported type gets a readable answer
            decoded: decode.Decoded | None = None
            inflight += 1
            try:
                fmt = _format_of(request)
                if inflight > most:
                    raise Backpressure(f"more than {most} OTLP/HTTP requests in flight", retry_after=1)
                monitor.check()
                body = await _read_body(request, limit)
                tenant = tenant_of_headers(request.headers, cfg.tenant)
                decoded = await asyncio.to_thread(_DECODERS[signal], body, fmt, tenant=tenant, now_ns=time.time_ns())
                await publish_decoded(js, signal, decoded, tenant, "otlp_http", body)
            except ClientDisconnect:
                # The read deadline closed it (counted in ferry_refused_connections_total) or the client
                # hung up mid-body: no one is left to answer, and nothing was taken.
                return Response(status_code=400)
            except Exception as exc:
                e = as_ferry_error(exc, signal, "otlp_http")
                http, _, reason = status_of(e)
                refuse_all(signal, "otlp_http", reason, decoded)
                headers = {}
                ra = retry_after(e, cfg.backpressure.retry_after_s)
                if ra is not None:
                    headers["Retry-After"] = str(ra)
                st = status_pb2.Status(code=http, message=str(e))
                return _encode(st, fmt, http, headers)
            finally:
                inflight -= 1
            return _encode(_response(signal, decoded.rejected, decoded.message), fmt)

        return export

    routes = [Route(f"/v1/{s}", handler(s), methods=["POST"]) for s in ("logs", "traces", "metrics")]

    async def health(_: Request) -> Response:
        return Response(orjson.dumps({"status": "ok"}), media_type="application/json")

    routes.append(Route("/", health, methods=["GET"]))
    return Starlette(routes=routes)
