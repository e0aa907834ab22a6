"""Dashboards as code in the browser: the shipped dashboards are listed and "ferry itself" draws ferry's
own metrics; a file written into the folder at runtime appears, a broken one shows its error with its
line, a bad query fails only its own panel, and a variable select changes the URL and the panels."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from ferry.testing import FerryProcess
from ferry.testing.screens import screenshot

PROBE = """\
title: probe
variables:
  - name: signal
    values: [logs, metrics, traces]
    include_all: true
rows:
  - panels:
      - type: stat
        title: good stat
        query: {expr: "count(ferry_received_records_total)"}
      - type: timeseries
        title: broken query
        query: {expr: "ferry_received_records_total / on(job) ferry_received_records_total"}
      - type: table
        title: by signal
        query: {expr: 'sum by (signal) (ferry_received_records_total{signal=~"$signal"})'}
"""


@pytest.fixture(scope="module")
def dash_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("dashboards")
    (d / "probe.yaml").write_text(PROBE)
    return d


@pytest.fixture(scope="module")
def ferry(tmp_path_factory: pytest.TempPathFactory, dash_dir: Path) -> Iterator[FerryProcess]:
    # ferry's own /metrics stored every 2 s instead of 15, so that rates have points within seconds
    proc = FerryProcess(tmp_path_factory.mktemp("ferry") / "data",
                        config={"own_telemetry": {"metrics_interval_s": 2}, "ui": {"dashboards_dir": str(dash_dir)}}).start()
    try:
        # real syslog over TCP, sent while ferry's snapshots come in, so that the ingest rate moves
        sent = [0]

        def has_rate() -> bool:
            with socket.create_connection(("127.0.0.1", proc.syslog_port)) as s:
                for i in range(sent[0], sent[0] + 20):
                    s.sendall(f"<13>Oct 11 22:14:15 web01 shop[{i}]: order {i} paid\n".encode())
            sent[0] += 20
            r = httpx.get(proc.api + "/prometheus/api/v1/query",
                          params={"query": "sum(increase(ferry_received_records_total[1m])) > 0"}, timeout=10).json()
            return bool(r["data"]["result"])

        assert proc.wait_for(has_rate, timeout=60, interval=1), "ferry's own metrics never became queryable"
        yield proc
    finally:
        proc.stop_cleanly()


def open_dashboard(page: Page, ferry: FerryProcess, name: str, query: str = "") -> None:
    page.goto(f"{ferry.api}/ui/dashboards/{name}{query}")
    page.wait_for_function("document.body.dataset.rendered > 0")


def test_the_list_shows_both_shipped_dashboards(ferry: FerryProcess, page: Page) -> None:
    page.goto(ferry.api + "/ui/dashboards")
    expect(page.locator("tr[data-dashboard=ferry] a")).to_have_text("ferry itself")
    expect(page.locator("tr[data-dashboard=services] a")).to_have_text("services")
    expect(page.locator("tr[data-dashboard=probe] a")).to_have_text("probe")
    page.click("tr[data-dashboard=ferry] a")
    page.wait_for_url(re.compile(r"/ui/dashboards/ferry$"))


def test_ferry_itself_draws_its_own_metrics(ferry: FerryProcess, page: Page) -> None:
    open_dashboard(page, ferry, "ferry", "?from=now-15m")
    panels = page.locator(".dash-panel")
    assert panels.count() == 13
    assert page.locator(".dash-panel[data-state=error]").count() == 0, page.locator(".dash-panel .error").all_inner_texts()
    # stat numbers: the disk's free bytes in a binary unit, and the received rate above 0
    disk = page.locator(".dash-panel", has_text="Disk free").first.locator(".dash-stat-value")
    expect(disk).to_have_text(re.compile(r"^\d+(\.\d+)? (KiB|MiB|GiB|TiB)$"))
    received = page.locator(".dash-panel", has_text="Records received").locator(".dash-stat-value")
    assert float(received.get_attribute("data-stat-value") or 0) > 0
    # charts drawn: uPlot canvases with a legend naming the series
    ingest = page.locator(".dash-panel", has_text="Ingest rate by signal")
    expect(ingest.locator("canvas").first).to_be_visible()
    expect(ingest.locator(".u-legend")).to_contain_text("logs")
    expect(page.locator(".dash-panel", has_text="Disk free vs floor").locator(".u-legend")).to_contain_text("floor")
    assert int(page.locator(".dash-panel[data-panel-type=heatmap] canvas").get_attribute("data-cells") or 0) > 0
    expect(page.locator(".dash-panel", has_text="Rows written in the range").locator("td", has_text="otel_logs")).to_be_visible()
    screenshot(page, "dashboards")


def test_services_dashboard_runs_every_query(ferry: FerryProcess, page: Page) -> None:
    # the span metrics may not exist yet: every panel then says "no data", none fails
    open_dashboard(page, ferry, "services")
    assert page.locator(".dash-panel").count() == 9
    assert page.locator(".dash-panel[data-state=error]").count() == 0, page.locator(".dash-panel .error").all_inner_texts()


def test_a_bad_query_fails_only_its_panel(ferry: FerryProcess, page: Page) -> None:
    open_dashboard(page, ferry, "probe")
    broken = page.locator(".dash-panel", has_text="broken query")
    expect(broken.locator(".error")).to_contain_text("duplicate series")
    assert broken.get_attribute("data-state") == "error"
    expect(page.locator(".dash-panel", has_text="good stat").locator(".dash-stat-value")).to_have_text(re.compile(r"^\d+$"))
    assert page.locator(".dash-panel", has_text="by signal").get_attribute("data-state") == "ok"


def test_the_variable_select_changes_the_url_and_the_panels(ferry: FerryProcess, page: Page) -> None:
    open_dashboard(page, ferry, "probe")
    table = page.locator(".dash-panel", has_text="by signal")
    expect(table.locator("tbody tr")).to_have_count(3)  # All
    page.select_option("select[data-variable=signal]", "metrics")
    page.wait_for_url(re.compile(r"var-signal=metrics"))
    expect(table.locator("tbody tr")).to_have_count(1)
    expect(table.locator("tbody td").first).to_have_text("metrics")
    # the URL alone reproduces the page
    open_dashboard(page, ferry, "probe", "?var-signal=traces")
    expect(page.locator("select[data-variable=signal]")).to_have_value("traces")
    expect(table.locator("tbody td").first).to_have_text("traces")


def test_files_written_at_runtime_are_loaded_and_a_broken_one_shows_its_line(
        ferry: FerryProcess, dash_dir: Path, page: Page) -> None:
    page.goto(ferry.api + "/ui/dashboards")
    expect(page.locator("tr[data-dashboard=probe]")).to_be_visible()
    (dash_dir / "later.yaml").write_text(PROBE.replace("title: probe", "title: written later"))
    # the list re-reads every 3 s and ferry the folder every 2 s: no restart, no reload
    expect(page.locator("tr[data-dashboard=later] a")).to_have_text("written later", timeout=15_000)
    broken = PROBE.replace("title: probe", "title: written later").replace("title: good stat", "title: good stat\n        width: 13")
    time.sleep(0.01)
    (dash_dir / "later.yaml").write_text(broken)
    err = page.locator(".dash-errors .error", has_text="later.yaml")
    expect(err).to_contain_text("rows[0].panels[0].width (line 10)", timeout=15_000)
    expect(err).to_contain_text("less than or equal to 12")
    expect(err).to_contain_text(str(dash_dir / "later.yaml"))
    # the last good version is still served, marked stale
    expect(page.locator("tr[data-dashboard=later] .dash-stale")).to_be_visible()
    open_dashboard(page, ferry, "later")
    expect(page.locator(".dash-head .error")).to_contain_text("line 10")
    assert page.locator(".dash-panel").count() == 3
