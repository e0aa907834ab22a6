"""The target view (/ui/target) in a real browser: every signal of one host or one service in the window,
over OTel SDK logs, spans and metrics of services on two hosts and syslog lines from one of them.

The host page lists its services (not the other host's), counts its log lines, spans and series exactly as
sent, its metric queries select only its series; pivots lead from it and into it from logs, services, traces.
"""

from __future__ import annotations

import logging
import re
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.metrics import Observation
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind
from playwright.sync_api import Page, expect

from ferry.testing import FerryProcess
from ferry.testing.screens import screenshot

RUN = uuid.uuid4().hex[:6]
HOST_A, HOST_B = f"db{RUN}a", f"db{RUN}b"
WEB, PAY, BATCH, CRON = f"web{RUN}", f"pay{RUN}", f"batch{RUN}", f"cron{RUN}"
OTHER_TENANT = f"t{RUN}"
BUCKETS = [0.1, 0.5, 1.0]


@dataclass
class Proc:
    """One process of a service on a host: what it logs ([(level, message)]), its traces (a list of
    span-count, error) and its metrics."""

    service: str
    host: str
    instance: str
    logs: list[tuple[int, str]]
    traces: list[tuple[int, bool]]
    routes: list[str] = field(default_factory=list)  # one `requests` counter series each (+ a latency histogram)
    queue: bool = False  # an observable gauge `queue.depth`


PROCS = [
    Proc(WEB, HOST_A, "web-a", [(logging.INFO, "GET /home ok")] * 4 + [(logging.ERROR, "cart failed")],
         [(2, True), (2, False), (2, False)], routes=["/home", "/cart"]),
    Proc(PAY, HOST_A, "pay-a", [(logging.INFO, "charge ok")] * 3, [(2, False)], queue=True),
    Proc(WEB, HOST_B, "web-b", [(logging.INFO, "GET /home ok")] * 2 + [(logging.WARNING, "slow")], [(1, False)] * 2,
         routes=["/home"]),
    Proc(BATCH, HOST_B, "batch-b", [(logging.INFO, "batch done")] * 2, [(1, False)], queue=True),
]
SYSLOG_A = [(11, "disk check failed"), (14, "job started"), (14, "job finished")]  # (PRI, message) from HOST_A
TENANT_LINES = 2  # lines another tenant sends from HOST_A


def _logs(of: str) -> int:
    return sum(len(p.logs) for p in PROCS if of in (p.host, p.service)) + (len(SYSLOG_A) if of in (HOST_A, CRON) else 0)


def _spans(of: str) -> int:
    return sum(n for p in PROCS if of in (p.host, p.service) for n, _ in p.traces)


def _error_spans(of: str) -> int:
    return sum(1 for p in PROCS if of in (p.host, p.service) for _, e in p.traces if e)


def _traces(of: str) -> int:
    return sum(len(p.traces) for p in PROCS if of in (p.host, p.service))


def _send(ferry: FerryProcess, p: Proc) -> None:
    resource = Resource.create({"service.name": p.service, "host.name": p.host, "service.instance.id": p.instance})
    tp = TracerProvider(resource=resource)
    tp.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{ferry.otlp_http}/v1/traces")))
    lp = LoggerProvider(resource=resource)
    lp.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{ferry.otlp_http}/v1/logs")))
    handler = LoggingHandler(level=logging.INFO, logger_provider=lp)
    pylog = logging.getLogger(f"target.{p.service}.{p.host}")
    tracer = tp.get_tracer("target")
    for n, error in p.traces:
        with tracer.start_as_current_span(f"GET {p.service}", kind=SpanKind.SERVER) as root:
            for i in range(n - 1):
                with tracer.start_as_current_span(f"step {i}"):
                    pass
            if error:
                root.set_status(otel_trace.Status(otel_trace.StatusCode.ERROR, "boom"))
                # The error line is written inside the failing trace.
                level, msg = next(x for x in p.logs if x[0] == logging.ERROR)
                handler.handle(pylog.makeRecord(pylog.name, level, __file__, 0, msg, (), None))
    for level, msg in p.logs:
        if level != logging.ERROR or not any(e for _, e in p.traces):
            handler.handle(pylog.makeRecord(pylog.name, level, __file__, 0, msg, (), None))
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{ferry.otlp_http}/v1/metrics"),
                                           export_interval_millis=3_600_000)
    mp = MeterProvider(resource=resource, metric_readers=[reader])
    meter = mp.get_meter("target")
    if p.routes:
        requests = meter.create_counter("requests", unit="{request}")
        latency = meter.create_histogram("latency", unit="s", explicit_bucket_boundaries_advisory=BUCKETS)
        for route in p.routes:
            requests.add(3, {"route": route})
        latency.record(0.2, {"route": p.routes[0]})
    if p.queue:
        meter.create_observable_gauge("queue.depth", callbacks=[lambda _: [Observation(4.0, {"q": "main"})]])
    for provider in (lp, tp, mp):
        provider.force_flush()
        provider.shutdown()


def _syslog(ferry: FerryProcess) -> None:
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    lines = "".join(f"<{pri}>1 {now} {HOST_A} {CRON} 77 - - {msg}\n" for pri, msg in SYSLOG_A)
    with socket.create_connection(("127.0.0.1", ferry.syslog_port), timeout=10) as sock:
        sock.sendall(lines.encode())


def _other_tenant(ferry: FerryProcess) -> None:
    resource = Resource.create({"service.name": WEB, "host.name": HOST_A})
    lp = LoggerProvider(resource=resource)
    lp.add_log_record_processor(SimpleLogRecordProcessor(
        OTLPLogExporter(endpoint=f"{ferry.otlp_http}/v1/logs", headers={"X-Scope-OrgID": OTHER_TENANT})))
    pylog = logging.getLogger("target.tenant")
    handler = LoggingHandler(level=logging.INFO, logger_provider=lp)
    for _ in range(TENANT_LINES):
        handler.handle(pylog.makeRecord(pylog.name, logging.INFO, __file__, 0, "another tenant", (), None))
    lp.shutdown()


def target(ferry: FerryProcess, kind: str, name: str, tenant: str | None = None, **params: str) -> httpx.Response:
    headers = {"X-Scope-OrgID": tenant} if tenant else {}
    return httpx.get(f"{ferry.api}/api/v1/ui/target", params={"kind": kind, "name": name, **params},
                     headers=headers, timeout=30)


@pytest.fixture(scope="module")
def sent(ferry: FerryProcess) -> Iterator[None]:
    for p in PROCS:
        _send(ferry, p)
    _syslog(ferry)
    _other_tenant(ferry)

    def landed() -> bool:
        for host in (HOST_A, HOST_B):
            t = target(ferry, "host", host).json()
            if (t["logs"]["count"], t["traces"]["spans"]) != (_logs(host), _spans(host)):
                return False
            if not any(s["name"] == "queue_depth" for s in t["metrics"]["series"]):
                return False
        return target(ferry, "host", HOST_A, OTHER_TENANT).json()["logs"]["count"] == TENANT_LINES

    ferry.wait_for(landed, timeout=40)
    yield


def _series_of(t: dict[str, Any]) -> dict[str, int]:
    return {s["name"]: s["series"] for s in t["metrics"]["series"]}


# --- the API -------------------------------------------------------------------------------------------


def test_api_answers_every_signal_of_a_host(ferry: FerryProcess, sent: None) -> None:
    t = target(ferry, "host", HOST_A).json()
    assert {r["name"] for r in t["related"]} == {WEB, PAY, CRON}
    assert {r["name"]: r["signals"] for r in t["related"]}[CRON] == ["logs"]
    assert t["logs"]["count"] == _logs(HOST_A)
    assert len(t["logs"]["lines"]) == _logs(HOST_A)
    assert {ln["resource"].get("host.name") for ln in t["logs"]["lines"]} == {HOST_A}
    assert (t["traces"]["spans"], t["traces"]["errors"], len(t["traces"]["traces"])) == \
        (_spans(HOST_A), _error_spans(HOST_A), _traces(HOST_A))
    assert t["traces"]["traces"][0]["error"] and t["traces"]["traces"][0]["root_service"] == WEB
    # 2 routes of `requests`; one latency histogram (4 buckets); one queue gauge; a target_info per process.
    assert _series_of(t) == {"requests_total": 2, "latency_seconds_bucket": len(BUCKETS) + 1, "latency_seconds_sum": 1,
                             "latency_seconds_count": 1, "queue_depth": 1, "target_info": 2}
    assert t["metrics"]["inexact_jobs"] == []


def test_api_metric_queries_select_only_the_hosts_series(ferry: FerryProcess, sent: None) -> None:
    for host, instances in ((HOST_A, {"web-a", "pay-a"}), (HOST_B, {"web-b", "batch-b"})):
        for s in target(ferry, "host", host).json()["metrics"]["series"]:
            r = httpx.get(f"{ferry.api}/prometheus/api/v1/query", params={"query": s["query"]}, timeout=30).json()
            got = [x["metric"] for x in r["data"]["result"]]
            assert len(got) == s["series"], (s, got)
            assert {x["instance"] for x in got} <= instances, (s, got)
    # A service's queries are its job: both its hosts' series.
    t = target(ferry, "service", WEB).json()
    assert _series_of(t)["requests_total"] == 3
    q = next(s["query"] for s in t["metrics"]["series"] if s["name"] == "requests_total")
    assert q == f'requests_total{{job="{WEB}"}}'


def test_api_tenancy_and_bad_requests(ferry: FerryProcess, sent: None) -> None:
    other = target(ferry, "host", HOST_A, OTHER_TENANT).json()
    assert other["logs"]["count"] == TENANT_LINES
    assert (other["traces"]["spans"], other["metrics"]["series"]) == (0, [])
    assert [r["name"] for r in other["related"]] == [WEB]
    nobody = target(ferry, "host", HOST_A, f"nobody{RUN}").json()
    assert (nobody["logs"]["count"], nobody["traces"]["spans"], nobody["related"], nobody["metrics"]["series"]) == (0, 0, [], [])
    for params, words in ((dict(kind="pod", name="x"), 'kind: must be host or service'),
                          (dict(kind="host", name=" "), 'name: the host name is required'),
                          (dict(kind="host", name="x", start="yesterday"), 'start: bad time'),
                          (dict(kind="host", name="x", start="2026-01-02T00:00:00Z", end="2026-01-01T00:00:00Z"),
                           "start must be before end")):
        r = httpx.get(f"{ferry.api}/api/v1/ui/target", params=params, timeout=30)
        assert r.status_code == 400 and words in r.json()["error"], (params, r.text)


# --- the page ---------------------------------------------------------------------------------------------


def _open(page: Page, ferry: FerryProcess, kind: str, name: str) -> None:
    page.goto(f"{ferry.api}/ui/target?kind={kind}&name={name}&from=now-1h&to=now")
    expect(page.locator("[data-section=metrics]")).to_be_visible()


def _expect_related(page: Page, names: set[str]) -> None:
    """The related targets shown (the API answers them by name)."""
    expect(page.locator("[data-related] [data-related-name]")).to_have_text(sorted(names))


def test_host_page_shows_every_signal_of_that_host_only(ferry: FerryProcess, sent: None, page: Page) -> None:
    _open(page, ferry, "host", HOST_A)
    expect(page.locator("[data-target-name]")).to_have_text(HOST_A)
    expect(page.locator("[data-kind]")).to_have_text("host")
    _expect_related(page, {WEB, PAY, CRON})  # not the other host's batch service
    # Logs: the count, the histogram, the lines (level colours), the explorer link with the same window.
    logs = page.locator("[data-section=logs]")
    expect(logs.locator("[data-log-count]")).to_have_text(f"{_logs(HOST_A)} lines")
    expect(logs.locator("[data-log-histogram] canvas")).to_have_count(1)
    expect(logs.locator("[data-line]")).to_have_count(_logs(HOST_A))
    expect(logs.locator("[data-line].lvl-error")).to_have_count(2)  # the web error and syslog's ERR
    expect(logs.locator("[data-line]", has_text=BATCH)).to_have_count(0)
    link = parse_qs(urlparse(logs.locator("[data-open=logs]").get_attribute("href") or "").query)
    assert link == {"q": [f"host:{HOST_A}"], "from": ["now-1h"], "to": ["now"]}
    # Traces: span and error counts, the traces (the failing one first and marked).
    tr = page.locator("[data-section=traces]")
    expect(tr.locator("[data-span-count]")).to_have_text(f"{_spans(HOST_A)} spans")
    expect(tr.locator("[data-error-count]")).to_have_text(f"{_error_spans(HOST_A)} error span")
    rows = tr.locator("[data-traces] tbody tr")
    expect(rows).to_have_count(_traces(HOST_A))
    expect(rows.first.locator(".err-mark")).to_have_text("●")
    expect(rows.first).to_contain_text(f"GET {WEB}")
    errors = parse_qs(urlparse(tr.locator("[data-open=error-traces]").get_attribute("href") or "").query)
    assert errors["tags"] == [f"resource.host.name={HOST_A}"] and errors["status"] == ["error"]
    # Metrics: the names with series counts, each opening the explorer with a query for this host.
    m = page.locator("[data-section=metrics]")
    expect(m.locator("[data-metric]")).to_have_count(6)
    expect(m.locator('[data-metric="requests_total"] [data-col=series]')).to_have_text("2")
    expect(m.locator('[data-metric="latency_seconds_bucket"] [data-col=series]')).to_have_text(str(len(BUCKETS) + 1))
    screenshot(page, "target")
    m.locator('[data-metric-link="requests_total"]').click()
    page.wait_for_url("**/ui/metrics?**")
    assert parse_qs(urlparse(page.url).query)["q"] == [f'requests_total{{job="{WEB}", instance="web-a"}}']
    expect(page.locator("#metric-chart .uplot")).to_have_count(1)
    # Dragging across the histogram zooms the whole page into that window (the URL holds it).
    _open(page, ferry, "host", HOST_A)
    box = logs.locator("[data-log-histogram] .u-over").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + 20)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.99, box["y"] + 20, steps=5)
    page.mouse.up()
    expect(page.locator("[data-time-from]")).to_have_value(re.compile(r"^\d{19}$"))
    zoomed = parse_qs(urlparse(page.url).query)
    assert zoomed["kind"] == ["host"] and zoomed["from"][0].isdigit() and zoomed["to"][0].isdigit()
    expect(page.locator("[data-section=metrics]")).to_be_visible()


def test_pivot_from_host_to_service_and_back(ferry: FerryProcess, sent: None, page: Page) -> None:
    _open(page, ferry, "host", HOST_A)
    page.locator(f'[data-related-name="{WEB}"]').click()
    expect(page.locator("[data-target-name]")).to_have_text(WEB)
    expect(page.locator("[data-kind]")).to_have_text("service")
    assert parse_qs(urlparse(page.url).query) == {"kind": ["service"], "name": [WEB], "from": ["now-1h"], "to": ["now"]}
    _expect_related(page, {HOST_A, HOST_B})
    expect(page.locator("[data-log-count]")).to_have_text(f"{_logs(WEB)} lines")
    expect(page.locator("[data-span-count]")).to_have_text(f"{_spans(WEB)} spans")
    expect(page.locator("[data-traces] tbody tr")).to_have_count(_traces(WEB))
    link = parse_qs(urlparse(page.locator("[data-open=logs]").get_attribute("href") or "").query)
    assert link["q"] == [f"service:{WEB}"]
    expect(page.locator('[data-metric="requests_total"] [data-col=series]')).to_have_text("3")
    page.locator(f'[data-related-name="{HOST_B}"]').click()
    expect(page.locator("[data-target-name]")).to_have_text(HOST_B)
    _expect_related(page, {WEB, BATCH})
    expect(page.locator("[data-log-count]")).to_have_text(f"{_logs(HOST_B)} lines")


def test_links_into_the_target_page(ferry: FerryProcess, sent: None, page: Page) -> None:
    # A log row's host.
    page.goto(f"{ferry.api}/?q=service:{CRON}")
    row = page.locator("[data-rows] > [data-row]").first
    row.locator(".line").click()
    row.locator("[data-target-link=host]").click()
    expect(page.locator("[data-target-name]")).to_have_text(HOST_A)
    assert parse_qs(urlparse(page.url).query)["kind"] == ["host"]
    # The services view lists services whose span metrics have a rate (they arrive a little after the spans).
    rate = f'rate(traces_span_metrics_calls_total{{service_name="{WEB}"}}[1h])'
    ferry.wait_for(lambda: httpx.get(f"{ferry.api}/prometheus/api/v1/query", params={"query": rate},
                                     timeout=10).json()["data"]["result"], timeout=30)
    page.goto(f"{ferry.api}/ui/services")
    page.locator(f'[data-target-link="{WEB}"]').click()
    expect(page.locator("[data-target-name]")).to_have_text(WEB)
    expect(page.locator("[data-span-count]")).to_have_text(f"{_spans(WEB)} spans")
    # A trace's span panel: the service, and the host from the span's resource.
    trace_id = page.locator("[data-traces] tbody tr").first.get_attribute("data-trace-id")
    page.goto(f"{ferry.api}/ui/traces/{trace_id}")
    page.locator(".span-row").first.click()
    panel = page.locator(".side-panel")
    expect(panel.locator("[data-pivot=target-service]")).to_have_text(f"All signals of {WEB}")
    panel.locator("[data-pivot=target-host]").click()
    expect(page.locator("[data-target-name]")).to_have_text(HOST_A)
    expect(page.locator("[data-kind]")).to_have_text("host")


def test_a_bad_target_says_what_is_wrong(ferry: FerryProcess, sent: None, page: Page) -> None:
    page.goto(f"{ferry.api}/ui/target?kind=pod&name=x")
    expect(page.locator("[role=alert]")).to_contain_text('kind: must be host or service')
    page.goto(f"{ferry.api}/ui/target?kind=host&name=nohost{RUN}")
    expect(page.locator("[data-section=logs] .empty")).to_have_text("No log lines from this host in this time range.")
    expect(page.locator("[data-section=traces] .empty")).to_have_text("No spans from this host in this time range.")
    expect(page.locator("[data-section=metrics] .empty")).to_have_text("No metrics from this host in this time range.")
    expect(page.locator("[data-related]")).to_contain_text("none seen in this time range")


# --- tenants ----------------------------------------------------------------------------------------------


def test_api_lists_the_tenants_with_data(ferry: FerryProcess, sent: None) -> None:
    r = httpx.get(f"{ferry.api}/api/v1/tenants", timeout=30)
    assert r.status_code == 200, r.text
    ans = r.json()
    assert (ans["default"], ans["current"]) == ("default", "default")
    by = {t["tenant"]: t for t in ans["tenants"]}
    assert (by[OTHER_TENANT]["logs"], by[OTHER_TENANT]["spans"], by[OTHER_TENANT]["metric_points"]) == (TENANT_LINES, 0, 0)
    assert by["default"]["logs"] >= _logs(HOST_A) + _logs(HOST_B) and by["default"]["spans"] >= _spans(HOST_A)
    assert by["default"]["metric_points"] > 0
    named = httpx.get(f"{ferry.api}/api/v1/tenants", headers={"X-Scope-OrgID": OTHER_TENANT}, timeout=30).json()
    assert named["current"] == OTHER_TENANT and named["tenants"] == ans["tenants"]
    bad = httpx.get(f"{ferry.api}/api/v1/tenants", params={"since": "lately"}, timeout=30)
    assert bad.status_code == 400 and bad.json()["error"].startswith("since:"), bad.text


def test_tenant_picker_switches_what_every_view_reads(ferry: FerryProcess, sent: None, page: Page) -> None:
    _open(page, ferry, "host", HOST_A)
    picker = page.locator("[data-tenant]")
    expect(picker).to_have_value("default")
    expect(page.locator("[data-log-count]")).to_have_text(f"{_logs(HOST_A)} lines")
    picker.select_option(OTHER_TENANT)
    page.wait_for_url(re.compile(rf"[?&]tenant={OTHER_TENANT}(&|$)"))
    expect(page.locator("[data-log-count]")).to_have_text(f"{TENANT_LINES} lines")
    _expect_related(page, {WEB})  # that tenant sent logs of one service, and no spans or metrics
    expect(page.locator("[data-section=metrics] .empty")).to_have_text("No metrics from this host in this time range.")
    # The choice follows to the other views (their links do not carry it) and into the URL.
    page.locator("header nav a[data-view=logs]").click()
    page.wait_for_url(re.compile(rf"[?&]tenant={OTHER_TENANT}(&|$)"))
    rows = page.locator("[data-rows] > [data-row]")
    expect(rows).to_have_count(TENANT_LINES)
    expect(rows.filter(has_text="another tenant")).to_have_count(TENANT_LINES)
    # Back to the configured tenant: its lines, none of the other's, and no tenant in the URL.
    page.locator("[data-tenant]").select_option("default")
    page.wait_for_url(lambda url: "tenant=" not in url)
    expect(rows.first).to_be_visible()
    expect(rows.filter(has_text="another tenant")).to_have_count(0)
