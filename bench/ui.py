"""Web UI timings in headless chromium (issue 12): logs explorer search and histogram, a 1,000-span trace,
an 8-panel dashboard over 6 h and the logs page weight, on a store of N log rows and M spans."""

# python bench/ui.py [--log-rows 10000000] [--spans 1000000] [--runs 7] [--data-dir DIR] [--keep]
#
# Steps:
#   1. logs: bench/search.py's loader (loghub bodies over the last 24 h, trace ids on 20 % of rows,
#      OPTIMIZE FINAL), in its own process; skipped if the data dir already holds a finished load
#      of either bench (a bench/search.py data dir gets the spans and metrics added);
#   2. spans and metrics, in its own process, straight into ChdbStore.insert: M spans in traces of
#      1-40 spans over the same 24 h, one trace of exactly 1,000 spans (with 50 log lines), and 6 h of
#      Prometheus-style series at 15 s stored as remote_write stores them; a dashboard YAML of 8
#      PromQL panels over them goes into `ui.dashboards_dir`;
#   3. `ferry run` on the data dir, then Playwright (Debian chromium, as tests/ui/conftest.py drives it):
#      one untimed warm-up and --runs timed runs of each figure, the figure measured in the page:
#      - Enter -> first rows: from the keydown of Enter to the first animation frame in which the
#        new rows (with the word highlighted) are in the DOM, i.e. painted in that frame;
#      - Enter -> histogram: the same, to the frame after uPlot drew the counts of this query;
#      - trace: navigation start -> performance.mark("ferry:trace-rendered") (trace.js marks the frame
#        after the waterfall is built); the page must show 1,000 spans;
#      - dashboard: navigation start -> the frame in which all 8 panels have drawn
#        (body[data-rendered="8"], set by dashboard.js once every panel query has answered and drawn);
#      - page weight: a fresh browser context (empty cache) opening `/`: encoded response bodies of the
#        document and everything under /ui/static/ (the assets), the API answers listed apart.
#   Each timed run opens its page anew in one browser context, so assets come from the cache as they
#   do for a user moving between views; each logs run searches a different rare word (~0.1 % of rows).
# Time ranges are absolute (the 24 h / 6 h before the data's end), so a reused data dir times the
# same data as a fresh one.

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import yaml  # noqa: E402
from playwright.sync_api import Browser, Page, sync_playwright  # noqa: E402

from bench import search  # noqa: E402
from bench._common import du, in_child, load_avg, ms, pct  # noqa: E402
from bench._logdata import LogData, _map  # noqa: E402
from ferry.config.model import RetentionConfig  # noqa: E402
from ferry.schema.tables import LOGS, METRICS_GAUGE, TRACES, conform  # noqa: E402
from ferry.store.chdb_store import ChdbStore  # noqa: E402
from ferry.testing import FerryProcess  # noqa: E402

META = "bench-ui.json"
DASHBOARD = "bench-ui"
HOUR_NS = 3600 * 10**9
DAY_NS = 24 * HOUR_NS
BIG_TRACE_SPANS = 1000
BIG_TRACE_LOGS = 50
SCRAPE_S = 15
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
GOALS = {  # figure -> (goal in ms or bytes, label)
    "rows": (500.0, "< 500 ms"),
    "hist": (1000.0, "< 1 s"),
    "trace": (1000.0, "< 1 s"),
    "dash": (2000.0, "< 2 s"),
}

_SPAN_SERVICES = tuple(
    f"{s}-api"
    for s in (
        "checkout",
        "payments",
        "auth",
        "search",
        "catalog",
        "cart",
        "orders",
        "billing",
        "shipping",
        "inventory",
        "users",
        "gateway",
    )
)
_OPERATIONS = (
    "GET /api/items",
    "POST /api/orders",
    "db.query SELECT",
    "db.query UPDATE",
    "cache.get",
    "cache.set",
    "grpc Charge",
    "grpc Authorize",
    "kafka.publish",
    "http.client GET",
    "render template",
    "auth.check",
)
_KINDS = ("SPAN_KIND_SERVER", "SPAN_KIND_CLIENT", "SPAN_KIND_INTERNAL", "SPAN_KIND_PRODUCER")
_STATUS = ("STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR")
_ROUTES = ("/api/items", "/api/orders", "/api/cart", "/api/login", "/api/search", "/healthz")


def _hex_ids(g: np.random.Generator, n: int, nbytes: int) -> pa.Array:
    """`n` random lowercase hex ids of `nbytes` bytes each, cut from one buffer."""
    raw = g.bytes(n * nbytes).hex().encode()
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(2 * nbytes), n, [None, pa.py_buffer(raw)])
    return fixed.cast(pa.binary()).cast(pa.string())


# --- step 2: spans -------------------------------------------------------------------------------


def _span_chunk(g: np.random.Generator, n: int, lo_ns: int, hi_ns: int, tag: str) -> pa.Table:
    """About `n` spans of traces starting in [lo_ns, hi_ns): 1-40 spans a trace, each child under a random
    earlier span of its trace, inside its trace's root duration."""
    sizes = np.minimum(1 + g.geometric(0.12, size=max(1, n // 6)), 40)
    sizes = sizes[: int(np.searchsorted(np.cumsum(sizes), n)) + 1]
    sizes[-1] -= max(0, int(sizes.sum()) - n)
    sizes = sizes[sizes > 0]
    n, nt = int(sizes.sum()), len(sizes)
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    trace_of = np.repeat(np.arange(nt), sizes)
    pos = np.arange(n) - first[trace_of]  # position within the trace; 0 is the root
    root_ts = g.integers(lo_ns, hi_ns, nt, dtype=np.int64)
    root_dur = (g.lognormal(np.log(40e6), 1.0, nt)).astype(np.int64) + 1_000_000
    offset = (g.random(n) * 0.8 * root_dur[trace_of]).astype(np.int64) * (pos > 0)
    dur = np.where(
        pos == 0, root_dur[trace_of], (g.random(n) * 0.2 * root_dur[trace_of]).astype(np.int64) + 1000
    )
    parent_pos = (g.random(n) * pos).astype(np.int64)  # a random earlier span of the same trace
    span_ids = _hex_ids(g, n, 8)
    parents = span_ids.take(pa.array(first[trace_of] + parent_pos))
    parents = pc.if_else(pa.array(pos == 0), "", parents)
    svc_root = g.integers(0, len(_SPAN_SERVICES), nt)
    svc = np.where(pos == 0, svc_root[trace_of], g.integers(0, len(_SPAN_SERVICES), n))
    kind = np.where(pos == 0, 0, g.choice(len(_KINDS), n, p=[0.3, 0.4, 0.25, 0.05]))
    status = g.choice(len(_STATUS), n, p=[0.6, 0.38, 0.02])
    services = pa.array(_SPAN_SERVICES, pa.string())
    hosts = pa.array([f"{s}-{i}" for s in _SPAN_SERVICES for i in range(3)], pa.string())
    host = svc * 3 + g.integers(0, 3, n)
    res_values = pa.concat_arrays([services.take(pa.array(svc)), hosts.take(pa.array(host))])
    res_idx = np.stack([np.arange(n), n + np.arange(n)], axis=1).ravel()
    route = pa.array(_ROUTES, pa.string()).take(pa.array(g.integers(0, len(_ROUTES), n)))
    code = pa.array(np.where(status == 2, "500", "200"), pa.string())
    span_attr_values = pa.concat_arrays([route, code])
    ts_type = pa.timestamp("ns", tz="UTC")
    start = root_ts[trace_of] + offset
    table = pa.table(
        {
            "Timestamp": pa.array(start, ts_type),
            "TraceId": _hex_ids(g, nt, 16).take(pa.array(trace_of)),
            "SpanId": span_ids,
            "ParentSpanId": parents,
            "SpanName": pa.array(_OPERATIONS, pa.string()).take(pa.array(g.integers(0, len(_OPERATIONS), n))),
            "SpanKind": pa.array(_KINDS, pa.string()).take(pa.array(kind)),
            "ServiceName": services.take(pa.array(svc)),
            "ResourceAttributes": _map(
                n, pa.array(["service.name", "host.name"]), res_values.take(pa.array(res_idx))
            ),
            "SpanAttributes": _map(
                n,
                pa.array(["http.route", "http.status_code"]),
                span_attr_values.take(pa.array(np.stack([np.arange(n), n + np.arange(n)], 1).ravel())),
            ),
            "Duration": pa.array(dur.astype(np.uint64), pa.uint64()),
            "StatusCode": pa.array(_STATUS, pa.string()).take(pa.array(status)),
            "Tenant": pa.repeat(pa.scalar("default"), n),
            "Source": pa.repeat(pa.scalar("otlp"), n),
            "IngestTime": pa.array(start + dur, ts_type),
            "BatchId": pa.repeat(pa.scalar(f"bench-ui-spans-{tag}"), n),
        }
    )
    return conform(table, TRACES)


def _big_trace(g: np.random.Generator, t0: int) -> tuple[str, pa.Table, pa.Table]:
    """One trace of exactly BIG_TRACE_SPANS spans, properly nested (a child starts and ends inside its
    parent), plus BIG_TRACE_LOGS log lines written in some of its spans."""
    trace_id = g.bytes(16).hex()
    span_ids = [g.bytes(8).hex() for _ in range(BIG_TRACE_SPANS)]
    start = np.zeros(BIG_TRACE_SPANS, np.int64)
    dur = np.zeros(BIG_TRACE_SPANS, np.int64)
    parent = np.full(BIG_TRACE_SPANS, -1)
    start[0], dur[0] = t0, 2_500_000_000
    # One trace of 1,000 spans: a loop, since each child is placed inside a parent drawn before it.
    for i in range(1, BIG_TRACE_SPANS):
        p = int(g.integers(max(0, i - 60), i))  # recent parents: a deep tree, like nested calls
        parent[i] = p
        start[i] = start[p] + int(g.random() * 0.5 * dur[p])
        dur[i] = max(1000, int(g.random() * 0.5 * dur[p]))
    svc = g.integers(0, len(_SPAN_SERVICES), BIG_TRACE_SPANS)
    svc[0] = 0
    status = np.where(g.random(BIG_TRACE_SPANS) < 0.01, 2, 1)
    ts_type = pa.timestamp("ns", tz="UTC")
    names = [_SPAN_SERVICES[s] for s in svc]
    spans = conform(
        pa.table(
            {
                "Timestamp": pa.array(start, ts_type),
                "TraceId": [trace_id] * BIG_TRACE_SPANS,
                "SpanId": span_ids,
                "ParentSpanId": ["" if p < 0 else span_ids[p] for p in parent],
                "SpanName": [_OPERATIONS[int(k)] for k in g.integers(0, len(_OPERATIONS), BIG_TRACE_SPANS)],
                "SpanKind": [_KINDS[0] if i == 0 else _KINDS[1 + i % 2] for i in range(BIG_TRACE_SPANS)],
                "ServiceName": names,
                "ResourceAttributes": pa.array(
                    [[("service.name", s), ("host.name", f"{s}-0")] for s in names],
                    pa.map_(pa.string(), pa.string()),
                ),
                "Duration": pa.array(dur.astype(np.uint64), pa.uint64()),
                "StatusCode": [_STATUS[int(s)] for s in status],
                "Tenant": ["default"] * BIG_TRACE_SPANS,
                "Source": ["otlp"] * BIG_TRACE_SPANS,
                "IngestTime": pa.array(start + dur, ts_type),
                "BatchId": ["bench-ui-big-trace"] * BIG_TRACE_SPANS,
            }
        ),
        TRACES,
    )
    owners = g.choice(BIG_TRACE_SPANS, BIG_TRACE_LOGS, replace=False)
    log_ts = start[owners] + dur[owners] // 2
    logs = conform(
        pa.table(
            {
                "Timestamp": pa.array(log_ts, ts_type),
                "ObservedTimestamp": pa.array(log_ts, ts_type),
                "TraceId": [trace_id] * BIG_TRACE_LOGS,
                "SpanId": [span_ids[int(o)] for o in owners],
                "TraceFlags": pa.array([1] * BIG_TRACE_LOGS, pa.uint8()),
                "SeverityText": ["INFO"] * BIG_TRACE_LOGS,
                "SeverityNumber": pa.array([9] * BIG_TRACE_LOGS, pa.uint8()),
                "ServiceName": [names[int(o)] for o in owners],
                "Body": [
                    f"step {i} of the checkout done in {int(dur[o]) // 1000} us" for i, o in enumerate(owners)
                ],
                "Tenant": ["default"] * BIG_TRACE_LOGS,
                "Source": ["otlp"] * BIG_TRACE_LOGS,
                "IngestTime": pa.array(log_ts, ts_type),
                "BatchId": ["bench-ui-big-trace-logs"] * BIG_TRACE_LOGS,
            }
        ),
        LOGS,
    )
    return trace_id, spans, logs


# --- step 2: metrics -----------------------------------------------------------------------------

_BOUNDS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf")
_JOBS = _SPAN_SERVICES[:8]


def _series() -> list[tuple[str, dict[str, str], str]]:
    """(metric name, labels, kind) of every series: kind is counter, gauge, or bucket:<le index>."""
    out: list[tuple[str, dict[str, str], str]] = []
    for job in _JOBS:
        for inst in range(2):
            base = {"job": job, "instance": f"{job}-{inst}:9100"}
            for method in ("GET", "POST"):
                for code in ("200", "404", "500"):
                    out.append(("http_requests_total", {**base, "method": method, "code": code}, "counter"))
            for i, le in enumerate(_BOUNDS):
                out.append(("http_request_duration_seconds_bucket", {**base, "le": le}, f"bucket:{i}"))
            out.append(("http_request_duration_seconds_count", base, "bucket:count"))
            out.append(("http_request_duration_seconds_sum", base, "bucket:sum"))
            out.append(("process_resident_memory_bytes", base, "gauge"))
            out.append(("process_cpu_seconds_total", base, "counter"))
        for queue in ("orders", "emails"):
            out.append(("queue_depth", {"job": job, "queue": queue}, "gauge"))
    return out


def _metrics(g: np.random.Generator, end_ns: int) -> pa.Table:
    """6 h of every series at 15 s, as the remote_write receiver stores samples (ScopeName
    prometheus.remote_write, labels verbatim, ServiceName = job): counters rise, gauges wander."""
    series = _series()
    steps = 6 * 3600 // SCRAPE_S
    times = end_ns - 6 * HOUR_NS + np.arange(steps, dtype=np.int64) * SCRAPE_S * 10**9
    values = np.zeros((len(series), steps))
    # Histogram series of one (job, instance) share one stream of observations.
    shares = np.array([0.05, 0.15, 0.35, 0.6, 0.8, 0.9, 0.95, 0.98, 0.995, 0.999, 1.0])
    for k, (name, _, kind) in enumerate(series):
        if kind == "counter":
            rate = 2.0 if name == "process_cpu_seconds_total" else g.uniform(0.5, 50)
            values[k] = np.cumsum(g.poisson(rate * SCRAPE_S, steps))
        elif kind == "gauge":
            level = 2e8 if name == "process_resident_memory_bytes" else 50.0
            values[k] = np.abs(level * (1 + 0.1 * np.cumsum(g.normal(0, 0.05, steps))))
    for k, (_, _, kind) in enumerate(series):
        if kind == "bucket:0":  # the first bucket of a group: fill the whole group, then count and sum
            obs = np.cumsum(g.poisson(20 * SCRAPE_S, steps)).astype(float)
            values[k : k + len(_BOUNDS)] = np.floor(shares[:, None] * obs)
            values[k + len(_BOUNDS)] = obs
            values[k + len(_BOUNDS) + 1] = obs * 0.08
    n = len(series) * steps
    label_maps = pa.array(
        [list(labels.items()) for _, labels, _ in series], pa.map_(pa.string(), pa.string())
    )
    idx = pa.array(np.repeat(np.arange(len(series)), steps))
    ts_type = pa.timestamp("ns", tz="UTC")
    table = pa.table(
        {
            "ScopeName": pa.repeat(pa.scalar("prometheus.remote_write"), n),
            "ServiceName": pa.array([labels.get("job", "") for _, labels, _ in series]).take(idx),
            "MetricName": pa.array([name for name, _, _ in series]).take(idx),
            "Attributes": label_maps.take(idx),
            "StartTimeUnix": pa.array(np.zeros(n, np.int64), ts_type),
            "TimeUnix": pa.array(np.tile(times, len(series)), ts_type),
            "Value": pa.array(values.ravel(), pa.float64()),
            "Tenant": pa.repeat(pa.scalar("default"), n),
            "Source": pa.repeat(pa.scalar("prometheus"), n),
            "IngestTime": pa.array(np.tile(times, len(series)), ts_type),
            "BatchId": pa.repeat(pa.scalar("bench-ui-metrics"), n),
        }
    )
    return conform(table, METRICS_GAUGE)


def dashboard_yaml() -> str:
    """8 PromQL panels over the bench's series: what a service owner's dashboard shows."""
    ri = "$__rate_interval"
    panels = [
        (
            "timeseries",
            "Requests by job",
            "ops/s",
            6,
            f"sum by (job) (rate(http_requests_total[{ri}]))",
            "{{job}}",
        ),
        (
            "timeseries",
            "5xx ratio",
            "percent",
            6,
            f'100 * sum by (job) (rate(http_requests_total{{code=~"5.."}}[{ri}])) / sum by (job) (rate(http_requests_total[{ri}]))',
            "{{job}}",
        ),
        (
            "timeseries",
            "p95 latency",
            "s",
            4,
            f"histogram_quantile(0.95, sum by (job, le) (rate(http_request_duration_seconds_bucket[{ri}])))",
            "{{job}}",
        ),
        (
            "heatmap",
            "Latency buckets",
            "s",
            4,
            f"sum by (le) (rate(http_request_duration_seconds_bucket[{ri}]))",
            None,
        ),
        ("stat", "Requests now", "ops/s", 4, "sum(rate(http_requests_total[5m]))", None),
        (
            "timeseries",
            "Resident memory",
            "bytes",
            4,
            "sum by (job) (process_resident_memory_bytes)",
            "{{job}}",
        ),
        ("timeseries", "CPU", "none", 4, f"sum by (job) (rate(process_cpu_seconds_total[{ri}]))", "{{job}}"),
        ("table", "Deepest queues", "none", 4, "topk(10, max by (job, queue) (queue_depth))", None),
    ]
    out = []
    for kind, title, unit, width, expr, legend in panels:
        query: dict[str, Any] = {"language": "promql", "expr": expr}
        if legend:
            query["legend"] = legend
        out.append({"type": kind, "title": title, "unit": unit, "width": width, "query": query})
    doc = {
        "title": "bench ui",
        "description": "8 PromQL panels over 6 h (bench/ui.py)",
        "time": {"from": "now-6h", "to": "now"},
        "rows": [{"title": "HTTP", "panels": out[:4]}, {"title": "Processes", "panels": out[4:]}],
    }
    return "# Written by bench/ui.py.\n" + yaml.safe_dump(doc, sort_keys=False)


def fill(data_dir: Path, spans: int, seed: int, end_ns: int, batch: int, out: Any) -> None:
    """Child process: spans (and the big trace) over the 24 h before end_ns, 6 h of metrics."""
    store = ChdbStore(data_dir / "store")
    store.setup(RetentionConfig())
    g = np.random.default_rng(seed + 11)
    t0 = time.perf_counter()
    trace_id, big_spans, big_logs = _big_trace(g, end_ns - DAY_NS // 2)
    store.insert("otel_traces", big_spans)
    store.insert("otel_logs", big_logs)
    rest = max(0, spans - BIG_TRACE_SPANS)
    n_chunks = max(1, math.ceil(rest / batch))
    lo, width = end_ns - DAY_NS, DAY_NS // n_chunks
    made = BIG_TRACE_SPANS
    for k in range(n_chunks):  # in time order, each chunk one slice of the day, as a live feed
        n = min(batch, rest - k * batch)
        if n <= 0:
            break
        chunk = _span_chunk(g, n, lo + k * width, lo + (k + 1) * width, str(k))
        store.insert("otel_traces", chunk)
        made += chunk.num_rows
    spans_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    metrics = _metrics(g, end_ns)
    store.insert("otel_metrics_gauge", metrics)
    metrics_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    store.query_bytes("OPTIMIZE TABLE otel_traces FINAL")
    optimize_s = time.perf_counter() - t0
    store.close()
    out.put(
        {
            "trace_id": trace_id,
            "spans": made,
            "spans_s": spans_s,
            "samples": metrics.num_rows,
            "metrics_s": metrics_s,
            "optimize_s": optimize_s,
        }
    )


def rare_words(seed: int, n: int) -> list[str]:
    """`n` all-letter words each expected in 0.05-0.2 % of rows (the loghub lines' frequencies)."""
    df = LogData(seed=seed).token_df()
    cands = sorted(t for t, f in df.items() if 0.0005 <= f <= 0.002 and len(t) >= 4)
    if len(cands) < n:
        raise SystemExit(f"only {len(cands)} rare words for {n} runs; lower --runs")
    rng = np.random.default_rng(seed + 3)
    return [cands[int(i)] for i in rng.choice(len(cands), n, replace=False)]


def build(data_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Steps 1 and 2; returns (and writes) the data dir's META."""
    data_dir.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {}
    if (data_dir / search.META).exists():
        print(f"   {data_dir} holds a bench/search.py load: adding spans and metrics to it")
    else:
        print(
            f"\n1. loading {args.log_rows:,} log rows over 24 h (bench/search.py's loader, separate process) ..."
        )
        st = in_child(search.load, data_dir, args.log_rows, args.batch, args.seed, True)
        meta["logs"] = st
        print(
            f"   {st['rows']:,} rows in {st['load_s']:.1f} s + OPTIMIZE FINAL {st['optimize_s']:.1f} s "
            f"(generating them: {st['gen_s']:.1f} s of it) = "
            f"{(st['load_s'] + st['optimize_s']) / st['rows'] * 1e6:.1f} s per million rows"
        )
    sm = json.loads((data_dir / search.META).read_text())
    print(
        f"\n2. {args.spans:,} spans (one trace of {BIG_TRACE_SPANS:,}) and 6 h of metrics (separate process) ..."
    )
    st = in_child(fill, data_dir, args.spans, sm["seed"], sm["end_ns"], args.batch)
    print(
        f"   {st['spans']:,} spans in {st['spans_s']:.1f} s + OPTIMIZE FINAL {st['optimize_s']:.1f} s = "
        f"{(st['spans_s'] + st['optimize_s']) / st['spans'] * 1e6:.1f} s per million spans; "
        f"{st['samples']:,} samples in {st['metrics_s']:.1f} s"
    )
    t0 = time.perf_counter()
    words = rare_words(sm["seed"], args.runs + 1)
    meta.update(
        {
            "seed": sm["seed"],
            "end_ns": sm["end_ns"],
            "trace_id": st["trace_id"],
            "fill": st,
            "words": words,
            "words_s": time.perf_counter() - t0,
        }
    )
    (data_dir / META).write_text(json.dumps(meta))
    return meta


# --- step 3: the browser -------------------------------------------------------------------------

# Installed before Enter: time from Enter's keydown to the animation frame in which the rows of this
# search (the word highlighted, the list no longer stale) and this search's histogram are on screen.
_ARM_LOGS = """(word) => {
  const w = word.toLowerCase();
  const chart = document.querySelector('.hist-chart'), total = document.querySelector('[data-total]');
  const rows = document.querySelector('[data-rows]');
  chart._uplot = null; delete total.dataset.count;
  const b = window.__bench = {t0: null, rows: null, hist: null};
  document.addEventListener('keydown', (e) => { if (e.key === 'Enter' && b.t0 === null) b.t0 = performance.now(); },
                            {capture: true});
  const tick = () => {
    if (b.t0 !== null) {
      const now = performance.now();
      if (b.rows === null && !rows.classList.contains('stale')) {
        const m = rows.querySelector(':scope > [data-row] mark');
        if (m && m.textContent.toLowerCase() === w) b.rows = now - b.t0;
      }
      if (b.hist === null && chart._uplot && total.dataset.count !== undefined) b.hist = now - b.t0;
    }
    if (b.rows === null || b.hist === null) requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}"""
_TRACE_DONE = """() => { const m = performance.getEntriesByName('ferry:trace-rendered');
  return m.length ? m[0].startTime : (document.querySelector('[data-not-found]') ? -1 : 0); }"""
_DASH_DONE = """(n) => document.body.dataset.rendered === String(n) ? performance.now() : 0"""


class Browse:
    """One chromium and one browser context (its cache shared by the timed runs)."""

    def __init__(self, browser: Browser, base: str) -> None:
        self.browser, self.base = browser, base
        self.context = browser.new_context(viewport={"width": 1400, "height": 900})
        self.problems: list[str] = []

    def page(self) -> Page:
        pg = self.context.new_page()
        pg.set_default_timeout(120_000)  # a cold 10 M-row store can take long on a loaded machine
        pg.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        pg.on("console", lambda m: self.problems.append(f"console: {m.text}") if m.type == "error" else None)
        return pg

    def logs(self, word: str, frm: int, to: int) -> dict[str, float]:
        pg = self.page()
        try:
            pg.goto(f"{self.base}/?from={frm}&to={to}")
            # Let the page's own first search (everything over 24 h) finish: it is not what is timed.
            pg.locator("[data-total][data-count]").wait_for(state="attached")
            pg.locator("[data-rows] > [data-row]").first.wait_for()
            pg.wait_for_function("() => !document.querySelector('.facets').classList.contains('stale')")
            pg.evaluate(_ARM_LOGS, word)
            box = pg.locator("[data-query]")
            box.fill(word)
            box.press("Enter")
            pg.wait_for_function("() => window.__bench.rows !== null && window.__bench.hist !== null")
            got = pg.evaluate("() => window.__bench")
            total = int(pg.locator("[data-total]").get_attribute("data-count") or 0)
            return {"rows": got["rows"], "hist": got["hist"], "matches": total}
        finally:
            pg.close()

    def trace(self, trace_id: str) -> float:
        pg = self.page()
        try:
            pg.goto(f"{self.base}/ui/traces/{trace_id}")
            ms = float(pg.wait_for_function(_TRACE_DONE).json_value())
            if ms < 0:
                raise RuntimeError(f"trace {trace_id} not found through the UI")
            shown = pg.locator("[data-span-count]").inner_text()
            if not shown.startswith(f"{BIG_TRACE_SPANS:,}") and not shown.startswith(str(BIG_TRACE_SPANS)):
                raise RuntimeError(f"the trace view shows {shown!r}, not {BIG_TRACE_SPANS} spans")
            return ms
        finally:
            pg.close()

    def dashboard(self, frm: int, to: int, panels: int) -> tuple[float, list[str]]:
        pg = self.page()
        try:
            pg.goto(f"{self.base}/ui/dashboards/{DASHBOARD}?from={frm}&to={to}")
            ms = float(pg.wait_for_function(_DASH_DONE, arg=panels).json_value())
            states = pg.eval_on_selector_all(".dash-panel", "(ps) => ps.map((p) => p.dataset.state)")
            return ms, states
        finally:
            pg.close()

    def weight(self, frm: int, to: int) -> dict[str, int]:
        """Bytes of the logs explorer's response bodies, as sent (encoded), in an empty-cache context."""
        context = self.browser.new_context(viewport={"width": 1400, "height": 900})
        try:
            pg = context.new_page()
            pg.set_default_timeout(120_000)
            requests: list[Any] = []
            pg.on("requestfinished", lambda r: requests.append(r))
            pg.goto(f"{self.base}/?from={frm}&to={to}")
            pg.locator("[data-total][data-count]").wait_for(state="attached")
            pg.wait_for_load_state("networkidle")
            out = {"assets": 0, "api": 0, "n_assets": 0, "n_api": 0}
            for req in requests:
                size = int(req.sizes()["responseBodySize"])
                path = "/" + req.url.split("/", 3)[3] if req.url.count("/") >= 3 else "/"
                if path.split("?")[0] == "/" or path.startswith("/ui/static/"):
                    out["assets"] += size
                    out["n_assets"] += 1
                else:
                    out["api"] += size
                    out["n_api"] += 1
            return out
        finally:
            context.close()


def measure(ferry: FerryProcess, meta: dict[str, Any], runs: int) -> dict[str, Any]:
    end = int(meta["end_ns"])
    day = (end - DAY_NS, end + 60 * 10**9)
    six = (end - 6 * HOUR_NS, end + 60 * 10**9)
    words = meta["words"]
    res: dict[str, Any] = {"rows": [], "hist": [], "matches": [], "trace": [], "dash": [], "states": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            b = Browse(browser, ferry.api)
            res["weight"] = b.weight(*day)
            b.logs(words[0], *day)  # warm-up: assets cached, chDB's caches as after first use
            b.trace(meta["trace_id"])
            b.dashboard(*six, 8)
            for i in range(1, runs + 1):  # interleaved, so a burst of other load hits every figure alike
                got = b.logs(words[i], *day)
                for k in ("rows", "hist", "matches"):
                    res[k].append(got[k])
                res["trace"].append(b.trace(meta["trace_id"]))
                ms, states = b.dashboard(*six, 8)
                res["dash"].append(ms)
                res["states"].append(states)
                print(
                    f"   run {i}: rows {got['rows']:.0f} ms, histogram {got['hist']:.0f} ms "
                    f"({words[i]!r}: {got['matches']:,} lines), trace {res['trace'][-1]:.0f} ms, "
                    f"dashboard {ms:.0f} ms"
                )
            res["problems"] = b.problems
        finally:
            browser.close()
    return res


def _report(res: dict[str, Any], stored: dict[str, int], du: int, runs: int) -> None:
    labels = {
        "rows": "logs: Enter -> first rows, rare word, 24 h",
        "hist": "logs: Enter -> histogram drawn",
        "trace": f"trace view, {BIG_TRACE_SPANS:,} spans: navigation -> waterfall",
        "dash": "dashboard, 8 PromQL panels, 6 h: navigation -> all drawn",
    }
    print(f"\n{'figure':58s} {'p50':>8s} {'p99':>8s}  {'goal (p50)':>11s}  met")
    for k, label in labels.items():
        goal, text = GOALS[k]
        p50, p99 = pct(res[k], 50), pct(res[k], 99)
        print(f"{label:58s} {p50:6.0f}ms {p99:6.0f}ms  {text:>11s}  {'met' if p50 < goal else 'NOT MET'}")
    w = res["weight"]
    print(
        f"{'logs explorer page weight (document + /ui/static/)':58s} {w['assets'] / 1024:6.1f}KB {'':8s}  "
        f"{'< 500 KB':>11s}  {'met' if w['assets'] < 500 * 1024 else 'NOT MET'}"
    )
    total = stored.get("logs", 0)
    share = statistics.median(res["matches"]) / total if total else 0.0
    print(f"""ms; {runs} timed runs of each, interleaved, after one untimed warm-up; p99 of {runs} runs is about the
slowest. Page weight: {w["n_assets"]} asset responses, encoded bodies, empty cache; the page's API answers
({w["n_api"]} requests) were another {w["api"] / 1024:.1f} KB. Rare words matched a median of
{statistics.median(res["matches"]):,.0f} lines = {share:.3%} of the logs.""")
    states = [s for run in res["states"] for s in run]
    bad = [s for s in states if s != "ok"]
    print(
        f"dashboard panels: {len(states) - len(bad)} of {len(states)} drawn with data"
        + (f"; not ok: {sorted(set(bad))}" if bad else "")
    )
    print(
        "store: "
        + ", ".join(f"{k} {v:,}" for k, v in stored.items() if v)
        + f"; du -sb store {du / 2**30:.2f} GiB"
    )
    if res["problems"]:
        print("browser errors: " + "; ".join(sorted(set(res["problems"])))[:2000])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--log-rows", type=int, default=10_000_000)
    ap.add_argument("--spans", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=7, help="timed runs of each figure")
    ap.add_argument(
        "--data-dir", type=Path, help="use this data dir; build it only if it holds no finished build"
    )
    ap.add_argument("--batch", type=int, default=100_000, help="rows per insert")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--keep", action="store_true", help="keep the temporary data dir")
    args = ap.parse_args()
    t_start = time.perf_counter()
    print(
        f"ferry UI bench: {os.cpu_count()} cores, load average {load_avg()} (the machine is shared)"
    )
    tmp = None
    if args.data_dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="ferry-ui-"))
        data_dir = tmp / "data"
    else:
        data_dir = args.data_dir.resolve()
    try:
        if (data_dir / META).exists():
            meta = json.loads((data_dir / META).read_text())
            print(f"reusing {data_dir}: not building")
            if len(meta["words"]) < args.runs + 1:
                meta["words"] = rare_words(meta["seed"], args.runs + 1)
        else:
            meta = build(data_dir, args)
        dash_dir = data_dir / "dashboards"
        dash_dir.mkdir(exist_ok=True)
        (dash_dir / f"{DASHBOARD}.yaml").write_text(dashboard_yaml())

        print(f"\n3. ferry run on {data_dir}, then chromium, load average {load_avg()} ...")
        ferry = FerryProcess(data_dir, config={"ui": {"dashboards_dir": str(dash_dir)}})
        ferry.log_path.unlink(missing_ok=True)
        t0 = time.perf_counter()
        ferry.start(timeout=180)
        try:
            with httpx.Client(base_url=ferry.api, timeout=60) as c:
                ferry.wait_for(lambda: c.get("/healthz").status_code == 200, timeout=120)
                print(f"   ferry answered after {ms(t0) / 1000:.1f} s")
                errors = c.get("/api/v1/ui/dashboards").json()["errors"]
                if errors:
                    raise SystemExit(f"the bench dashboard did not load: {errors}")
                t0 = time.perf_counter()
                res = measure(ferry, meta, args.runs)
                print(f"   browser step took {ms(t0) / 1000:.0f} s; load average {load_avg()}")
                stored = c.get("/api/v1/status").json()["stored"]
        finally:
            ferry.stop()
        _report(res, stored, du(data_dir / "store"), args.runs)
        print(f"\ntotal bench time {time.perf_counter() - t_start:.0f} s")
    finally:
        if tmp is not None and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp is not None:
            print(f"kept {data_dir}")


if __name__ == "__main__":
    main()
