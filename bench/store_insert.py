"""Store insert cost of parsed syslog rows: CPU µs per row for chDB inserts of 100k-row batches.

Compares skip indexes built at insert with ferry's default (deferred to merges, store/indexes.py),
prices the full-text index expression that every merge evaluates again, and what the heavy columns
(attribute maps, Body with its text index) cost an insert and a merge.
"""

# python bench/store_insert.py [--rows 500000]
# Each variant runs in its own process (one chDB path per process) on a fresh store directory;
# the rows are the 500k RFC 5424 lines of bench/syslog_vs_rsyslog.py, parsed by the parser stage.

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyarrow as pa  # noqa: E402

from ferry.bus import codec  # noqa: E402
from ferry.config.model import RetentionConfig  # noqa: E402
from ferry.schema.tables import RAW_LINES  # noqa: E402
from ferry.stages.parser.syslog import parse_syslog  # noqa: E402
from ferry.store.chdb_store import ChdbStore  # noqa: E402

BATCH = 100_000


def rows(n: int) -> pa.Table:
    from syslog_vs_rsyslog import make_lines

    lines = [line.decode() for line in make_lines(n)]
    now = dt.datetime.now(dt.UTC)
    raw = pa.table(
        {"ReceivedAt": pa.array([now] * n, pa.timestamp("ns", tz="UTC")), "Peer": ["127.0.0.1:514"] * n,
         "Transport": ["tcp"] * n, "Line": lines},
        schema=RAW_LINES,
    )
    table = parse_syslog(raw)
    return table.set_column(table.schema.get_field_index("BatchId"), "BatchId", pa.array([f"b{i // 5000}" for i in range(n)]))


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run(defer: bool, payload: bytes, out: mp.Queue) -> None:  # type: ignore[type-arg]
    table = codec.decode(payload)
    path = Path(tempfile.mkdtemp(prefix="ferry-store-bench-"))
    try:
        store = ChdbStore(path, defer_indexes=defer)
        store.setup(RetentionConfig())
        batches = [table.slice(i, BATCH) for i in range(0, table.num_rows, BATCH)]
        c0, t0 = _cpu(), time.perf_counter()
        for b in batches:
            store.insert("otel_logs", b)
        c1, t1 = _cpu(), time.perf_counter()
        store.close()
        out.put((c1 - c0, t1 - t0))
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _without(table: pa.Table, column: str) -> pa.Table:
    """`table` with one heavy column emptied (an empty map or string per row)."""
    import numpy as np

    from ferry.schema.tables import ATTRS

    i, n = table.schema.get_field_index(column), table.num_rows
    if column == "Body":
        return table.set_column(i, table.schema.field(i), pa.array([""] * n, pa.string()))
    empty = pa.MapArray.from_arrays(pa.array(np.zeros(n + 1, dtype=np.int32)), pa.array([], pa.string()),
                                    pa.array([], pa.string()), type=ATTRS)
    return table.set_column(i, table.schema.field(i), empty)


def column_cost(emptied: str | None, payload: bytes, out: mp.Queue) -> None:  # type: ignore[type-arg]
    """Insert CPU (merges stopped), then the CPU of merging all parts into one (OPTIMIZE FINAL,
    which builds every skip index), with one column emptied: what that column costs the store."""
    table = codec.decode(payload)
    if emptied:
        table = _without(table, emptied)
    path = Path(tempfile.mkdtemp(prefix="ferry-store-bench-"))
    try:
        store = ChdbStore(path, defer_indexes=True)
        store.setup(RetentionConfig())
        store.query_bytes("SYSTEM STOP MERGES otel_logs")
        c0 = _cpu()
        for i in range(0, table.num_rows, BATCH):
            store.insert("otel_logs", table.slice(i, BATCH))
        c1 = _cpu()
        store.query_bytes("SYSTEM START MERGES otel_logs")
        store.query_bytes("OPTIMIZE TABLE otel_logs FINAL")
        c2 = _cpu()
        store.close()
        out.put((c1 - c0, c2 - c1))
    finally:
        shutil.rmtree(path, ignore_errors=True)


def expression_cost(payload: bytes, out: mp.Queue) -> None:  # type: ignore[type-arg]
    """CPU per row of the full-text index expression, which every merge evaluates for every row."""
    import chdb

    from ferry.store import ddl

    table = codec.decode(payload).select(["Body"])
    path = tempfile.mkdtemp(prefix="ferry-store-bench-")
    try:
        conn = chdb.connect(f"file:{path}")
        conn.query("CREATE TABLE b (Body String) ENGINE = Memory")
        with conn.send_insert("INSERT INTO b", "ArrowStream") as ins:
            ins.append(codec.encode(table, compress=False))
            ins.finish()
        res = {}
        for name, expr in (("lower(Body) alone", "lower(Body)"), ("three passes, every row", f"lower({ddl.split_boundaries('Body')})"),
                           ("guarded (ferry's index)", ddl.BODY_TOKENS)):
            best = float("inf")
            for _ in range(3):
                c0 = _cpu()
                conn.query(f"SELECT sum(length(tokens({expr}, 'splitByNonAlpha'))) FROM b SETTINGS max_threads = 1")
                best = min(best, _cpu() - c0)
            res[name] = best / table.num_rows * 1e6
        conn.close()
        out.put(res)
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=500_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    payload = codec.encode(rows(args.rows), compress=False)
    ctx = mp.get_context("spawn")
    print(f"{args.rows:,} parsed RFC 5424 rows, {BATCH:,}-row inserts into otel_logs (best of {args.repeat})")
    for name, defer in (("indexes built at insert", False), ("indexes deferred (default)", True)):
        best = (float("inf"), 0.0)
        for _ in range(args.repeat):
            q: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
            p = ctx.Process(target=run, args=(defer, payload, q))
            p.start()
            best = min(best, q.get())
            p.join()
        cpu, wall = best
        print(f"  {name:<28} {cpu / args.rows * 1e6:5.2f} CPU-us/row  {args.rows / wall:>9,.0f} rows/s")
    q2: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    p2 = ctx.Process(target=expression_cost, args=(payload, q2))
    p2.start()
    print("full-text index expression + tokens, per merge of a row (one thread):")
    for name, us in q2.get(timeout=300).items():
        print(f"  {name:<28} {us:5.2f} CPU-us/row")
    p2.join()
    print("what each heavy column costs: insert (merges stopped), then merging all parts into one:")
    for emptied in (None, "LogAttributes", "ResourceAttributes", "Body"):
        best = (float("inf"), 0.0)
        for _ in range(args.repeat):
            q3: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
            p3 = ctx.Process(target=column_cost, args=(emptied, payload, q3))
            p3.start()
            best = min(best, q3.get(timeout=300))
            p3.join()
        name = f"{emptied} emptied" if emptied else "all columns"
        print(f"  {name:<28} insert {best[0] / args.rows * 1e6:5.2f}  merge {best[1] / args.rows * 1e6:5.2f} CPU-us/row")


if __name__ == "__main__":
    main()
