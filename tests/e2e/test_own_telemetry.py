"""ferry's own telemetry as a user meets it: its log lines are found with `ferry query service:ferry`,
and its /metrics counters are metrics of service `ferry`, read back like any service's."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from ferry.testing import FerryProcess

PB = {"Content-Type": "application/x-protobuf"}


@pytest.fixture(scope="module")
def ferry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerryProcess]:
    config = {"own_telemetry": {"metrics_interval_s": 1}}
    proc = FerryProcess(tmp_path_factory.mktemp("ferry") / "data", config=config).start()
    try:
        yield proc
    finally:
        proc.stop_cleanly()


def _garbage_to(url: str) -> None:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"\x16\x03\x01 not HTTP at all\r\n\r\n")
        s.settimeout(5)
        try:
            s.recv(1024)
        except OSError:
            pass


def test_ferrys_own_log_lines_are_searchable_as_service_ferry(ferry: FerryProcess) -> None:
    # A WARNING of the store role (uvicorn's, on the API port) and an INFO of the ingest role (a
    # refused request: logged at INFO, stored though the role's log file keeps WARNING).
    _garbage_to(ferry.api)
    assert httpx.post(f"{ferry.otlp_http}/v1/logs", content=b"junk", headers=PB, timeout=10).status_code == 400

    warned = ferry.wait_for(lambda: ferry.search('service:ferry level:warn "Invalid HTTP request"'), timeout=30)
    row = warned[0]
    assert row["service"] == "ferry" and row["source"] == "ferry" and row["level"] == "WARNING"
    assert row["resource"]["ferry.role"] == "store" and row["resource"]["host.name"] == socket.gethostname()
    assert row["attributes"]["logger.name"] == "uvicorn.error"

    refused = ferry.wait_for(lambda: ferry.search('service:ferry ferry.role:ingest "refused"'), timeout=30)
    assert refused[0]["level"] == "INFO" and "malformed" in refused[0]["body"]
    # Not in the role's log file (FERRY_LOG_LEVEL stays WARNING there): only the store has it.
    run_logs = "".join(p.read_text() for p in (ferry.data_dir / "run").glob("ingest-*.log"))
    assert "refused 1 logs records at otlp_http: malformed" not in run_logs

    # The CLI reads them like any service's.
    r = subprocess.run([sys.executable, "-m", "ferry", "query", "service:ferry level:>=warn", "--api", ferry.api],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "Invalid HTTP request" in r.stdout, r.stderr
    # Nothing of ferry's own was left out on the way.
    assert ferry.metric("ferry_dropped_records_total", component="own_telemetry") == 0


def test_ferrys_own_metrics_are_stored_as_service_ferry(ferry: FerryProcess) -> None:
    assert httpx.post(f"{ferry.otlp_http}/v1/logs", content=b"junk", headers=PB, timeout=10).status_code == 400

    def listed() -> dict[str, dict[str, object]]:
        found = ferry.get("/api/v1/metrics", label="service=ferry", since="10m")["metrics"]
        names = {m["name"]: m for m in found}
        return names if {"ferry_refused_records_total", "ferry_store_insert_seconds"} <= set(names) else {}

    names = ferry.wait_for(listed, timeout=60)
    assert names["ferry_refused_records_total"]["kind"] == "sum" and names["ferry_refused_records_total"]["services"] == ["ferry"]
    assert names["ferry_store_insert_seconds"]["kind"] == "histogram" and names["ferry_store_insert_seconds"]["unit"] == "s"
    assert names["ferry_consumer_lag_batches"]["kind"] == "gauge"  # the store's scrape-time gauges too

    def refused_malformed() -> float:
        series = ferry.get("/api/v1/metrics/series", name="ferry_refused_records_total", since="10m", step="600",
                           label=["service=ferry", "component=otlp_http", "reason=malformed"])["series"]
        return max((p[1] for s in series for p in s["points"]), default=0.0)

    # The counter as /metrics has it, read back from the store.
    ferry.wait_for(lambda: refused_malformed() >= ferry.metric("ferry_refused_records_total", component="otlp_http",
                                                               reason="malformed") > 0, timeout=30)
