"""Metric reads compiled by ferry.query.metrics, run against a real chDB store with the real DDL.

Histogram percentiles come from merged bucket counts; cumulative points count only what was new.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from ferry.config.model import RetentionConfig
from ferry.errors import BadRequest
from ferry.query.metrics import group_series, names_sql, series_sql
from ferry.schema.tables import METRICS_GAUGE, METRICS_HISTOGRAM, METRICS_SUM, conform
from ferry.store.chdb_store import ChdbStore

S = 10**9
T0 = (time.time_ns() // S // 3600 - 2) * 3600 * S  # an hour boundary two hours ago
BOUNDS = [5.0, 10.0, 25.0, 50.0]


def _hist(service: str, name: str, t_s: int, counts: list[int], total: float, *, start_s: int | None = None,
          temporality: int = 1, lo: float = 0.0, hi: float = 0.0, route: str = "/a") -> dict[str, Any]:
    return {"ServiceName": service, "MetricName": name, "MetricUnit": "ms", "Attributes": [("http.route", route)],
            "StartTimeUnix": T0 + (start_s if start_s is not None else t_s - 60) * S, "TimeUnix": T0 + t_s * S,
            "Count": sum(counts), "Sum": total, "BucketCounts": counts, "ExplicitBounds": BOUNDS,
            "Min": lo, "Max": hi, "AggregationTemporality": temporality}


def _table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    cols = {k: [r[k] for r in rows] for k in rows[0]}
    arrays = {k: pa.array(v, schema.field(k).type) for k, v in cols.items()}
    return conform(pa.table(arrays), schema)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChdbStore]:
    s = ChdbStore(Path(tmp_path_factory.mktemp("metrics")))
    s.setup(RetentionConfig())
    hist = [
        # delta: two points in the first minute, one in the second
        _hist("api", "lat.delta", 10, [1, 2, 3, 4, 0], 100.0),
        _hist("api", "lat.delta", 40, [0, 0, 0, 0, 10], 700.0),
        _hist("api", "lat.delta", 70, [0, 10, 0, 0, 0], 80.0),
        # one observation of 12.3 with its min and max: every percentile is 12.3
        _hist("checkout", "lat.one", 5, [0, 0, 1, 0, 0], 12.3, lo=12.3, hi=12.3),
        # cumulative, started inside the window: 3 then +2 then a reset to 1
        _hist("api", "lat.cum", 10, [0, 3, 0, 0, 0], 24.0, start_s=0, temporality=2),
        _hist("api", "lat.cum", 70, [0, 3, 2, 0, 0], 64.0, start_s=0, temporality=2),
        _hist("api", "lat.cum", 130, [1, 0, 0, 0, 0], 2.0, start_s=125, temporality=2),
        # cumulative since long ago: the point before the window is only a baseline
        _hist("api", "lat.old", -300, [50, 0, 0, 0, 0], 100.0, start_s=-86400, temporality=2),
        _hist("api", "lat.old", 30, [50, 0, 4, 0, 0], 172.0, start_s=-86400, temporality=2),
    ]
    s.insert("otel_metrics_histogram", _table(hist, METRICS_HISTOGRAM))
    gauge = [{"ServiceName": "worker", "MetricName": "queue.depth", "MetricUnit": "{items}", "Attributes": [("q", "a")],
              "TimeUnix": T0 + t * S, "Value": v} for t, v in ((10, 4.0), (20, 6.0), (70, 9.0))]
    s.insert("otel_metrics_gauge", _table(gauge, METRICS_GAUGE))
    sums = [{"ServiceName": svc, "MetricName": "requests", "MetricUnit": "1", "Attributes": [("code", "200")],
             "TimeUnix": T0 + t * S, "Value": v, "AggregationTemporality": 2}
            for svc, t, v in (("api", 10, 100.0), ("api", 20, 130.0), ("web", 20, 7.0))]
    s.insert("otel_metrics_sum", _table(sums, METRICS_SUM))
    try:
        yield s
    finally:
        s.close()


def _series(store: ChdbStore, name: str, step: int | None = 60, **labels: str) -> list[dict[str, Any]]:
    start, end = T0, T0 + 3600 * S
    rows = store.query_rows(series_sql(name, labels, start, end, step))
    whole = store.query_rows(series_sql(name, labels, start, end, None))
    return group_series(rows, whole)  # type: ignore[arg-type]


def test_delta_histogram_percentiles_per_step_and_window(store: ChdbStore) -> None:
    """Percentiles interpolate inside the bucket that holds the rank; the window merges all steps."""
    [s] = _series(store, "lat.delta")
    assert s["kind"] == "histogram" and s["unit"] == "ms" and s["labels"] == {"http.route": "/a"}
    first, second = s["stats"]
    # minute 1: buckets [1,2,3,4,10] over bounds 5,10,25,50,+inf; no min/max, so +inf reads as 50
    assert first["count"] == 20 and first["mean"] == 40.0
    assert first["p50"] == pytest.approx(50.0)  # rank 10 is the last of the (25,50] bucket
    assert first["p90"] == pytest.approx(50.0)
    assert second["count"] == 10 and second["p50"] == pytest.approx(7.5)  # (5,10]: rank 5 of 10
    w = s["window"]
    assert w["count"] == 30 and w["mean"] == pytest.approx(880 / 30)
    # merged [1,12,3,4,10]: rank 15 falls in (10,25] after 13 -> 10 + 15 * 2/3
    assert w["p50"] == pytest.approx(20.0)
    assert s["points"] == [[first["t"], 40.0], [second["t"], 8.0]]


def test_min_and_max_close_the_buckets(store: ChdbStore) -> None:
    """One observation of 12.3 reads as 12.3 at every percentile, not as the middle of (10, 25]."""
    [s] = _series(store, "lat.one", service="checkout")
    assert [s["window"][p] for p in ("p50", "p90", "p99")] == [pytest.approx(12.3)] * 3
    assert s["window"]["count"] == 1 and s["window"]["mean"] == pytest.approx(12.3)


def test_cumulative_histogram_counts_what_is_new(store: ChdbStore) -> None:
    """A cumulative series counts differences between its points; a reset starts over; the window's
    first point of an old series needs the point before the window as its baseline."""
    [s] = _series(store, "lat.cum")
    assert [x["count"] for x in s["stats"]] == [3, 2, 1]
    assert [x["mean"] for x in s["stats"]] == [8.0, 20.0, 2.0]
    assert s["window"]["count"] == 6
    [old] = _series(store, "lat.old")
    assert [x["count"] for x in old["stats"]] == [4]
    assert old["stats"][0]["mean"] == 18.0 and 10 < old["stats"][0]["p50"] <= 25


def test_gauges_and_sums_keep_their_meaning(store: ChdbStore) -> None:
    """Gauges average per step, cumulative sums take the last value; both carry their unit."""
    [g] = _series(store, "queue.depth")
    assert g["kind"] == "gauge" and g["unit"] == "{items}" and [v for _, v in g["points"]] == [5.0, 9.0]
    assert g["window"] == {"value": pytest.approx(19 / 3)} and "stats" not in g
    sums = _series(store, "requests", step=3600)
    assert {(x["service"], x["points"][0][1]) for x in sums} == {("api", 130.0), ("web", 7.0)}
    assert _series(store, "requests", service="web")[0]["service"] == "web"
    assert _series(store, "no.such.metric") == []


def test_names_list_kind_unit_series_and_services(store: ChdbStore) -> None:
    """Every metric with points in the window, with its kind, unit, series count and services."""
    rows = store.query_rows(names_sql({}, T0 - 3600 * S, T0 + 3600 * S))
    by = {(r["name"], r["kind"]): r for r in rows}
    assert by[("requests", "sum")]["series"] == 2 and by[("requests", "sum")]["services"] == ["api", "web"]
    assert by[("lat.one", "histogram")]["unit"] == "ms" and by[("queue.depth", "gauge")]["points"] == 3
    only = store.query_rows(names_sql({"service": "checkout"}, T0 - 3600 * S, T0 + 3600 * S))
    assert [r["name"] for r in only] == ["lat.one"]


def test_bad_names_and_steps_are_refused() -> None:
    with pytest.raises(BadRequest):
        series_sql("x'; DROP", {}, 0, 1, 60)
    with pytest.raises(BadRequest):
        series_sql("x", {}, 0, 1, 0)
