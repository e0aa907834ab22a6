"""Throughput of the OTLP decoder (ferry.receivers.otlp.decode) on one core, in records per second.
Logs (protobuf, JSON), spans and metric points; plain upb parsing of the same logs is the reference.
"""

from __future__ import annotations

import base64
import os
import random
import time
from collections.abc import Callable
from typing import Any

import orjson
import pyarrow as pa
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from ferry.receivers.otlp.decode import Decoded, decode_logs, decode_metrics, decode_traces

REQUESTS = 10
LOGS_PER_REQUEST = 5_000
SPANS_PER_REQUEST = 2_000
METRICS_PER_REQUEST = 200  # 10 points each
rng = random.Random(7)


def kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, str):
        return KeyValue(key=key, value=AnyValue(string_value=value))
    return KeyValue(key=key, value=AnyValue(int_value=value))


def resource(i: int) -> Resource:
    return Resource(
        attributes=[kv("service.name", f"svc-{i}"), kv("host.name", f"host-{i}"), kv("k8s.pod", "p-1")]
    )


def log_request(t0: int) -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    per = LOGS_PER_REQUEST // 2
    for r in range(2):
        scope = req.resource_logs.add(resource=resource(r)).scope_logs.add()
        scope.scope.name = "app.logger"
        for i in range(per):
            rec = scope.log_records.add(
                time_unix_nano=t0 + i,
                observed_time_unix_nano=t0 + i + 1000,
                severity_number=9,
                severity_text="INFO",
                trace_id=rng.randbytes(16),
                span_id=rng.randbytes(8),
                flags=1,
            )
            rec.body.string_value = (
                f"GET /api/v1/items/{i} served in {i % 250} ms for user {i % 977} " + "x" * 40
            )
            rec.attributes.extend(
                [
                    kv("http.method", "GET"),
                    kv("http.route", f"/api/v1/items/{i % 50}"),
                    kv("http.status_code", 200 if i % 10 else 500),
                    kv("user.id", f"user-{i % 977}"),
                    kv("request.id", rng.randbytes(8).hex()),
                ]
            )
    return req


def span_request(t0: int) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    scope = req.resource_spans.add(resource=resource(0)).scope_spans.add()
    scope.scope.name = "app.tracer"
    trace_id = rng.randbytes(16)
    for i in range(SPANS_PER_REQUEST):
        if i % 10 == 0:
            trace_id = rng.randbytes(16)
        span = scope.spans.add(
            trace_id=trace_id,
            span_id=rng.randbytes(8),
            parent_span_id=rng.randbytes(8) if i % 10 else b"",
            name=f"GET /api/v1/items/{i % 50}",
            kind=2,
            start_time_unix_nano=t0 + i,
            end_time_unix_nano=t0 + i + 1_500_000,
        )
        span.attributes.extend(
            [
                kv("http.method", "GET"),
                kv("http.route", f"/api/v1/items/{i % 50}"),
                kv("http.status_code", 200),
                kv("net.peer.name", "10.0.0.1"),
                kv("user.id", f"user-{i % 977}"),
                kv("db.system", "postgresql"),
            ]
        )
        if i % 5 == 0:
            span.events.add(time_unix_nano=t0 + i + 10, name="cache.miss", attributes=[kv("key", f"k{i}")])
        span.status.code = 2 if i % 50 == 0 else 0
    return req


def metric_request(t0: int) -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    scope = req.resource_metrics.add(resource=resource(0)).scope_metrics.add()
    scope.scope.name = "app.meter"
    for m in range(METRICS_PER_REQUEST):
        metric = scope.metrics.add(name=f"metric.{m}", unit="ms")
        kind = m % 3
        for p in range(10):
            attrs = [kv("route", f"/r/{p}"), kv("method", "GET"), kv("code", 200)]
            if kind == 0:
                metric.gauge.data_points.add(time_unix_nano=t0, as_double=p * 1.5, attributes=attrs)
            elif kind == 1:
                metric.sum.is_monotonic = True
                metric.sum.aggregation_temporality = 2
                metric.sum.data_points.add(
                    start_time_unix_nano=t0 - 10, time_unix_nano=t0, as_int=p, attributes=attrs
                )
            else:
                metric.histogram.aggregation_temporality = 2
                metric.histogram.data_points.add(
                    start_time_unix_nano=t0 - 10,
                    time_unix_nano=t0,
                    count=10,
                    sum=55.0,
                    bucket_counts=[1, 2, 3, 4, 0],
                    explicit_bounds=[1.0, 5.0, 10.0, 50.0],
                    attributes=attrs,
                )
    return req


def otlp_json(req: Message) -> bytes:
    """OTLP/JSON: the protobuf JSON mapping with integer enums and hex (not base64) ids."""

    def hexify(node: Any) -> Any:
        if isinstance(node, dict):
            ids = ("traceId", "spanId", "parentSpanId")
            return {k: base64.b64decode(v).hex() if k in ids else hexify(v) for k, v in node.items()}
        if isinstance(node, list):
            return [hexify(v) for v in node]
        return node

    return orjson.dumps(hexify(MessageToDict(req, use_integers_for_enums=True)))


def parse_only(payload: bytes) -> Decoded:
    req = ExportLogsServiceRequest.FromString(payload)
    n = sum(len(s.log_records) for r in req.resource_logs for s in r.scope_logs)
    return Decoded({}, n, 0, {}, "")


def rate(name: str, payloads: list[bytes], decode: Callable[[bytes], Decoded], repeat: int = 5) -> None:
    records = sum(decode(p).accepted for p in payloads)  # warm-up, and the record count
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for p in payloads:
            decode(p)
        best = min(best, time.perf_counter() - start)
    mb = sum(map(len, payloads)) / 1e6
    print(f"{name:<24} {records:>7} records {mb:>7.1f} MB  {records / best:>12,.0f} records/s")


def main() -> None:
    # One core: Arrow's pool and numpy stay single-threaded, so the figure is per core.
    pa.set_cpu_count(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    t0 = time.time_ns()
    logs = [log_request(t0) for _ in range(REQUESTS)]
    log_bytes = [r.SerializeToString() for r in logs]
    # Reference point on a shared machine: upb parsing alone, no columns built.
    rate("(upb parse only)", log_bytes, parse_only)
    rate("logs protobuf", log_bytes, lambda p: decode_logs(p, "protobuf"))
    rate("logs json", [otlp_json(r) for r in logs[:2]], lambda p: decode_logs(p, "json"))
    spans = [span_request(t0).SerializeToString() for _ in range(REQUESTS)]
    rate("spans protobuf", spans, lambda p: decode_traces(p, "protobuf"))
    points = [metric_request(t0).SerializeToString() for _ in range(REQUESTS)]
    rate("metric points protobuf", points, lambda p: decode_metrics(p, "protobuf"))


if __name__ == "__main__":
    main()
