"""Search latency at scale: loads N log rows (default 10 M) into a fresh store, then times searches.

Usage: python bench/search.py [--rows 10000000] [--data-dir DIR] [--runs 30] [--keep]
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import queue
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import pyarrow as pa  # noqa: E402

from bench._logdata import SYSTEMS, LogData  # noqa: E402
from ferry.api.app import LOG_COLUMNS  # noqa: E402
from ferry.config.model import RetentionConfig  # noqa: E402
from ferry.query import logs_sql  # noqa: E402
from ferry.query import traces as traces_q  # noqa: E402
from ferry.query.language import parse  # noqa: E402
from ferry.store.chdb_store import ChdbStore  # noqa: E402
from ferry.testing import FerryProcess  # noqa: E402

DAY_NS = 86_400 * 10**9
META = "bench-search.json"
# The tie-break the compiled search SQL orders by (ferry.query.logs_sql), for the hand-written variants.
KEY_EXPR = logs_sql._CURSOR_KEY_EXPR


def _du(path: Path) -> int:
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def _parts(store: ChdbStore) -> tuple[int, int]:
    """(active parts, running merges) of otel_logs."""
    row = store.query_rows(
        "SELECT (SELECT count() FROM system.parts WHERE table = 'otel_logs' AND active) AS parts, "
        "(SELECT count() FROM system.merges WHERE table = 'otel_logs') AS merges"
    )[0]
    return int(row["parts"]), int(row["merges"])  # type: ignore[call-overload]


def load(data_dir: Path, rows: int, batch: int, seed: int, settle_s: float, out: Any) -> None:
    """Child process: fill <data_dir>/store with `rows` log rows over the last 24 h, then let merges settle."""
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
            except BaseException as e:  # noqa: BLE001 - re-raised in the parent thread
                errors.append(e)

    # chDB builds the text index while inserting; two inserting threads keep both cores busy.
    threads = [threading.Thread(target=insert_forever) for _ in range(2)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    gen_s = 0.0
    spans = 0
    for k in range(n_batches):
        g0 = time.perf_counter()
        n = min(batch, rows - k * batch)
        logs, span_rows = data.batch(k, n, lo + k * span, lo + (k + 1) * span)
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
    parts_loaded, _ = _parts(store)
    s0 = time.perf_counter()
    while time.perf_counter() - s0 < settle_s:
        parts, merges = _parts(store)
        if merges == 0:
            break
        time.sleep(1.0)
    settle = time.perf_counter() - s0
    parts, merges = _parts(store)
    count = int(store.query_rows("SELECT count() AS n FROM otel_logs")[0]["n"])  # type: ignore[call-overload]
    store.close()
    meta = {"rows": rows, "seed": seed, "end_ns": end, "batches": n_batches, "traces": [t.trace_id for t in data.known]}
    (data_dir / META).write_text(json.dumps(meta))
    out.put(
        {
            "rows": count, "spans": spans, "load_s": load_s, "gen_s": gen_s, "parts_loaded": parts_loaded,
            "settle_s": settle, "parts": parts, "merges": merges, "bytes": _du(data_dir / "store"),
        }
    )  # fmt: skip


# --- the workload --------------------------------------------------------------------------------

KINDS = {
    "a": "(a) rare word, ~0.1% of rows",
    "b": "(b) common word, 2-20% of rows",
    "c": '(c) phrase "w1 w2 w3"',
    "d": "(d) service:X level:error word",
    "e": "(e) trace lookup /traces/{id}",
    "f": "(f) 1 h count by service (chDB only)",
}
SEARCH_KINDS = ("a", "b", "c", "d")


def workload(data: LogData, traces: list[str], n: int, seed: int) -> dict[str, list[str]]:
    """`n` distinct queries per kind (the first of each is the untimed warm-up), drawn from the data."""
    rng = random.Random(seed + 2)
    df = data.token_df()

    def pick(cands: list[str]) -> list[str]:
        if len(cands) < n:
            raise SystemExit(f"only {len(cands)} candidate terms for {n} runs; lower --runs")
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
    hours = [str(rng.randrange(0, 23)) for _ in range(n)]  # (f): the window ends this many hours before load end
    counts = [f"{h} {w}" for h, w in zip(hours, common, strict=True)]
    return {
        "a": rare,
        "b": common,
        "c": [f'"{p}"' for p in phrases],
        "d": kv,
        "e": rng.sample(traces, n),
        "f": counts,
    }


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


def _pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    k = (len(s) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


# --- direct chDB ---------------------------------------------------------------------------------


def _sql_for(kind: str, case: str, end_ns: int) -> str:
    """The SQL ferry's API runs for a search (since=24h, limit=100), or the SQL of a (f) count."""
    if kind in SEARCH_KINDS:
        start = time.time_ns() - DAY_NS
        return logs_sql.compile_logs(case, start_ns=start, end_ns=None, limit=100, columns=LOG_COLUMNS)
    hours, word = case.split(" ", 1)
    hi = end_ns - int(hours) * 3600 * 10**9
    return logs_sql.compile_logs_count(word, start_ns=hi - 3600 * 10**9, end_ns=hi, group_by="service")


def _direct_case(store: ChdbStore, kind: str, case: str, end_ns: int) -> tuple[float, int]:
    t0 = time.perf_counter()
    if kind == "e":
        bounds = store.query_rows(traces_q.time_bounds_sql(case))[0]
        s = e = None
        if int(bounds["n"]):  # type: ignore[call-overload]
            s, e = int(bounds["s"]), int(bounds["e"])  # type: ignore[call-overload]
        spans = store.query_bytes(traces_q.spans_sql(case, s, e))
        logs = store.query_bytes(traces_q.logs_sql(case))
        return _ms(t0), spans.count(b"\n") + logs.count(b"\n")
    out = store.query_bytes(_sql_for(kind, case, end_ns))
    return _ms(t0), out.count(b"\n")


def _variants(where: str, limit: int = 100) -> dict[str, str]:
    """Hand-written variants of the search SQL, to see where the time goes."""
    cols = f"{LOG_COLUMNS}, toUnixTimestamp64Nano(Timestamp) AS _cursor_ts"
    return {
        "V0 as compiled (ORDER BY Timestamp, _cursor_key hash)": f"SELECT {cols}, {KEY_EXPR} AS _cursor_key "
        f"FROM otel_logs WHERE {where} ORDER BY Timestamp DESC, _cursor_key DESC LIMIT {limit}",
        "V1 no tie-break (ORDER BY Timestamp only)": f"SELECT {cols}, {KEY_EXPR} AS _cursor_key "
        f"FROM otel_logs WHERE {where} ORDER BY Timestamp DESC LIMIT {limit}",
        "V2 tie-break on a stored 8-byte column (IngestTime as stand-in)": f"SELECT {cols}, "
        f"toString(toUnixTimestamp64Nano(IngestTime)) AS _cursor_key FROM otel_logs WHERE {where} "
        f"ORDER BY Timestamp DESC, IngestTime DESC LIMIT {limit}",
        "L1 lower bound: index + top-100 Timestamps only": f"SELECT Timestamp FROM otel_logs WHERE {where} "
        f"ORDER BY Timestamp DESC LIMIT {limit}",
        "L2 text index alone: count() of matches, no time bound": "SELECT count() FROM otel_logs WHERE "
        + where.split(" AND ", 1)[1],
    }


def direct(data_dir: Path, cases: dict[str, list[str]], runs: int, end_ns: int, out: Any) -> None:
    """Child process: time cases 1..runs straight on chDB (the SQL the API runs), then the variants."""
    store = ChdbStore(data_dir / "store")
    parts_before = _parts(store)
    for kind, qs in cases.items():
        _direct_case(store, kind, qs[0], end_ns)  # warm-up
    times: dict[str, list[tuple[float, int]]] = {k: [] for k in cases}
    for i in range(1, runs + 1):
        for kind, qs in cases.items():  # interleaved, so a burst of other load hits every kind alike
            times[kind].append(_direct_case(store, kind, qs[i], end_ns))
    matches: dict[str, list[int]] = {}
    for kind in SEARCH_KINDS:
        # All rows are in the last 24 h, so no time bound: that count comes from the text index alone.
        wheres = [logs_sql.compile_where(parse(q)) for q in cases[kind][1 : runs + 1]]
        matches[kind] = [int(store.query_rows(f"SELECT count() AS n FROM otel_logs WHERE {w}")[0]["n"]) for w in wheres]  # type: ignore[call-overload]

    # Where does a token search spend its time? Same terms, hand-written variants of the SQL.
    variants: dict[str, dict[str, list[float]]] = {}
    for kind in ("a", "b", "d"):
        variants[kind] = {}
        for i in range(1, runs + 1):
            where = _where(cases[kind][i], time.time_ns() - DAY_NS, None)
            for name, sql in _variants(where).items():
                t0 = time.perf_counter()
                store.query_bytes(sql)
                variants[kind].setdefault(name, []).append(_ms(t0))
    rare = logs_sql.compile_logs(cases["a"][1], start_ns=time.time_ns() - DAY_NS, end_ns=None, limit=100, columns=LOG_COLUMNS)
    explain = store.query_bytes("EXPLAIN indexes = 1 " + rare, "TSVRaw").decode()
    out.put(
        {
            "times": times, "matches": matches, "variants": variants, "explain": explain, "rare_sql": rare,
            "parts_before": parts_before, "parts_after": _parts(store), "total": store.query_rows(
                "SELECT count() AS n FROM otel_logs")[0]["n"],
        }
    )  # fmt: skip
    store.close()


def _where(q: str, start_ns: int, end_ns: int | None) -> str:
    sql = logs_sql.compile_logs(q, start_ns=start_ns, end_ns=end_ns, limit=1)
    return sql.split("\nWHERE ", 1)[1].split("\nORDER BY", 1)[0]


# --- through the HTTP API ------------------------------------------------------------------------


def _api_case(client: httpx.Client, kind: str, case: str) -> tuple[float, int, float | None]:
    """(wall ms until the whole response is in, rows returned, store ms the API reports)."""
    t0 = time.perf_counter()
    if kind == "e":
        r = client.get(f"/api/v1/traces/{case}")
    else:
        r = client.get("/api/v1/logs", params={"q": case, "since": "24h", "limit": "100"})
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
    """p50 ms of GET /healthz: the HTTP round trip with no store work at all."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        client.get("/healthz").raise_for_status()
        times.append(_ms(t0))
    return _pct(times, 50)


def api(data_dir: Path, cases: dict[str, list[str]], runs: int) -> dict[str, Any]:
    """Time every case through ferry's HTTP API: runs 1..runs on one keep-alive connection (a browser),
    the next `runs` cases on a new connection per request (curl, the CLI)."""
    ferry = FerryProcess(data_dir)
    ferry.log_path.unlink(missing_ok=True)  # start() looks for "ferry is running" in this log
    t0 = time.perf_counter()
    ferry.start(timeout=180)
    kinds = [k for k in cases if k != "f"]
    out: dict[str, Any] = {"keepalive": {k: [] for k in kinds}, "newconn": {k: [] for k in kinds}}
    try:
        keep = httpx.Client(base_url=ferry.api, timeout=120)
        fresh = httpx.Client(base_url=ferry.api, timeout=120, limits=httpx.Limits(max_keepalive_connections=0))
        with keep, fresh:
            ferry.wait_for(lambda: keep.get("/healthz").status_code == 200)
            out["start_s"] = _ms(t0) / 1000
            out["floor"] = {"keepalive": _floor(keep), "newconn": _floor(fresh)}
            for kind in kinds:
                _api_case(keep, kind, cases[kind][0])  # warm-up
            for i in range(1, runs + 1):
                for kind in kinds:  # interleaved, so a burst of other load hits every kind alike
                    out["keepalive"][kind].append(_api_case(keep, kind, cases[kind][i]))
            for i in range(runs + 1, 2 * runs + 1):
                for kind in kinds:
                    out["newconn"][kind].append(_api_case(fresh, kind, cases[kind][i]))
    finally:
        ferry.stop()
    return out


# --- main ----------------------------------------------------------------------------------------


def _in_child(target: Any, *args: Any) -> Any:
    """Run target(*args, queue) in a fresh process (the store can be open in one process only)."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    while True:
        try:
            result = q.get(timeout=1.0)
            break
        except queue.Empty:
            if not p.is_alive():
                raise RuntimeError(f"{target.__name__} process exited with {p.exitcode}") from None
    p.join()
    return result


def _load_avg() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _report(runs: int, d: dict[str, Any], a: dict[str, Any]) -> None:
    fl = a["floor"]
    print(
        f"\nHTTP floor, GET /healthz p50: {fl['keepalive']:.1f} ms on a keep-alive connection, "
        f"{fl['newconn']:.1f} ms on a new connection per request"
    )
    print(f"\n{'':38s} {'HTTP API, keep-alive':^29s} | {'API, new conn':^13s} | {'chDB direct':^20s} |")
    print(
        f"{'query':38s} {'p50':>7s} {'p99':>7s} {'store':>7s} {'rows':>5s} | {'p50':>6s} {'p99':>6s} | "
        f"{'p50':>7s} {'p99':>7s} {'rows':>4s} | {'matching rows (median)':>23s}"
    )
    for kind, label in KINDS.items():
        dt = [t for t, _ in d["times"][kind]]
        drows = statistics.median(n for _, n in d["times"][kind])
        m = d["matches"].get(kind)
        match = f"{statistics.median(m):,.0f} = {statistics.median(m) / d['total']:.3%}" if m else ""
        if kind in a["keepalive"]:
            ka, nc = a["keepalive"][kind], a["newconn"][kind]
            kt, nt = [t for t, _, _ in ka], [t for t, _, _ in nc]
            took = [s for _, _, s in ka if s is not None]
            store = f"{statistics.median(took):7.1f}" if took else f"{'-':>7s}"
            rows = statistics.median(n for _, n, _ in ka)
            left = f"{_pct(kt, 50):7.1f} {_pct(kt, 99):7.1f} {store} {rows:5.0f} | {_pct(nt, 50):6.1f} {_pct(nt, 99):6.1f}"
        else:
            left = f"{'n/a (no count route)':>35s} | {'n/a':>6s} {'n/a':>6s}"
        print(f"{label:38s} {left} | {_pct(dt, 50):7.1f} {_pct(dt, 99):7.1f} {drows:4.0f} | {match:>23s}")
    print(f"""ms; {runs} timed runs per cell, each with a different term (one untimed warm-up per kind first); p99 of
{runs} runs is about the slowest run. 'store' = took_ms the API reports around its store call (chDB + row
decoding in the store process); keep-alive p50 minus it is HTTP + JSON. The new-connection column uses the
next {runs} terms of each kind. (e) on chDB runs its three statements in turn (the API runs two at once).
(f) = compile_logs_count(word, 1 h window, group_by="service") run on chDB in its own process before
ferry starts; the API has no count route, so it has no API figure. Matching rows: count() over all rows.""")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--data-dir", type=Path, help="reuse this data dir (loaded here if it holds no store)")
    ap.add_argument("--runs", type=int, default=30, help="timed runs per query kind (at least 30 for p99)")
    ap.add_argument("--batch", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--settle-s", type=float, default=90.0, help="longest wait for merges after loading")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data dir")
    args = ap.parse_args()
    t_start = time.perf_counter()
    print(f"ferry search bench: {os.cpu_count()} cores, load average {_load_avg()} (other work shares this machine)")
    print("log bodies: loghub datasets, https://github.com/logpai/loghub (Zhu et al., ISSRE 2023), numbers re-drawn")

    tmp = None
    if args.data_dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="ferry-search-"))
        data_dir = tmp / "data"
    else:
        data_dir = args.data_dir.resolve()
    try:
        if (data_dir / META).exists():
            print(f"reusing {data_dir} (not loading)")
        else:
            data_dir.mkdir(parents=True, exist_ok=True)
            print(f"loading {args.rows:,} rows into {data_dir}/store in a separate process ...")
            st = _in_child(load, data_dir, args.rows, args.batch, args.seed, args.settle_s)
            print(
                f"loaded {st['rows']:,} log rows + {st['spans']} spans in {st['load_s']:.1f} s = "
                f"{st['rows'] / st['load_s']:,.0f} rows/s (2 insert threads; row generation took {st['gen_s']:.1f} s "
                f"of CPU on the same 2 cores)"
            )
            print(
                f"parts: {st['parts_loaded']} after loading, {st['parts']} after {st['settle_s']:.0f} s of merging "
                f"({st['merges']} merges still running); on disk (du): {st['bytes'] / 2**30:.2f} GiB = "
                f"{st['bytes'] / st['rows']:.0f} bytes/row"
            )
        meta = json.loads((data_dir / META).read_text())
        age_h = (time.time_ns() - meta["end_ns"]) / 3.6e12
        if age_h > 0.5:
            print(f"WARNING: the data ends {age_h:.1f} h ago, so since=24h misses some of it")

        data = LogData(seed=meta["seed"])
        cases = workload(data, meta["traces"], 2 * args.runs + 1, meta["seed"])
        for kind, label in KINDS.items():
            print(f"  {label:38s} e.g. {' | '.join(cases[kind][1:4])}")

        print(f"\ndirect chDB step (separate process, ferry not running), load average {_load_avg()} ...")
        t0 = time.perf_counter()
        d = _in_child(direct, data_dir, cases, args.runs, meta["end_ns"])
        print(f"  took {_ms(t0) / 1000:.0f} s; otel_logs parts/merges before {d['parts_before']}, after {d['parts_after']}")

        print(f"\nHTTP API step: ferry run on the same data dir, load average {_load_avg()} ...")
        t0 = time.perf_counter()
        a = api(data_dir, cases, args.runs)
        print(f"  ferry ready in {a['start_s']:.1f} s; step took {_ms(t0) / 1000:.0f} s, load average {_load_avg()}")

        _report(args.runs, d, a)
        _report_variants(d)
        print(f"\ntotal bench time {time.perf_counter() - t_start:.0f} s")
    finally:
        if tmp is not None and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp is not None:
            print(f"kept {data_dir}")


def _report_variants(d: dict[str, Any]) -> None:
    print("\nwhere the time goes: chDB only, same terms, hand-written variants of the search SQL (p50 / p99 ms)")
    names = list(next(iter(d["variants"].values())))
    print(f"{'variant':66s} " + " ".join(f"{k + ' p50':>8s} {k + ' p99':>8s}" for k in d["variants"]))
    for name in names:
        cells = " ".join(f"{_pct(v[name], 50):8.1f} {_pct(v[name], 99):8.1f}" for v in d["variants"].values())
        print(f"{name:66s} {cells}")
    print("(a) rare word, (b) common word, (d) service:X level:error word")
    print("\nEXPLAIN indexes = 1 of one rare-word search, as compiled:")
    print(d["rare_sql"])
    print(d["explain"])


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
