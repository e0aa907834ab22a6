"""The remote_write receiver as the runtime starts it: POST /api/v1/write (and /api/v1/push) on its port.

Built by ferry.registry in an ingest process; settings in config.py. Bodies are snappy-compressed
`prometheus.WriteRequest`s (remote_write 1.0); rows go to topic `metrics`, answered once durable.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from ferry.errors import BadRequest
from ferry.receivers.otlp.decode import Decoded
from ferry.receivers.prometheus.config import PrometheusConfig
from ferry.receivers.push_http import HttpReceiver, declare, push_route, unsnappy
from ferry.registry import Context
from ferry.schema import REMOTE_WRITE_TARGET

COMPONENT = "prometheus"
# A request this small whose series all pass is made durable as it came and decoded by the metrics
# parser (its ack then costs a fifth of a decode); under a stock NATS cluster's 1 MiB message limit,
# so it is never split. A larger one is decoded here, its rows split across messages as they must be.
RAW_MAX_BYTES = 512 * 1024


def decoder(limit: int) -> Any:
    def decode(body: bytes, headers: Any, tenant: str, now_ns: int) -> Decoded:
        from ferry.receivers.prometheus.decode import check_write, decode_write, raw_requests

        encoding = headers.get("content-encoding", "").strip().lower()
        if encoding != "snappy":
            raise BadRequest(f"unsupported Content-Encoding {encoding or 'none'!r}: remote_write bodies are snappy")
        ctype = headers.get("content-type", "application/x-protobuf").split(";")[0].strip().lower()
        if ctype not in ("application/x-protobuf", "application/protobuf", "application/octet-stream"):
            raise BadRequest(f"unsupported Content-Type {ctype!r}: remote_write bodies are application/x-protobuf")
        payload = unsnappy(body, limit)
        if len(body) <= RAW_MAX_BYTES:
            accepted = check_write(payload)
            if accepted is not None:
                return Decoded({REMOTE_WRITE_TARGET: raw_requests(body, now_ns)}, accepted, 0, {}, "")
        return decode_write(payload, tenant=tenant, now_ns=now_ns)

    return decode


def build_app(cfg: PrometheusConfig, ctx: Context) -> Starlette:
    inflight = [0]
    common: dict[str, Any] = dict(ctx=ctx, settings=cfg, signal="metrics", component=COMPONENT, source="prometheus",
                                  decoder=decoder(cfg.max_request_bytes), inflight=inflight)

    async def health(_: Request) -> Response:
        return PlainTextResponse("ferry remote_write receiver: POST /api/v1/write\n")

    return Starlette(routes=[push_route("/api/v1/write", **common), push_route("/api/v1/push", **common),
                             Route("/", health, methods=["GET"])])


def build(cfg: PrometheusConfig, ctx: Context) -> HttpReceiver:
    return HttpReceiver(cfg, ctx, COMPONENT, lambda: build_app(cfg, ctx))


def declare_metrics() -> None:
    declare(COMPONENT, "metrics", ("invalid_label", "native_histogram"))
