"""Search latency at 10 M log rows: loads loghub-like rows into a fresh store, then times searches
through ferry's HTTP API and straight on chDB (p50/p99 ms), plus variants of the search SQL."""

# python bench/search.py [--rows 10000000] [--data-dir DIR] [--runs 30] [--no-optimize] [--keep]
#
# Steps, each in its own process (a store directory can be open in one process only):
#   1. load: Arrow batches of 100 k rows straight into ChdbStore.insert, then OPTIMIZE FINAL (a store
#      that has run for a day has merged each past hour into one part; --no-optimize keeps the parts);
#   2. chDB: the SQL the API runs for each query, plus (f) a 1 h count by service (no API route yet);
#   3. API: `ferry run` on the data dir; one keep-alive connection, then a new connection per request;
#   4. variants: adds a stored CursorKey column to the bench's own store and times the search SQL with
#      the tie-break as compiled, on the stored column, and without one (--no-variants skips this).
# A --data-dir that already holds a finished load is reused as it is (step 1 is skipped).

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import pyarrow as pa  # noqa: E402

from bench._common import du as _du  # noqa: E402
from bench._common import in_child as _in_child  # noqa: E402
from bench._common import load_avg as _load_avg  # noqa: E402
from bench._common import ms as _ms  # noqa: E402
from bench._common import pct as _pct  # noqa: E402
from bench._logdata import SYSTEMS, LogData  # noqa: E402
from ferry.api.app import LOG_COLUMNS  # noqa: E402
from ferry.config.model import RetentionConfig  # noqa: E402
from ferry.query import logs_sql  # noqa: E402
from ferry.query import traces as traces_q  # noqa: E402
from ferry.query.language import parse  # noqa: E402
from ferry.store.chdb_store import ChdbStore  # noqa: E402
from ferry.testing import FerryProcess  # noqa: E402

DAY_NS = 86_400 * 10**9
LIMIT = 100
META = "bench-search.json"
# The tie-break the compiled search SQL orders by, and the stored column proposed to replace it.
KEY_EXPR = logs_sql._CURSOR_KEY_EXPR
KEY_HASH = KEY_EXPR.removeprefix("hex(").removesuffix(")")
ADD_KEY = (
    f"ALTER TABLE otel_logs ADD COLUMN IF NOT EXISTS CursorKey UInt64 MATERIALIZED {KEY_HASH} CODEC(ZSTD(1))"
)

KINDS = {
    "a": "(a) rare word, ~0.1% of rows",
    "b": "(b) common word, 2-20% of rows",
    "c": '(c) phrase "w1 w2 w3"',
    "d": "(d) service:X level:error word",
    "e": "(e) trace lookup /traces/{id}",
    "f": "(f) 1 h count by service",
}
SEARCH_KINDS = ("a", "b", "c", "d")


def _parts(store: ChdbStore) -> int:
    rows = store.query_rows("SELECT count() AS n FROM system.parts WHERE table = 'otel_logs' AND active")
    return int(rows[0]["n"])  # type: ignore[call-overload]


# --- step 1: load --------------------------------------------------------------------------------


def load(data_dir: Path, rows: int, batch: int, seed: int, optimize: bool, out: Any) -> None:
    """Child process: fill <data_dir>/store with `rows` log rows spread over the last 24 h."""
    data = LogData(seed=seed)
    n_batches = math.ceil(rows / batch)
    data.plan_traces(n_batches)
    store = ChdbStore(data_dir / "store")
    store.setup(RetentionConfig())
    end = time.time_ns()
    lo, span = end - DAY_NS, DAY_NS // n_batches
    todo: queue.Queue[tuple[str, pa.Table] | None] = queue.Queue(maxsize=4)
    errors: list[BaseException] = []

    def insert_forever() -> None:
        while (item := todo.get()) is not None:
            try:
                store.insert(*item)
            except BaseException as e:  # noqa: BLE001 - re-raised by the loading thread
                errors.append(e)

    # Building the text index dominates an insert; two inserting threads keep both cores busy.
    threads = [threading.Thread(target=insert_forever) for _ in range(2)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    gen_s, spans = 0.0, 0
    for k in range(n_batches):  # batches arrive in time order, as a live feed does
        g0 = time.perf_counter()
        logs, span_rows = data.batch(k, min(batch, rows - k * batch), lo + k * span, lo + (k + 1) * span)
        gen_s += time.perf_counter() - g0
        todo.put(("otel_logs", logs))
        if span_rows is not None:
            spans += span_rows.num_rows
            todo.put(("otel_traces", span_rows))
        if errors:
            break
    for _ in threads:
        todo.put(None)
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    load_s = time.perf_counter() - t0
    parts_loaded = _parts(store)
    du_loaded = _du(data_dir / "store")
    t0 = time.perf_counter()
    if optimize:
        store.query_bytes("OPTIMIZE TABLE otel_logs FINAL")
    optimize_s = time.perf_counter() - t0
    count = int(store.query_rows("SELECT count() AS n FROM otel_logs")[0]["n"])  # type: ignore[call-overload]
    parts = _parts(store)
    sizes = store.query_rows(
        "SELECT (SELECT sum(bytes_on_disk) FROM system.parts WHERE table = 'otel_logs' AND active) AS table, "
        "(SELECT sum(data_compressed_bytes) FROM system.data_skipping_indices WHERE table = 'otel_logs' "
        "AND name = 'idx_body') AS body_index"
    )[0]
    store.close()
    meta = {"rows": count, "seed": seed, "end_ns": end, "traces": [t.trace_id for t in data.known]}
    (data_dir / META).write_text(json.dumps(meta))
    out.put(
        {
            "rows": count, "spans": spans, "load_s": load_s, "gen_s": gen_s, "parts_loaded": parts_loaded,
            "optimize_s": optimize_s, "parts": parts, "du_loaded": du_loaded, "table_bytes": int(sizes["table"]),
            "index_bytes": int(sizes["body_index"]),
        }
    )  # fmt: skip


# --- the workload --------------------------------------------------------------------------------


def workload(data: LogData, traces: list[str], n: int, seed: int) -> dict[str, list[str]]:
    """`n` distinct queries per kind (the first of each is an untimed warm-up), drawn from the data.

    Word frequencies are computed from the loghub lines and the service mix, so a term's share of
    rows is known before loading; re-drawn numbers never change a word made of letters.
    """
    rng = random.Random(seed + 2)
    df = data.token_df()

    def pick(cands: list[str]) -> list[str]:
        if len(cands) < n:
            raise SystemExit(f"only {len(cands)} candidate terms for {n} queries; lower --runs")
        return rng.sample(sorted(cands), n)

    rare = pick([t for t, f in df.items() if 0.0005 <= f <= 0.002 and len(t) >= 4])
    common = pick([t for t, f in df.items() if 0.02 <= f <= 0.2 and len(t) >= 3])
    phrases = pick([p for p, f in data.phrase_df().items() if 0.001 <= f <= 0.02])
    kv = []
    big = [i for i, w in enumerate(data.service_weight) if w >= 1 / len(data.services)]
    for i in range(n):
        svc = big[i % len(big)]
        sdf = data.system_token_df(SYSTEMS[data.service_system[svc]])
        word = rng.choice(sorted(t for t, f in sdf.items() if 0.05 <= f <= 0.5 and len(t) >= 4))
        kv.append(f"service:{data.services[svc]} level:error {word}")
    # (f) "H word": count `word` in the hour ending H hours before the load ended.
    counts = [f"{rng.randrange(0, 23)} {w}" for w in rng.sample(common, n)]
    return {
        "a": rare,
        "b": common,
        "c": [f'"{p}"' for p in phrases],
        "d": kv,
        "e": rng.sample(traces, n),
        "f": counts,
    }


# --- step 2: straight on chDB --------------------------------------------------------------------


def _search_sql(q: str, columns: str = LOG_COLUMNS) -> str:
    """The SQL the API runs for GET /api/v1/logs?q=...&since=24h&limit=100."""
    return logs_sql.compile_logs(
        q, start_ns=time.time_ns() - DAY_NS, end_ns=None, limit=LIMIT, columns=columns
    )


def _direct_case(store: ChdbStore, kind: str, case: str, end_ns: int) -> tuple[float, int]:
    """(ms, rows) for one case, through ChdbStore.query_bytes as the API's store calls go."""
    t0 = time.perf_counter()
    if kind == "e":  # what the trace route runs, one statement after another
        bounds = store.query_rows(traces_q.time_bounds_sql(case))[0]
        s = e = None
        if int(bounds["n"]):  # type: ignore[call-overload]
            s, e = int(bounds["s"]), int(bounds["e"])  # type: ignore[call-overload]
        spans = store.query_bytes(traces_q.spans_sql(case, s, e))
        logs = store.query_bytes(traces_q.logs_sql(case))
        return _ms(t0), spans.count(b"\n") + logs.count(b"\n")
    if kind == "f":
        hours, word = case.split(" ", 1)
        hi = end_ns - int(hours) * 3600 * 10**9
        sql = logs_sql.compile_logs_count(word, start_ns=hi - 3600 * 10**9, end_ns=hi, group_by="service")
    else:
        sql = _search_sql(case)
    out = store.query_bytes(sql)
    return _ms(t0), out.count(b"\n")


def direct(data_dir: Path, cases: dict[str, list[str]], runs: int, end_ns: int, out: Any) -> None:
    """Child process: time cases 1..runs of every kind on chDB, then count each search's matches."""
    store = ChdbStore(data_dir / "store")
    for kind, qs in cases.items():
        _direct_case(store, kind, qs[0], end_ns)  # warm-up
    times: dict[str, list[tuple[float, int]]] = {k: [] for k in cases}
    for i in range(1, runs + 1):
        for kind, qs in cases.items():  # interleaved, so a burst of other load hits every kind alike
            times[kind].append(_direct_case(store, kind, qs[i], end_ns))
    matches: dict[str, list[int]] = {}
    for kind in SEARCH_KINDS:
        # Every row is in the last 24 h, so count without a time bound (the text index answers that).
        wheres = [logs_sql.compile_where(parse(q)) for q in cases[kind][1 : runs + 1]]
        matches[kind] = [
            int(store.query_rows(f"SELECT count() AS n FROM otel_logs WHERE {w}")[0]["n"])  # type: ignore[call-overload]
            for w in wheres
        ]
    total = int(store.query_rows("SELECT count() AS n FROM otel_logs")[0]["n"])  # type: ignore[call-overload]
    out.put({"times": times, "matches": matches, "total": total, "parts": _parts(store)})
    store.close()


# --- step 3: through the HTTP API ----------------------------------------------------------------


def _api_case(client: httpx.Client, kind: str, case: str) -> tuple[float, int, float | None]:
    """(wall ms until the whole response is in, rows returned, store ms the API reports)."""
    t0 = time.perf_counter()
    if kind == "e":
        r = client.get(f"/api/v1/traces/{case}")
    else:
        r = client.get("/api/v1/logs", params={"q": case, "since": "24h", "limit": str(LIMIT)})
    r.read()
    ms = _ms(t0)
    r.raise_for_status()
    body = r.json()
    if kind == "e":
        if not body["found"]:
            raise RuntimeError(f"trace {case} not found through the API")
        return ms, len(body["spans"]) + len(body["logs"]), None
    return ms, len(body["logs"]), float(body["took_ms"])


def _floor(client: httpx.Client, n: int = 20) -> float:
    """p50 ms of GET /healthz: an HTTP round trip with no store work."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        client.get("/healthz").raise_for_status()
        times.append(_ms(t0))
    return _pct(times, 50)


def api(data_dir: Path, cases: dict[str, list[str]], runs: int) -> dict[str, Any]:
    """Cases 1..runs on one keep-alive connection (a browser), the next `runs` on a new connection
    per request (curl, the CLI)."""
    ferry = FerryProcess(data_dir)
    ferry.log_path.unlink(missing_ok=True)  # start() waits for "ferry is running" in this log
    t0 = time.perf_counter()
    ferry.start(timeout=180)
    kinds = [k for k in cases if k != "f"]
    out: dict[str, Any] = {"keepalive": {k: [] for k in kinds}, "newconn": {k: [] for k in kinds}}
    try:
        keep = httpx.Client(base_url=ferry.api, timeout=120)
        fresh = httpx.Client(
            base_url=ferry.api, timeout=120, limits=httpx.Limits(max_keepalive_connections=0)
        )
        with keep, fresh:
            ferry.wait_for(lambda: keep.get("/healthz").status_code == 200)
            out["start_s"] = _ms(t0) / 1000
            out["floor"] = {"keepalive": _floor(keep), "newconn": _floor(fresh)}
            for kind in kinds:
                _api_case(keep, kind, cases[kind][0])  # warm-up
            for i in range(1, runs + 1):
                for kind in kinds:
                    out["keepalive"][kind].append(_api_case(keep, kind, cases[kind][i]))
            for i in range(runs + 1, 2 * runs + 1):
                for kind in kinds:
                    out["newconn"][kind].append(_api_case(fresh, kind, cases[kind][i]))
    finally:
        ferry.stop()
    return out


# --- step 4: variants of the search SQL ----------------------------------------------------------


V0, V1 = "V0 as compiled: ORDER BY Timestamp, row hash", "V1 proposed: V0 AND Timestamp >= 100th match"


def _variant_sql(q: str) -> dict[str, str]:
    """The compiled search SQL and hand-written variants of it, for one query."""
    compiled = _search_sql(q)
    where = compiled.split("\nWHERE ", 1)[1].split("\nORDER BY", 1)[0]
    # The proposed fix: bound the search by the Timestamp of the LIMIT-th match, which a subquery
    # reading only Timestamp finds, so the tie-break is computed for the page's rows only.
    edge = (
        "Timestamp >= (SELECT min(Timestamp) FROM (SELECT Timestamp FROM otel_logs "
        f"WHERE {where} ORDER BY Timestamp DESC LIMIT {LIMIT}))"
    )
    cols = f"{LOG_COLUMNS}, toUnixTimestamp64Nano(Timestamp) AS _cursor_ts"
    hashed = f"SELECT {cols}, {KEY_EXPR} AS _cursor_key FROM otel_logs"
    stored = f"SELECT {cols}, leftPad(hex(CursorKey), 16, '0') AS _cursor_key FROM otel_logs"
    return {
        V0: compiled,
        V1: f"{hashed} WHERE {where} AND {edge} ORDER BY Timestamp DESC, _cursor_key DESC LIMIT {LIMIT}",
        "V2 V1 on a stored CursorKey instead of the hash": f"{stored} WHERE {where} AND {edge} "
        f"ORDER BY Timestamp DESC, CursorKey DESC LIMIT {LIMIT}",
        "V3 stored CursorKey, no Timestamp bound": f"{stored} WHERE {where} "
        f"ORDER BY Timestamp DESC, CursorKey DESC LIMIT {LIMIT}",
        "V4 no tie-break at all (paging unsound)": f"{stored} WHERE {where} ORDER BY Timestamp DESC LIMIT {LIMIT}",
        "L1 floor: top-100 Timestamps, no other column": f"SELECT Timestamp FROM otel_logs WHERE {where} "
        f"ORDER BY Timestamp DESC LIMIT {LIMIT}",
    }


def variants(data_dir: Path, cases: dict[str, list[str]], runs: int, out: Any) -> None:
    """Child process: add a stored CursorKey to otel_logs, then time the variants, interleaved per term."""
    store = ChdbStore(data_dir / "store")
    t0 = time.perf_counter()
    store.query_bytes(ADD_KEY)
    store.query_bytes("ALTER TABLE otel_logs MATERIALIZE COLUMN CursorKey SETTINGS mutations_sync = 1")
    alter_s = time.perf_counter() - t0
    grown = store.query_rows(
        "SELECT sum(data_compressed_bytes) AS n FROM system.columns WHERE table = 'otel_logs' AND name = 'CursorKey'"
    )[0]["n"]
    for sql in _variant_sql(cases["a"][0]).values():
        store.query_bytes(sql)  # warm-up
    times: dict[str, dict[str, list[float]]] = {}
    same = differ = 0
    for kind in SEARCH_KINDS:
        times[kind] = {}
        for q in cases[kind][1 : runs + 1]:
            got = {}
            for name, sql in _variant_sql(q).items():
                t1 = time.perf_counter()
                got[name] = store.query_bytes(sql)
                times[kind].setdefault(name, []).append(_ms(t1))
            same, differ = (same + 1, differ) if got[V0] == got[V1] else (same, differ + 1)
    rare = _variant_sql(cases["a"][1])
    explain = {
        name: store.query_bytes("EXPLAIN indexes = 1 " + rare[name], "TSVRaw").decode() for name in (V0, V1)
    }
    out.put(
        {
            "times": times, "explain": explain, "alter_s": alter_s, "grown": int(grown),  # type: ignore[call-overload]
            "same": same, "differ": differ,
        }
    )  # fmt: skip
    store.close()


# --- main ----------------------------------------------------------------------------------------


def _report(runs: int, d: dict[str, Any], a: dict[str, Any]) -> None:
    fl = a["floor"]
    print(
        f"\nHTTP floor, GET /healthz p50: {fl['keepalive']:.1f} ms on a keep-alive connection, "
        f"{fl['newconn']:.1f} ms on a new connection per request"
    )
    print(f"\n{'':38s} {'HTTP API, keep-alive':^29s} | {'API, new connection':^21s} | {'chDB direct':^20s} |")
    print(
        f"{'query':38s} {'p50':>7s} {'p99':>7s} {'store':>7s} {'rows':>5s} | {'p50':>6s} {'p99':>6s} {'store':>7s} | "
        f"{'p50':>7s} {'p99':>7s} {'rows':>4s} | {'matching rows (median)':>23s}"
    )

    def store_p50(runs: list[tuple[float, int, float | None]]) -> str:
        took = [s for _, _, s in runs if s is not None]
        return f"{statistics.median(took):7.1f}" if took else f"{'-':>7s}"

    for kind, label in KINDS.items():
        dt = [t for t, _ in d["times"][kind]]
        drows = statistics.median(n for _, n in d["times"][kind])
        m = d["matches"].get(kind)
        match = f"{statistics.median(m):,.0f} = {statistics.median(m) / d['total']:.3%}" if m else ""
        if kind in a["keepalive"]:
            ka, nc = a["keepalive"][kind], a["newconn"][kind]
            kt, nt = [t for t, _, _ in ka], [t for t, _, _ in nc]
            rows = statistics.median(n for _, n, _ in ka)
            left = (
                f"{_pct(kt, 50):7.1f} {_pct(kt, 99):7.1f} {store_p50(ka)} {rows:5.0f} | "
                f"{_pct(nt, 50):6.1f} {_pct(nt, 99):6.1f} {store_p50(nc)}"
            )
        else:
            left = f"{'n/a (no count route)':>29s} | {'n/a':>6s} {'n/a':>6s} {'':7s}"
        print(f"{label:38s} {left} | {_pct(dt, 50):7.1f} {_pct(dt, 99):7.1f} {drows:4.0f} | {match:>23s}")
    print(f"""ms; {runs} timed runs per cell, each with a different term, after one untimed warm-up per kind; p99 of
{runs} runs is about the slowest run. 'store' = the took_ms the API reports around its store call (chDB
plus decoding rows in the store process); API p50 minus store p50 is HTTP + JSON. The new-connection
columns use the next {runs} terms of each kind. (e) on chDB runs its three statements one after another
(the API runs the last two at once). (f) = compile_logs_count(word, 1 h window, group_by="service"),
timed on chDB in the chDB step, before ferry starts. Matching rows: count() over all 24 h.""")


def _report_variants(runs: int, v: dict[str, Any]) -> None:
    print(
        f"\nvariants of the search SQL, chDB only, same {runs} terms per kind, the variants of a term back to back;"
        f"\np50 / p99 ms. A stored CursorKey (V2, V3) was added for this step: {v['alter_s']:.0f} s, "
        f"+{v['grown'] / 2**20:.0f} MiB compressed."
    )
    names = list(next(iter(v["times"].values())))
    print(f"{'variant':50s} " + " ".join(f"{'(' + k + ') p50':>8s} {'p99':>6s}" for k in v["times"]))
    for name in names:
        cells = " ".join(f"{_pct(t[name], 50):8.1f} {_pct(t[name], 99):6.1f}" for t in v["times"].values())
        print(f"{name:50s} {cells}")
    print(f"V1 returned byte-identical results to V0 for {v['same']} of {v['same'] + v['differ']} terms.")
    for name, text in v["explain"].items():
        print(f"\nEXPLAIN indexes = 1 of a rare-word search, {name}:")
        print("\n".join(line for line in text.splitlines() if line.strip()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument(
        "--data-dir", type=Path, help="use this data dir; load it only if it holds no finished load"
    )
    ap.add_argument(
        "--runs", type=int, default=30, help="timed runs per query kind and column (>= 30 for p99)"
    )
    ap.add_argument("--batch", type=int, default=100_000, help="rows per insert")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--no-optimize", action="store_true", help="keep the parts as inserted (no OPTIMIZE FINAL)"
    )
    ap.add_argument("--no-variants", action="store_true", help="skip step 4 (it alters the bench's store)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data dir")
    args = ap.parse_args()
    t_start = time.perf_counter()
    print(f"ferry search bench: {os.cpu_count()} cores, load average {_load_avg()} (the machine is shared)")
    print("log bodies: loghub, https://github.com/logpai/loghub (Zhu et al., ISSRE 2023), numbers re-drawn")

    tmp = None
    if args.data_dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="ferry-search-"))
        data_dir = tmp / "data"
    else:
        data_dir = args.data_dir.resolve()
    try:
        if (data_dir / META).exists():
            print(f"reusing {data_dir}: not loading")
        else:
            data_dir.mkdir(parents=True, exist_ok=True)
            print(f"\n1. loading {args.rows:,} rows into {data_dir}/store (separate process) ...")
            st = _in_child(load, data_dir, args.rows, args.batch, args.seed, not args.no_optimize)
            print(
                f"   loaded {st['rows']:,} log rows + {st['spans']:,} spans in {st['load_s']:.1f} s = "
                f"{st['rows'] / st['load_s']:,.0f} rows/s (2 insert threads; generating the rows took "
                f"{st['gen_s']:.1f} s of the same 2 cores)"
            )
            gib, n = 2**30, st["rows"]
            print(
                f"   parts: {st['parts_loaded']} as inserted, {st['parts']} after OPTIMIZE FINAL ({st['optimize_s']:.0f} s)"
            )
            print(
                f"   on disk: du -sb store {st['du_loaded'] / gib:.2f} GiB after loading = {st['du_loaded'] / n:.0f} B/row; "
                f"otel_logs after OPTIMIZE {st['table_bytes'] / gib:.2f} GiB = {st['table_bytes'] / n:.0f} B/row, "
                f"of which the Body text index {st['index_bytes'] / gib:.2f} GiB"
            )
        meta = json.loads((data_dir / META).read_text())
        age_h = (time.time_ns() - meta["end_ns"]) / 3.6e12
        if age_h > 0.25:
            print(
                f"   WARNING: the data ends {age_h:.1f} h ago, so since=24h misses the oldest {age_h:.1f} h"
            )
        cases = workload(LogData(seed=meta["seed"]), meta["traces"], 2 * args.runs + 1, meta["seed"])
        for kind, label in KINDS.items():
            print(f"   {label:38s} e.g. {' | '.join(cases[kind][1:4])}")

        print(f"\n2. chDB step (separate process, ferry not running), load average {_load_avg()} ...")
        t0 = time.perf_counter()
        d = _in_child(direct, data_dir, cases, args.runs, meta["end_ns"])
        print(f"   took {_ms(t0) / 1000:.0f} s; otel_logs has {d['parts']} parts; load average {_load_avg()}")

        print("\n3. HTTP API step: ferry run on the same data dir ...")
        t0 = time.perf_counter()
        a = api(data_dir, cases, args.runs)
        print(
            f"   ferry answered after {a['start_s']:.1f} s; step took {_ms(t0) / 1000:.0f} s; load average {_load_avg()}"
        )
        _report(args.runs, d, a)

        if not args.no_variants:
            print(f"\n4. variants step (separate process), load average {_load_avg()} ...")
            t0 = time.perf_counter()
            v = _in_child(variants, data_dir, cases, args.runs)
            print(f"   took {_ms(t0) / 1000:.0f} s; load average {_load_avg()}")
            _report_variants(args.runs, v)
        print(f"\ntotal bench time {time.perf_counter() - t_start:.0f} s")
    finally:
        if tmp is not None and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp is not None:
            print(f"kept {data_dir}")


if __name__ == "__main__":
    main()
