"""OpenTelemetry SDK apps send logs, traces and metrics to ferry over every OTLP transport.

Uses the stock SDK exporters (HTTP/protobuf and gRPC) and hand-made OTLP/JSON requests.
"""

from __future__ import annotations

import logging
import time
import uuid

import httpx
import pytest
from opentelemetry import metrics as otel_metrics
from opentelemetry import trace as otel_trace
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from ferry.testing import FerryProcess


def _exporters(transport: str, ferry: FerryProcess, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Stock exporters configured only by the standard environment variables, as an app would be."""
    if transport == "grpc":
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://{ferry.otlp_grpc}")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPLogExporter(), OTLPSpanExporter(), OTLPMetricExporter()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", ferry.otlp_http)
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HLog
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HMetric
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HSpan

    return HLog(), HSpan(), HMetric()


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_sdk_logs_traces_metrics_land_with_context(ferry: FerryProcess, transport: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An instrumented app's logs, spans and metrics (gauge, sum, histogram with exemplars) are all stored."""
    run = uuid.uuid4().hex[:10]
    service = f"checkout-{transport}-{run}"
    resource = Resource.create({"service.name": service, "host.name": "web-7", "deployment.environment": "test"})
    log_exp, span_exp, metric_exp = _exporters(transport, ferry, monkeypatch)

    tp = TracerProvider(resource=resource)
    tp.add_span_processor(BatchSpanProcessor(span_exp))
    lp = LoggerProvider(resource=resource)
    lp.add_log_record_processor(BatchLogRecordProcessor(log_exp))
    reader = PeriodicExportingMetricReader(metric_exp, export_interval_millis=60_000)
    mp = MeterProvider(resource=resource, metric_readers=[reader])

    tracer = tp.get_tracer("shop.checkout", "1.2.3")
    meter = mp.get_meter("shop.checkout")
    pylog = logging.getLogger(f"app.{run}")
    pylog.propagate = False
    pylog.addHandler(LoggingHandler(level=logging.INFO, logger_provider=lp))
    pylog.setLevel(logging.INFO)

    requests = meter.create_counter("checkout.requests")
    latency = meter.create_histogram("checkout.latency", unit="ms")
    meter.create_observable_gauge("checkout.queue", callbacks=[lambda _: [otel_metrics.Observation(7.0, {"q": "main"})]])

    with tracer.start_as_current_span("POST /checkout", kind=otel_trace.SpanKind.SERVER) as root:
        root.set_attribute("http.status_code", 500)
        with tracer.start_as_current_span("charge card") as child:
            child.set_status(otel_trace.Status(otel_trace.StatusCode.ERROR, "card declined"))
            pylog.error("PaymentService declined card %s", run, extra={"order.id": 42, "user.id": "u-1"})
            requests.add(1, {"route": "/checkout"})
            latency.record(123.0, {"route": "/checkout"})
        trace_id = format(root.get_span_context().trace_id, "032x")
        child_span = format(child.get_span_context().span_id, "016x")
    pylog.info("after span %s", run)

    tp.force_flush()
    lp.force_flush()
    reader.collect()
    mp.force_flush()

    logs = ferry.wait_for(lambda: [r for r in ferry.search(run) if r["service"] == service] if len(ferry.search(run)) >= 2 else None)
    err = next(r for r in logs if r["level"] == "ERROR")
    assert err["body"] == f"PaymentService declined card {run}"
    assert err["trace_id"] == trace_id and err["span_id"] == child_span
    assert err["resource"]["host.name"] == "web-7"
    assert err["resource"]["deployment.environment"] == "test"
    assert err["attributes"]["order.id"] == "42"
    assert err["attributes"]["user.id"] == "u-1"

    tr = ferry.wait_for(lambda: (t := ferry.get(f"/api/v1/traces/{trace_id}"))["found"] and len(t["spans"]) == 2 and t)
    spans = {s["name"]: s for s in tr["spans"]}
    assert spans["charge card"]["parent_span_id"] == spans["POST /checkout"]["span_id"]
    assert spans["charge card"]["status"] == "STATUS_CODE_ERROR"
    assert spans["charge card"]["status_message"] == "card declined"
    assert spans["POST /checkout"]["kind"] == "SPAN_KIND_SERVER"
    assert spans["POST /checkout"]["attributes"]["http.status_code"] == "500"
    assert spans["POST /checkout"]["service"] == service
    assert [lg["span_id"] for lg in tr["logs"]] == [child_span]

    def series(name: str) -> list[dict]:  # type: ignore[type-arg]
        got = ferry.get("/api/v1/metrics/series", name=name, since="1h", step="60", label=f"service={service}")["series"]
        return got

    assert ferry.wait_for(lambda: series("checkout.requests"))[0]["points"][0][1] == 1.0
    hist = ferry.wait_for(lambda: series("checkout.latency"))[0]
    assert hist["kind"] == "histogram" and hist["points"][0][1] == 123.0
    assert trace_id in hist["exemplars"], "the histogram sample recorded in a span carries that trace as exemplar"
    gauge = ferry.wait_for(lambda: series("checkout.queue"))[0]
    assert gauge["kind"] == "gauge" and gauge["labels"] == {"q": "main"} and gauge["points"][0][1] == 7.0

    for p in (tp, lp, mp):
        p.shutdown()


def _json_logs(run: str, trace_hex: str, bad_trace: str | None = None) -> dict:  # type: ignore[type-arg]
    now = str(time.time_ns())
    recs = [
        {"timeUnixNano": now, "severityNumber": 17, "body": {"stringValue": f"json good {run}"}, "traceId": trace_hex,
         "spanId": "0102030405060708", "attributes": [{"key": "n", "value": {"intValue": "5"}}]},
    ]
    if bad_trace is not None:
        recs.append({"timeUnixNano": now, "body": {"stringValue": f"json bad {run}"}, "traceId": bad_trace})
    return {
        "resourceLogs": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
                "scopeLogs": [{"scope": {"name": "raw"}, "logRecords": recs}],
            }
        ]
    }


def test_otlp_json_lands_and_partial_success_names_rejects(ferry: FerryProcess) -> None:
    """OTLP/JSON with hex ids lands; a record with a bad trace id is rejected alone, with a reason."""
    run = uuid.uuid4().hex[:10]
    tid = uuid.uuid4().hex
    r = httpx.post(f"{ferry.otlp_http}/v1/logs", json=_json_logs(run, tid, bad_trace="abcd"), timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["partialSuccess"]["rejectedLogRecords"] == "1" or body["partialSuccess"]["rejectedLogRecords"] == 1
    assert "trace" in body["partialSuccess"]["errorMessage"].lower()
    rows = ferry.wait_for(lambda: ferry.search(run))
    assert [x["body"] for x in rows] == [f"json good {run}"]
    assert rows[0]["trace_id"] == tid and rows[0]["level"] == "ERROR" and rows[0]["attributes"]["n"] == "5"
    assert ferry.metric("ferry_refused_records_total", signal="logs", component="otlp_http") >= 1


def test_malformed_and_oversized_requests_are_refused_clearly(ferry: FerryProcess) -> None:
    """Garbage protobuf or JSON gets 400 naming the problem; a too-large body gets 413; both are counted."""
    r = httpx.post(f"{ferry.otlp_http}/v1/logs", content=b"\xff\xfenot protobuf", headers={"content-type": "application/x-protobuf"})
    assert r.status_code == 400
    r = httpx.post(f"{ferry.otlp_http}/v1/traces", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "json" in r.json()["message"].lower()
    r = httpx.post(f"{ferry.otlp_http}/v1/logs", content=b"x", headers={"content-type": "text/plain"})
    assert r.status_code == 400 and "Content-Type" in r.json()["message"]
    big = b"\x00" * (17 * 1024 * 1024)
    r = httpx.post(f"{ferry.otlp_http}/v1/logs", content=big, headers={"content-type": "application/x-protobuf"})
    assert r.status_code == 413
    assert ferry.metric("ferry_refused_records_total", reason="malformed") >= 3
    assert ferry.metric("ferry_refused_records_total", reason="too_large") >= 1


def test_grpc_malformed_is_invalid_argument(ferry: FerryProcess) -> None:
    """A gRPC Export with bytes that are not a valid request answers INVALID_ARGUMENT."""
    import grpc

    ch = grpc.insecure_channel(ferry.otlp_grpc)
    call = ch.unary_unary("/opentelemetry.proto.collector.logs.v1.LogsService/Export")
    with pytest.raises(grpc.RpcError) as ei:
        call(b"\xff\xff\xff\xff", timeout=10)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
