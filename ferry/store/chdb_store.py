"""The embedded store: chDB (ClickHouse in-process) on <data_dir>/store, one connection per thread.

Writes are exactly-once per batch id: a redelivered batch already in its table is skipped, and a
batch found only partly written (a crash between partitions) is deleted and written again.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ferry.bus import codec
from ferry.config.model import RetentionConfig
from ferry.errors import QueryTimeout, QueryTooBig, RetryableError, StoreQueryFailed
from ferry.schema.tables import IMMUTABLE_TABLES
from ferry.store import ddl
from ferry.store.protocol import QueryLimits
from ferry.store.sql import literal
from ferry.telemetry import FILE_ONLY

log = logging.getLogger("ferry.store")

def _ttl_of(engine_full: str) -> str | None:
    """The TTL expression in a system.tables engine_full string, or None if the table has none."""
    _, found, rest = engine_full.partition(" TTL ")
    return rest.partition(" SETTINGS ")[0].strip() if found else None


def _shortens(current: str | None, wanted: str | None) -> bool:
    """Whether TTL `wanted` keeps rows for less time than `current` (None: forever). A TTL this
    ferry cannot read counts as longer than any: it is left alone."""
    have, want = ddl.ttl_days(current), ddl.ttl_days(wanted)
    if have is None:
        return True  # kept forever: any TTL is shorter
    if want is None:
        return False
    return have < 0 or want < have


# --- API reads: what a client is told -------------------------------------------------------
_CODE_RE = re.compile(r"Code: (\d+)\.")
# ClickHouse error codes that mean "this query hit its own cap", and not "the store is in trouble".
_TIMEOUT_CODES = {159, 160, 394}  # TIMEOUT_EXCEEDED, TOO_SLOW, QUERY_WAS_CANCELLED
_MEMORY_CODE = 241  # MEMORY_LIMIT_EXCEEDED: the query's own cap, or the whole server's (then: retry)
_RESULT_CODE = 396  # TOO_MANY_ROWS_OR_BYTES


def _reason_of(err: Exception) -> str:
    text = str(err)
    m = _CODE_RE.search(text)
    code = int(m.group(1)) if m else None
    if code in _TIMEOUT_CODES:
        return "timeout"
    if code == _MEMORY_CODE and "(total)" not in text:
        return "memory"
    if code == _RESULT_CODE:
        return "result"
    return "store"


def _log_failed_read(reason: str, sql: str, err: Exception) -> None:
    # A client repeating a failing request in a loop cannot flood the log: every role's logging
    # lets a repeated message through once a minute with a count (runtime/logfiles.RepeatFilter).
    # The first line of the engine's message has its code and reason; the rest is a stack trace.
    text = str(err).strip()
    first = text.splitlines()[0][:2000] if text else repr(err)
    log.warning("API query failed (%s): %s\nSQL: %s", reason, first, sql[:8000], extra=FILE_ONLY)


class ChdbStore:
    """The embedded implementation of ferry.store.protocol.Store."""

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

    def conn(self, limits: QueryLimits | None = None) -> object:
        """This thread's connection; with `limits`, a connection of its own carrying them."""
        conns: dict[QueryLimits | None, object] = self._local.__dict__.setdefault("conns", {})
        c = conns.get(limits)
        if c is None:
            # Server-wide cap for queries, inserts and merges together; one query may use half of it.
            per_query = self.max_memory_bytes // 2
            extra = ""
            if limits is not None:
                per_query = min(per_query, limits.max_memory_bytes)
                extra = f"&max_execution_time={limits.max_seconds:g}"
            c = self._chdb.connect(
                f"file:{self.path}?max_server_memory_usage={self.max_memory_bytes}"
                f"&max_memory_usage={per_query}{extra}"
            )
            conns[limits] = c
            with self._lock:
                self._all.append(c)
        return c

    def _discard_conn(self, limits: QueryLimits | None) -> None:
        """Close this thread's connection after a failed query. chDB (4.4) keeps the rows a query
        had produced before it failed (a timeout mid-scan) and prepends them to the next answer on
        the same connection; a fresh connection (under 1 ms) starts clean."""
        conns: dict[QueryLimits | None, object] = self._local.__dict__.setdefault("conns", {})
        c = conns.pop(limits, None)
        if c is None:
            return
        with self._lock:
            if c in self._all:
                self._all.remove(c)
        try:
            c.close()  # type: ignore[attr-defined]
        except Exception:
            pass

    def setup(self, retention: RetentionConfig) -> None:
        days = (retention.logs_days, retention.traces_days, retention.metrics_days, retention.siem_days)
        for stmt in ddl.all_statements(*days):
            self.conn().query(stmt)  # type: ignore[attr-defined]
        for table, column in ddl.ADDED_COLUMNS:
            self.conn().query(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column}")  # type: ignore[attr-defined]
        self._materialize_added_columns()
        self._apply_table_options(ddl.retention(*days))
        self._redefine_changed_indexes()

    def _materialize_added_columns(self) -> None:
        """Parts written before a MATERIALIZED column was added compute it at every read (the metric
        tables' SeriesId: PromQL then keeps its old reads); have them written in the background, once."""
        for table, column in ddl.ADDED_COLUMNS:
            name, _, rest = column.partition(" ")
            if " MATERIALIZED " not in f" {rest} ":
                continue
            lacking = self.query_rows(
                "SELECT count() AS n FROM system.parts WHERE active AND database = currentDatabase() "
                f"AND table = {literal(table)} AND (name, table) NOT IN (SELECT part_name, table FROM "
                f"system.parts_columns WHERE active AND database = currentDatabase() AND table = {literal(table)} "
                f"AND column = {literal(name)})")
            if lacking and int(lacking[0]["n"]):
                self.conn().query(  # type: ignore[attr-defined]
                    f"ALTER TABLE {table} MATERIALIZE COLUMN {name} SETTINGS mutations_sync = 0")

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
            if table in IMMUTABLE_TABLES and _shortens(current, expr):
                # Evidence kept for an audit must not vanish because a setting was lowered (or a
                # typo made): the longer retention stays until someone removes data by hand.
                log.warning("retention of %s stays %s: it is never shortened by ferry (configured: %s); "
                            "to shorten it, ALTER its TTL by hand", table, current or "forever", expr or "forever")
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
                    f"WHERE database = currentDatabase() AND table = {literal(table)}"
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
            self._discard_conn(None)
            raise RetryableError(f"store query failed: {e}") from e
        return res.bytes()

    def query_rows(self, sql: str) -> list[dict[str, object]]:
        data = self.query_bytes(sql, "JSONEachRow")
        return [orjson.loads(line) for line in data.splitlines() if line]

    def _read(self, sql: str, limits: QueryLimits, fmt: str) -> bytes:
        try:
            data: bytes = self.conn(limits).query(sql, fmt).bytes()  # type: ignore[attr-defined]
        except Exception as e:
            self._discard_conn(limits)
            reason = _reason_of(e)
            _log_failed_read(reason, sql, e)
            kind = {"timeout": QueryTimeout, "memory": QueryTooBig, "result": QueryTooBig}.get(reason, StoreQueryFailed)
            raise kind(limits.describe(reason)) from None
        # chDB does not enforce max_result_bytes (4.4); checked here, before parsing multiplies it.
        if len(data) > limits.max_result_bytes:
            raise QueryTooBig(limits.describe("result"))
        return data

    def read_rows(self, sql: str, limits: QueryLimits) -> list[dict[str, object]]:
        """An API read under `limits`. Failures raise QueryTimeout, QueryTooBig or StoreQueryFailed
        with a message fit for a client; the engine's error and the SQL are logged (throttled)."""
        data = self._read(sql, limits, "JSONEachRow")
        return [orjson.loads(line) for line in data.splitlines() if line]

    def read_arrow(self, sql: str, limits: QueryLimits) -> pa.Table:
        """read_rows as one Arrow table (columns of numbers stay numbers: no per-row parsing), under
        the same caps and errors."""
        data = self._read(sql, limits, "ArrowStream")
        if not data:  # chDB writes nothing at all for an empty answer
            return pa.table({})
        return pa.ipc.open_stream(data).read_all()

    # --- writes ------------------------------------------------------------------------------
    def insert(self, table: str, rows: pa.Table) -> None:
        self.insert_streams(table, [codec.encode(rows, compress=False)])

    def insert_streams(self, table: str, streams: Sequence[bytes]) -> None:
        """Insert Arrow IPC streams (plain or LZ4) into `table`, one INSERT per stream."""
        # One insert may span any number of time partitions: a device replaying months of old lines
        # in one batch touched >100 hourly partitions, and chDB's send_insert dropped the whole
        # insert without raising (measured: 150 hours in one batch -> 0 rows, no error).
        settings = ["max_partitions_per_insert_block = 0"]
        if self.defer_indexes and table in ddl.DEFERRED_INDEXES:
            settings.append(f"exclude_materialize_skip_indexes_on_insert = {literal(','.join(ddl.DEFERRED_INDEXES[table]))}")
        sql = f"INSERT INTO {table} SETTINGS {', '.join(settings)}"
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
        # One batch may come twice in one call: a delivery that sat unfetched past ack_wait and its
        # redelivery arrive in the same fetch. The ledger cannot tell (neither is in it yet).
        unique = list({b.batch_id: b for b in reversed(batches)}.values())[::-1]
        skipped = len(batches) - len(unique)
        batches = unique
        present = self._in_ledger(table, [b.batch_id for b in batches])
        doubtful = [b for b in batches if (verify or b.redelivered) and b.batch_id not in present]
        if doubtful:
            present.update(self._in_table(table, doubtful))
        fresh: list[codec.Batch] = []
        for b in batches:
            have = present.get(b.batch_id, 0)
            if have and have >= b.num_rows:
                skipped += 1
                continue
            if have:
                log.warning("batch %s is partly in %s (%d/%d rows); rewriting it", b.batch_id, table, have, b.num_rows)
                bid = literal(b.batch_id)
                self.conn().query(f"DELETE FROM {table} WHERE BatchId = {bid}")  # type: ignore[attr-defined]
                self.conn().query(f"DELETE FROM ferry_batches WHERE TableName = {literal(table)} AND BatchId = {bid}")  # type: ignore[attr-defined]
            fresh.append(b)
        if not fresh:
            return 0, skipped
        # Payloads go in as the bus carried them (LZ4, batch ids stamped): no row is decoded here.
        self.insert_streams(table, codec.splice([b.payload() for b in fresh]))
        # chDB's send_insert can fail without raising (see insert_streams): the ledger, written by
        # the same insert, says whether the rows are there; one primary-key lookup per insert call.
        stored = self._in_ledger(table, [b.batch_id for b in fresh if b.num_rows])
        missing = [b.batch_id for b in fresh if b.num_rows and stored.get(b.batch_id, 0) < b.num_rows]
        if missing:
            raise RetryableError(f"insert into {table} reported success but stored no rows of {len(missing)} "
                                 f"batch(es) (first {missing[0]})")
        return sum(b.num_rows for b in fresh), skipped

    def _in_ledger(self, table: str, ids: list[str]) -> dict[str, int]:
        ids = [i for i in ids if i]
        if not ids:
            return {}
        sql = (
            f"SELECT BatchId, sum(Rows) AS n FROM ferry_batches WHERE TableName = {literal(table)} "
            f"AND BatchId IN ({','.join(map(literal, ids))}) GROUP BY BatchId"
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
            f"SELECT BatchId, count() AS n FROM {table} WHERE BatchId IN ({','.join(map(literal, ids))}){since} "
            "GROUP BY BatchId"
        )
        return {r["BatchId"]: int(r["n"]) for r in self.query_rows(sql)}  # type: ignore[misc]
