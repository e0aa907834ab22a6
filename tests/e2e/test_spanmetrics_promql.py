"""Span metrics and the service graph from traces two OpenTelemetry SDK services send, read back
through ferry's PromQL API under the OpenTelemetry Collector connectors' metric names."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from ferry.testing import FerryProcess

ROUNDS, CALLS = 3, 4  # each round: 4 checkouts, one of whose charges fails


def send_calls(ferry: FerryProcess, frontend: str, payments: str, rounds: int = ROUNDS, calls: int = CALLS,
               gap_s: float = 0.4) -> None:
    """frontend `GET /checkout` (server) → `POST /charge` (client) → payments `POST /charge` (server).

    Each service exports each round as one request, the callee's first, so that every pair is made
    across batches; rounds are `gap_s` apart, so each series gets one point per round."""
    providers = []
    for name in (frontend, payments):
        tp = TracerProvider(resource=Resource.create({"service.name": name}))
        tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{ferry.otlp_http}/v1/traces"),
                                                 schedule_delay_millis=60_000))
        providers.append(tp)
    front, pay = (p.get_tracer("shop") for p in providers)
    for r in range(rounds):
        for i in range(calls):
            with front.start_as_current_span("GET /checkout", kind=otel_trace.SpanKind.SERVER), \
                 front.start_as_current_span("POST /charge", kind=otel_trace.SpanKind.CLIENT), \
                 pay.start_as_current_span("POST /charge", kind=otel_trace.SpanKind.SERVER) as charge:
                time.sleep(0.003)
                if i == 0:
                    charge.set_status(otel_trace.Status(otel_trace.StatusCode.ERROR, "card declined"))
        providers[1].force_flush()
        providers[0].force_flush()
        if r < rounds - 1:
            time.sleep(gap_s)
    for p in providers:
        p.shutdown()


@pytest.fixture(scope="module")
def sent(ferry: FerryProcess) -> Iterator[dict[str, str]]:
    run = uuid.uuid4().hex[:8]
    names = {"frontend": f"frontend-{run}", "payments": f"payments-{run}", "run": run}
    send_calls(ferry, names["frontend"], names["payments"])
    yield names


def query(ferry: FerryProcess, q: str, **params: Any) -> list[dict[str, Any]]:
    r = httpx.get(f"{ferry.api}/prometheus/api/v1/query", params={"query": q, **params}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["data"]["result"]  # type: ignore[no-any-return]


def by(result: list[dict[str, Any]], label: str) -> dict[str, float]:
    return {s["metric"].get(label, ""): float(s["value"][1]) for s in result}


def wait_value(ferry: FerryProcess, q: str, label: str, want: dict[str, float]) -> dict[str, float]:
    return ferry.wait_for(lambda: (got := by(query(ferry, q), label)) == want and got, timeout=40)  # type: ignore[no-any-return]


def test_calls_and_errors_by_service_under_connector_names(ferry: FerryProcess, sent: dict[str, str]) -> None:
    sel = f'service_name=~".*-{sent["run"]}"'
    total = ROUNDS * CALLS
    wait_value(ferry, f"sum by (service_name) (traces_span_metrics_calls_total{{{sel}}})", "service_name",
               {sent["frontend"]: 2 * total, sent["payments"]: total})
    errors = by(query(ferry, f'sum by (service_name) (traces_span_metrics_calls_total{{{sel}, status_code="STATUS_CODE_ERROR"}})'),
                "service_name")
    assert errors == {sent["payments"]: ROUNDS}
    series = query(ferry, f'traces_span_metrics_calls_total{{{sel}, span_kind="SPAN_KIND_CLIENT"}}')
    assert len(series) == 1
    labels = series[0]["metric"]
    assert labels["job"] == sent["frontend"] and labels["span_name"] == "POST /charge"
    assert labels["status_code"] == "STATUS_CODE_UNSET"
    count = by(query(ferry, f"sum by (service_name) (traces_span_metrics_duration_seconds_count{{{sel}}})"), "service_name")
    assert count == {sent["frontend"]: 2 * total, sent["payments"]: total}
    inf = by(query(ferry, f'sum by (service_name) (traces_span_metrics_duration_seconds_bucket{{{sel}, le="+Inf"}})'), "service_name")
    assert inf == count
    # every charge slept ≥ 3 ms: none is in the 2 ms bucket, all are under 5 s
    small = by(query(ferry, f'sum by (service_name) (traces_span_metrics_duration_seconds_bucket{{{sel}, le="0.002"}})'), "service_name")
    assert small.get(sent["payments"], 0.0) == 0.0
    p99 = by(query(ferry, f"histogram_quantile(0.99, sum by (service_name, le) (traces_span_metrics_duration_seconds_bucket{{{sel}}}))"),
             "service_name")
    assert 0.002 < p99[sent["payments"]] <= 5.0


def test_rate_of_calls_matches_what_was_sent(ferry: FerryProcess, sent: dict[str, str]) -> None:
    """rate() at the last point: each service's calls over the minute (Prometheus' extrapolation
    reaches back one increment from the first point, which is exactly the first round)."""
    sel = f'service_name=~".*-{sent["run"]}"'
    wait_value(ferry, f"sum by (service_name) (traces_span_metrics_calls_total{{{sel}}})", "service_name",
               {sent["frontend"]: 2 * ROUNDS * CALLS, sent["payments"]: ROUNDS * CALLS})
    for svc, total in ((sent["frontend"], 2 * ROUNDS * CALLS), (sent["payments"], ROUNDS * CALLS)):
        last = max(float(s["value"][1]) for s in query(ferry, f'timestamp(traces_span_metrics_calls_total{{service_name="{svc}"}})'))
        got = by(query(ferry, f"sum by (service_name) (rate(traces_span_metrics_calls_total{{{sel}}}[1m]))", time=f"{last:.3f}"),
                 "service_name")
        assert got[svc] == pytest.approx(total / 60, rel=1e-6), got


def test_service_graph_edge_with_failures(ferry: FerryProcess, sent: dict[str, str]) -> None:
    edge = f'client="{sent["frontend"]}", server="{sent["payments"]}"'
    total = ROUNDS * CALLS
    wait_value(ferry, f"sum by (server) (traces_service_graph_request_total{{{edge}}})", "server", {sent["payments"]: total})
    failed = by(query(ferry, f"sum by (server) (traces_service_graph_request_failed_total{{{edge}}})"), "server")
    assert failed == {sent["payments"]: ROUNDS}
    for side in ("server", "client"):
        n = by(query(ferry, f"sum by (client) (traces_service_graph_request_{side}_seconds_count{{{edge}}})"), "client")
        assert n == {sent["frontend"]: total}
    # a callee's own server spans with a parent in the same service make no edge
    assert not query(ferry, f'traces_service_graph_request_total{{client="{sent["payments"]}"}}')
    dropped = ferry.metric("ferry_dropped_records_total", component="spanmetrics", signal="traces", reason="size_limit")
    assert dropped == 0
