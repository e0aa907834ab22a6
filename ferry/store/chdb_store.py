"""The embedded store: chDB (ClickHouse in-process) on <data_dir>/store, one connection per thread.

Writes are exactly-once per batch id: a redelivered batch already in its table is skipped, and a
batch found only partly written (a crash between partitions) is deleted and written again.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ferry.bus import codec
from ferry.config.model import RetentionConfig
from ferry.errors import RetryableError
from ferry.store import ddl

log = logging.getLogger("ferry.store")

# Tests flip store failures on and off through this file (a fault switch for reliability tests):
# while the file named by the variable exists and contains "store", every insert fails.
FAULTS_ENV = "FERRY_FAULTS_FILE"


def _faulty() -> bool:
    path = os.environ.get(FAULTS_ENV)
    if not path:
        return False
    try:
        return "store" in Path(path).read_text()
    except OSError:
        return False


def _ttl_of(engine_full: str) -> str | None:
    """The TTL expression in a system.tables engine_full string, or None if the table has none."""
    _, found, rest = engine_full.partition(" TTL ")
    return rest.partition(" SETTINGS ")[0].strip() if found else None


def quote(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


class ChdbStore:
    def __init__(self, path: Path, max_memory_bytes: int = 4 * 1024**3, *, defer_indexes: bool = False) -> None:
        import chdb  # imported here: `import chdb` briefly changes the working directory

        self._chdb = chdb
        self.path = Path(path).resolve()
        self.path.mkdir(parents=True, exist_ok=True)
        self.max_memory_bytes = max_memory_bytes
        # With deferral, inserts skip ddl.DEFERRED_INDEXES; the store role then runs store/indexes.py.
        self.defer_indexes = defer_indexes
        self._local = threading.local()
        self._all: list[object] = []
        self._lock = threading.Lock()

    def conn(self) -> object:
        c = getattr(self._local, "conn", None)
        if c is None:
            # Server-wide cap for queries, inserts and merges together; one query may use half of it.
            c = self._chdb.connect(
                f"file:{self.path}?max_server_memory_usage={self.max_memory_bytes}"
                f"&max_memory_usage={self.max_memory_bytes // 2}"
            )
            self._local.conn = c
            with self._lock:
                self._all.append(c)
        return c

    def setup(self, retention: RetentionConfig) -> None:
        for stmt in ddl.all_statements(retention.logs_days, retention.traces_days, retention.metrics_days):
            self.conn().query(stmt)  # type: ignore[attr-defined]
        for table, column in ddl.ADDED_COLUMNS:
            self.conn().query(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column}")  # type: ignore[attr-defined]
        self._apply_table_options(ddl.retention(retention.logs_days, retention.traces_days, retention.metrics_days))
        self._redefine_changed_indexes()

    def _apply_table_options(self, wanted: dict[str, str | None]) -> None:
        """CREATE TABLE IF NOT EXISTS keeps the TTL and settings a table was made with: a changed
        retention setting (or an older ferry's TTL or table settings) is applied here, and existing
        parts are re-evaluated in the background."""
        engines = {
            str(r["name"]): str(r["engine_full"])
            for r in self.query_rows("SELECT name, engine_full FROM system.tables WHERE database = currentDatabase()")
        }
        for table in ddl.DATA_TABLES:
            engine = engines.get(table, "")
            changed = [f"{k} = {v}" for k, v in ddl.TABLE_SETTINGS.items() if f"{k} = {v}" not in engine]
            if engine and changed:
                self.conn().query(f"ALTER TABLE {table} MODIFY SETTING {', '.join(changed)}")  # type: ignore[attr-defined]
        for table, expr in wanted.items():
            engine = engines.get(table)
            if engine is None:
                continue
            current = _ttl_of(engine)
            if current == expr:
                continue
            log.warning("retention of %s: %s -> %s", table, current or "forever", expr or "forever")
            change = f"MODIFY TTL {expr}" if expr else "REMOVE TTL"
            self.conn().query(f"ALTER TABLE {table} {change} SETTINGS mutations_sync = 0")  # type: ignore[attr-defined]

    def _redefine_changed_indexes(self) -> None:
        """CREATE TABLE IF NOT EXISTS leaves an older store's index definitions as they were; an
        index whose expression changed is replaced, and rebuilt in the background (until then a
        search scans, with the same results)."""
        for table, indexes in ddl.EVOLVING_INDEXES.items():
            have = {
                str(r["name"]): str(r["expr"])
                for r in self.query_rows(
                    "SELECT name, expr FROM system.data_skipping_indices "
                    f"WHERE database = currentDatabase() AND table = {quote(table)}"
                )
            }
            for name, (expr, kind) in indexes.items():
                if have.get(name) == expr:
                    continue
                log.warning("redefining index %s.%s for this version of ferry; it is rebuilt in the background", table, name)
                drop = f"DROP INDEX IF EXISTS {name}, " if name in have else ""
                self.conn().query(f"ALTER TABLE {table} {drop}ADD INDEX {name} {expr} TYPE {kind}")  # type: ignore[attr-defined]
                self.conn().query(f"ALTER TABLE {table} MATERIALIZE INDEX {name} SETTINGS mutations_sync = 0")  # type: ignore[attr-defined]

    def close(self) -> None:
        with self._lock:
            for c in self._all:
                try:
                    c.close()  # type: ignore[attr-defined]
                except Exception:
                    pass
            self._all.clear()

    # --- reads -------------------------------------------------------------------------------
    def query_bytes(self, sql: str, fmt: str = "JSONEachRow") -> bytes:
        try:
            res = self.conn().query(sql, fmt)  # type: ignore[attr-defined]
        except Exception as e:
            raise RetryableError(f"store query failed: {e}") from e
        return res.bytes()

    def query_rows(self, sql: str) -> list[dict[str, object]]:
        data = self.query_bytes(sql, "JSONEachRow")
        return [orjson.loads(line) for line in data.splitlines() if line]

    # --- writes ------------------------------------------------------------------------------
    def insert(self, table: str, rows: pa.Table) -> None:
        self.insert_streams(table, [codec.encode(rows, compress=False)])

    def insert_streams(self, table: str, streams: Sequence[bytes]) -> None:
        """Insert Arrow IPC streams (plain or LZ4) into `table`, one INSERT per stream."""
        if _faulty():
            raise RetryableError("store unavailable (injected fault)")
        sql = f"INSERT INTO {table}"
        if self.defer_indexes and table in ddl.DEFERRED_INDEXES:
            sql += f" SETTINGS exclude_materialize_skip_indexes_on_insert = {quote(','.join(ddl.DEFERRED_INDEXES[table]))}"
        try:
            for stream in streams:
                with self.conn().send_insert(sql, "ArrowStream") as ins:  # type: ignore[attr-defined]
                    ins.append(stream)
                    ins.finish()
        except Exception as e:
            raise RetryableError(f"insert into {table} failed: {e}") from e

    def write_batches(self, table: str, batches: Sequence[codec.Batch], *, verify: bool = False) -> tuple[int, int]:
        """Insert batches into `table` exactly once; returns (rows written, batches skipped as duplicates).

        The batch ledger answers "is this batch stored?" by primary key. The ledger row is written
        just after the data rows, so a crash between the two can hide a stored batch from it: batches
        that may have been seen before (redelivered, resubmitted, or `verify`) are also looked up in
        the data table itself.
        """
        if _faulty():
            raise RetryableError("store unavailable (injected fault)")
        present = self._in_ledger(table, [b.batch_id for b in batches])
        doubtful = [b for b in batches if (verify or b.redelivered) and b.batch_id not in present]
        if doubtful:
            present.update(self._in_table(table, doubtful))
        fresh: list[codec.Batch] = []
        skipped = 0
        for b in batches:
            have = present.get(b.batch_id, 0)
            if have and have >= b.num_rows:
                skipped += 1
                continue
            if have:
                log.warning("batch %s is partly in %s (%d/%d rows); rewriting it", b.batch_id, table, have, b.num_rows)
                bid = quote(b.batch_id)
                self.conn().query(f"DELETE FROM {table} WHERE BatchId = {bid}")  # type: ignore[attr-defined]
                self.conn().query(f"DELETE FROM ferry_batches WHERE TableName = {quote(table)} AND BatchId = {bid}")  # type: ignore[attr-defined]
            fresh.append(b)
        if not fresh:
            return 0, skipped
        # Payloads go in as the bus carried them (LZ4, batch ids stamped): no row is decoded here.
        self.insert_streams(table, codec.splice([b.payload() for b in fresh]))
        return sum(b.num_rows for b in fresh), skipped

    def _in_ledger(self, table: str, ids: list[str]) -> dict[str, int]:
        ids = [i for i in ids if i]
        if not ids:
            return {}
        sql = (
            f"SELECT BatchId, sum(Rows) AS n FROM ferry_batches WHERE TableName = {quote(table)} "
            f"AND BatchId IN ({','.join(map(quote, ids))}) GROUP BY BatchId"
        )
        return {r["BatchId"]: int(r["n"]) for r in self.query_rows(sql)}  # type: ignore[misc]

    def _in_table(self, table: str, batches: Sequence[codec.Batch]) -> dict[str, int]:
        ids = [b.batch_id for b in batches if b.batch_id]
        if not ids:
            return {}
        lows = [pc.min(b.table.column("IngestTime")).value for b in batches if b.num_rows]
        lows = [v for v in lows if v is not None]
        since = f" AND IngestTime >= fromUnixTimestamp64Nano({min(lows)})" if lows else ""
        sql = (
            f"SELECT BatchId, count() AS n FROM {table} WHERE BatchId IN ({','.join(map(quote, ids))}){since} "
            "GROUP BY BatchId"
        )
        return {r["BatchId"]: int(r["n"]) for r in self.query_rows(sql)}  # type: ignore[misc]
