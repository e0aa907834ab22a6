"""PromQL dashboard queries: ferry against a real Prometheus 2.42 holding the same data, in one run.

The data (--series-scale 1 is about 10,500 series, 6 h at 15 s, about 15 M samples) is remote-written
to both, oldest first; then each dashboard query runs as a range query over the 6 h (step 30 s) --runs
times against each. Prints p50/p99 per query, the ratio ferry/Prometheus (goal <= 1.0) and whether the
two answers agree (ferry.testing.promql_suite.compare, relative tolerance 1e-6).

    .venv/bin/python bench/promql_vs_prometheus.py [--hours 6] [--runs 5] [--series-scale 1.0] [--data-dir D]

With --data-dir, both stores are kept there and a later run with the same directory queries them again
without writing (the data's time range is remembered in D/bench.json).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cramjam
import httpx
import numpy as np

from ferry.receivers.prometheus import proto
from ferry.testing import FerryProcess
from ferry.testing.promql_suite import compare, start_prometheus

STEP_MS = 15_000
SNAPPY = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
          "X-Prometheus-Remote-Write-Version": "0.1.0"}
BUCKETS = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"]

QUERIES = {
    "sum by (job) (rate(http_requests_total[5m]))": "rate, 6k series",
    "sum by (job, code) (rate(http_requests_total[5m]))": "rate, 6k series",
    "topk(5, sum by (instance) (rate(http_requests_total[5m])))": "topk",
    "histogram_quantile(0.99, sum by (le, job) (rate(http_request_duration_seconds_bucket[5m])))":
        "histogram_quantile, 1.8k series",
    "sum by (mode) (rate(node_cpu_seconds_total[5m]))": "rate, 2.4k series",
    "avg by (job) (process_resident_memory_bytes)": "gauge",
}


def families(scale: float, points: int, rng: np.random.Generator) -> list[tuple[list[dict[str, str]], np.ndarray]]:
    """(label sets, values [series x points]) per metric family."""
    instances = max(1, int(50 * scale))
    out = []
    labels = [{"__name__": "http_requests_total", "job": job, "instance": f"{job}-{i}:8080", "path": f"/api/{p}",
               "code": code}
              for job in ("api", "web", "db") for i in range(instances) for p in range(20) for code in ("200", "500")]
    inc = rng.poisson(5.0, (len(labels), points)).astype(np.float64)
    out.append((labels, np.cumsum(inc, axis=1)))
    labels, rows = [], []
    for job in ("api", "web", "db"):
        for i in range(instances):
            base = {"job": job, "instance": f"{job}-{i}:8080"}
            per_step = rng.multinomial(20, [1 / len(BUCKETS)] * len(BUCKETS), size=points)  # points x buckets
            cum = np.cumsum(np.cumsum(per_step, axis=1), axis=0).astype(np.float64)  # over le, then time
            for b, le in enumerate(BUCKETS):
                labels.append({"__name__": "http_request_duration_seconds_bucket", **base, "le": le})
                rows.append(cum[:, b])
            labels.append({"__name__": "http_request_duration_seconds_count", **base})
            rows.append(cum[:, -1])
            labels.append({"__name__": "http_request_duration_seconds_sum", **base})
            rows.append(np.cumsum(rng.random(points) * 20))
    out.append((labels, np.array(rows)))
    labels = [{"__name__": "node_cpu_seconds_total", "job": "node", "instance": f"node-{i}:9100", "cpu": str(c),
               "mode": mode}
              for i in range(max(1, int(150 * scale))) for c in range(8) for mode in ("user", "system")]
    out.append((labels, np.cumsum(rng.random((len(labels), points)) * 15, axis=1)))
    labels = [{"__name__": "process_resident_memory_bytes", "job": job, "instance": f"{job}-{i}:8080"}
              for job in ("api", "web", "db") for i in range(instances)]
    out.append((labels, 1e8 + rng.random((len(labels), points)) * 1e7))
    return out


def bodies(fams: list[tuple[list[dict[str, str]], np.ndarray]], start_ms: int, points: int,
           window: int) -> list[bytes]:
    """Time-major requests: each holds `window` points of every series, oldest window first."""
    out = []
    times = start_ms + np.arange(points, dtype=np.int64) * STEP_MS
    for w in range(0, points, window):
        req = proto.WriteRequest()
        for labels, values in fams:
            for k, lab in enumerate(labels):
                ts = req.timeseries.add()
                for name in sorted(lab):
                    ts.labels.add(name=name, value=lab[name])
                for t, v in zip(times[w : w + window].tolist(), values[k, w : w + window].tolist(), strict=True):
                    ts.samples.add(value=v, timestamp=t)
        out.append(bytes(cramjam.snappy.compress_raw(req.SerializeToString())))
    return out


def send(url: str, reqs: list[bytes], threads: int = 1) -> float:
    """Seconds to have every request acknowledged (429/503 retried after Retry-After, as Prometheus does)."""
    def post(body: bytes, client: httpx.Client) -> None:
        while True:
            r = client.post(url, content=body, headers=SNAPPY)
            if r.status_code in (429, 503):
                time.sleep(float(r.headers.get("Retry-After", "1")))
                continue
            if r.status_code >= 300:
                raise RuntimeError(f"{url} answered {r.status_code}: {r.text[:300]}")
            return

    t0 = time.perf_counter()
    with httpx.Client(timeout=120) as client:
        if threads == 1:
            for b in reqs:  # in order: a TSDB head refuses samples far behind those it has
                post(b, client)
        else:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(lambda b: post(b, client), reqs))
    return time.perf_counter() - t0


def run_query(base: str, q: str, start_s: float, end_s: float, runs: int) -> tuple[list[float], dict]:
    times, data = [], {}
    with httpx.Client(timeout=600) as client:
        for _ in range(runs):
            t0 = time.perf_counter()
            r = client.post(base + "/api/v1/query_range",
                            data={"query": q, "start": f"{start_s:.3f}", "end": f"{end_s:.3f}", "step": "30"})
            times.append(time.perf_counter() - t0)
            body = r.json()
            if body.get("status") != "success":
                raise RuntimeError(f"{base}: {q}: {body}")
            data = body["data"]
    return times, data


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=6.0)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--series-scale", type=float, default=1.0)
    ap.add_argument("--window", type=int, default=10, help="points per series per remote_write request")
    ap.add_argument("--data-dir", type=Path, help="keep both stores here; reuse them when already loaded")
    ap.add_argument("--only", help="run only the queries containing this text")
    a = ap.parse_args()
    if a.data_dir is not None:
        a.data_dir.mkdir(parents=True, exist_ok=True)
        run(a, a.data_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="ferry-bench-promql-") as tmp:
            run(a, Path(tmp))


def run(a: argparse.Namespace, tmp: Path) -> None:
    meta_path = tmp / "bench.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else None
    points = int(a.hours * 3600 * 1000 / STEP_MS)
    if meta is None:
        end_ms = (int(time.time() * 1000) // STEP_MS) * STEP_MS - 60_000
        start_ms = end_ms - (points - 1) * STEP_MS
    else:
        start_ms, end_ms = meta["start_ms"], meta["end_ms"]
        print(f"reusing the stores in {tmp} (loaded {meta['series']:,} series)")
    prom, prom_base = start_prometheus(tmp / "prometheus")
    ferry = FerryProcess(tmp / "ferry", {"pipeline": {"stages": {"writer": {"max_wait_s": 1.0}}}}).start()
    try:
        if meta is None:
            fams = families(a.series_scale, points, np.random.default_rng(7))
            n_series = sum(len(labels) for labels, _ in fams)
            print(f"{n_series:,} series x {points} points = {n_series * points:,} samples over {a.hours:g} h; encoding ...")
            t0 = time.perf_counter()
            reqs = bodies(fams, start_ms, points, a.window)
            print(f"  {len(reqs)} requests, {sum(map(len, reqs)) / 1e6:.0f} MB snappy, encoded in {time.perf_counter() - t0:.0f} s")
            print(f"remote_write: Prometheus {send(prom_base + '/api/v1/write', reqs):.1f} s, "
                  f"ferry {send(ferry.remote_write_url, reqs, threads=4):.1f} s (acknowledged = durable)")
            want = n_series * points
            deadline = time.monotonic() + 900
            while time.monotonic() < deadline:
                stored = httpx.get(ferry.api + "/api/v1/status", timeout=30).json()["stored"].get("metric_points", 0)
                if stored >= want:
                    break
                time.sleep(2)
            print(f"ferry stored {stored:,} of {want:,} samples")
            meta_path.write_text(json.dumps({"start_ms": start_ms, "end_ms": end_ms, "series": n_series}))
        ferry_base = ferry.api + "/prometheus"
        start_s, end_s = start_ms / 1000 + 600, end_ms / 1000
        print(f"\n{'query':<95} {'ferry p50':>10} {'p99':>8} {'Prom p50':>9} {'p99':>8} {'ratio':>6}  answers")
        ratios = []
        for q, what in QUERIES.items():
            if a.only and a.only not in q:
                continue
            pt, pdata = run_query(prom_base, q, start_s, end_s, a.runs)
            ft, fdata = run_query(ferry_base, q, start_s, end_s, a.runs)
            diff = compare(pdata, fdata)
            ratio = statistics.median(ft) / statistics.median(pt)
            ratios.append(ratio)
            print(f"{q[:80] + ' (' + what + ')':<95} {statistics.median(ft) * 1000:>8.0f}ms {pct(ft, 99) * 1000:>6.0f}ms "
                  f"{statistics.median(pt) * 1000:>7.0f}ms {pct(pt, 99) * 1000:>6.0f}ms {ratio:>6.1f}  "
                  f"{'same' if diff is None else 'DIFFER: ' + diff[:80]}")
        print(f"\nratio ferry/Prometheus (p50): median {statistics.median(ratios):.1f}, worst {max(ratios):.1f}; goal <= 1.0")
    finally:
        ferry.stop()
        prom.terminate()
        prom.wait(30)


if __name__ == "__main__":
    main()
