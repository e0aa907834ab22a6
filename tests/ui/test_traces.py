"""The trace search and trace views in a real browser, over traces an instrumented app sent with the
OpenTelemetry SDK over OTLP: search by service, status and duration (table and scatter plot), the
waterfall with its critical path, the span panel, log lines under their spans and the pivots."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from playwright.sync_api import Page, expect

from ferry.testing import FerryProcess
from ferry.testing.screens import screenshot

MS = 1_000_000


@dataclass
class Shop:
    """What was sent: services, trace ids by name, span ids by span name."""

    run: str
    shop: str
    pay: str
    base_ns: int
    traces: dict[str, str] = field(default_factory=dict)
    spans: dict[str, str] = field(default_factory=dict)


def send_shop(ferry: FerryProcess) -> Shop:
    """Three traces from two services, with explicit times so durations are exact:
    checkout (0-100 ms): load cart 5-25, charge card 30-95 -> authorize (payment service, error with an
    exception) 35-90, send email 40-60; report (slow, 1.5 s) with one child; health (2 ms, one span).
    Log lines are written inside load cart and authorize."""
    run = uuid.uuid4().hex[:8]
    s = Shop(run, f"shop-{run}", f"pay-{run}", time.time_ns() - 30 * 10**9)
    providers = {name: TracerProvider(resource=Resource.create({"service.name": name, "host.name": "web-1"}))
                 for name in (s.shop, s.pay)}
    for tp in providers.values():
        tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=ferry.otlp_http + "/v1/traces")))
    shop_t, pay_t = providers[s.shop].get_tracer("shop"), providers[s.pay].get_tracer("pay")
    lp = LoggerProvider(resource=Resource.create({"service.name": s.shop}))
    lp.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=ferry.otlp_http + "/v1/logs")))
    handler = LoggingHandler(level=logging.INFO, logger_provider=lp)
    pylog = logging.getLogger(f"shop.{run}")

    def at(ms: float) -> int:
        return s.base_ns + int(ms * MS)

    def log(level: int, msg: str, ms: float) -> None:
        rec = pylog.makeRecord(pylog.name, level, __file__, 0, msg, (), None)
        rec.created = at(ms) / 1e9
        handler.handle(rec)

    def span(tracer: otel_trace.Tracer, name: str, start: float, parent: otel_trace.Span | None = None,
             kind: otel_trace.SpanKind = otel_trace.SpanKind.INTERNAL) -> otel_trace.Span:
        ctx = otel_trace.set_span_in_context(parent) if parent is not None else None
        sp = tracer.start_span(name, context=ctx, kind=kind, start_time=at(start))
        s.spans[name] = format(sp.get_span_context().span_id, "016x")
        return sp

    root = span(shop_t, "POST /checkout", 0, kind=otel_trace.SpanKind.SERVER)
    root.set_attributes({"http.method": "POST", "http.route": "/checkout"})
    s.traces["checkout"] = format(root.get_span_context().trace_id, "032x")
    cart = span(shop_t, "load cart", 5, root)
    with otel_trace.use_span(cart):
        log(logging.INFO, f"cart loaded {run}", 10)
    cart.end(at(25))
    charge = span(shop_t, "charge card", 30, root, otel_trace.SpanKind.CLIENT)
    auth = span(pay_t, "authorize", 35, charge, otel_trace.SpanKind.SERVER)
    auth.set_attributes({"payment.amount": 42, "card.brand": "visa"})
    email = span(shop_t, "send email", 40, root)
    email.end(at(60))
    try:
        raise ValueError(f"card declined {run}")
    except ValueError as e:
        auth.record_exception(e, timestamp=at(70))
    auth.set_status(otel_trace.Status(otel_trace.StatusCode.ERROR, "card declined"))
    with otel_trace.use_span(auth):
        log(logging.ERROR, f"payment refused {run}", 80)
    auth.end(at(90))
    charge.end(at(95))
    root.end(at(100))

    report = span(shop_t, "GET /report", 200, kind=otel_trace.SpanKind.SERVER)
    s.traces["report"] = format(report.get_span_context().trace_id, "032x")
    span(shop_t, "render report", 210, report).end(at(1600))
    report.end(at(1700))

    health = span(shop_t, "GET /health", 2000, kind=otel_trace.SpanKind.SERVER)
    s.traces["health"] = format(health.get_span_context().trace_id, "032x")
    health.end(at(2002))

    for tp in providers.values():
        tp.force_flush()
        tp.shutdown()
    lp.force_flush()
    lp.shutdown()
    for name, tid in s.traces.items():
        want = {"checkout": 5, "report": 2, "health": 1}[name]
        ferry.wait_for(lambda tid=tid, want=want: len(ferry.get(f"/api/v1/ui/traces/{tid}")["spans"]) == want)
    ferry.wait_for(lambda: len(ferry.get(f"/api/v1/ui/traces/{s.traces['checkout']}")["logs"]) == 2)
    return s


def send_wide_trace(ferry: FerryProcess, n: int = 1000) -> str:
    """One trace of `n` spans (a root, 20 children, the rest nested four deep under them)."""
    service = f"big-{uuid.uuid4().hex[:8]}"
    tp = TracerProvider(resource=Resource.create({"service.name": service}))
    tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=ferry.otlp_http + "/v1/traces"),
                                             max_export_batch_size=512))
    tracer = tp.get_tracer("big")
    base = time.time_ns() - 20 * 10**9
    root = tracer.start_span("GET /big", start_time=base)
    made = 1
    parents = [root]
    i = 0
    while made < n:
        parent = parents[i // 4] if i >= 20 else root
        sp = tracer.start_span(f"step {made}", context=otel_trace.set_span_in_context(parent),
                               start_time=base + made * 100_000)
        sp.set_attribute("i", made)
        parents.append(sp)
        sp.end(base + made * 100_000 + 50_000 + (made % 7) * 10_000)
        made += 1
        i += 1
    root.end(base + (n + 10) * 100_000)
    tid = format(root.get_span_context().trace_id, "032x")
    tp.force_flush()
    tp.shutdown()
    ferry.wait_for(lambda: len(ferry.get(f"/api/v1/ui/traces/{tid}")["spans"]) == n, timeout=60)
    return tid


@pytest.fixture(scope="module")
def shop(ferry: FerryProcess) -> Iterator[Shop]:
    yield send_shop(ferry)


def _rows(page: Page) -> set[str]:
    page.wait_for_selector("[data-results] table, [data-results] .empty, [data-message] .error")
    return set(page.locator("[data-results] tbody tr").evaluate_all("rows => rows.map(r => r.dataset.traceId)"))


def _search(page: Page, ferry: FerryProcess, **params: str) -> set[str]:
    qs = "&".join(f"{k}={v}" for k, v in params.items())
    page.goto(f"{ferry.api}/ui/traces?{qs}")
    return _rows(page)


def test_search_by_service_status_and_duration(ferry: FerryProcess, shop: Shop, page: Page) -> None:
    t = shop.traces
    assert _search(page, ferry, service=shop.shop) == {t["checkout"], t["report"], t["health"]}
    expect(page.locator("[data-query]")).to_have_value(f'{{ resource.service.name = "{shop.shop}" }}')
    row = page.locator(f"tr[data-trace-id='{t['checkout']}']")
    expect(row).to_contain_text("POST /checkout")
    expect(row).to_contain_text("100.0 ms")
    expect(row.locator("td").nth(5)).to_have_text("5")  # spans
    expect(row.locator(".err-mark")).to_have_text("●")
    expect(page.locator(f"tr[data-trace-id='{t['health']}'] .err-mark")).to_have_text("")

    # The form drives the query and the URL. Its conditions hold for one span, as in TraceQL: the
    # error span is the payment service's, so the shop's spans have none and the payment's one.
    page.select_option("select[name=status]", "error")
    expect(page.locator("[data-query]")).to_have_value(f'{{ resource.service.name = "{shop.shop}" && status = error }}')
    expect(page.locator("[data-results] .empty")).to_have_text("No traces match in this time range.")
    assert "status=error" in page.url
    page.select_option("select[name=service]", shop.pay)
    expect(page.locator("[data-results] tbody tr")).to_have_count(1)
    assert _rows(page) == {t["checkout"]}
    assert f"service={shop.pay}" in page.url

    assert _search(page, ferry, service=shop.shop, minDuration="1s") == {t["report"]}
    expect(page.locator("[data-duration-note]")).to_have_text("trace duration ≥ 1s")
    assert _search(page, ferry, service=shop.shop, maxDuration="10ms") == {t["health"]}
    assert _search(page, ferry, service=shop.shop, minDuration="50ms", maxDuration="200ms") == {t["checkout"]}
    assert _search(page, ferry, tags="payment.amount%3D42") == {t["checkout"]}
    # The logs view links here with status=error and a window.
    assert _search(page, ferry, status="error", **{"from": "now-15m", "to": "now"}) >= {t["checkout"]}
    assert t["report"] not in _rows(page)


def test_scatter_has_a_dot_per_trace_and_a_dot_opens_its_trace(ferry: FerryProcess, shop: Shop, page: Page) -> None:
    window = {"from": str(shop.base_ns - 500 * MS), "to": str(shop.base_ns + 2500 * MS)}
    _search(page, ferry, service=shop.shop, **window)
    plot = page.locator("[data-scatter]")
    expect(plot).to_have_attribute("data-dots", "3")
    screenshot(page, "traces", full_page=False)
    # Where uPlot drew the slow trace's dot, in page pixels: a real click there opens it.
    x, y = page.evaluate("""(id) => {
        const p = document.querySelector('[data-scatter]'), u = p._uplot, t = p._traces.find(t => t.trace_id === id);
        const box = u.over.getBoundingClientRect();
        return [box.left + u.valToPos(t.start_ms / 1e3, 'x'), box.top + u.valToPos(t.duration_ns / 1e6, 'y')];
    }""", shop.traces["report"])
    page.mouse.click(x, y)
    page.wait_for_url(re.compile(rf"/ui/traces/{shop.traces['report']}$"))
    expect(page.locator(".span-row")).to_have_count(2)


def test_drag_on_the_scatter_zooms_the_time_range(ferry: FerryProcess, shop: Shop, page: Page) -> None:
    _search(page, ferry, service=shop.shop)
    box = page.locator("[data-scatter] .u-over").bounding_box()
    assert box
    page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + 20)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + 20, steps=5)
    page.mouse.up()
    page.wait_for_url(re.compile(r"from=\d{16,}"))
    q = parse_qs(urlparse(page.url).query)
    assert int(q["from"][0]) < int(q["to"][0])
    expect(page.locator("[data-results] .empty")).to_contain_text("No traces")  # nothing in that earlier window


def test_waterfall_nesting_errors_critical_path_and_logs(ferry: FerryProcess, shop: Shop, page: Page) -> None:
    page.goto(f"{ferry.api}/ui/traces/{shop.traces['checkout']}")
    page.wait_for_selector("[data-waterfall] .span-row")
    rows = page.locator(".span-row").evaluate_all(
        "rows => rows.map(r => [r.dataset.name, +r.dataset.depth, 'error' in r.dataset, 'critical' in r.dataset])")
    assert rows == [
        ["POST /checkout", 0, False, True],
        ["load cart", 1, False, True],
        ["charge card", 1, False, True],
        ["authorize", 2, True, True],
        ["send email", 1, False, False],  # runs while charge card does: not on the critical path
    ]
    expect(page.locator(".span-row[data-name=authorize] .err-mark")).to_be_visible()
    expect(page.locator(".err-mark")).to_have_count(1)
    expect(page.locator("[data-span-count]")).to_have_text("5 spans")
    # Each log line sits right under its span.
    order = page.locator(".wf-row.span-row, .wf-row.log-row").evaluate_all(
        "rows => rows.map(r => r.dataset.name || ('log:' + r.textContent))")
    assert order[2].startswith("log:") and f"cart loaded {shop.run}" in order[2]
    assert order[1] == "load cart"
    i = order.index("authorize")
    assert f"payment refused {shop.run}" in order[i + 1]
    # Collapsing charge card hides authorize and its log line.
    page.click(".span-row[data-name='charge card'] .toggle")
    expect(page.locator(".span-row[data-name=authorize]")).to_be_hidden()
    expect(page.get_by_text(f"payment refused {shop.run}")).to_be_hidden()
    page.click(".span-row[data-name='charge card'] .toggle")
    expect(page.locator(".span-row[data-name=authorize]")).to_be_visible()


def test_span_panel_shows_attributes_exception_and_pivots(ferry: FerryProcess, shop: Shop, page: Page) -> None:
    tid, sid = shop.traces["checkout"], shop.spans["authorize"]
    page.goto(f"{ferry.api}/ui/traces/{tid}")
    page.click(".span-row[data-name=authorize]")
    panel = page.locator(".side-panel")
    expect(panel).to_contain_text("payment.amount")
    expect(panel.locator(".kv").filter(has_text="card.brand")).to_contain_text("visa")
    expect(panel.locator(".exception")).to_contain_text(f"ValueError: card declined {shop.run}")
    expect(panel.locator(".stack")).to_contain_text("Traceback (most recent call last)")
    expect(panel).to_contain_text("error: card declined")
    expect(panel).to_contain_text(shop.pay)
    assert f"span={sid}" in page.url
    screenshot(page, "trace", full_page=False)

    logs = urlparse(panel.locator("[data-pivot=logs]").get_attribute("href") or "")
    q = parse_qs(logs.query)
    assert logs.path == "/" and q["q"] == [f"trace_id:{tid} span_id:{sid}"]
    start, end = int(q["from"][0]), int(q["to"][0])
    assert start < shop.base_ns + 35 * MS and shop.base_ns + 90 * MS < end
    # The logs search finds exactly the span's line with that query and window.
    found = ferry.get("/api/v1/logs", q=q["q"][0], start=str(start), end=str(end))["logs"]
    assert [r["body"] for r in found] == [f"payment refused {shop.run}"]
    metrics = parse_qs(urlparse(panel.locator("[data-pivot=metrics]").get_attribute("href") or "").query)
    assert metrics["q"] == [f'sum(rate(traces_span_metrics_calls_total{{service_name="{shop.pay}"}}[1m]))']
    assert int(metrics["from"][0]) < shop.base_ns < int(metrics["to"][0])

    page.keyboard.press("Escape")
    expect(page.locator(".side-panel")).to_have_count(0)
    assert "span=" not in page.url
    # A link to the span opens its panel.
    page.goto(f"{ferry.api}/ui/traces/{tid}?span={shop.spans['load cart']}")
    expect(page.locator(".side-panel h2")).to_have_text("load cart")


def test_bad_traceql_names_the_problem(ferry: FerryProcess, shop: Shop, page: Page) -> None:
    page.goto(f"{ferry.api}/ui/traces")
    page.wait_for_selector("[data-results] table, [data-results] .empty")
    page.keyboard.press("/")
    page.keyboard.press("Control+A")
    page.keyboard.type("{ span.http.method = GET && }")
    page.keyboard.press("Enter")
    expect(page.locator("[data-message] .error")).to_contain_text("invalid TraceQL query")
    assert "q=" in page.url
    page.fill("[data-query]", "{ foo = 1 }")
    page.keyboard.press("Enter")
    expect(page.locator("[data-message] .error")).to_contain_text("unknown field 'foo'")
    expect(page.locator("[data-message] .error")).to_contain_text("column 3")
    page.fill("input[name=minDuration]", "soon")
    page.locator("input[name=minDuration]").dispatch_event("change")
    expect(page.locator("[data-message] .error")).to_contain_text("minDuration")


def test_unknown_trace_id_says_not_found(ferry: FerryProcess, shop: Shop, page: Page) -> None:
    missing = uuid.uuid4().hex
    page.goto(f"{ferry.api}/ui/traces/{missing}")
    expect(page.locator("[data-not-found]")).to_contain_text(f"Trace {missing} was not found.")
    page.goto(f"{ferry.api}/ui/traces/not-a-trace")
    expect(page.locator("#view .error")).to_contain_text("trace id must be up to 32 hex digits")
    # Another tenant sees neither the trace nor it in a search.
    other = {"X-Scope-OrgID": "someone-else"}
    tid = shop.traces["checkout"]
    assert httpx.get(f"{ferry.api}/api/v1/ui/traces/{tid}", headers=other, timeout=30).json()["found"] is False
    hits = httpx.get(f"{ferry.api}/api/v1/ui/traces/search", headers=other, timeout=30).json()["traces"]
    assert hits == []
    assert httpx.get(f"{ferry.api}/api/v1/ui/traces/{tid}", timeout=30).json()["found"] is True


def test_thousand_span_trace_renders(ferry: FerryProcess, page: Page) -> None:
    tid = send_wide_trace(ferry, 1000)
    t0 = time.perf_counter()
    page.goto(f"{ferry.api}/ui/traces/{tid}")
    page.wait_for_function("() => performance.getEntriesByName('ferry:trace-rendered').length > 0", polling="raf")
    took = time.perf_counter() - t0
    mark = page.evaluate("() => performance.getEntriesByName('ferry:trace-rendered')[0].startTime")
    print(f"\n1,000-span trace: waterfall on screen {mark:.0f} ms after navigation start "
          f"({took * 1000:.0f} ms as Playwright saw it)")
    expect(page.locator(".span-row")).to_have_count(1000)
    expect(page.locator(".span-row").nth(999)).to_be_visible()
    expect(page.locator(".span-row[data-critical]").first).to_be_visible()
