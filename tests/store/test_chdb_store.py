"""The embedded store: retention per signal, and exactly-once batch writes through every path.

Runs chDB in-process on a temporary directory, in a child process each (chDB allows one path per process).
"""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

TS = pa.timestamp("ns", tz="UTC")


def _in_child(fn: Any, *args: Any) -> Any:
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(fn, args)


def _logs(bodies: list[str], ts_ns: int, received_ns: int | None = None) -> pa.Table:
    from ferry.schema import LOGS, conform

    n = len(bodies)
    received = pa.array([received_ns or time.time_ns()] * n, TS)
    return conform(pa.table({"Timestamp": pa.array([ts_ns] * n, TS), "IngestTime": received, "Body": bodies}), LOGS)


def _retention(path: str) -> dict[str, Any]:
    from ferry.config.model import RetentionConfig
    from ferry.store.chdb_store import ChdbStore

    s = ChdbStore(Path(path))
    s.setup(RetentionConfig(logs_days=3, traces_days=5, metrics_days=40))
    day = 86400 * 10**9
    now = time.time_ns()
    s.insert("otel_logs", _logs(["old"], now - 4 * day, now - 4 * day))
    s.insert("otel_logs", _logs(["recent"], now - 2 * day, now - 2 * day))
    # Stamped 4 days ago but received now (a device clock behind, a flushed agent buffer).
    s.insert("otel_logs", _logs(["late"], now - 4 * day))
    s.conn().query("OPTIMIZE TABLE otel_logs FINAL")  # type: ignore[attr-defined]
    tables = ("otel_logs", "otel_traces", "otel_metrics_sum", "otel_traces_trace_id_ts", "ferry_batches")
    ddl = {t: s.query_rows(f"SHOW CREATE TABLE {t}")[0]["statement"] for t in tables}
    bodies = sorted(r["Body"] for r in s.query_rows("SELECT Body FROM otel_logs"))
    s.close()
    # Reopened with other settings: the existing tables take them.
    s = ChdbStore(Path(path))
    s.setup(RetentionConfig(logs_days=30, traces_days=0, metrics_days=40))
    after = {t: s.query_rows(f"SHOW CREATE TABLE {t}")[0]["statement"] for t in tables}
    s.close()
    return {"ddl": ddl, "bodies": bodies, "after": after}


def test_retention_is_per_signal_and_expires_old_rows(tmp_path: Path) -> None:
    """Each signal's table gets its own TTL from config, and rows past it are removed."""
    got = _in_child(_retention, str(tmp_path / "store"))
    assert "toIntervalDay(3)" in got["ddl"]["otel_logs"]
    assert "toIntervalDay(5)" in got["ddl"]["otel_traces"]
    assert "toIntervalDay(40)" in got["ddl"]["otel_metrics_sum"]
    assert "toIntervalDay(5)" in got["ddl"]["otel_traces_trace_id_ts"]
    assert "toIntervalDay(41)" in got["ddl"]["ferry_batches"]
    assert "PARTITION BY toStartOfHour(Timestamp)" in got["ddl"]["otel_logs"]
    # Kept from the later of event time and receipt: a late line is not dropped on arrival.
    assert got["bodies"] == ["late", "recent"]


def test_changed_retention_applies_to_an_existing_store(tmp_path: Path) -> None:
    """Reopening a store with other retention settings changes its tables' TTLs (0 = forever)."""
    after = _in_child(_retention, str(tmp_path / "store"))["after"]
    assert "toIntervalDay(30)" in after["otel_logs"]
    assert "toIntervalDay" not in after["otel_traces"] and "toIntervalDay" not in after["otel_traces_trace_id_ts"]
    assert "toIntervalDay(40)" in after["otel_metrics_sum"]
    assert "toIntervalDay(41)" in after["ferry_batches"]


def _exactly_once(path: str) -> dict[str, Any]:
    from ferry.bus.codec import Batch
    from ferry.config.model import RetentionConfig
    from ferry.store.chdb_store import ChdbStore

    s = ChdbStore(Path(path))
    s.setup(RetentionConfig())
    now = time.time_ns()
    a = Batch(_logs(["a1", "a2"], now), "logs", "otel_logs", "otlp", batch_id="A")
    b = Batch(_logs(["b1"], now), "logs", "otel_logs", "otlp", batch_id="B")
    out: dict[str, Any] = {"first": s.write_batches("otel_logs", [a, b])}
    out["again"] = s.write_batches("otel_logs", [a, b])
    # A crash after the data part but before the ledger part: data present, ledger silent.
    s.conn().query("DELETE FROM ferry_batches WHERE BatchId = 'A'")  # type: ignore[attr-defined]
    out["ledger_lost_redelivered"] = s.write_batches("otel_logs", [Batch(a.table, "logs", "otel_logs", "otlp", batch_id="A", redelivered=True)])
    # A batch found only partly written is rewritten whole.
    c = Batch(_logs(["c1", "c2", "c3"], now), "logs", "otel_logs", "otlp", batch_id="C")
    s.insert("otel_logs", c.table.slice(0, 1).set_column(c.table.schema.get_field_index("BatchId"), "BatchId", pa.array(["C"])))
    out["partial"] = s.write_batches("otel_logs", [c], verify=True)
    # A delivery left unfetched past ack_wait and its redelivery, both in one writer call.
    d = Batch(_logs(["d1"], now), "logs", "otel_logs", "otlp", batch_id="D")
    d_again = Batch(d.table, "logs", "otel_logs", "otlp", batch_id="D", redelivered=True)
    out["twice_in_one_call"] = s.write_batches("otel_logs", [d, d_again])
    out["bodies"] = sorted(r["Body"] for r in s.query_rows("SELECT Body FROM otel_logs"))
    s.close()
    return out


def test_write_batches_is_exactly_once(tmp_path: Path) -> None:
    """Repeated, ledger-less and partly written batches all end up stored exactly once."""
    got = _in_child(_exactly_once, str(tmp_path / "store"))
    assert got["first"] == (3, 0)
    assert got["again"] == (0, 2)
    assert got["ledger_lost_redelivered"] == (0, 1)
    assert got["partial"] == (3, 0)
    assert got["twice_in_one_call"] == (1, 1)
    assert got["bodies"] == ["a1", "a2", "b1", "c1", "c2", "c3", "d1"]


_OLD_BODY_INDEX = (
    "lower(replaceRegexpAll(replaceRegexpAll(replaceRegexpAll(Body, '([a-z])([A-Z])', '\\\\1 \\\\2'), "
    "'([A-Za-z])([0-9])', '\\\\1 \\\\2'), '([0-9])([A-Za-z])', '\\\\1 \\\\2'))"
)


def _store_of_older_ferry(path: str) -> None:
    from ferry.config.model import RetentionConfig
    from ferry.store.chdb_store import ChdbStore

    s = ChdbStore(Path(path))
    s.setup(RetentionConfig())
    s.conn().query(  # type: ignore[attr-defined]
        f"ALTER TABLE otel_logs DROP INDEX idx_body, ADD INDEX idx_body {_OLD_BODY_INDEX} TYPE text(tokenizer = splitByNonAlpha)"
    )
    s.insert("otel_logs", _logs(["camera PowerShot SD500 ready", "nothing to see"], time.time_ns()))
    s.close()


def _reopen_and_search(path: str) -> dict[str, Any]:
    from ferry.config.model import RetentionConfig
    from ferry.store import ddl
    from ferry.store.chdb_store import ChdbStore

    s = ChdbStore(Path(path))
    s.setup(RetentionConfig())
    expr = s.query_rows("SELECT expr FROM system.data_skipping_indices WHERE table = 'otel_logs' AND name = 'idx_body'")
    deadline = time.monotonic() + 60
    while s.query_rows("SELECT count() AS n FROM system.mutations WHERE NOT is_done")[0]["n"] and time.monotonic() < deadline:
        time.sleep(0.2)
    # force_data_skipping_indices fails the query unless the index is used.
    rows = s.query_rows(
        f"SELECT Body FROM otel_logs WHERE hasAllTokens({ddl.BODY_TOKENS}, ['power']) "
        "SETTINGS force_data_skipping_indices = 'idx_body'"
    )
    s.close()
    return {"expr": expr[0]["expr"], "want": ddl.BODY_TOKENS, "bodies": [r["Body"] for r in rows]}


def test_a_store_from_an_older_ferry_gets_the_current_search_index(tmp_path: Path) -> None:
    """Opening a store whose full-text index was defined by an older ferry redefines and rebuilds
    it, so word searches keep using an index instead of scanning every row."""
    path = str(tmp_path / "store")
    _in_child(_store_of_older_ferry, path)
    got = _in_child(_reopen_and_search, path)
    assert got["expr"] == got["want"]
    assert got["bodies"] == ["camera PowerShot SD500 ready"]


def _spooled_by_an_older_ferry(path: str) -> dict[str, Any]:
    import orjson

    from ferry.bus import codec
    from ferry.config.model import RetentionConfig
    from ferry.stages.sink import Spool
    from ferry.store.chdb_store import ChdbStore

    root = Path(path) / "spool"
    (root / "otel_logs").mkdir(parents=True)
    # The first spool format: its own meta keys, rows without their batch id.
    meta = orjson.dumps({"signal": "logs", "source": "otlp", "tenant": "default", "batch_id": "OLD1"})
    data = codec.encode(_logs(["spooled before an upgrade"], time.time_ns()))
    (root / "otel_logs" / "OLD1.spool").write_bytes(len(meta).to_bytes(4, "big") + meta + data)
    spool = Spool(root)
    [(table, file)] = spool.files()
    s = ChdbStore(Path(path) / "store")
    s.setup(RetentionConfig())
    first = s.write_batches(table, [Spool.read(table, file)])
    again = s.write_batches(table, [Spool.read(table, file)])
    rows = s.query_rows("SELECT Body, BatchId FROM otel_logs")
    s.close()
    return {"first": first, "again": again, "rows": rows}


def test_a_batch_spooled_by_an_older_ferry_is_stored_once_with_its_batch_id(tmp_path: Path) -> None:
    got = _in_child(_spooled_by_an_older_ferry, str(tmp_path))
    assert got["first"] == (1, 0)
    assert got["again"] == (0, 1), "resubmitting it again is recognised as a duplicate"
    assert got["rows"] == [{"Body": "spooled before an upgrade", "BatchId": "OLD1"}]


def _older_store_upgraded(path: str) -> dict[str, Any]:
    """A store as stop 5's ferry made it (TTL on the event time only, ClickHouse's default part and
    string layouts, no Seen column), holding rows; then opened by this ferry."""
    from ferry.config.model import RetentionConfig
    from ferry.store.chdb_store import ChdbStore

    s = ChdbStore(Path(path))
    s.setup(RetentionConfig())
    old = "min_bytes_for_wide_part = 10485760, string_serialization_version = 'with_size_stream'"
    for t in ("otel_logs", "otel_metrics_sum"):
        s.conn().query(f"ALTER TABLE {t} MODIFY SETTING {old}")  # type: ignore[attr-defined]
    s.conn().query("ALTER TABLE otel_logs MODIFY TTL toDateTime(Timestamp) + toIntervalDay(7)")  # type: ignore[attr-defined]
    s.conn().query("ALTER TABLE otel_traces_trace_id_ts MODIFY TTL Start + toIntervalDay(7)")  # type: ignore[attr-defined]
    s.conn().query("ALTER TABLE otel_traces_trace_id_ts DROP COLUMN Seen")  # type: ignore[attr-defined]
    s.insert("otel_logs", _logs(["written by the older ferry"], time.time_ns()))
    s.close()
    s = ChdbStore(Path(path))
    s.setup(RetentionConfig())
    s.insert("otel_logs", _logs(["written after the upgrade"], time.time_ns()))
    s.conn().query("OPTIMIZE TABLE otel_logs FINAL")  # type: ignore[attr-defined]
    out = {
        "engines": {str(r["name"]): str(r["engine_full"]) for r in s.query_rows("SELECT name, engine_full FROM system.tables")},
        "bodies": sorted(str(r["Body"]) for r in s.query_rows("SELECT Body FROM otel_logs")),
        "seen": [str(r["name"]) for r in s.query_rows("SELECT name FROM system.columns WHERE table = 'otel_traces_trace_id_ts' AND name = 'Seen'")],
    }
    s.close()
    return out


def test_a_store_made_by_an_older_ferry_takes_the_current_table_definitions(tmp_path: Path) -> None:
    """Opening an older store applies today's TTL rule, table settings and added columns, and its rows survive."""
    got = _in_child(_older_store_upgraded, str(tmp_path / "store"))
    logs = got["engines"]["otel_logs"]
    assert "greatest(Timestamp, IngestTime)" in logs
    assert "min_bytes_for_wide_part = 67108864" in logs and "string_serialization_version = 'single_stream'" in logs
    assert "string_serialization_version = 'single_stream'" in got["engines"]["otel_metrics_sum"]
    assert got["seen"] == ["Seen"] and "greatest(Start, Seen)" in got["engines"]["otel_traces_trace_id_ts"]
    assert got["bodies"] == ["written after the upgrade", "written by the older ferry"]
