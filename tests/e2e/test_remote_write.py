"""A real Prometheus 2.42 scrapes a target and remote_writes to ferry: the series land with Prometheus'
exact labels and values, exemplars and metadata too, staleness markers keep their bits; bad bodies are
400 naming the problem (the good part stored), backpressure is 429 with Retry-After.
"""

from __future__ import annotations

import http.server
import multiprocessing as mp
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cramjam
import httpx
import pytest

from ferry.host.faults import FAULTS_ENV
from ferry.receivers.prometheus import proto
from ferry.store import WRAPPER_ENV
from ferry.testing import FerryProcess, free_port
from ferry.testing.faulty_store import SPEC

_UNPACKED = Path(__file__).resolve().parents[2] / ".cache/peers/bin/prometheus"
PROMETHEUS = str(_UNPACKED) if _UNPACKED.exists() else shutil.which("prometheus")
TRACE = "0af7651916cd43dd8448eb211c80319c"
SNAPPY = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
          "X-Prometheus-Remote-Write-Version": "0.1.0"}
pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed")


class _Target(http.server.BaseHTTPRequestHandler):
    """An OpenMetrics page with a counter the test sets, labels that need escapes, and an exemplar."""

    count = 5.0

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        page = (
            "# TYPE demo_requests counter\n# HELP demo_requests Requests served.\n"
            f'demo_requests_total{{path="/a b",quote="say \\"hi\\"\\\\"}} {self.count} # {{trace_id="{TRACE}"}} 1.5\n'
            "# TYPE demo_temperature gauge\n# HELP demo_temperature Temperature now.\n"
            'demo_temperature{room="x"} -12.5\n# EOF\n'
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/openmetrics-text; version=1.0.0; charset=utf-8")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def ferry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerryProcess]:
    f = FerryProcess(tmp_path_factory.mktemp("rw") / "data").start()
    try:
        yield f
    finally:
        f.stop_cleanly()


@pytest.fixture(scope="module")
def prometheus(ferry: FerryProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("prom")
    target = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Target)
    threading.Thread(target=target.serve_forever, daemon=True).start()
    port = free_port()
    conf = tmp / "prometheus.yml"
    conf.write_text(
        "global: {scrape_interval: 1s}\n"
        f"scrape_configs: [{{job_name: demo, static_configs: [{{targets: ['127.0.0.1:{target.server_address[1]}']}}]}}]\n"
        f"remote_write: [{{url: '{ferry.remote_write_url}', send_exemplars: true,\n"
        "  queue_config: {batch_send_deadline: 500ms, min_backoff: 100ms, max_backoff: 1s},\n"
        "  metadata_config: {send: true, send_interval: 1s}}]\n"
    )
    prom = subprocess.Popen(
        [str(PROMETHEUS), f"--config.file={conf}", f"--storage.tsdb.path={tmp / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--enable-feature=exemplar-storage"],
        stdout=open(tmp / "prometheus.log", "wb"), stderr=subprocess.STDOUT,
    )
    try:
        yield {"api": f"http://127.0.0.1:{port}/api/v1", "target": target, "log": tmp / "prometheus.log"}
    finally:
        target.shutdown()
        prom.terminate()
        try:
            prom.wait(5)
        except subprocess.TimeoutExpired:  # still flushing its queue to a ferry that has stopped
            prom.kill()
            prom.wait()


def _prom_samples(api: str, query: str) -> dict[str, Any]:
    """Prometheus' own raw samples of the last minute: labels -> {second: value}."""
    r = httpx.get(f"{api}/query", params={"query": f"{query}[1m]"}, timeout=5)
    if r.status_code != 200:
        return {}
    out = {}
    for s in r.json()["data"]["result"]:
        labels = dict(s["metric"])
        name = labels.pop("__name__")
        out[(name, tuple(sorted(labels.items())))] = {int(float(t)): float(v) for t, v in s["values"]}
    return out


def _ferry_points(f: FerryProcess, name: str) -> dict[Any, Any]:
    got = f.get("/api/v1/metrics/series", name=name, step=1, since="5m")
    return {(name, tuple(sorted(s["labels"].items()))): ({int(t): v for t, v in s["points"] if v is not None},
                                                         s["exemplars"], s["service"]) for s in got["series"]}


def test_scraped_series_land_as_prometheus_has_them(ferry: FerryProcess, prometheus: dict[str, Any]) -> None:
    api = prometheus["api"]
    for name in ("demo_requests_total", "demo_temperature", "up", "scrape_duration_seconds"):
        def same(name: str = name) -> bool:
            want = _prom_samples(api, name)
            have = _ferry_points(ferry, name)
            if not want or set(want) != set(have):
                return False
            # Every second both hold has the same value; at least three of them.
            common = [(k, t) for k in want for t in want[k] if t in have[k][0]]
            return len(common) >= 3 and all(want[k][t] == have[k][0][t] for k, t in common)

        ferry.wait_for(same, timeout=40)
    have = _ferry_points(ferry, "demo_requests_total")
    ((key, (_, exemplars, service)),) = have.items()
    assert dict(key[1])["quote"] == 'say "hi"\\' and dict(key[1])["path"] == "/a b" and dict(key[1])["job"] == "demo"
    assert service == "demo", "ServiceName is the job label"
    ferry.wait_for(lambda: TRACE in _ferry_points(ferry, "demo_requests_total")[key][1], timeout=30)
    ferry.wait_for(lambda: ferry.get("/api/v1/status")["stored"]["prom_metadata"] >= 2, timeout=30)
    assert ferry.metric("ferry_received_records_total", component="prometheus") > 0


def _post(f: FerryProcess, req: Any, **headers: str) -> httpx.Response:
    body = bytes(cramjam.snappy.compress_raw(req.SerializeToString()))
    return httpx.post(f.remote_write_url, content=body, headers={**SNAPPY, **headers}, timeout=10)


def test_bad_bodies_are_400_naming_the_problem_and_the_good_part_lands(ferry: FerryProcess) -> None:
    r = httpx.post(ferry.remote_write_url, content=b"\xff\x01not snappy", headers=SNAPPY, timeout=10)
    assert r.status_code == 400 and "snappy" in r.text
    r = httpx.post(ferry.remote_write_url, content=bytes(cramjam.snappy.compress_raw(b"\x0a\x7fjunk")), headers=SNAPPY)
    assert r.status_code == 400 and "WriteRequest" in r.text
    r = httpx.post(ferry.remote_write_url, content=b"x", headers={"Content-Type": "application/x-protobuf"})
    assert r.status_code == 400 and "snappy" in r.text
    r = httpx.post(ferry.remote_write_url.replace("/write", "/push"), content=b"\x00" * 40_000_000, headers=SNAPPY)
    assert r.status_code == 413

    tag = f"good_{uuid.uuid4().hex[:8]}"
    now = int(time.time() * 1000)
    req = proto.WriteRequest()
    good = req.timeseries.add()
    good.labels.add(name="__name__", value=tag)
    good.samples.add(value=42, timestamp=now)
    nameless = req.timeseries.add()
    nameless.labels.add(name="job", value="x")
    nameless.samples.add(value=1, timestamp=now)
    native = req.timeseries.add()
    native.labels.add(name="__name__", value="native_one")
    native.histograms.add(count_int=1, timestamp=now)
    before = ferry.metric("ferry_refused_records_total", component="prometheus", reason="invalid_label")
    r = _post(ferry, req, **{"X-Scope-OrgID": "team-a"})
    assert r.status_code == 400 and "no __name__ label" in r.text and "native histogram" in r.text
    assert ferry.metric("ferry_refused_records_total", component="prometheus", reason="invalid_label") == before + 1
    assert ferry.metric("ferry_refused_records_total", component="prometheus", reason="native_histogram") >= 1

    def names(tenant: str) -> set[str]:
        got = httpx.get(ferry.api + "/api/v1/metrics", params={"since": "5m"}, headers={"X-Scope-OrgID": tenant})
        return {m["name"] for m in got.json()["metrics"]}

    ferry.wait_for(lambda: tag in names("team-a"), timeout=30)
    assert tag not in names("default")  # the good series is team-a's alone


def _stored_samples(f: FerryProcess, tag: str) -> int:
    """Samples of metric `tag` in the last 10 minutes, through ferry's PromQL API."""
    r = httpx.get(f"{f.api}/prometheus/api/v1/query", params={"query": f"sum(count_over_time({tag}[10m]))"}, timeout=30)
    result = r.json()["data"]["result"]
    return int(float(result[0]["value"][1])) if result else 0


def _request(tag: str, series: int, *, samples: int = 1, bad: bool = False) -> Any:
    """`series` series of metric `tag` with unique, incompressible label values; `bad` adds a nameless one."""
    now = int(time.time() * 1000)
    req = proto.WriteRequest()
    for _ in range(series):
        ts = req.timeseries.add()
        ts.labels.add(name="__name__", value=tag)
        ts.labels.add(name="id", value=uuid.uuid4().hex)
        for k in range(samples):
            ts.samples.add(value=float(k), timestamp=now - 1000 * (samples - k))
    if bad:
        nameless = req.timeseries.add()
        nameless.labels.add(name="job", value="x")
        nameless.samples.add(value=1, timestamp=now)
    return req


def test_a_retried_request_lands_once(ferry: FerryProcess) -> None:
    """Sent again (Prometheus retries after a timeout or a 5xx): stored once, whether the request was taken
    as it came (decoded by the metrics parser) or decoded by the receiver because a series was refused."""
    for bad in (False, True):
        tag = f"retried_{uuid.uuid4().hex[:8]}"
        req = _request(tag, 300, samples=3, bad=bad)
        for _ in range(3):
            assert _post(ferry, req).status_code == (400 if bad else 204)
        ferry.wait_for(lambda tag=tag: _stored_samples(ferry, tag) >= 900, timeout=30)
        time.sleep(1.0)  # a duplicate would land right behind the first copy
        assert _stored_samples(ferry, tag) == 900


def test_a_request_too_big_to_carry_whole_lands_whole(ferry: FerryProcess) -> None:
    """A request over what one bus message takes as it came is decoded by the receiver and its rows split
    across messages: every sample lands."""
    from ferry.receivers.prometheus.component import RAW_MAX_BYTES

    tag = f"big_{uuid.uuid4().hex[:8]}"
    req = _request(tag, 30_000)
    assert len(cramjam.snappy.compress_raw(req.SerializeToString())) > RAW_MAX_BYTES
    assert _post(ferry, req).status_code == 204
    ferry.wait_for(lambda: _stored_samples(ferry, tag) == 30_000, timeout=60)


def _read_store(path: str, tag: str) -> dict[str, Any]:
    from ferry.store.chdb_store import ChdbStore
    from ferry.store.sql import literal

    s = ChdbStore(Path(path))
    try:
        return {
            "meta": s.query_rows("SELECT MetricFamily, Type, Help, Tenant FROM prom_metadata "
                                 "WHERE MetricFamily LIKE 'demo_%' GROUP BY ALL ORDER BY MetricFamily"),
            "stale": s.query_rows("SELECT reinterpretAsUInt64(Value) AS bits, Flags FROM otel_metrics_gauge "
                                  "WHERE MetricName = 'demo_temperature' AND Flags = 1"),
            "tagged": s.query_rows(f"SELECT Tenant, Value, ScopeName, Source, toUnixTimestamp64Nano(StartTimeUnix) AS st "
                                   f"FROM otel_metrics_gauge WHERE MetricName = {literal(tag)}"),
        }
    finally:
        s.close()


def test_staleness_metadata_and_tenant_as_stored(ferry: FerryProcess, prometheus: dict[str, Any]) -> None:
    """Last in the module: the target goes away (Prometheus writes staleness markers), ferry stops, and
    the store shows the markers' bits, the metadata rows and the tenant."""
    tag = f"tenant_{uuid.uuid4().hex[:8]}"
    req = proto.WriteRequest()
    s = req.timeseries.add()
    s.labels.add(name="__name__", value=tag)
    s.samples.add(value=7, timestamp=int(time.time() * 1000))
    assert _post(ferry, req, **{"X-Scope-OrgID": "team-b"}).status_code == 204
    prometheus["target"].shutdown()
    prometheus["target"].server_close()
    time.sleep(4)  # a failed scrape or two: Prometheus marks the series stale and remote_writes the markers
    ferry.stop_cleanly()
    with mp.get_context("spawn").Pool(1) as pool:
        got = pool.apply(_read_store, (str(ferry.data_dir / "store"), tag))
    assert {(m["MetricFamily"], m["Type"], m["Help"]) for m in got["meta"]} >= {
        ("demo_requests", "counter", "Requests served."), ("demo_temperature", "gauge", "Temperature now.")}
    assert got["stale"] and all(int(r["bits"]) == 0x7FF0000000000002 for r in got["stale"])
    assert got["tagged"] == [{"Tenant": "team-b", "Value": 7.0, "ScopeName": "prometheus.remote_write",
                              "Source": "prometheus", "st": 0}]


def test_backpressure_is_429_with_retry_after(tmp_path: Path) -> None:
    faults = tmp_path / "faults"
    faults.write_text("store")
    f = FerryProcess(tmp_path / "data", config={
        "pipeline": {"stages": {"writer": {"retries": 1000, "backoff_s": 0.2}}},
        "backpressure": {"max_pending_batches": 3, "retry_after_s": 3},
    }, env={WRAPPER_ENV: SPEC, FAULTS_ENV: str(faults)}).start()
    try:
        got = None
        for b in range(200):
            req = proto.WriteRequest()
            s = req.timeseries.add()
            s.labels.add(name="__name__", value="bp")
            s.samples.add(value=b, timestamp=int(time.time() * 1000))
            r = _post(f, req)
            if r.status_code == 429:
                got = r
                break
            assert r.status_code == 204
            time.sleep(0.05)
        assert got is not None and got.headers["Retry-After"] == "3"
        assert f.metric("ferry_refused_records_total", component="prometheus", reason="backpressure") >= 1
        faults.write_text("")
    finally:
        f.stop()

