"""siem_events and links in the store: written exactly once through write_batches like every table,
siem_events' retention never shortened by a lower setting, its partitions never dropped by the size
cap (though counted toward it), and the links table indexed both ways.

The chDB checks run in one child process (chDB allows one data path per process).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from ferry.schema.tables import IMMUTABLE_TABLES, LINKS, LOG_TABLES, LOGS, table
from ferry.store import ddl
from ferry.store.size_cap import Partition, to_drop

S = 10**9
DAY = 86400 * S
MB = 10**6


def _logs(n: int, ts_ns: int, tag: str) -> pa.Table:
    from ferry.schema import conform

    ts = pa.array([ts_ns + i for i in range(n)], pa.timestamp("ns", tz="UTC"))
    now = pa.array([time.time_ns()] * n, pa.timestamp("ns", tz="UTC"))
    return conform(pa.table({"Timestamp": ts, "IngestTime": now, "Body": [f"{tag} {i}" for i in range(n)]}), LOGS)


def _ttl_days(store: Any, name: str) -> int | None:
    from ferry.store.chdb_store import _ttl_of

    engine = store.query_rows(f"SELECT engine_full FROM system.tables WHERE database = currentDatabase() AND name = '{name}'")
    return ddl.ttl_days(_ttl_of(str(engine[0]["engine_full"])))


def _count(store: Any, name: str) -> int:
    return int(store.query_rows(f"SELECT count() AS n FROM {name}")[0]["n"])


def _in_child(path: str) -> dict[str, Any]:
    from ferry.bus.codec import Batch
    from ferry.config.model import RetentionConfig
    from ferry.schema import conform
    from ferry.store import size_cap
    from ferry.store.chdb_store import ChdbStore

    warnings: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            warnings.append(record.getMessage())

    logging.getLogger("ferry").addHandler(Keep(logging.WARNING))
    out: dict[str, Any] = {}
    s = ChdbStore(Path(path))
    try:
        s.setup(RetentionConfig())
        out["ttl_default"] = _ttl_days(s, "siem_events"), _ttl_days(s, "links"), _ttl_days(s, "otel_logs")
        # Each "start" with another retention is a setup on the same store, as ferry run does.
        s.setup(RetentionConfig(siem_days=30, logs_days=3))
        out["ttl_lowered"] = _ttl_days(s, "siem_events"), _ttl_days(s, "otel_logs"), _ttl_days(s, "links")
        out["warned"] = [w for w in warnings if "siem_events" in w]
        s.setup(RetentionConfig(siem_days=500))
        out["ttl_raised"] = _ttl_days(s, "siem_events")
        s.setup(RetentionConfig(siem_days=0))
        out["ttl_forever"] = _ttl_days(s, "siem_events")
        s.setup(RetentionConfig(siem_days=400))
        out["ttl_after_forever"] = _ttl_days(s, "siem_events")

        # Exactly once, as the writer uses it: a second delivery, a redelivery, a batch twice in one call.
        now = time.time_ns()
        rows = _logs(5, now - 60 * S, "sshd")
        first = Batch(rows, "logs", "siem_events", "syslog", batch_id="siem-1")
        again = Batch(rows, "logs", "siem_events", "syslog", batch_id="siem-1", redelivered=True)
        other = Batch(_logs(3, now - 30 * S, "sudo"), "logs", "siem_events", "syslog", batch_id="siem-2")
        out["writes"] = [s.write_batches("siem_events", [first]), s.write_batches("siem_events", [first]),
                         s.write_batches("siem_events", [again]), s.write_batches("siem_events", [other, other]),
                         s.write_batches("siem_events", [first], verify=True)]
        # The same batch id in another table is another batch (the ledger is per table).
        out["writes"].append(s.write_batches("otel_logs", [Batch(rows, "logs", "otel_logs", "syslog", batch_id="siem-1")]))
        out["siem_rows"] = _count(s, "siem_events")
        links = conform(pa.table({
            "Timestamp": pa.array([now] * 2, pa.timestamp("ns", tz="UTC")),
            "IngestTime": pa.array([now] * 2, pa.timestamp("ns", tz="UTC")),
            "FromId": ["m1", "m1"], "ToId": ["q1", "q2"], "Kind": ["msgid", "msgid"]}), LINKS)
        link_batch = Batch(links, "logs", "links", "syslog", batch_id="links-1")
        out["link_writes"] = [s.write_batches("links", [link_batch]), s.write_batches("links", [link_batch])]
        out["links_rows"] = _count(s, "links")
        out["ledger"] = {str(r["TableName"]): int(r["n"]) for r in s.query_rows(  # type: ignore[call-overload]
            "SELECT TableName, count() AS n FROM ferry_batches GROUP BY TableName")}

        # The size cap over a real store: old siem_events and otel_logs days, then a limit of 1 byte.
        for day in (3, 2, 1):
            ts = now - day * DAY
            s.insert("siem_events", _logs(1000, ts, f"old-siem-{day}"))
            s.insert("otel_logs", _logs(1000, ts, f"old-log-{day}"))
        before = {t: _count(s, t) for t in ("siem_events", "otel_logs")}
        dropped = size_cap.enforce(s, 1)
        out["size_cap"] = {"dropped": dropped, "before": before,
                           "after": {t: _count(s, t) for t in ("siem_events", "otel_logs")}}
        out["size_error"] = [w for w in warnings if "store.max_bytes" in w]
        out["indexes"] = {str(r["name"]): str(r["type"]) for r in s.query_rows(
            "SELECT name, type FROM system.data_skipping_indices WHERE database = currentDatabase() AND table = 'links'")}
        out["sorting_key"] = {str(r["name"]): str(r["sorting_key"]) for r in s.query_rows(
            "SELECT name, sorting_key FROM system.tables WHERE database = currentDatabase() "
            "AND name IN ('links', 'siem_events', 'otel_logs')")}
        out["text_index"] = [str(r["table"]) for r in s.query_rows(
            "SELECT table FROM system.data_skipping_indices WHERE database = currentDatabase() AND name = 'idx_body' "
            "ORDER BY table")]
        return out
    finally:
        s.close()


def test_siem_events_and_links_in_a_real_store(tmp_path: Path) -> None:
    """Retention, exactly-once writes, the size cap and the indexes of the two tables, on chDB."""
    with mp.get_context("spawn").Pool(1) as pool:
        got = pool.apply(_in_child, (str(tmp_path / "store"),))
    # siem_events follows retention.siem_days (400), links the logs retention (7).
    assert got["ttl_default"] == (400, 7, 7)
    # A lower siem_days keeps the longer TTL and says so; other tables follow their setting down.
    assert got["ttl_lowered"] == (400, 3, 3)
    assert any("never shortened" in w for w in got["warned"]), got["warned"]
    assert got["ttl_raised"] == 500
    assert got["ttl_forever"] is None and got["ttl_after_forever"] is None  # forever stays forever
    # (written, skipped): once, then skipped by the ledger, by the table lookup, within one call.
    assert got["writes"] == [(5, 0), (0, 1), (0, 1), (3, 1), (0, 1), (5, 0)]
    assert got["siem_rows"] == 8
    assert got["link_writes"] == [(2, 0), (0, 1)] and got["links_rows"] == 2
    assert got["ledger"] == {"siem_events": 2, "otel_logs": 1, "links": 1}
    # The cap dropped old otel_logs days (not the newest) and no siem_events row, though over it.
    cap = got["size_cap"]
    assert cap["after"]["siem_events"] == cap["before"]["siem_events"] == 8 + 3000
    assert cap["dropped"] == 3000 and cap["after"]["otel_logs"] == cap["before"]["otel_logs"] - 3000
    assert any("siem_events" in w for w in got["size_error"]), got["size_error"]
    # links: sorted by FromId, bloom filter on ToId; siem_events searched like otel_logs.
    hourly = "toStartOfHour(Timestamp), ServiceName, Timestamp"
    assert got["sorting_key"] == {"links": "FromId, ToId", "siem_events": hourly, "otel_logs": hourly}
    assert got["indexes"]["idx_to_id"] == "bloom_filter"
    assert got["text_index"] == ["otel_logs", "siem_events"]


def _p(name: str, start: str, mb: int) -> Partition:
    return Partition(name, start, start, rows=mb * 1000, bytes=mb * MB)


def test_size_cap_counts_siem_events_but_never_drops_them() -> None:
    """The oldest data is siem_events and over the limit: other tables' old partitions go instead."""
    parts = [
        _p("siem_events", "2026-10-01", 40),
        _p("siem_events", "2026-11-28", 5),
        _p("otel_logs", "2026-11-29 00:00:00", 3),
        _p("links", "2026-11-29", 2),
        _p("otel_logs", "2026-11-29 01:00:00", 3),
        _p("links", "2026-11-30", 1),
        _p("otel_logs", "2026-11-30 00:00:00", 3),
    ]
    dropped = [(p.table, p.start) for p in to_drop(parts, 50 * MB)]
    # 57 MB held, limit 50: everything droppable goes (the siem bytes keep the total over the target).
    assert dropped == [("otel_logs", "2026-11-29 00:00:00"), ("links", "2026-11-29"), ("otel_logs", "2026-11-29 01:00:00")]
    assert not [p for p in to_drop(parts, 1) if p.table in IMMUTABLE_TABLES]


def test_catalogue_entries_the_writer_and_search_need() -> None:
    """siem_events takes LOGS batches and is searched as a log table; links has the documented columns."""
    siem, links = table("siem_events"), table("links")
    assert siem.schema is LOGS and siem.immutable and siem.retention_key == "siem"
    assert LOG_TABLES == ("otel_logs", "siem_events") and IMMUTABLE_TABLES == ("siem_events",)
    assert links.schema.names == ["Timestamp", "FromId", "ToId", "Kind", "Tenant", "Source", "IngestTime", "BatchId"]
    assert links.partition == "day" and links.retention_key == "logs"
    assert ddl.retention(7, 7, 30, 400)["siem_events"] == ddl.ttl_expr("siem_events", 400)
    # The ledger is not stretched to a year by siem_days (a siem batch seen again is looked up in the table).
    assert ddl.retention(7, 7, 30, 400)["ferry_batches"] == ddl.ledger_ttl(30)
    assert set(ddl.DEFERRED_INDEXES["siem_events"]) == set(ddl.DEFERRED_INDEXES["otel_logs"])
