"""OTLP metrics under their Prometheus names (OpenTelemetry's Prometheus compatibility rules), read
through ferry.query.prom_store from a real chDB store; remote_write rows come back verbatim.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from ferry.config.model import RetentionConfig
from ferry.query.prom_store import RW_SCOPE, PromStore, family_name, sanitize_label, unit_suffix
from ferry.query.promql.source import STALE_NAN, Hint, Matcher, Series, is_stale
from ferry.schema.tables import METRICS_GAUGE, METRICS_HISTOGRAM, METRICS_SUM, METRICS_SUMMARY, conform
from ferry.store import QueryLimits
from ferry.store.chdb_store import ChdbStore

MS = 1_000_000
T0_MS = (time.time_ns() // MS // 3_600_000 - 3) * 3_600_000  # an hour boundary three hours ago
RES = [("service.name", "shop"), ("service.namespace", "acme"), ("service.instance.id", "pod-1"), ("host.name", "web-7")]


@pytest.mark.parametrize(("metric", "unit", "kind", "mono", "expected"), [
    ("http.server.request.duration", "s", "histogram", False, "http_server_request_duration_seconds"),
    ("system.filesystem.usage", "By", "gauge", False, "system_filesystem_usage_bytes"),
    ("system.memory.utilization", "1", "gauge", False, "system_memory_utilization_ratio"),
    ("requests", "1", "sum", True, "requests_total"),
    ("system.network.dropped", "{packets}", "sum", True, "system_network_dropped_total"),
    ("throughput", "By/s", "gauge", False, "throughput_bytes_per_second"),
    ("events", "{event}/s", "gauge", False, "events_per_second"),
    ("process.cpu.time", "s", "sum", True, "process_cpu_time_seconds_total"),
    ("queue.size", "{items}", "sum", False, "queue_size"),
    ("latency_seconds", "s", "histogram", False, "latency_seconds"),
    ("jobs_total", "", "sum", True, "jobs_total"),
    ("(lambda).function..executions", "", "gauge", False, "_lambda_function_executions"),
    ("2xx.count", "", "gauge", False, "_2xx_count"),
    ("temp", "Cel", "gauge", False, "temp_celsius"),
])
def test_family_names(metric: str, unit: str, kind: str, mono: bool, expected: str) -> None:
    assert family_name(metric, unit, kind, mono) == expected


def test_units_and_labels() -> None:
    assert unit_suffix("ms", "histogram") == "milliseconds"
    assert unit_suffix("1", "sum") == ""
    assert unit_suffix("m/s", "gauge") == "meters_per_second"
    assert sanitize_label("http.request.method") == "http_request_method"
    assert sanitize_label("0day") == "key_0day"
    assert sanitize_label("a..b") == "a_b"


def _table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    keys = sorted({k for r in rows for k in r})
    defaults = {"ResourceAttributes": [], "ScopeName": "", "MetricUnit": "", "MetricDescription": "", "Flags": 0,
                "StartTimeUnix": 0, "Exemplars.TimeUnix": [], "Exemplars.Value": [], "Exemplars.FilteredAttributes": [],
                "Exemplars.TraceId": [], "Exemplars.SpanId": []}
    cols = {k: [r.get(k, defaults.get(k)) for r in rows] for k in keys}
    return conform(pa.table({k: pa.array(v, schema.field(k).type) for k, v in cols.items()}), schema)


def _point(name: str, unit: str, t_s: int, attrs: list[tuple[str, str]], **kw: Any) -> dict[str, Any]:
    row = {"Tenant": kw.pop("tenant", "default"), "ServiceName": "shop", "ResourceAttributes": RES, "ScopeName": "app.meter",
           "MetricName": name, "MetricUnit": unit, "MetricDescription": f"about {name}", "Attributes": attrs,
           "StartTimeUnix": T0_MS * MS, "TimeUnix": (T0_MS + t_s * 1000) * MS}
    row.update(kw)
    return row


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChdbStore]:
    s = ChdbStore(Path(tmp_path_factory.mktemp("promnames")))
    s.setup(RetentionConfig())
    route = [("http.route", "/a"), ("http.request.method", "GET")]
    s.insert("otel_metrics_histogram", _table([
        _point("http.server.request.duration", "s", t, route, Count=c, Sum=sm, BucketCounts=b,
               ExplicitBounds=[0.1, 0.5, 1.0], AggregationTemporality=2)
        for t, c, sm, b in ((10, 3, 0.9, [1, 1, 1, 0]), (20, 5, 3.4, [2, 1, 1, 1]))
    ] + [
        # delta histogram: each point holds only what is new
        _point("jobs.duration", "ms", t, [], Count=c, Sum=sm, BucketCounts=b, ExplicitBounds=[10.0],
               AggregationTemporality=1)
        for t, c, sm, b in ((10, 2, 15.0, [1, 1]), (20, 1, 5.0, [1, 0]), (30, 3, 90.0, [0, 3]))
    ], METRICS_HISTOGRAM))
    s.insert("otel_metrics_sum", _table([
        _point("orders", "{order}", t, [("shop.region", "eu")], Value=v, AggregationTemporality=2, IsMonotonic=True)
        for t, v in ((10, 5.0), (20, 8.0))
    ] + [
        _point("emails.sent", "", t, [], Value=v, AggregationTemporality=1, IsMonotonic=True)
        for t, v in ((-7200, 100.0), (10, 2.0), (20, 3.0))
    ] + [
        _point("queue.items", "{item}", t, [], Value=v, AggregationTemporality=1, IsMonotonic=False)
        for t, v in ((10, 4.0), (20, -1.0))
    ], METRICS_SUM))
    s.insert("otel_metrics_gauge", _table([
        _point("memory.utilization", "1", 10, [("a.b", "x"), ("a_b", "y")], Value=0.25),
        _point("memory.utilization", "1", 20, [("a.b", "x"), ("a_b", "y")], Value=0.5, Flags=1),
        _point("memory.utilization", "1", 10, [], Value=1.0, tenant="other"),
        # remote_write: labels exactly as written
        *({"Tenant": "default", "ScopeName": RW_SCOPE, "ServiceName": "node", "MetricName": "node_load1",
           "Attributes": [("job", "node"), ("instance", "h:9100"), ("weird.label", "v")],
           "TimeUnix": (T0_MS + t * 1000) * MS, "Value": v, "Flags": f}
          for t, v, f in ((10, 1.5, 0), (20, float("nan"), 0), (30, STALE_NAN, 1))),
        {"Tenant": "default", "ScopeName": RW_SCOPE, "MetricName": "multi_line", "Attributes": [("path", "/a\nb")],
         "TimeUnix": (T0_MS + 10_000) * MS, "Value": 1.0},
        {"Tenant": "default", "ScopeName": RW_SCOPE, "MetricName": "rpc_seconds_bucket",
         "Attributes": [("job", "rpc"), ("le", "0.5")], "TimeUnix": (T0_MS + 10_000) * MS, "Value": 3.0,
         "Exemplars.TimeUnix": [(T0_MS + 9_000) * MS], "Exemplars.Value": [0.25],
         "Exemplars.FilteredAttributes": [[("user", "u1")]], "Exemplars.TraceId": ["4bf92f3577b34da6a3ce929d0e0e4736"],
         "Exemplars.SpanId": ["00f067aa0ba902b7"]},
    ], METRICS_GAUGE))
    s.insert("otel_metrics_summary", _table([
        _point("rpc.latency", "ms", 10, [], Count=4, Sum=10.0, **{"ValueAtQuantiles.Quantile": [0.5, 0.99],
                                                                    "ValueAtQuantiles.Value": [2.0, 4.0]}),
    ], METRICS_SUMMARY))
    try:
        yield s
    finally:
        s.close()


def _prom(store: ChdbStore, tenant: str = "default") -> PromStore:
    limits = QueryLimits(max_seconds=30, max_memory_bytes=2**30, max_result_bytes=2**28)

    async def rows(sql: str) -> list[dict[str, Any]]:
        return store.read_rows(sql, limits)

    return PromStore(rows, tenant)


def _select(store: ChdbStore, selector: list[Matcher], tenant: str = "default") -> dict[str, Series]:
    found = asyncio.run(_prom(store, tenant).select(selector, T0_MS, T0_MS + 60_000))
    out = {}
    for s in found:
        key = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        assert key not in out
        out[key] = s
    return out


def _name(n: str) -> Matcher:
    return Matcher("__name__", "=", n)


def test_histogram_buckets_sum_count(store: ChdbStore) -> None:
    got = _select(store, [_name("http_server_request_duration_seconds_bucket")])
    common = {"__name__": "http_server_request_duration_seconds_bucket", "http_request_method": "GET",
              "http_route": "/a", "instance": "pod-1", "job": "acme/shop", "otel_scope_name": "app.meter"}
    les = {"0.1": [1, 2], "0.5": [2, 3], "1": [3, 4], "+Inf": [3, 5]}
    assert sorted(s.labels["le"] for s in got.values()) == sorted(les)
    for s in got.values():
        assert s.labels == {**common, "le": s.labels["le"]}
        assert s.t.tolist() == [T0_MS + 10_000, T0_MS + 20_000]
        assert s.v.tolist() == les[s.labels["le"]]
    (count,) = _select(store, [_name("http_server_request_duration_seconds_count")]).values()
    assert count.v.tolist() == [3, 5]
    (total,) = _select(store, [_name("http_server_request_duration_seconds_sum")]).values()
    assert total.v.tolist() == [0.9, 3.4]


def test_label_matchers_and_regex_names(store: ChdbStore) -> None:
    got = _select(store, [Matcher("__name__", "=~", "http_server_request_duration_seconds_(bucket|count)"),
                          Matcher("le", "=~", r"\+Inf|"), Matcher("http_request_method", "=", "GET"),
                          Matcher("job", "=", "acme/shop")])
    assert len(got) == 2
    assert not _select(store, [_name("http_server_request_duration_seconds_count"), Matcher("http_route", "!=", "/a")])


def test_delta_accumulated(store: ChdbStore) -> None:
    (emails,) = _select(store, [_name("emails_sent_total")]).values()
    assert emails.v.tolist() == [102.0, 105.0]  # the point before the window is the base
    (queue,) = _select(store, [_name("queue_items")]).values()
    assert queue.v.tolist() == [4.0, 3.0]
    got = _select(store, [_name("jobs_duration_milliseconds_bucket")])
    by_le = {s.labels["le"]: s.v.tolist() for s in got.values()}
    assert by_le == {"10": [1, 2, 2], "+Inf": [2, 3, 6]}
    (n,) = _select(store, [_name("jobs_duration_milliseconds_count")]).values()
    assert n.v.tolist() == [2, 3, 6]


def test_gauge_ratio_collision_staleness_and_tenant(store: ChdbStore) -> None:
    (g,) = _select(store, [_name("memory_utilization_ratio")]).values()
    assert g.labels["a_b"] == "x;y"  # both attributes sanitise to a_b: values joined by original name order
    assert g.v[0] == 0.25 and is_stale(g.v).tolist() == [False, True]
    (other,) = _select(store, [_name("memory_utilization_ratio")], tenant="other").values()
    assert other.v.tolist() == [1.0]


def test_counter_total_and_summary(store: ChdbStore) -> None:
    (c,) = _select(store, [_name("orders_total")]).values()
    assert c.labels["shop_region"] == "eu" and c.v.tolist() == [5.0, 8.0]
    got = _select(store, [_name("rpc_latency_milliseconds")])
    assert {s.labels["quantile"]: s.v.tolist() for s in got.values()} == {"0.5": [2.0], "0.99": [4.0]}


def test_remote_write_verbatim(store: ChdbStore) -> None:
    (s,) = _select(store, [_name("node_load1"), Matcher("weird.label", "=", "v")]).values()
    assert s.labels == {"__name__": "node_load1", "job": "node", "instance": "h:9100", "weird.label": "v"}
    assert s.v[0] == 1.5 and math.isnan(s.v[1]) and not is_stale(s.v)[1] and is_stale(s.v)[2]


def test_target_info_and_metadata_reads(store: ChdbStore) -> None:
    (ti,) = _select(store, [_name("target_info")]).values()
    assert ti.labels == {"__name__": "target_info", "job": "acme/shop", "instance": "pod-1", "host_name": "web-7"}
    assert np.all(ti.v == 1.0)
    p = _prom(store)
    names = asyncio.run(p.label_values("__name__", [], T0_MS, T0_MS + 60_000))
    assert {"node_load1", "orders_total", "target_info", "http_server_request_duration_seconds_bucket"} <= set(names)
    labels = asyncio.run(p.label_names([[_name("orders_total")]], T0_MS, T0_MS + 60_000))
    assert labels == ["__name__", "instance", "job", "otel_scope_name", "shop_region"]
    meta = asyncio.run(p.metadata(None, None))
    assert meta["http_server_request_duration_seconds"] == [
        {"type": "histogram", "help": "about http.server.request.duration", "unit": "seconds"}]
    assert meta["orders_total"][0]["type"] == "counter"


def test_series_over_all_of_time(store: ChdbStore) -> None:
    """/series with no start or end reads from 1970 to 9999, past what the store's timestamps hold."""
    found = asyncio.run(_prom(store).series_labels(
        [[_name("orders_total"), Matcher("job", "=", "acme/shop")], [_name("queue_items")]], 0, 253_402_300_799_000))
    assert sorted(s["__name__"] for s in found) == ["orders_total", "queue_items"]


def test_instant_selector_reads_one_sample_per_step(store: ChdbStore) -> None:
    """Told the selector is evaluated every 15 s back from the end, the store returns only the last
    sample at or before each evaluation time (what the selector can return), staleness marker included."""
    end = T0_MS + 60_000
    (s,) = asyncio.run(_prom(store).select([_name("node_load1")], T0_MS, end, Hint(step_ms=15_000)))
    assert s.t.tolist() == [T0_MS + 10_000, T0_MS + 30_000]  # the NaN at 20 s is followed by 30 s before 30 s
    assert s.v[0] == 1.5 and is_stale(s.v)[1]
    (whole,) = asyncio.run(_prom(store).select([_name("node_load1")], T0_MS, end, Hint(step_ms=0)))
    assert whole.t.tolist() == [T0_MS + 30_000]
    (raw,) = asyncio.run(_prom(store).select([_name("node_load1")], T0_MS, end, Hint(range_ms=60_000, step_ms=15_000)))
    assert len(raw.t) == 3  # a range selector gets every sample


def test_regex_dot_does_not_match_newline(store: ChdbStore) -> None:
    """As in Prometheus (Go's RE2 without the s flag), `.` stops at a newline; the store's own default differs."""
    assert not _select(store, [_name("multi_line"), Matcher("path", "=~", "/a.b")])
    assert _select(store, [_name("multi_line"), Matcher("path", "=~", "/a\nb")])
    assert _select(store, [_name("multi_line"), Matcher("path", "!~", ".*")])


def test_remote_write_exemplars(store: ChdbStore) -> None:
    found = asyncio.run(_prom(store).exemplars([[_name("rpc_seconds_bucket")]], T0_MS, T0_MS + 60_000))
    assert found == [{"seriesLabels": {"__name__": "rpc_seconds_bucket", "job": "rpc", "le": "0.5"},
                      "exemplars": [{"labels": {"user": "u1", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
                                                "span_id": "00f067aa0ba902b7"},
                                     "value": "0.25", "timestamp": (T0_MS + 9_000) / 1000}]}]
    assert not asyncio.run(_prom(store).exemplars([[_name("rpc_seconds_bucket")]], T0_MS + 9_001, T0_MS + 60_000))


def test_catalogue_follows_writes_merges_and_drops(store: ChdbStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Metric names listed after the catalogue's copy aged: a name written since appears (read from
    the new part alone), a merge loses none, a dropped partition's names go. (Two days back: a day
    partition of this test's own.)"""
    monkeypatch.setattr(PromStore, "CATALOG_TTL_S", 0.0)
    t0 = T0_MS - 2 * 86_400_000
    reads: list[str] = []
    limits = QueryLimits(max_seconds=30, max_memory_bytes=2**30, max_result_bytes=2**28)

    def rw(name: str, t_s: int) -> None:
        store.insert("otel_metrics_gauge", _table([{"Tenant": "default", "ScopeName": RW_SCOPE, "MetricName": name,
                                                    "Attributes": [("job", "j")], "TimeUnix": (t0 + t_s * 1000) * MS,
                                                    "Value": 1.0}], METRICS_GAUGE))

    async def rows(sql: str) -> list[dict[str, Any]]:
        reads.append(sql)
        return store.read_rows(sql, limits)

    def names() -> list[str]:
        reads.clear()  # one catalogue shared by the requests, as the API's are (scope)
        return asyncio.run(PromStore(rows, "default", scope=store).label_values("__name__", [], t0, t0 + 3_600_000))

    rw("first_metric", 10)
    assert names() == ["first_metric"]
    rw("second_metric", 20)
    assert names() == ["first_metric", "second_metric"]
    assert any("_part IN" in sql for sql in reads)  # the new part alone was read
    store.query_bytes("OPTIMIZE TABLE otel_metrics_gauge FINAL", "TSV")
    assert names() == ["first_metric", "second_metric"]
    assert not any("GROUP BY ServiceName, MetricName" in sql for sql in reads)  # a merge: nothing read
    day = time.strftime("%Y%m%d", time.gmtime(t0 / 1000))
    store.query_bytes(f"ALTER TABLE otel_metrics_gauge DROP PARTITION ID '{day}'", "TSV")
    assert names() == []
