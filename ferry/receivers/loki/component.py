"""The Loki push receiver as the runtime starts it: POST /loki/api/v1/push and GET /ready on its port.

Built by ferry.registry in an ingest process; settings in config.py. JSON bodies (gzip or deflate or
plain) and snappy protobuf `logproto.PushRequest`s; rows go to topic `logging`, answered once durable.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from ferry.errors import BadRequest
from ferry.receivers.loki.config import LokiConfig
from ferry.receivers.otlp.decode import Decoded
from ferry.receivers.push_http import HttpReceiver, declare, push_route, unsnappy
from ferry.registry import Context

COMPONENT = "loki"


def decoder(limit: int) -> Any:
    def decode(body: bytes, headers: Any, tenant: str, now_ns: int) -> Decoded:
        from ferry.receivers.loki.decode import decode_push
        from ferry.receivers.otlp.http import _inflate

        encoding = headers.get("content-encoding", "").strip().lower()
        if encoding not in ("", "identity"):
            if encoding not in ("gzip", "deflate"):
                raise BadRequest(f"unsupported Content-Encoding {encoding!r}: use gzip, deflate or none")
            body = _inflate(body, encoding, limit)
        ctype = headers.get("content-type", "application/x-protobuf").split(";")[0].strip().lower()
        if ctype == "application/json":
            return decode_push(body, "json", tenant=tenant, now_ns=now_ns)
        if ctype not in ("application/x-protobuf", "application/protobuf", "application/octet-stream", ""):
            raise BadRequest(f"unsupported Content-Type {ctype!r}: use application/json or application/x-protobuf")
        return decode_push(unsnappy(body, limit), "protobuf", tenant=tenant, now_ns=now_ns)

    return decode


def build_app(cfg: LokiConfig, ctx: Context) -> Starlette:
    async def ready(_: Request) -> Response:
        return PlainTextResponse("ready\n")

    push = push_route("/loki/api/v1/push", ctx=ctx, settings=cfg, signal="logs", component=COMPONENT, source="loki",
                      decoder=decoder(cfg.max_request_bytes), inflight=[0])
    return Starlette(routes=[push, Route("/ready", ready, methods=["GET"])])


def build(cfg: LokiConfig, ctx: Context) -> HttpReceiver:
    return HttpReceiver(cfg, ctx, COMPONENT, lambda: build_app(cfg, ctx))


def declare_metrics() -> None:
    declare(COMPONENT, "logs", ("invalid_label", "invalid_value"))
