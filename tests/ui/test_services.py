"""The services view in a real browser: RED per service from the span metrics of three OpenTelemetry
SDK services calling each other, the service map's edges, a service's charts, operations and pivots."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from playwright.sync_api import Page, expect

from ferry.testing import FerryProcess
from ferry.testing.screens import screenshot

ROUNDS, CALLS = 3, 4
SERVER, CLIENT = otel_trace.SpanKind.SERVER, otel_trace.SpanKind.CLIENT


@pytest.fixture(scope="module")
def sent(ferry: FerryProcess) -> Iterator[dict[str, Any]]:
    """web GET / → checkout POST /checkout → payments POST /charge (one charge in four fails), each
    service exporting each round as its own request."""
    run = uuid.uuid4().hex[:6]
    names = [f"web-{run}", f"checkout-{run}", f"payments-{run}"]
    providers = []
    for name in names:
        tp = TracerProvider(resource=Resource.create({"service.name": name}))
        tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{ferry.otlp_http}/v1/traces"),
                                                 schedule_delay_millis=60_000))
        providers.append(tp)
    web, checkout, payments = (p.get_tracer("shop") for p in providers)
    for r in range(ROUNDS):
        for i in range(CALLS):
            with web.start_as_current_span("GET /", kind=SERVER), \
                 web.start_as_current_span("POST /checkout", kind=CLIENT), \
                 checkout.start_as_current_span("POST /checkout", kind=SERVER), \
                 checkout.start_as_current_span("POST /charge", kind=CLIENT), \
                 payments.start_as_current_span("POST /charge", kind=SERVER) as charge:
                time.sleep(0.002)
                if i == 0:
                    charge.set_status(otel_trace.Status(otel_trace.StatusCode.ERROR, "card declined"))
        for p in reversed(providers):
            p.force_flush()
        if r < ROUNDS - 1:
            time.sleep(0.3)
    for p in providers:
        p.shutdown()
    q = f'sum(traces_service_graph_request_total{{client="{names[1]}"}})'

    def edges_in() -> bool:
        r = httpx.get(f"{ferry.api}/prometheus/api/v1/query", params={"query": q}, timeout=10).json()["data"]["result"]
        return bool(r) and float(r[0]["value"][1]) == ROUNDS * CALLS

    ferry.wait_for(edges_in, timeout=40)
    # The picked window ends 20 s after the data: a chart's points (every 3 s) then fall after all of it.
    end_ns = time.time_ns() + 20 * 10**9
    yield {"run": run, "web": names[0], "checkout": names[1], "payments": names[2],
           "from": str(end_ns - 600 * 10**9), "to": str(end_ns)}


def prom(ferry: FerryProcess, expr: str, at_ns: str) -> dict[str, float]:
    r = httpx.get(f"{ferry.api}/prometheus/api/v1/query", params={"query": expr, "time": f"{int(at_ns) / 1e9:.3f}"}, timeout=10)
    return {s["metric"].get("service_name", ""): float(s["value"][1]) for s in r.json()["data"]["result"]}


def test_services_table_map_and_drill_down(ferry: FerryProcess, page: Page, sent: dict[str, Any]) -> None:
    run = sent["run"]
    page.goto(f"{ferry.api}/ui/services?from={sent['from']}&to={sent['to']}&filter=.*-{run}")
    table = page.locator("[data-red-table]")
    page.wait_for_selector("[data-red-table]", timeout=30_000)  # eight PromQL queries over the window
    expect(table.locator("tbody tr")).to_have_count(3)
    pay = table.locator(f'tr[data-row="{sent["payments"]}"]')
    expect(pay.locator('[data-col="errors"]')).to_have_text("25%")
    expect(table.locator(f'tr[data-row="{sent["web"]}"] [data-col="errors"]')).to_have_text("0%")
    # the rate shown is PromQL's over the picked 10 minutes, formatted; about 12 calls / 600 s
    want = prom(ferry, f'sum by (service_name) (rate(traces_span_metrics_calls_total{{service_name=~".*-{run}", '
                       f'span_kind=~"SPAN_KIND_SERVER|SPAN_KIND_CONSUMER"}}[600s]))', sent["to"])
    assert 0.5 * 12 / 600 < want[sent["payments"]] < 1.5 * 12 / 600
    shown = page.evaluate("(v) => ferry.fmtNum(v) + '/s'", want[sent["payments"]])
    expect(pay.locator('[data-col="rate"]')).to_have_text(shown)
    for col in ("p50", "p95", "p99"):
        expect(pay.locator(f'[data-col="{col}"]')).to_have_text(re.compile(r"^[\d.]+ (ms|µs|s)$"))

    # the map: web → checkout → payments, left to right, each arrow with its rate and failed share
    svg = page.locator("[data-service-map]")
    edge = svg.locator(f'[data-edge="{sent["checkout"]}->{sent["payments"]}"] text')
    expect(edge).to_have_text(re.compile(r"^[\d.]+/s · 25% err$"))
    expect(svg.locator(f'[data-edge="{sent["web"]}->{sent["checkout"]}"] text')).to_have_text(re.compile(r"^[\d.]+/s · 0% err$"))
    xs = [float(svg.locator(f'[data-node="{sent[s]}"] rect').get_attribute("x") or "nan") for s in ("web", "checkout", "payments")]
    assert xs[0] < xs[1] < xs[2], xs
    screenshot(page, "services")

    # one service: RED charts, its operations, the callers and callees, the pivots
    table.locator(f'a[data-service="{sent["checkout"]}"]').click()
    page.wait_for_url(re.compile(r"service=checkout-"))
    page.wait_for_selector("[data-service-title]", timeout=30_000)
    expect(page.locator("[data-service-title]")).to_have_text(sent["checkout"])
    expect(page.locator("[data-chart] .uplot")).to_have_count(3)
    ops = page.locator("[data-red-table] tbody tr")
    expect(ops).to_have_count(2)
    expect(page.locator('[data-red-table] tr[data-row="POST /checkout"] [data-col="errors"]')).to_have_text("0%")
    expect(page.locator('[data-red-table] tr[data-row="POST /charge"] [data-col="rate"]')).to_have_text("–")  # a client span
    expect(page.locator("[data-service-map] [data-edge]")).to_have_count(2)
    assert page.locator('[data-pivot="logs"]').get_attribute("href") == f"/?q={quote('service:' + sent['checkout'])}"
    assert page.locator('[data-pivot="traces"]').get_attribute("href") == f"/ui/traces?service={sent['checkout']}"
    assert page.locator('[data-pivot="errors"]').get_attribute("href") == f"/ui/traces?service={sent['checkout']}&status=error"
    page.locator("[data-back]").click()
    expect(page.locator("[data-red-table] tbody tr").first).to_be_visible()


def test_bad_filter_and_empty_range_say_so(ferry: FerryProcess, page: Page, sent: dict[str, Any]) -> None:
    page.goto(f"{ferry.api}/ui/services?filter=(unclosed")
    expect(page.locator(".error")).to_contain_text('The filter "(unclosed" is not a valid regular expression')
    page.goto(f"{ferry.api}/ui/services?from=2001-01-01T00:00:00Z&to=2001-01-01T01:00:00Z")
    expect(page.locator("[data-body] .empty").first).to_contain_text("No span metrics in this time range")
