"""The metrics explorer (/ui/metrics) in a real browser over real data: OTLP metrics from the OpenTelemetry
SDK (a counter, a histogram with exemplars recorded inside a span) and remote_write series.

The browser lists names with their series counts and label cardinalities, draws PromQL as lines, stacked
areas and a bucket heatmap, opens an exemplar's trace, and says what is wrong with a bad query.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from playwright.sync_api import Page, expect

from ferry.testing import FerryProcess
from ferry.testing.promql_suite import send_remote_write
from ferry.testing.screens import screenshot

RUN = uuid.uuid4().hex[:6]
SERVICE = f"uishop{RUN}"
RW_JOB = f"rw{RUN}"
CODES = ["200", "201", "404", "500", "503"]
INSTANCES = ["a:9100", "b:9100"]
SESSIONS = 150  # one series each: over the explorer's warning bound of 100 values for one label
LE = ["0.1", "0.5", "1", "+Inf"]
REGIONS = ["eu", "us", "ap"]


def _rw_series(now_ms: int) -> list[tuple[dict[str, str], list[tuple[int, float]]]]:
    """Half an hour of 15 s samples: request counters by code and instance, a latency histogram whose
    slow buckets grow later in the window (a visible shift in the heatmap), and one session gauge each."""
    ts = [now_ms - 1_800_000 + i * 15_000 for i in range(120)]
    out: list[tuple[dict[str, str], list[tuple[int, float]]]] = []
    for code in CODES:
        for inst in INSTANCES:
            rate = 10.0 if code == "200" else 1.0
            out.append(({"__name__": f"ui_{RUN}_requests_total", "job": RW_JOB, "instance": inst, "code": code},
                        [(t, rate * i) for i, t in enumerate(ts)]))
    cumulative = [0.0] * len(LE)
    samples: list[list[tuple[int, float]]] = [[] for _ in LE]
    for i, t in enumerate(ts):
        slow = i / len(ts)
        per_bucket = [8 * (1 - slow), 4.0, 6 * slow, 1.0]  # new observations per bucket (not cumulative)
        running = 0.0
        for b, n in enumerate(per_bucket):
            running += n
            cumulative[b] += running
            samples[b].append((t, cumulative[b]))
    for b, le in enumerate(LE):
        out.append(({"__name__": f"ui_{RUN}_latency_seconds_bucket", "job": RW_JOB, "le": le}, samples[b]))
    for s in range(SESSIONS):
        out.append(({"__name__": f"ui_{RUN}_sessions", "job": RW_JOB, "session": f"s{s:03d}"},
                    [(ts[-2], 1.0), (ts[-1], 1.0)]))
    return out


@pytest.fixture(scope="module")
def sent(ferry: FerryProcess) -> Iterator[dict[str, Any]]:
    resource = Resource.create({"service.name": SERVICE, "service.instance.id": "pod-1"})
    tp = TracerProvider(resource=resource)
    tp.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{ferry.otlp_http}/v1/traces")))
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{ferry.otlp_http}/v1/metrics"),
                                           export_interval_millis=3_600_000)
    mp = MeterProvider(resource=resource, metric_readers=[reader])
    meter = mp.get_meter("ui.shop", "1.0")
    latency = meter.create_histogram("checkout.duration", unit="s", explicit_bucket_boundaries_advisory=[0.1, 0.5, 1.0])
    orders = meter.create_counter("orders.placed", unit="{order}", description="Orders placed")
    tracer = tp.get_tracer("ui.shop")
    trace_ids: list[str] = []
    for round_ in range(3):
        with tracer.start_as_current_span("POST /checkout") as span:
            for x in (0.05, 0.3, 0.7 + round_ / 10):
                latency.record(x, {"http.route": "/checkout"})
            trace_ids.append(format(span.get_span_context().trace_id, "032x"))
        for region in REGIONS:
            orders.add(1 + round_, {"region": region})
        mp.force_flush()
        time.sleep(1.0)
    send_remote_write(ferry.remote_write_url, _rw_series(int(time.time() * 1000)))

    def ready() -> bool:
        r = httpx.get(f"{ferry.api}/prometheus/api/v1/query", params={
            "query": f'count(ui_{RUN}_sessions) + count(orders_placed_total{{job="{SERVICE}"}}) '
                     f'+ count(checkout_duration_seconds_bucket{{job="{SERVICE}"}})'}, timeout=10)
        res = r.json()["data"]["result"]
        return bool(res) and float(res[0]["value"][1]) == SESSIONS + len(REGIONS) + 4

    ferry.wait_for(ready, timeout=60)
    yield {"trace_ids": trace_ids}
    mp.shutdown()
    tp.shutdown()


def _open(page: Page, ferry: FerryProcess, **params: str) -> None:
    query = "&".join(f"{k}={quote(v)}" for k, v in params.items())
    page.goto(f"{ferry.api}/ui/metrics" + (f"?{query}" if query else ""))


def test_browser_lists_names_with_series_and_label_cardinality(ferry: FerryProcess, sent: dict[str, Any], page: Page) -> None:
    _open(page, ferry)
    search = page.locator("[data-metric-search]")
    search.fill(f"ui_{RUN}")
    rows = page.locator("[data-metric-row]")
    expect(rows).to_have_count(3)
    requests = page.locator(f'[data-metric-row="ui_{RUN}_requests_total"]')
    expect(requests.locator("[data-series-count]")).to_have_text("10 series")
    expect(requests.locator('[data-label="code"]')).to_contain_text("code 5")
    expect(requests.locator('[data-label="instance"]')).to_contain_text("instance 2")
    sessions = page.locator(f'[data-metric-row="ui_{RUN}_sessions"]')
    expect(sessions.locator("[data-series-count]")).to_have_text("150 series")
    # The cardinality warning made visible: the label with 150 values is marked, the small ones are not.
    expect(sessions.locator('[data-label="session"]')).to_have_class(re.compile(r"\bwarn\b"))
    expect(sessions).to_contain_text("many values")
    expect(requests.locator('[data-label="code"]')).not_to_have_class(re.compile(r"\bwarn\b"))

    search.fill("orders_placed")
    orders = page.locator('[data-metric-row="orders_placed_total"]')
    expect(orders.locator("[data-series-count]")).to_have_text("3 series")
    expect(orders).to_contain_text("counter")
    expect(orders).to_contain_text("Orders placed")
    expect(orders.locator('[data-label="region"]')).to_contain_text("region 3")
    # Choosing a metric puts it in the query box and draws it.
    orders.locator("[data-metric-pick]").click()
    expect(page.locator("[data-query]")).to_have_value("orders_placed_total")
    expect(page.locator(".legend-item")).to_have_count(3)


def test_promql_draws_lines_and_stacked_areas_with_named_legend(ferry: FerryProcess, sent: dict[str, Any], page: Page) -> None:
    q = f'sum by (code) (rate(ui_{RUN}_requests_total{{job="{RW_JOB}"}}[2m]))'
    _open(page, ferry, **{"from": "now-1h"})
    box = page.locator("[data-query]")
    box.fill(q)
    box.press("Enter")
    legend = page.locator(".legend-item")
    expect(legend).to_have_count(len(CODES))
    assert sorted(legend.all_inner_texts()) == sorted(f'{{code="{c}"}}' for c in CODES)
    expect(page.locator("#metric-chart canvas").first).to_be_visible()
    # The URL holds the whole state: a reload draws the same chart.
    assert "q=" in page.url and "chart=line" in page.url
    page.locator('[data-chart-type="area"]').click()
    expect(page.locator('[data-chart-type="area"]')).to_have_attribute("aria-pressed", "true")
    assert "chart=area" in page.url
    page.reload()
    expect(page.locator("[data-query]")).to_have_value(q)
    expect(page.locator(".legend-item")).to_have_count(len(CODES))
    expect(page.locator('[data-chart-type="area"]')).to_have_attribute("aria-pressed", "true")


def test_heatmap_of_histogram_buckets(ferry: FerryProcess, sent: dict[str, Any], page: Page) -> None:
    q = f'sum by (le) (rate(ui_{RUN}_latency_seconds_bucket[2m]))'
    _open(page, ferry, q=q, chart="heatmap", step="30")
    heat = page.locator("canvas[data-heatmap]")
    expect(heat).to_be_visible()
    # One row per bucket, labelled by its upper bound; cells drawn (the canvas is not blank).
    expect(page.locator("[data-heatmap-row]")).to_have_count(len(LE))
    assert page.locator("[data-heatmap-row]").all_inner_texts() == ["+Inf", "1", "0.5", "0.1"]
    colours = heat.evaluate("c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                            " const s = new Set(); for (let i = 0; i < d.length; i += 4) s.add(d[i] + ',' + d[i + 1] + ',' + d[i + 2]);"
                            " return s.size; }")
    assert colours >= 4, "cells shaded by rate, not one flat colour"
    page.locator("[data-metric-search]").fill(f"ui_{RUN}")
    expect(page.locator("[data-metric-row]")).to_have_count(3)
    screenshot(page, "metrics")


def test_exemplar_dot_opens_its_trace(ferry: FerryProcess, sent: dict[str, Any], page: Page) -> None:
    q = f'checkout_duration_seconds_bucket{{job="{SERVICE}"}}'
    _open(page, ferry, q=q, **{"from": "now-15m"})
    expect(page.locator(".legend-item")).to_have_count(4)
    dots = page.locator("a.exemplar")
    expect(dots.first).to_be_visible()
    # Each dot links to the trace whose span recorded it (the SDK keeps the latest exemplar per bucket).
    hrefs = set(dots.evaluate_all("ds => ds.map(d => d.getAttribute('href'))"))
    assert hrefs and hrefs <= {f"/ui/traces/{t}" for t in sent["trace_ids"]}, hrefs
    dot = dots.last  # the one drawn on top where dots of nearby times overlap
    trace_id = (dot.get_attribute("href") or "").rsplit("/", 1)[1]
    dot.hover()
    expect(page.locator(".exemplar-tip")).to_contain_text(trace_id)
    dot.click()
    page.wait_for_url(re.compile(rf"/ui/traces/{trace_id}$"))


def test_bad_promql_names_the_problem(ferry: FerryProcess, sent: dict[str, Any], page: Page) -> None:
    _open(page, ferry)
    box = page.locator("[data-query]")
    box.fill("sum(rate(orders_placed_total[5m])")
    box.press("Enter")
    err = page.locator("#metric-chart .error")
    expect(err).to_be_visible()
    expect(err).to_contain_text("unclosed left parenthesis")
    expect(err).to_contain_text("line 1, column 1")
    box.fill("rate(orders_placed_total)")
    box.press("Enter")
    expect(err).to_contain_text("expected type matrix")
