"""The table catalogue (ferry/schema) agrees with the store: every table's Arrow schema matches the
columns its DDL creates, its partitioning follows the catalogue, and /api/v1/status counts every table.

The chDB checks run in a child process each (chDB allows one data path per process).
"""

from __future__ import annotations

import multiprocessing as mp
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa

from ferry.schema import CATALOGUE, COUNTED_AS, TABLE_NAMES, TABLES
from ferry.store import ddl
from ferry.testing import FerryProcess

S = 10**9

_SCALARS = {
    pa.uint8(): "UInt8",
    pa.uint32(): "UInt32",
    pa.uint64(): "UInt64",
    pa.int32(): "Int32",
    pa.float64(): "Float64",
    pa.bool_(): "Bool",
    pa.string(): "String",
}


def _ch_type(t: pa.DataType) -> str:
    """The ClickHouse type an ArrowStream insert of `t` lands in without a conversion that loses anything."""
    if pa.types.is_timestamp(t):
        assert t.unit == "ns", t
        return "DateTime64(9)"
    if pa.types.is_map(t):
        return f"Map({_ch_type(t.key_type)}, {_ch_type(t.item_type)})"
    if pa.types.is_list(t):
        return f"Array({_ch_type(t.value_type)})"
    return _SCALARS[t]


def _plain(ch: str) -> str:
    # LowCardinality is a storage choice of the DDL, the same values as the type it wraps.
    return re.sub(r"LowCardinality\(([^()]*)\)", r"\1", ch)


def _describe(path: str) -> dict[str, Any]:
    from ferry.config.model import RetentionConfig
    from ferry.schema import conform
    from ferry.store.chdb_store import ChdbStore

    s = ChdbStore(Path(path))
    try:
        s.setup(RetentionConfig())
        out: dict[str, Any] = {}
        now = time.time_ns()
        for t in CATALOGUE:
            out[t.name] = [(str(r["name"]), str(r["type"])) for r in s.query_rows(f"DESCRIBE TABLE {t.name}")
                          if r["default_type"] != "MATERIALIZED"]  # computed by the store, never sent
            # One row of each schema goes in through the store's insert path and comes back whole.
            ts = pa.array([now], pa.timestamp("ns", tz="UTC"))
            s.insert(t.name, conform(pa.table({t.time_column: ts, "IngestTime": ts, "BatchId": ["b1"]}), t.schema))
        out["rows"] = {t.name: int(s.query_rows(f"SELECT count() AS n FROM {t.name}")[0]["n"]) for t in CATALOGUE}  # type: ignore[call-overload]
        out["keys"] = {str(r["name"]): str(r["partition_key"]) for r in s.query_rows(
            "SELECT name, partition_key FROM system.tables WHERE database = currentDatabase()")}
        return out
    finally:
        s.close()


def test_arrow_schemas_match_the_ddl_column_for_column(tmp_path: Path) -> None:
    """Each catalogue table's Arrow schema and the columns chDB creates from the DDL agree in name,
    order and type; a row of each schema inserts and reads back; partitions follow the catalogue."""
    with mp.get_context("spawn").Pool(1) as pool:
        got = pool.apply(_describe, (str(tmp_path / "store"),))
    for t in CATALOGUE:
        arrow = [(f.name, _ch_type(f.type)) for f in t.schema]
        store = [(name, _plain(typ)) for name, typ in got[t.name]]
        assert store == arrow, f"{t.name}: DDL columns differ from the Arrow schema"
        assert got["rows"][t.name] == 1
        fn = {"hour": "toStartOfHour", "day": "toDate"}[t.partition]
        assert got["keys"][t.name] == f"{fn}({t.time_column})"


def test_every_layer_lists_the_catalogue() -> None:
    """The DDL's data tables, retention, ledger views and the status keys come from the one catalogue."""
    assert tuple(TABLES) == TABLE_NAMES == ddl.DATA_TABLES
    assert set(TABLE_NAMES) <= set(ddl.retention(7, 7, 30))
    statements = "\n".join(ddl.all_statements(7, 7, 30))
    for name in TABLE_NAMES:
        assert f"CREATE TABLE IF NOT EXISTS {name} (" in statements
        assert f"CREATE MATERIALIZED VIEW IF NOT EXISTS {name}_batches_mv" in statements
    assert COUNTED_AS == ("logs", "spans", "metric_points", "siem_events", "links", "prom_metadata")


def _metrics_request(tag: str) -> bytes:
    """One point of each of the five OTLP metric kinds, one table each."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.add(key="service.name").value.string_value = tag
    sm = rm.scope_metrics.add()
    now = time.time_ns()
    sm.metrics.add(name="g").gauge.data_points.add(time_unix_nano=now, as_double=1.0)
    s = sm.metrics.add(name="s").sum
    s.aggregation_temporality = 2
    s.data_points.add(time_unix_nano=now, as_int=3)
    h = sm.metrics.add(name="h").histogram
    h.aggregation_temporality = 1
    h.data_points.add(time_unix_nano=now, count=1, sum=2.0, bucket_counts=[1, 0], explicit_bounds=[5.0])
    e = sm.metrics.add(name="e").exponential_histogram
    e.aggregation_temporality = 1
    e.data_points.add(time_unix_nano=now, count=1, sum=2.0, scale=1, zero_count=0).positive.bucket_counts.append(1)
    q = sm.metrics.add(name="q").summary.data_points.add(time_unix_nano=now, count=1, sum=2.0)
    q.quantile_values.add(quantile=0.5, value=2.0)
    return req.SerializeToString()


def test_status_counts_every_metric_table(tmp_path: Path) -> None:
    """/api/v1/status "metric_points" counts gauge, sum, histogram, exponential-histogram and summary
    points alike (it used to leave out the last two)."""
    f = FerryProcess(tmp_path / "data").start()
    try:
        r = httpx.post(f"{f.otlp_http}/v1/metrics", content=_metrics_request("catalogue"),
                       headers={"Content-Type": "application/x-protobuf"}, timeout=10)
        assert r.status_code == 200
        f.wait_for(lambda: f.get("/api/v1/status")["stored"]["metric_points"] >= 5, timeout=60)
        assert f.get("/api/v1/status")["stored"] == {"logs": 0, "spans": 0, "metric_points": 5, "siem_events": 0, "links": 0,
                                                      "prom_metadata": 0}
        assert f.metric("ferry_written_rows_total", table="otel_metrics_exponential_histogram") == 1
        assert f.metric("ferry_written_rows_total", table="otel_metrics_summary") == 1
    finally:
        assert f.stop() == 0
