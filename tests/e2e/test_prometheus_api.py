"""Grafana's Prometheus data source pointed at ferry's /prometheus: OTLP metrics from the real
OpenTelemetry SDK come back under their Prometheus names with the values the app recorded.

With the remote_write receiver, the PromQL conformance suite runs against a real Prometheus 2.42 too.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import metrics as otel_metrics
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider, UpDownCounter
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from ferry.testing import FerryProcess

RUN = uuid.uuid4().hex[:8]
SERVICE = f"checkout-{RUN}"
BATCH = f"batch-{RUN}"
JOB = f"shop/{SERVICE}"
BOUNDS = [0.1, 0.5, 1.0]
LATENCIES = [0.05, 0.2, 0.3, 0.7, 1.5, 0.09, 0.5]  # seconds, as observed by the app
ORDERS = [1, 2, 5]
QUEUE = [5, -2]
EMAILS = [3, 4]  # delta counter: one export each
JOB_MS = [[5.0, 50.0], [500.0]]  # delta histogram (ms, bounds 10/100): one export each
DELTA = {Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.DELTA,
         UpDownCounter: AggregationTemporality.DELTA}


def _provider(ferry: FerryProcess, resource: dict[str, str], *, delta: bool = False,
              headers: dict[str, str] | None = None) -> tuple[MeterProvider, PeriodicExportingMetricReader]:
    exporter = OTLPMetricExporter(endpoint=f"{ferry.otlp_http}/v1/metrics", headers=headers,
                                  preferred_temporality=DELTA if delta else None)
    # Exports only when the test flushes: every point's value is known exactly.
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    return MeterProvider(resource=Resource.create(resource), metric_readers=[reader]), reader


@pytest.fixture(scope="module")
def sent(ferry: FerryProcess) -> Iterator[dict[str, Any]]:
    """What the apps sent: a cumulative app (histogram in s with exemplars, counter, up-down counter,
    gauge) and a delta app (counter and histogram exported twice), plus one app of another tenant."""
    mp, _ = _provider(ferry, {"service.name": SERVICE, "service.namespace": "shop", "service.instance.id": "pod-1",
                              "deployment.environment": "test"})
    meter = mp.get_meter("shop.checkout", "1.2.3")
    tracer = TracerProvider().get_tracer("shop.checkout")
    latency = meter.create_histogram("http.server.request.duration", unit="s",
                                     explicit_bucket_boundaries_advisory=BOUNDS)
    orders = meter.create_counter("orders.placed", unit="{order}", description="Orders placed")
    queue = meter.create_up_down_counter("queue.depth", unit="{item}")
    meter.create_observable_gauge("memory.utilization", unit="1",
                                  callbacks=[lambda _: [otel_metrics.Observation(0.75, {"pool": "heap"})]])
    with tracer.start_as_current_span("GET /cart") as span:
        for x in LATENCIES:
            latency.record(x, {"http.request.method": "GET", "http.route": "/cart"})
        trace_id = format(span.get_span_context().trace_id, "032x")
    for n in ORDERS:
        orders.add(n, {"shop.region": "eu"})
    for n in QUEUE:
        queue.add(n)
    mp.force_flush()

    dp, _ = _provider(ferry, {"service.name": BATCH}, delta=True)
    dmeter = dp.get_meter("batch")
    emails = dmeter.create_counter("emails.sent")
    jobs = dmeter.create_histogram("job.duration", unit="ms", explicit_bucket_boundaries_advisory=[10.0, 100.0])
    export_times = []
    for n, durations in zip(EMAILS, JOB_MS, strict=True):
        emails.add(n)
        for d in durations:
            jobs.record(d)
        dp.force_flush()
        export_times.append(time.time())
        time.sleep(1.5)

    tp, _ = _provider(ferry, {"service.name": SERVICE}, headers={"X-Scope-OrgID": f"team-b-{RUN}"})
    tp.get_meter("x").create_counter("orders.placed", unit="{order}").add(100)
    tp.force_flush()
    ferry.wait_for(lambda: _query(ferry, f'emails_sent_total{{job="{BATCH}"}}')["result"]
                   and _query(ferry, f'http_server_request_duration_seconds_count{{job="{JOB}"}}')["result"])
    yield {"trace_id": trace_id, "export_times": export_times}
    for p in (mp, dp, tp):
        p.shutdown()


def _prom(ferry: FerryProcess, path: str, params: Any = None, *, method: str = "GET",
          headers: dict[str, str] | None = None, status: int = 200) -> Any:
    url = f"{ferry.api}/prometheus/api/v1{path}"
    if method == "POST":
        r = httpx.post(url, data=params, headers=headers, timeout=30)  # a form body, as Grafana sends
    else:
        r = httpx.get(url, params=params, headers=headers, timeout=30)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["status"] == ("success" if status == 200 else "error"), body
    return body["data"] if status == 200 else body


def _query(ferry: FerryProcess, q: str, **kw: Any) -> Any:
    return _prom(ferry, "/query", {"query": q, "time": f"{time.time():.3f}"}, **kw)


def _values(data: dict[str, Any], label: str) -> dict[str, float]:
    assert data["resultType"] == "vector"
    return {s["metric"].get(label, ""): float(s["value"][1]) for s in data["result"]}


def test_histogram_in_seconds_under_prometheus_names(ferry: FerryProcess, sent: dict[str, Any]) -> None:
    data = _query(ferry, f'http_server_request_duration_seconds_bucket{{job="{JOB}"}}')
    expected = {str(b if b != int(b) else int(b)): sum(x <= b for x in LATENCIES) for b in BOUNDS}
    expected["+Inf"] = len(LATENCIES)
    assert _values(data, "le") == expected
    labels = data["result"][0]["metric"]
    assert labels["__name__"] == "http_server_request_duration_seconds_bucket"
    assert labels["instance"] == "pod-1" and labels["http_request_method"] == "GET" and labels["http_route"] == "/cart"
    (count,) = _query(ferry, f'http_server_request_duration_seconds_count{{job="{JOB}"}}')["result"]
    (total,) = _query(ferry, f'http_server_request_duration_seconds_sum{{job="{JOB}"}}')["result"]
    assert float(count["value"][1]) == len(LATENCIES)
    assert float(total["value"][1]) == pytest.approx(sum(LATENCIES), rel=1e-12)
    # The engine over the mapped buckets: the median observation lies in the (0.1, 0.5] bucket.
    (q,) = _query(ferry, f'histogram_quantile(0.5, http_server_request_duration_seconds_bucket{{job="{JOB}"}})')["result"]
    assert 0.1 < float(q["value"][1]) <= 0.5


def test_counter_updown_gauge_and_target_info(ferry: FerryProcess, sent: dict[str, Any]) -> None:
    assert _values(_query(ferry, f'orders_placed_total{{job="{JOB}"}}'), "shop_region") == {"eu": sum(ORDERS)}
    assert _values(_query(ferry, f'queue_depth{{job="{JOB}"}}'), "job") == {JOB: sum(QUEUE)}
    assert _values(_query(ferry, f'memory_utilization_ratio{{job="{JOB}"}}'), "pool") == {"heap": 0.75}
    (info,) = _query(ferry, f'target_info{{job="{JOB}"}}')["result"]
    assert info["metric"]["deployment_environment"] == "test" and info["metric"]["instance"] == "pod-1"
    assert info["value"][1] == "1"


def test_delta_temporality_accumulated(ferry: FerryProcess, sent: dict[str, Any]) -> None:
    assert _values(_query(ferry, f'emails_sent_total{{job="{BATCH}"}}'), "job") == {BATCH: sum(EMAILS)}
    observed = [d for batch in JOB_MS for d in batch]
    buckets = _values(_query(ferry, f'job_duration_milliseconds_bucket{{job="{BATCH}"}}'), "le")
    assert buckets == {"10": sum(d <= 10 for d in observed), "100": sum(d <= 100 for d in observed), "+Inf": len(observed)}
    (total,) = _query(ferry, f'job_duration_milliseconds_sum{{job="{BATCH}"}}')["result"]
    assert float(total["value"][1]) == sum(observed)
    # Grafana's range query: a form POST with float-second times; the counter steps from 3 to 7.
    first, last = sent["export_times"]
    data = _prom(ferry, "/query_range", {"query": f'emails_sent_total{{job="{BATCH}"}}', "start": f"{first - 0.2:.3f}",
                                          "end": f"{last + 0.2:.3f}", "step": "0.25"}, method="POST")
    assert data["resultType"] == "matrix"
    (series,) = data["result"]
    values = [float(v) for _, v in series["values"]]
    assert values[0] == EMAILS[0] and values[-1] == sum(EMAILS) and set(values) == {EMAILS[0], sum(EMAILS)}
    # The same as a GET with RFC 3339 times, a duration step and a timeout, as other clients send it.
    fmt = "%Y-%m-%dT%H:%M:%S"
    again = _prom(ferry, "/query_range", {
        "query": f'emails_sent_total{{job="{BATCH}"}}', "step": "1s", "timeout": "30s",
        "start": time.strftime(fmt, time.gmtime(first - 1)) + "Z", "end": time.strftime(fmt, time.gmtime(last + 2)) + "Z"})
    assert [float(v) for _, v in again["result"][0]["values"]][-1] == sum(EMAILS)


def test_series_labels_and_values(ferry: FerryProcess, sent: dict[str, Any]) -> None:
    matches = {"match[]": [f'orders_placed_total{{job="{JOB}"}}', f'queue_depth{{job="{JOB}"}}']}  # repeated
    series = _prom(ferry, "/series", matches, method="POST")
    assert sorted(s["__name__"] for s in series) == ["orders_placed_total", "queue_depth"]
    assert all(s["job"] == JOB and s["instance"] == "pod-1" for s in series)
    assert _prom(ferry, "/series", matches) == series
    names = _prom(ferry, "/labels", [("match[]", f'{{job="{JOB}"}}')])
    assert {"__name__", "job", "instance", "le", "shop_region", "http_route", "pool"} <= set(names)
    assert names == sorted(names)
    values = _prom(ferry, "/label/__name__/values", [("match[]", f'{{job="{BATCH}"}}')])
    assert values == ["emails_sent_total", "job_duration_milliseconds_bucket", "job_duration_milliseconds_count",
                      "job_duration_milliseconds_sum", "target_info"]  # the SDK's telemetry.sdk.* resource
    assert SERVICE not in _prom(ferry, "/label/job/values")  # the job is namespace/name
    assert JOB in _prom(ferry, "/label/job/values")
    les = _prom(ferry, "/label/le/values", {"match[]": f'http_server_request_duration_seconds_bucket{{job="{JOB}"}}'})
    assert sorted(les) == sorted(["0.1", "0.5", "1", "+Inf"])


def test_metadata_exemplars_buildinfo(ferry: FerryProcess, sent: dict[str, Any]) -> None:
    meta = _prom(ferry, "/metadata")
    assert meta["orders_placed_total"] == [{"type": "counter", "help": "Orders placed", "unit": ""}]
    assert meta["http_server_request_duration_seconds"][0]["type"] == "histogram"
    assert _prom(ferry, "/metadata", {"metric": "queue_depth"}) == {"queue_depth": [{"type": "gauge", "help": "", "unit": ""}]}
    now = time.time()
    found = _prom(ferry, "/query_exemplars", {
        "query": f'histogram_quantile(0.9, sum by (le) (rate(http_server_request_duration_seconds_bucket{{job="{JOB}"}}[5m])))',
        "start": f"{now - 600:.3f}", "end": f"{now + 60:.3f}"})
    assert found, "the histogram recorded inside a span has exemplars"
    trace_ids = {e["labels"].get("trace_id") for s in found for e in s["exemplars"]}
    assert trace_ids == {sent["trace_id"]}
    for s in found:
        for e in s["exemplars"]:
            le = s["seriesLabels"]["le"]
            assert le == "+Inf" or float(e["value"]) <= float(le)
    info = _prom(ferry, "/status/buildinfo")
    assert info["version"].startswith("2.42")


def test_tenants_are_separate(ferry: FerryProcess, sent: dict[str, Any]) -> None:
    other = {"X-Scope-OrgID": f"team-b-{RUN}"}
    assert _values(_query(ferry, f'orders_placed_total{{job="{SERVICE}"}}', headers=other), "job") == {SERVICE: 100}
    assert _query(ferry, f'orders_placed_total{{job="{SERVICE}"}}')["result"] == []
    assert _query(ferry, f'emails_sent_total{{job="{BATCH}"}}', headers=other)["result"] == []
    assert JOB not in _prom(ferry, "/label/job/values", headers=other)


@pytest.mark.parametrize(("path", "params", "fragment"), [
    ("/query", {"query": "sum(rate(x[5m]"}, ""),
    ("/query", {"query": ""}, "query"),
    ("/query", {"query": "up", "time": "yesterday"}, "time"),
    ("/query_range", {"query": "up", "start": "100", "end": "50", "step": "15"}, "end"),
    ("/query_range", {"query": "up", "start": "0", "end": "1000000", "step": "1"}, "11,000"),
    ("/query_range", {"query": "up", "start": "0", "end": "100", "step": "0"}, "step"),
    ("/series", {}, "match[]"),
    ("/series", {"match[]": "{"}, "match[]"),
    ("/label/foo-bar/values", {}, "label name"),
])
def test_bad_requests_are_bad_data(ferry: FerryProcess, path: str, params: dict[str, str], fragment: str) -> None:
    body = _prom(ferry, path, params, status=400)
    assert body["errorType"] == "bad_data" and fragment in body["error"], body
    assert ferry.metric("ferry_api_requests_total", outcome="bad_request") > 0


# --- conformance against a real Prometheus 2.42 -------------------------------------------------------

def _conformance_ready() -> str | None:
    try:
        from ferry.testing import promql_suite  # noqa: F401
    except ImportError as e:
        return f"ferry.testing.promql_suite cannot be imported: {e}"
    if not (Path(__file__).resolve().parents[2] / "ferry/receivers/prometheus/component.py").exists():
        return "no remote_write receiver"
    if not hasattr(FerryProcess, "remote_write_url"):
        return "FerryProcess has no remote_write_url"
    return None


def test_promql_conformance_against_prometheus(ferry: FerryProcess, tmp_path: Path) -> None:
    """The suite's dataset remote-written to Prometheus 2.42 and to ferry; every query answered by both
    HTTP APIs and compared series by series, point by point."""
    missing = _conformance_ready()
    if missing:
        pytest.skip(missing)
    from ferry.testing import promql_suite as suite

    proc, prom_url = suite.start_prometheus(tmp_path / "prometheus")
    try:
        # An hour of data ending a few minutes ago: Prometheus' head takes it, ferry stores it.
        start_ms = (int(time.time()) // 60 - 70) * 60_000
        data = suite.dataset(start_ms)
        tenant = {"X-Scope-OrgID": f"conformance-{RUN}"}
        before = ferry.sql_count("metric_points")
        suite.send_remote_write(f"{prom_url}/api/v1/write", data)
        suite.send_remote_write(ferry.remote_write_url, data, headers=tenant)
        n_samples = sum(len(s) for _, s in data)
        ferry.wait_for(lambda: ferry.sql_count("metric_points") >= before + n_samples, timeout=60)
        end_ms = start_ms + suite.POINTS * suite.STEP_MS
        # Instant queries half an hour in (after the suite's staleness marker, NaN and ±Inf samples);
        # range queries over the whole hour, at a step that is not a multiple of the scrape interval.
        jobs = [("/api/v1/query", {"query": q, "time": f"{(start_ms + 1_800_000) / 1000:.3f}"}, q)
                for q in suite.INSTANT_QUERIES]
        jobs += [("/api/v1/query_range", {"query": q, "start": f"{(start_ms + 300_000) / 1000:.3f}",
                                          "end": f"{end_ms / 1000:.3f}", "step": "37"}, q) for q in suite.RANGE_QUERIES]
        with ThreadPoolExecutor(4) as pool:
            diffs = list(pool.map(lambda j: _compare(suite, prom_url, ferry.api + "/prometheus", j[0], j[1], tenant, j[2]),
                                  jobs))
        total = len(jobs)
        failures = [f"{'range' if path.endswith('range') else 'instant'} {q}: {d}"
                    for (path, _, q), d in zip(jobs, diffs, strict=True) if d]
        print(f"{total - len(failures)}/{total} queries match Prometheus")
        for f in failures:
            print("  MISMATCH", f)
        assert not failures, f"{len(failures)} of {total} queries differ from Prometheus; first: {failures[0]}"
    finally:
        proc.terminate()
        proc.wait(30)


def _compare(suite: Any, prom_url: str, ferry_url: str, path: str, params: dict[str, str], headers: dict[str, str],
             q: str) -> str | None:
    expected = httpx.post(prom_url + path, data=params, timeout=60).json()
    got = httpx.post(ferry_url + path, data=params, headers=headers, timeout=60).json()
    if expected.get("status") != "success":
        return None if got.get("status") == "error" else f"Prometheus refused it ({expected.get('error')}), ferry did not"
    if got.get("status") != "success":
        return f"ferry: {got.get('errorType')}: {got.get('error')}"
    ordered = q.startswith(("sort(", "sort_desc("))
    return suite.compare(expected["data"], got["data"], ordered=ordered)
