"""The status page (/ui/status) in a real browser: after real OTLP and remote_write traffic it shows the
topics, the stage instances, the store tables with their rows and retention, and the receivers' state in words.
"""

from __future__ import annotations

import time
import uuid

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from playwright.sync_api import Page, expect

from ferry.testing import FerryProcess
from ferry.testing.promql_suite import send_remote_write
from ferry.testing.screens import screenshot


def _send(ferry: FerryProcess) -> None:
    run = uuid.uuid4().hex[:6]
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{ferry.otlp_http}/v1/metrics"),
                                           export_interval_millis=3_600_000)
    mp = MeterProvider(resource=Resource.create({"service.name": f"status{run}"}), metric_readers=[reader])
    mp.get_meter("status").create_counter("jobs.done").add(3, {"queue": "a"})
    mp.force_flush()
    mp.shutdown()
    now = int(time.time() * 1000)
    send_remote_write(ferry.remote_write_url, [({"__name__": f"status_{run}_up", "job": "x"}, [(now - 15_000, 1.0), (now, 1.0)])])
    def stored() -> bool:
        found = [ferry.get("/prometheus/api/v1/query", query=q)["data"]["result"]
                 for q in (f'jobs_done_total{{job="status{run}"}}', f"status_{run}_up")]
        return all(found)

    ferry.wait_for(stored, timeout=60)


def test_status_page_states_the_pipeline_store_and_receivers(ferry: FerryProcess, page: Page) -> None:
    _send(ferry)
    page.goto(f"{ferry.api}/ui/status")
    expect(page.locator("[data-status-receivers]")).to_contain_text("taking data")
    expect(page.locator("[data-status-disk]")).to_contain_text("free on the data disk; receivers refuse under")
    expect(page.locator("[data-status-spool]")).to_contain_text("batches waiting for the store")
    expect(page.locator("[data-status-lag]")).to_be_visible()
    # The pipeline as it runs: the default topics and stage instances, with who writes and reads each.
    expect(page.locator('[data-topic="metrics"]')).to_contain_text("metrics_parser")
    expect(page.locator('[data-topic="metrics"]')).to_contain_text("receivers.prometheus")
    expect(page.locator('[data-stage="writer"]')).to_contain_text("metrics_commit")
    expect(page.locator('[data-stage="metrics_parser"]')).to_be_visible()
    # The store: the metric tables hold rows, each with its retention from the table's TTL.
    for name in ("otel_metrics_sum", "otel_metrics_gauge"):
        row = page.locator(f'[data-table="{name}"]')
        expect(row).to_contain_text("kept 30 days")
        assert int(row.locator("[data-rows]").inner_text().replace(",", "")) > 0
    expect(page.locator('[data-table="otel_logs"]')).to_contain_text("kept 7 days")
    # It refreshes by itself.
    first = page.locator("[data-updated]").inner_text()
    expect(page.locator("[data-updated]")).not_to_have_text(first, timeout=8000)
    screenshot(page, "status")
