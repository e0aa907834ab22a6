"""Sort key of otel_logs: ORDER BY (Timestamp) against (toStartOfHour(Timestamp), ServiceName, Timestamp)
on a 10 M-row store, timing the LogQL count, the native searches and a count by service, plus insert CPU."""

# python bench/logs_sort_key.py --data-dir /tmp/logqlbench/data [--runs 7] [--rebuild] [--insert-rows 1000000]
#
# The data dir must hold a finished load of bench/search.py (or bench/logql.py); its otel_logs is
# only read. Everything runs in this one process (chDB opens one data path per process):
#   1. copies otel_logs into sibling tables that differ only in sort key / skip index (the DDL is
#      ddl.logs() with the name and ORDER BY replaced, no TTL, no projection), INSERT SELECT + OPTIMIZE
#      FINAL; tables already holding every row are reused unless --rebuild;
#   2. times each query (one warm-up, then the median of --runs) on every variant, with the query
#      condition cache off so each run evaluates its filters; the SQL is what ferry generates for
#      otel_logs with the table name swapped;
#   3. EXPLAIN indexes = 1 of each: granules selected / total per read of the table;
#   4. inserts --insert-rows fresh rows (100 k-row Arrow batches, indexes deferred as the store role
#      does) into an empty table of each variant and reports the process CPU, then OPTIMIZE FINAL's.

from __future__ import annotations

import argparse
import json
import re
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import search  # noqa: E402
from bench._common import load_avg, ms  # noqa: E402
from bench._logdata import LogData  # noqa: E402
from bench.logql import DAY_NS, STEP_NS, _engine_run, count_query, line_query, plan  # noqa: E402
from ferry.query.logs_sql import compile_logs, compile_logs_count  # noqa: E402
from ferry.store import ddl  # noqa: E402
from ferry.store.chdb_store import ChdbStore  # noqa: E402
from ferry.store.sql import literal  # noqa: E402

HOUR_NS = 3600 * 10**9
OLD_KEY = "ORDER BY (Timestamp)"  # stores made before 2026-12-05
NEW_KEY = "ORDER BY (toStartOfHour(Timestamp), ServiceName, Timestamp)"
DDL_KEY = ddl.LOGS_ORDER_BY  # what ddl.logs() writes; each copy's DDL has it replaced
TS_MINMAX = "INDEX idx_ts Timestamp TYPE minmax GRANULARITY 1"
# name -> (ORDER BY clause, extra index or "")
VARIANTS: dict[str, tuple[str, str]] = {
    "otel_logs_k1": (OLD_KEY, ""),
    "otel_logs_k2": (NEW_KEY, ""),
    "otel_logs_k2m": (NEW_KEY, TS_MINMAX),
}
LABELS = {"otel_logs_k1": "old key", "otel_logs_k2": "new key", "otel_logs_k2m": "new + ts minmax"}
NO_CACHE = "\nSETTINGS use_query_condition_cache = 0"


def table_ddl(name: str) -> str:
    """ddl.logs() for `name`: otel_logs's columns and indexes, the variant's sort key, no TTL."""
    order, index = VARIANTS[name.removeprefix("ins_")]
    sql = ddl.logs(0).replace("CREATE TABLE IF NOT EXISTS otel_logs", f"CREATE TABLE {name}", 1)
    if DDL_KEY not in sql:
        raise SystemExit(f"ddl.logs() no longer says {DDL_KEY!r}; update this bench")
    sql = sql.replace(DDL_KEY, order, 1)
    if index:
        sql = sql.replace("\n) ENGINE = MergeTree", f",\n    {index}\n) ENGINE = MergeTree", 1)
    return sql


def on(table: str, sql: str) -> str:
    return re.sub(r"\botel_logs\b", table, sql)


def count(store: ChdbStore, table: str) -> int:
    return int(store.query_rows(f"SELECT count() AS n FROM {table}")[0]["n"])  # type: ignore[call-overload]


def build(store: ChdbStore, name: str, total: int, rebuild: bool) -> str:
    exists = store.query_rows(f"SELECT count() AS n FROM system.tables WHERE database = currentDatabase() "
                              f"AND name = {literal(name)}")[0]["n"]
    if exists and not rebuild and count(store, name) == total:
        return f"{name}: reused ({total:,} rows)"
    store.query_bytes(f"DROP TABLE IF EXISTS {name} SYNC")
    store.query_bytes(table_ddl(name))
    t0 = time.perf_counter()
    store.query_bytes(f"INSERT INTO {name} SELECT * FROM otel_logs SETTINGS max_partitions_per_insert_block = 0")
    ins_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    store.query_bytes(f"OPTIMIZE TABLE {name} FINAL")
    opt_s = time.perf_counter() - t0
    if count(store, name) != total:
        raise SystemExit(f"{name} holds {count(store, name):,} rows, otel_logs {total:,}")
    return f"{name}: INSERT SELECT {ins_s:.0f} s, OPTIMIZE FINAL {opt_s:.0f} s"


def timed(store: ChdbStore, sqls: list[str], runs: int) -> float:
    """Median ms of running every statement of `sqls` in turn, after one warm-up."""
    def once() -> float:
        t0 = time.perf_counter()
        for s in sqls:
            store.query_bytes(s + NO_CACHE, "JSONEachRow")
        return ms(t0)
    once()
    return statistics.median(once() for _ in range(runs))


_GRANULES = re.compile(r"Granules:\s*(\d+)/(\d+)")


def subqueries(sql: str) -> list[str]:
    """Every `(SELECT ...)` inside `sql`, innermost last. compile_logs bounds its page by scalar
    subqueries (the limit-th newest Timestamp, and the hour it lies in); EXPLAIN of the outer query
    shows only the read after them, so each is explained on its own too."""
    out = []
    for start in (m.start() for m in re.finditer(r"\(SELECT ", sql)):
        depth = 0
        for i in range(start, len(sql)):
            depth += {"(": 1, ")": -1}.get(sql[i], 0)
            if depth == 0:
                out.append(sql[start + 1:i])
                break
    return out


def granules(store: ChdbStore, sqls: list[str]) -> str:
    """Granules read / in the table, per read of a MergeTree table, after the last index applied."""
    reads: list[str] = []
    # A scalar subquery's plan holds the read of its FROM subquery, not the scalars nested in it.
    sqls = [e for s in sqls for e in (*(q for q in subqueries(s) if q.startswith(("SELECT min(", "SELECT max("))), s)]
    for s in sqls:
        text = store.query_bytes("EXPLAIN indexes = 1 " + s, "TSVRaw").decode()
        for step in text.split("ReadFromMergeTree")[1:]:
            found = _GRANULES.findall(step)
            if found:
                reads.append("/".join(found[-1]))
    return " + ".join(reads) or "?"


def sizes(store: ChdbStore, table: str) -> tuple[int, int]:
    r = store.query_rows(f"SELECT sum(bytes_on_disk) AS b, count() AS p FROM system.parts "
                         f"WHERE database = currentDatabase() AND table = {literal(table)} AND active")[0]
    return int(r["b"]), int(r["p"])  # type: ignore[call-overload]


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def insert_cost(store: ChdbStore, rows: int, rounds: int, seed: int) -> dict[str, list[tuple[float, float, float]]]:
    """{variant: [(insert CPU-s, OPTIMIZE FINAL CPU-s, insert wall s)] per round}; rounds alternate
    the variants so a burst of other load on the machine hits each alike."""
    data = LogData(seed=seed)
    n = -(-rows // 100_000)
    data.plan_traces(n)
    end = time.time_ns()
    lo, span = end - HOUR_NS, HOUR_NS // n
    batches = [data.batch(k, min(100_000, rows - k * 100_000), lo + k * span, lo + (k + 1) * span)[0] for k in range(n)]
    out: dict[str, list[tuple[float, float, float]]] = {v: [] for v in VARIANTS}
    store.defer_indexes = True  # as the store role inserts (store.index_after_s > 0)
    try:
        for _ in range(rounds):
            for v in VARIANTS:
                name = f"ins_{v}"
                store.query_bytes(f"DROP TABLE IF EXISTS {name} SYNC")
                store.query_bytes(table_ddl(name))
                ddl.DEFERRED_INDEXES.setdefault(name, ddl.DEFERRED_INDEXES["otel_logs"])
                c0, t0 = cpu_s(), time.perf_counter()
                for b in batches:
                    store.insert(name, b)
                c1, wall = cpu_s(), time.perf_counter() - t0
                store.query_bytes(f"OPTIMIZE TABLE {name} FINAL")
                out[v].append((c1 - c0, cpu_s() - c1, wall))
                store.query_bytes(f"DROP TABLE {name} SYNC")
    finally:
        store.defer_indexes = False
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, required=True, help="a data dir holding a finished bench/search.py load")
    ap.add_argument("--runs", type=int, default=7, help="timed runs per query (median reported)")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the copies even if they hold every row")
    ap.add_argument("--insert-rows", type=int, default=1_000_000, help="rows for the insert cost (0: skip)")
    ap.add_argument("--insert-rounds", type=int, default=2)
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {', '.join(VARIANTS)}")
    args = ap.parse_args()
    chosen = args.variants.split(",")
    for v in [v for v in VARIANTS if v not in chosen]:
        del VARIANTS[v]
    data_dir = args.data_dir.resolve()
    meta = json.loads((data_dir / search.META).read_text())
    print(f"ferry otel_logs sort-key bench on {data_dir}: load average {load_avg()} (the machine is shared)")
    store = ChdbStore(data_dir / "store")
    total = count(store, "otel_logs")
    part_by = store.query_rows("SELECT partition_key AS k FROM system.tables WHERE database = currentDatabase() "
                               "AND name = 'otel_logs'")[0]["k"]
    print(f"otel_logs: {total:,} rows, PARTITION BY {part_by}")
    print("\n1. copies (same columns and indexes, no projection):")
    for v in VARIANTS:
        print(f"   {build(store, v, total, args.rebuild)}", flush=True)

    end = meta["end_ns"] // STEP_NS * STEP_NS + STEP_NS
    start = end - DAY_NS
    data = LogData(seed=meta["seed"])
    service, line_service, words = plan(data, 3)
    small = min(zip(data.service_weight.tolist(), data.services, strict=True))[1]
    _, sent = _engine_run(store, count_query(service), start, end)
    logql = [s for _, s in sent]
    _, sent = _engine_run(store, line_query(line_service, words[1]), start, end)
    logql_lines = [s for _, s in sent]
    word = words[0]
    queries: dict[str, list[str]] = {
        f"LogQL {count_query(service)} 24h": logql,
        f"LogQL {line_query(line_service, words[1])} 24h, newest 1000": logql_lines,
        f"search '{word}' (rare) 24h, newest 100": [compile_logs(word, start_ns=start, end_ns=end, limit=100)],
        f"search 'service:{service}' 24h, newest 100": [compile_logs(f"service:{service}", start_ns=start, end_ns=end)],
        f"search 'service:{small}' (smallest) 24h, newest 100": [
            compile_logs(f"service:{small}", start_ns=start, end_ns=end)],
        "search '' last 1h, newest 100": [compile_logs("", start_ns=end - HOUR_NS, end_ns=end)],
        "search '' 24h, newest 100": [compile_logs("", start_ns=start, end_ns=end)],
        "count by service, last 1h": [compile_logs_count("", start_ns=end - HOUR_NS, end_ns=end, group_by="service")],
    }
    # Every variant must give the same answers, or the timings compare different work.
    for label, sqls in queries.items():
        answers = {v: [store.query_bytes(on(v, s), "JSONEachRow") for s in sqls] for v in VARIANTS}
        if len({json.dumps([sorted(a.splitlines()) for a in ans], default=str) for ans in answers.values()}) != 1:
            raise SystemExit(f"answers differ between variants for {label}")

    print(f"\n2. ms, median of {args.runs} warm runs (query condition cache off); granules read/total "
          f"(EXPLAIN indexes = 1; searches: edge subquery + page), load average {load_avg()}")
    names = list(VARIANTS)
    head = f"   {'query':58s}" + "".join(f"{LABELS[v]:>17s}" for v in names)
    print(head + "   granules " + "  |  ".join(LABELS[v] for v in names))
    for label, sqls in queries.items():
        t = {v: timed(store, [on(v, s) for s in sqls], args.runs) for v in names}
        g = {v: granules(store, [on(v, s) for s in sqls]) for v in names}
        print(f"   {label[:58]:58s}" + "".join(f"{t[v]:17.1f}" for v in names) + "   "
              + "  |  ".join(g[v] for v in names), flush=True)
    print("\n   on disk: " + ", ".join(f"{LABELS[v]} {b / 2**20:.0f} MiB in {p} parts"
                                       for v in names for b, p in [sizes(store, v)]))

    if args.insert_rows:
        print(f"\n3. insert of {args.insert_rows:,} fresh rows (100 k-row Arrow batches, deferred indexes) into an "
              f"empty table, {args.insert_rounds} rounds, load average {load_avg()}:")
        cost = insert_cost(store, args.insert_rows, args.insert_rounds, meta["seed"] + 1)
        per_m = 1e6 / args.insert_rows
        med: Callable[[list[float]], float] = statistics.median
        for v, rs in cost.items():
            print(f"   {LABELS[v]:17s} insert {med([r[0] for r in rs]) * per_m:5.2f} CPU-s/M rows "
                  f"(wall {med([r[2] for r in rs]) * per_m:5.2f} s/M), OPTIMIZE FINAL {med([r[1] for r in rs]) * per_m:5.2f} "
                  f"CPU-s/M  [rounds: {', '.join(f'{r[0] * per_m:.2f}' for r in rs)}]")
    print(f"\nLogQL SQL (otel_logs):\n   {logql[0] if len(logql) == 1 else logql}")
    store.close()


if __name__ == "__main__":
    main()
