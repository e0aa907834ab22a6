"""PromQL conformance kit: one dataset, a broad query suite, a real Prometheus 2.42 to answer it,
remote_write to feed both, and a point-by-point comparison of Prometheus' `data` answers.
"""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cramjam
import httpx
import numpy as np

from ferry.host.procs import die_with_parent
from ferry.query.promql.source import STALE_NAN
from ferry.testing.process import free_port

PROMETHEUS_BINARY = Path(__file__).resolve().parents[2] / ".cache/peers/bin/prometheus"

STEP_MS = 15_000
POINTS = 240  # one hour at 15 s

Sample = tuple[int, float]
DataSeries = tuple[dict[str, str], list[Sample]]

INSTANCES = [("api", "10.0.0.1:9100"), ("api", "10.0.0.2:9100"), ("web", "10.0.1.1:8080")]
BUCKETS = ["0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf"]


def dataset(start_ms: int) -> list[DataSeries]:
    """About an hour of samples every 15 s from START_MS: counters with resets, gauges with NaN and
    ±Inf, classic histograms, a series ended by a staleness marker, one appearing late, one with a
    gap longer than the lookback, and label values that need escaping. Deterministic."""
    rng = np.random.default_rng(20230131)
    ts = start_ms + np.arange(POINTS, dtype=np.int64) * STEP_MS
    out: list[DataSeries] = []

    def add(labels: dict[str, str], t: Iterable[int], v: Iterable[float]) -> None:
        out.append((labels, [(int(a), float(b)) for a, b in zip(t, v, strict=True)]))

    # Counters: fractional increments, one reset on the second api instance, one flat series,
    # and one with scrape jitter (timestamps off the 15 s grid, still ascending).
    for job, inst in INSTANCES:
        for method in ("GET", "POST"):
            for code in ("200", "500"):
                base = {"GET": 3.0, "POST": 1.0}[method] * (0.05 if code == "500" else 1.0)
                inc = rng.gamma(2.0, base * 7.5, POINTS)
                if job == "web" and code == "500":
                    inc[:] = 0.0
                v = np.cumsum(inc)
                if inst == "10.0.0.2:9100":
                    v[120:] -= v[119]
                    v[120:] += inc[120]
                t = ts.copy()
                if job == "web" and method == "GET" and code == "200":
                    t = t + rng.integers(-2000, 2000, POINTS)
                add({"__name__": "http_requests_total", "job": job, "instance": inst, "method": method,
                     "code": code}, t, v)

    # Gauges: temperatures (one instance with NaN, +Inf, -Inf samples), a [-1, 1] ratio, up, info.
    for k, (job, inst) in enumerate(INSTANCES):
        v = 40 + 15 * np.sin(np.arange(POINTS) / (17.0 + k)) + rng.normal(0, 2, POINTS) - 20 * k
        if k == 1:
            v[50] = math.nan
            v[80] = math.inf
            v[81] = -math.inf
        add({"__name__": "node_temperature_celsius", "job": job, "instance": inst}, ts, v)
        add({"__name__": "node_load_ratio", "job": job, "instance": inst}, ts,
            np.clip(np.sin(np.arange(POINTS) / (9.0 + 2 * k)) * 0.97 + rng.normal(0, 0.01, POINTS), -0.999, 0.999))
        up = np.ones(POINTS)
        if k == 2:
            up[150:170] = 0
        add({"__name__": "up", "job": job, "instance": inst}, ts, up)
        add({"__name__": "node_info", "job": job, "instance": inst, "version": f"1.{k}.0",
             "os": "linux" if k < 2 else "bsd"}, ts, np.ones(POINTS))
        add({"__name__": "machine_cpu_cores", "instance": inst}, ts, np.full(POINTS, float(2 ** (k + 1))))
        # Few distinct values, changing often: changes(), resets(), count_values().
        add({"__name__": "queue_length", "job": job, "instance": inst}, ts,
            rng.integers(0, 4, POINTS).astype(np.float64) + k)

    # Classic histograms: cumulative bucket counters with _sum and _count, one resetting.
    bounds = np.array([0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, np.inf])
    for job, inst in INSTANCES:
        n = rng.poisson(20 if job == "api" else 6, POINTS).astype(np.float64)
        scale = 0.3 if job == "api" else 1.2
        per_bucket = np.zeros((POINTS, len(bounds)))
        sums = np.zeros(POINTS)
        for i in range(POINTS):
            obs = rng.exponential(scale, int(n[i]))
            per_bucket[i] = [(obs <= b).sum() for b in bounds]
            sums[i] = obs.sum()
        cum = np.cumsum(per_bucket, axis=0)
        csum = np.cumsum(sums)
        cnt = np.cumsum(n)
        if inst == "10.0.0.2:9100":
            cum[160:] -= cum[159]
            csum[160:] -= csum[159]
            cnt[160:] -= cnt[159]
        for j, le in enumerate(BUCKETS):
            add({"__name__": "http_request_duration_seconds_bucket", "job": job, "instance": inst, "le": le},
                ts, cum[:, j])
        add({"__name__": "http_request_duration_seconds_sum", "job": job, "instance": inst}, ts, csum)
        add({"__name__": "http_request_duration_seconds_count", "job": job, "instance": inst}, ts, cnt)

    # A batch job's series that ends with a staleness marker at 25 min; one that starts at 40 min;
    # one with a 10 min hole (longer than the 5 min lookback) and no marker.
    add({"__name__": "batch_progress", "job": "batch", "instance": "runner:1"},
        list(ts[:100]) + [int(ts[100])], list(np.linspace(0, 0.99, 100)) + [STALE_NAN])
    add({"__name__": "late_metric", "job": "late", "instance": "x:1"}, ts[160:], np.arange(POINTS - 160) * 2.5)
    add({"__name__": "gap_metric", "job": "gap", "instance": "x:1"},
        np.concatenate([ts[:80], ts[120:]]), np.concatenate([np.arange(80.0), np.arange(120.0, POINTS)]))

    # Label values needing escapes in every layer (JSON, PromQL strings, SQL).
    for i, labels in enumerate([
        {"path": 'C:\\dir\\file', "quote": 'say "hi"'},
        {"path": "/a\nb", "quote": "it's"},
        {"path": "/naïve/☃/日本", "quote": "`tick`"},
    ]):
        add({"__name__": "escape_metric", **labels}, ts, np.arange(POINTS) * (i + 1.0))

    # Large and negative magnitudes for math functions.
    add({"__name__": "account_balance", "account": "a"}, ts, -1e6 + np.cumsum(rng.normal(0, 1e4, POINTS)))
    add({"__name__": "account_balance", "account": "b"}, ts, 1e9 + np.cumsum(rng.normal(0, 1e7, POINTS)))
    return out


def _remote_write_body(chunk: list[DataSeries]) -> bytes:
    from opentelemetry.exporter.prometheus_remote_write.gen import remote_pb2, types_pb2

    req = remote_pb2.WriteRequest()
    for labels, samples in chunk:
        ts = types_pb2.TimeSeries()
        for name in sorted(labels):
            ts.labels.append(types_pb2.Label(name=name, value=labels[name]))
        for t, v in samples:
            ts.samples.append(types_pb2.Sample(value=v, timestamp=t))
        req.timeseries.append(ts)
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))


def send_remote_write(url: str, series: list[DataSeries], *, headers: dict[str, str] | None = None,
                      window_ms: int = 10 * 60_000, max_samples: int = 20_000) -> None:
    """Remote-write SERIES to URL, oldest samples first: each request holds one time window of every
    series (a TSDB head refuses samples far behind what it already has), at most MAX_SAMPLES each."""
    all_t = [t for _, s in series for t, _ in s]
    if not all_t:
        return
    lo, hi = min(all_t), max(all_t)
    hdrs = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
            "X-Prometheus-Remote-Write-Version": "0.1.0", **(headers or {})}
    with httpx.Client(timeout=30) as client:
        w = lo
        while w <= hi:
            chunk: list[DataSeries] = []
            size = 0
            for labels, samples in series:
                part = [s for s in samples if w <= s[0] < w + window_ms]
                if not part:
                    continue
                chunk.append((labels, part))
                size += len(part)
                if size >= max_samples:
                    _post(client, url, chunk, hdrs)
                    chunk, size = [], 0
            if chunk:
                _post(client, url, chunk, hdrs)
            w += window_ms


def _post(client: httpx.Client, url: str, chunk: list[DataSeries], headers: dict[str, str]) -> None:
    r = client.post(url, content=_remote_write_body(chunk), headers=headers)
    if r.status_code >= 300:
        raise RuntimeError(f"remote_write to {url} answered {r.status_code}: {r.text[:300]}")


def start_prometheus(tmp_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A real Prometheus 2.42 on a free loopback port, remote-write receiver on, no scrapes, its TSDB
    in TMP_PATH; returns once /-/ready answers."""
    if not PROMETHEUS_BINARY.exists():
        raise FileNotFoundError(f"{PROMETHEUS_BINARY} missing (scripts/test unpacks it)")
    tmp_path.mkdir(parents=True, exist_ok=True)
    conf = tmp_path / "prometheus.yml"
    conf.write_text("global:\n  scrape_interval: 15s\nscrape_configs: []\n")
    port = free_port()
    log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(
        [str(PROMETHEUS_BINARY), f"--config.file={conf}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--web.enable-remote-write-receiver",
         "--storage.tsdb.retention.time=30d"],
        stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prometheus exited: {(tmp_path / 'prometheus.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"{base}/-/ready", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("prometheus not ready within 30 s")


# Queries valid both as instant and as range queries (instant-vector or scalar results).
_BOTH: list[str] = [
    # selectors, lookback, staleness, escapes
    "up",
    'up{job="api"}',
    'up{job!="api"}',
    'http_requests_total{method=~"G.*",code!~"5.."}',
    '{__name__=~"node_.*", job="web"}',
    '{__name__="up", instance=~".*:9100"}',
    "batch_progress",
    "late_metric",
    "gap_metric",
    "escape_metric",
    'escape_metric{quote="say \\"hi\\""}',
    'escape_metric{path="/a\\nb"}',
    'escape_metric{path=~".*☃.*"}',
    'escape_metric{path="C:\\\\dir\\\\file"}',
    'node_temperature_celsius{instance="10.0.0.2:9100"}',
    "up offset 5m",
    "up offset -5m",
    "batch_progress offset 10m",
    "up @ start()",
    "node_temperature_celsius @ end()",
    "node_temperature_celsius @ start() offset -10m",
    'nonexistent_metric{job="x"}',
    # rate family
    "rate(http_requests_total[5m])",
    "rate(http_requests_total[1m])",
    "rate(http_requests_total[90s])",
    "rate(http_requests_total[30m])",
    "increase(http_requests_total[5m])",
    "increase(http_requests_total[2m] offset 3m)",
    "irate(http_requests_total[5m])",
    "delta(node_temperature_celsius[5m])",
    "idelta(node_temperature_celsius[5m])",
    "deriv(node_temperature_celsius[10m])",
    "predict_linear(node_temperature_celsius[10m], 600)",
    "resets(http_requests_total[10m])",
    "changes(queue_length[5m])",
    "resets(queue_length[5m])",
    "rate(batch_progress[5m])",
    "rate(late_metric[5m])",
    "rate(gap_metric[5m])",
    "increase(http_request_duration_seconds_count[5m])",
    # *_over_time
    "avg_over_time(node_temperature_celsius[5m])",
    "min_over_time(node_temperature_celsius[5m])",
    "max_over_time(node_temperature_celsius[5m])",
    "sum_over_time(queue_length[5m])",
    "count_over_time(http_requests_total[5m])",
    "stddev_over_time(node_temperature_celsius[10m])",
    "stdvar_over_time(queue_length[10m])",
    "last_over_time(batch_progress[10m])",
    "present_over_time(gap_metric[2m])",
    "quantile_over_time(0.9, node_temperature_celsius[10m])",
    "quantile_over_time(0, queue_length[5m])",
    "quantile_over_time(1.5, queue_length[5m])",
    "absent_over_time(batch_progress[5m])",
    'absent_over_time(nonexistent_metric{job="x"}[5m])',
    "holt_winters(node_temperature_celsius[10m], 0.5, 0.3)",
    # aggregations
    "sum(rate(http_requests_total[5m]))",
    "sum by (job) (rate(http_requests_total[5m]))",
    "sum by (job, code) (rate(http_requests_total[5m]))",
    "sum without (instance) (rate(http_requests_total[5m]))",
    "avg by (job) (node_temperature_celsius)",
    "min by (job) (node_temperature_celsius)",
    "max without (instance) (node_temperature_celsius)",
    "count by (job) (up)",
    "count(http_requests_total)",
    "group by (job) (http_requests_total)",
    "stddev by (job) (rate(http_requests_total[5m]))",
    "stdvar(node_load_ratio)",
    "topk(2, node_temperature_celsius)",
    "bottomk(1, node_load_ratio)",
    "topk by (job) (1, node_load_ratio)",
    "topk(2, sum by (instance) (rate(http_requests_total[5m])))",
    "quantile(0.5, node_load_ratio)",
    "quantile by (job) (0.9, rate(http_requests_total[5m]))",
    'count_values("value", queue_length)',
    'count_values by (job) ("q", queue_length)',
    "sum by (__name__) ({__name__=~\"node_.*\"})",
    "sum(nonexistent_metric)",
    "avg(node_temperature_celsius)",
    # histograms
    "histogram_quantile(0.9, rate(http_request_duration_seconds_bucket[5m]))",
    "histogram_quantile(0.5, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    "histogram_quantile(0.99, sum by (job, le) (rate(http_request_duration_seconds_bucket[10m])))",
    "histogram_quantile(0, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    "histogram_quantile(1, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    "histogram_quantile(1.5, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    "histogram_quantile(0.75, sum by (le, instance) (increase(http_request_duration_seconds_bucket[2m])))",
    "rate(http_request_duration_seconds_sum[5m]) / rate(http_request_duration_seconds_count[5m])",
    # binary operators and matching
    "node_temperature_celsius * 2",
    "2 - node_temperature_celsius",
    "-node_temperature_celsius",
    "node_temperature_celsius / 0",
    "node_load_ratio % 0.3",
    "node_load_ratio ^ 2",
    "2 ^ queue_length",
    "node_load_ratio atan2 0.5",
    "0.5 atan2 node_load_ratio",
    "node_temperature_celsius > 30",
    "node_temperature_celsius > bool 30",
    "30 < node_temperature_celsius",
    "node_temperature_celsius == bool node_temperature_celsius",
    "queue_length != 2",
    "queue_length >= bool 3",
    "up == 0",
    "node_temperature_celsius - node_temperature_celsius offset 5m",
    "rate(http_requests_total[5m]) / on(instance) group_left machine_cpu_cores",
    "sum by (instance) (rate(http_requests_total[5m])) / on(instance) machine_cpu_cores",
    "node_temperature_celsius * on(instance) group_left(version, os) node_info",
    "machine_cpu_cores * on(instance) group_right node_info",
    "up + ignoring(version, os) node_info",
    "sum by (job) (rate(http_requests_total{code=\"500\"}[5m])) / sum by (job) (rate(http_requests_total[5m]))",
    "http_requests_total / ignoring(code) group_left sum without (code) (http_requests_total)",
    "up and node_temperature_celsius > 30",
    "up or late_metric",
    "up unless on(instance) node_temperature_celsius > 30",
    "http_requests_total and on(job) up == 0",
    "late_metric or vector(0)",
    "node_temperature_celsius > on(instance) group_left node_load_ratio",
    "1 + 2 * 3",
    "2 ^ 3 ^ 2",
    "10 % 3",
    "-2 ^ 2",
    "1 > bool 2",
    "(1 + 2) / 0",
    "-1 / 0",
    "0 / 0",
    # functions
    "abs(account_balance)",
    "ceil(node_temperature_celsius)",
    "floor(node_temperature_celsius)",
    "round(node_temperature_celsius)",
    "round(node_temperature_celsius, 5)",
    "round(node_load_ratio, 0.1)",
    "sqrt(node_temperature_celsius)",
    "exp(node_load_ratio)",
    "ln(node_temperature_celsius)",
    "log2(machine_cpu_cores)",
    "log10(account_balance)",
    "sgn(node_temperature_celsius)",
    "clamp(node_temperature_celsius, 20, 40)",
    "clamp(node_temperature_celsius, 40, 20)",
    "clamp_max(node_temperature_celsius, 30)",
    "clamp_min(node_temperature_celsius, 30)",
    "acos(node_load_ratio)", "asin(node_load_ratio)", "atan(node_load_ratio)",
    "acosh(machine_cpu_cores)", "asinh(node_load_ratio)", "atanh(node_load_ratio)",
    "cos(node_load_ratio)", "cosh(node_load_ratio)", "sin(node_load_ratio)", "sinh(node_load_ratio)",
    "tan(node_load_ratio)", "tanh(node_load_ratio)", "deg(node_load_ratio)", "rad(node_temperature_celsius)",
    "pi()",
    "time()",
    "vector(time())",
    "scalar(sum(up))",
    "scalar(up)",
    "timestamp(up)",
    "timestamp(batch_progress)",
    "hour()", "minute()", "month()", "year()", "day_of_month()", "day_of_week()", "day_of_year()",
    "days_in_month()",
    "hour(timestamp(up))",
    "days_in_month(vector(1709251200))",
    "day_of_year(vector(1704067200 + 86400 * 59))",
    "absent(nonexistent_metric{job=\"x\", instance=~\"y\"})",
    "absent(up)",
    "absent(sum(nonexistent_metric))",
    'label_replace(up, "host", "$1", "instance", "(.*):.*")',
    'label_replace(up, "job", "", "job", "api")',
    'label_replace(up, "x", "$2-$1", "instance", "([0-9.]+):([0-9]+)")',
    'label_join(up, "combined", "/", "job", "instance")',
    'label_join(up, "__name__", "_", "job")',
    "sort(node_temperature_celsius)",
    "sort_desc(rate(http_requests_total{code=\"200\"}[5m]))",
    "vector(1)",
    "sum(up) + scalar(count(up))",
    # subqueries
    "max_over_time(rate(http_requests_total[5m])[30m:1m])",
    "avg_over_time(node_temperature_celsius[10m:])",
    "rate(sum(http_requests_total)[5m:30s])",
    "min_over_time(deriv(node_temperature_celsius[5m])[10m:2m] offset 1m)",
    "max_over_time((node_temperature_celsius > 30)[15m:45s])",
    "sum_over_time(up[10m:1m] @ end())",
    # edges: NaN/Inf in windows and groups, ties-free ranking, formatting, nested subqueries
    "sum(node_temperature_celsius)",
    "max(node_temperature_celsius)",
    "min by (job) (node_temperature_celsius)",
    "stdvar by (job) (node_temperature_celsius)",
    "bottomk(2, node_temperature_celsius)",
    "topk(0, up)",
    "topk(1.9, node_load_ratio)",
    "topk(scalar(count(up)) - 1, node_load_ratio)",
    "quantile(-1, node_load_ratio)",
    "quantile(2, node_load_ratio)",
    "quantile(0.3, node_temperature_celsius)",
    "count without (instance, job) (node_info)",
    "sum without () (up)",
    "sum by () (up)",
    "max by (le) (http_request_duration_seconds_bucket)",
    'count_values("v", node_temperature_celsius > 1000)',
    'count_values("le", http_request_duration_seconds_bucket{instance="10.0.0.1:9100"})',
    "min_over_time(node_temperature_celsius[1m])",
    "max_over_time(node_temperature_celsius[2m])",
    "sum_over_time(node_temperature_celsius[5m])",
    "quantile_over_time(0.5, node_temperature_celsius[5m])",
    "changes(node_temperature_celsius[5m])",
    "stddev_over_time(up[5m])",
    "changes(up[20m])",
    "absent_over_time(up[5m])",
    'absent_over_time(nonexistent_metric{a=~"b", c="d"}[1m])',
    "resets(http_request_duration_seconds_count[1h])",
    'increase(http_requests_total{instance="10.0.0.2:9100"}[1h])',
    'rate(http_requests_total{job="web"}[31s])',
    'irate(http_requests_total{job="web"}[1m])',
    "deriv(http_requests_total[1m])",
    "predict_linear(up[5m], 100)",
    "holt_winters(up[5m], 0.1, 0.9)",
    "rate(http_requests_total[5m] offset -2m)",
    "rate(http_requests_total[5m] @ start())",
    "sum(rate(http_requests_total[5m] @ end()))",
    "last_over_time(up[5m] @ start())",
    "up @ start() offset 5m",
    "timestamp(up offset 5m)",
    "timestamp((up))",
    "timestamp(up @ start())",
    "timestamp(rate(http_requests_total[5m]))",
    "time() - timestamp(up)",
    "scalar(up{instance=\"10.0.0.1:9100\"}) > bool 0",
    "up / on() group_left sum(up)",
    "node_info * on(instance) group_left(nonexistent) up",
    "machine_cpu_cores * on(instance) group_right(version) node_info",
    "node_temperature_celsius > bool on(instance) group_left node_load_ratio",
    "node_load_ratio atan2 on(instance) group_left node_temperature_celsius",
    "(up or late_metric) unless late_metric",
    "up and on() vector(1)",
    "vector(1) or up",
    "up > 0.5 and up < 2",
    "label_replace(escape_metric, \"x\", \"<$1>\", \"path\", \"(.*)\")",
    "label_replace(up, \"instance\", \"${1}x\", \"instance\", \"(.*):.*\")",
    "label_replace(up, \"foo\", \"$1\", \"nonexistent\", \"(.*)\")",
    "label_replace(up, \"foo\", \"$name-$$\", \"job\", \"(?P<name>a.)i\")",
    "label_join(up, \"x\", \",\")",
    "histogram_quantile(0.5, http_request_duration_seconds_bucket)",
    "histogram_quantile(NaN, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    "histogram_quantile(scalar(up{instance=\"10.0.1.1:8080\"}) * 0.5, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    "max_over_time(sum(rate(http_requests_total[1m]))[10m:30s])",
    "avg_over_time(max_over_time(up[5m:1m])[10m:2m])",
    "max_over_time(node_temperature_celsius[10m:1m] @ start())",
    "min_over_time(node_temperature_celsius[10m:1m] offset -3m)",
    "up * 1e23",
    "up / 3e7",
    "0 * -up",
    "0.1 + 0.2",
    "1e300 * 1e10",
    "time() % 3600",
    "-(up)",
    "+up",
    # more matching, functions of odd inputs, windows shorter than the step
    "http_requests_total / ignoring(method, code) group_left up",
    "sum by (instance) (up) * on(instance) group_left(version) node_info",
    "up == bool on(instance) group_left node_info",
    "up or ignoring(job) late_metric",
    "http_requests_total unless on(code) http_requests_total{code=\"500\"}",
    "count(count by (job) (up))",
    "sum(up) by (job) > 1",
    "scalar(sum(up)) * 2",
    "time() > bool 0",
    "vector(scalar(sum(up)))",
    "sort_desc(topk(2, node_load_ratio))",
    "timestamp(timestamp(up))",
    "absent(nonexistent_metric{job=\"x\"} offset 5m)",
    "absent_over_time(up[5m:1m])",
    "present_over_time(up[5m:1m])",
    "count_over_time(batch_progress[10m])",
    "changes(batch_progress[30m])",
    "rate(http_requests_total[5m:1m])",
    "deriv(http_requests_total[10m])",
    "predict_linear(http_requests_total[10m], 3600)",
    "holt_winters(machine_cpu_cores[5m], 0.5, 0.5)",
    "rate(http_requests_total[20s])",
    "increase(late_metric[1m])",
    "-node_temperature_celsius offset 5m",
    "ln(-node_temperature_celsius)",
    "sqrt(-node_load_ratio)",
    "round(-node_load_ratio * 10)",
    "clamp_min(node_load_ratio, NaN)",
    "day_of_week(node_temperature_celsius - 1e5)",
    "hour(-node_temperature_celsius * 1000)",
    "minute(node_temperature_celsius * 100)",
    "year(vector(-1e10))",
    "month(vector(1706745600 + 86400 * 28))",
    "days_in_month(vector(1706745600 + 86400 * 28))",
    "day_of_month(vector(1706745600 + 86400 * 28))",
    'label_replace(up, "new", "x", "missing", "")',
    'count_values without (instance) ("q", queue_length)',
    'histogram_quantile(0.5, http_request_duration_seconds_bucket{le!="+Inf"})',
    "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket{le=~\"0.1|1|\\\\+Inf\"}[5m])))",
    "bottomk by (job) (1, node_temperature_celsius)",
    "topk(2, rate(http_requests_total[5m]))",
    "histogram_count(http_request_duration_seconds_count)",
    "histogram_sum(rate(http_request_duration_seconds_sum[5m]))",
    "histogram_fraction(0, 0.5, http_request_duration_seconds_bucket)",
]

INSTANT_QUERIES: list[str] = _BOTH + [
    "http_requests_total[1m]",
    "node_temperature_celsius[2m] offset 1m",
    "batch_progress[5m]",
    "rate(http_requests_total[5m])[10m:2m]",
    '"a string"',
    "42",
    "-3.5e2",
    "Inf",
    "-Inf",
    "NaN",
]

# Queries Prometheus refuses (as instant and as range queries): the same `errorType` is expected.
ERROR_QUERIES: list[str] = [
    "sum(",
    "rate(http_requests_total)",
    'foo{a=~"("}',
    '{job=~".*"}',
    '1 + "a"',
    "absent(up, up)",
    "nonexistent_function(up)",
    "1 == 1",
    "http_requests_total + on(job) group_left up",
    "http_requests_total / on(job, instance) up",
    "up + on() up",
    'rate({__name__=~"http_request_duration_seconds_(sum|count)"}[5m])',
    'label_replace(up, "1bad", "x", "job", ".*")',
    'label_replace(up, "x", "y", "job", "(")',
    "holt_winters(up[5m], 1, 0.5)",
    "topk(NaN, up)",
    'count_values("a b", up)',
    "mad_over_time(up[5m])",
    "limitk(1, up)",
    'sort_by_label(up, "job")',
]

RANGE_QUERIES: list[str] = _BOTH + [
    "sum by (job) (increase(http_requests_total[1h]))",
    "count(up == 1)",
    "histogram_quantile(0.95, sum by (job, le) (rate(http_request_duration_seconds_bucket[1m])))",
]


def _num(s: str) -> float:
    return float(s)


def _close(a: str, b: str, rel: float) -> bool:
    x, y = _num(a), _num(b)
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    if math.isinf(x) or math.isinf(y):
        return x == y
    # An absolute floor for values that cancel to ~0 (summation order changes the last bits).
    return abs(x - y) <= max(rel * max(abs(x), abs(y)), 1e-10)


def _key(metric: dict[str, str]) -> str:
    return repr(sorted(metric.items()))


def compare(expected_data: dict[str, Any], got_data: dict[str, Any], rel: float = 1e-6, *,
            ordered: bool = False) -> str | None:
    """The first difference between two Prometheus `data` objects, or None if they agree: same result
    type, same series (label sets), same timestamps, values within REL (NaN equals NaN). Vectors are
    compared as sets unless ORDERED (sort/sort_desc), when the value order must match too."""
    et, gt = expected_data.get("resultType"), got_data.get("resultType")
    if et != gt:
        return f"resultType {gt!r}, expected {et!r}"
    exp, got = expected_data.get("result"), got_data.get("result")
    if et in ("scalar", "string"):
        if not isinstance(got, list) or len(got) != 2:
            return f"malformed {et}: {got!r}"
        if float(exp[0]) != float(got[0]):
            return f"{et} at {got[0]}, expected at {exp[0]}"
        if et == "string":
            return None if exp[1] == got[1] else f"string {got[1]!r}, expected {exp[1]!r}"
        return None if _close(exp[1], got[1], rel) else f"scalar {got[1]}, expected {exp[1]}"
    if not isinstance(got, list):
        return f"result is {type(got).__name__}, expected a list"
    ek = {_key(s["metric"]): s for s in exp}
    gk = {_key(s["metric"]): s for s in got}
    if len(gk) != len(got):
        return "duplicate label sets in result"
    missing = [k for k in ek if k not in gk]
    if missing:
        return f"missing series {ek[missing[0]]['metric']} ({len(missing)} missing, {len(got)} got, {len(exp)} expected)"
    extra = [k for k in gk if k not in ek]
    if extra:
        return f"unexpected series {gk[extra[0]]['metric']} ({len(extra)} extra)"
    if et == "vector":
        if ordered:
            ev = [s["value"][1] for s in exp]
            gv = [s["value"][1] for s in got]
            if not all(_close(a, b, rel) for a, b in zip(ev, gv, strict=True)):
                return f"order of values {gv}, expected {ev}"
        for k, e in ek.items():
            g = gk[k]
            if float(e["value"][0]) != float(g["value"][0]):
                return f"{e['metric']}: timestamp {g['value'][0]}, expected {e['value'][0]}"
            if not _close(e["value"][1], g["value"][1], rel):
                return f"{e['metric']}: value {g['value'][1]}, expected {e['value'][1]}"
        return None
    if et == "matrix":
        for k, e in ek.items():
            ep, gp = e.get("values", []), gk[k].get("values", [])
            for i in range(min(len(ep), len(gp))):
                if float(ep[i][0]) != float(gp[i][0]):
                    return f"{e['metric']}: point {i} at {gp[i][0]}, expected at {ep[i][0]}"
                if not _close(ep[i][1], gp[i][1], rel):
                    return f"{e['metric']} at {ep[i][0]}: value {gp[i][1]}, expected {ep[i][1]}"
            if len(ep) != len(gp):
                i = min(len(ep), len(gp))
                more = (ep if len(ep) > len(gp) else gp)[i]
                side = "missing" if len(ep) > len(gp) else "extra"
                return f"{e['metric']}: {len(gp)} points, expected {len(ep)} (first {side} at {more[0]})"
        return None
    return f"unknown resultType {et!r}"
