"""LogQL latency at 10 M log rows over 24 h: a Grafana-shaped count by level and a line search of one
service, timed through the real Loki HTTP API and on chDB alone, with answers checked against plain SQL."""

# python bench/logql.py [--rows 10000000] [--data-dir DIR] [--runs 20] [--keep] [--explain]
#
# Steps, each in its own process (a store directory can be open in one process only):
#   1. load: bench/search.py's load step (Arrow batches straight into ChdbStore, then OPTIMIZE FINAL);
#      a --data-dir that already holds a finished load (of search.py or this bench) is reused;
#   2. chDB: the engine evaluates each query in-process on the store; every SQL statement it sends is
#      timed on chDB alone (bytes out of chDB, no decoding), and the expected answers are computed with
#      plain SQL that shares nothing with the engine's compiler (ServiceName, lower(SeverityText),
#      position(Body, ...), numpy for the step of each row);
#   3. API: `ferry run` on the data dir; GET /loki/api/v1/query_range on one keep-alive connection as
#      Grafana's Loki data source sends it (24 h, step 60 s for the metric query; limit 1000, backward
#      for the log query), each answer compared with step 2's.

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from bench import search  # noqa: E402
from bench._common import in_child, load_avg, ms, pct  # noqa: E402
from bench._logdata import SYSTEMS, LogData  # noqa: E402
from ferry.query.logql import ast  # noqa: E402
from ferry.query.logql.engine import Engine, step_times  # noqa: E402
from ferry.query.logql.parser import parse  # noqa: E402
from ferry.store.chdb_store import ChdbStore  # noqa: E402
from ferry.store.sql import literal  # noqa: E402
from ferry.tenancy import tenant_sql  # noqa: E402
from ferry.testing import FerryProcess  # noqa: E402

STEP_NS = 60 * 10**9  # what Grafana picks for a 24 h panel about 1,400 px wide
DAY_NS = 86_400 * 10**9
LIMIT = 1000  # Grafana's default "Max lines"
FILTER = "error"


def count_query(service: str) -> str:
    return f'sum by (level) (count_over_time({{service="{service}"}} |= "{FILTER}" [1m]))'


def line_query(service: str, word: str) -> str:
    return f'{{service="{service}"}} |= "{word}"'


def plan(data: LogData, runs: int) -> tuple[str, str, list[str]]:
    """(the service with the most lines holding FILTER, the biggest service with `runs` + 1 rare words
    (0.1-1 % of its lines), those words)."""
    share = []
    for i, svc in enumerate(data.services):
        lines = data.lines[SYSTEMS[data.service_system[i]]]
        hits = sum(FILTER in content for content, _ in lines) / len(lines)
        share.append((float(data.service_weight[i]) * hits, svc))
    count_service = max(share)[1]
    for i in np.argsort(-data.service_weight):
        df = data.system_token_df(SYSTEMS[data.service_system[i]])
        words = sorted(t for t, f in df.items() if 0.001 <= f <= 0.01 and len(t) >= 5)
        if len(words) >= runs + 1:
            rng = np.random.default_rng(11)
            return count_service, data.services[i], [str(w) for w in rng.choice(words, runs + 1, replace=False)]
    raise SystemExit(f"no service has {runs + 1} rare words for the log query; lower --runs")


# --- step 2: chDB --------------------------------------------------------------------------------


def _expected_counts(store: ChdbStore, service: str, start: int, end: int) -> dict[str, dict[int, int]]:
    """{level: {step index: lines}} for the count query, from the rows themselves: a row at ts counts
    at the one step t = start + i*step whose window (t - 1m, t] holds it (range = step)."""
    rows = store.query_rows(
        f"SELECT toUnixTimestamp64Nano(Timestamp) AS ts, lower(SeverityText) AS level FROM otel_logs "
        f"WHERE ServiceName = {literal(service)} AND position(Body, {literal(FILTER)}) > 0 "
        f"AND Timestamp > fromUnixTimestamp64Nano({start - STEP_NS}) AND Timestamp <= fromUnixTimestamp64Nano({end})"
    )
    ts = np.array([int(r["ts"]) for r in rows], dtype=np.int64)  # type: ignore[call-overload]
    step = -((start - ts) // STEP_NS)  # ceil((ts - start) / step)
    out: dict[str, dict[int, int]] = {}
    for r, i in zip(rows, step.tolist(), strict=True):
        d = out.setdefault(str(r["level"]), {})
        d[i] = d.get(i, 0) + 1
    return out


def _expected_lines(store: ChdbStore, service: str, word: str, start: int, end: int) -> tuple[int, list[int]]:
    """(lines matching in [start, end), timestamps of the newest LIMIT of them)."""
    where = (f"ServiceName = {literal(service)} AND position(Body, {literal(word)}) > 0 AND "
             f"Timestamp >= fromUnixTimestamp64Nano({start}) AND Timestamp < fromUnixTimestamp64Nano({end})")
    n = int(store.query_rows(f"SELECT count() AS n FROM otel_logs WHERE {where}")[0]["n"])  # type: ignore[call-overload]
    ts = store.query_rows(f"SELECT toUnixTimestamp64Nano(Timestamp) AS ts FROM otel_logs WHERE {where} "
                          f"ORDER BY Timestamp DESC LIMIT {LIMIT}")
    return n, sorted(int(r["ts"]) for r in ts)  # type: ignore[call-overload]


def _engine_run(store: ChdbStore, query: str, start: int, end: int) -> tuple[float, list[tuple[float, str]]]:
    """(engine ms in-process, [(chDB ms, sql) for each statement it sent])."""
    sent: list[tuple[float, str]] = []

    async def rows(sql: str) -> list[dict[str, Any]]:
        t0 = time.perf_counter()
        data = store.query_bytes(sql, "JSONEachRow")
        sent.append((ms(t0), sql))
        return [json.loads(line) for line in data.splitlines() if line]

    engine = Engine(rows, tenant_sql("default"))
    expr = parse(query)
    t0 = time.perf_counter()
    if isinstance(expr, ast.LogQuery):
        asyncio.run(engine.lines(expr, start, end, LIMIT, True))
    else:
        asyncio.run(engine.evaluate(expr, step_times(start, end, STEP_NS)))
    return ms(t0), sent


def direct(data_dir: Path, service: str, line_service: str, words: list[str], start: int, end: int, runs: int, explain: bool,
           out: Any) -> None:
    """Child process: the engine on chDB (runs 1..runs after a warm-up), then the expected answers."""
    store = ChdbStore(data_dir / "store")
    cq = count_query(service)
    _engine_run(store, cq, start, end)
    _engine_run(store, line_query(line_service, words[0]), start, end)
    res: dict[str, Any] = {"count": [], "lines": []}
    for i in range(1, runs + 1):
        res["count"].append(_engine_run(store, cq, start, end))
        res["lines"].append(_engine_run(store, line_query(line_service, words[i]), start, end))
    res["sql"] = {"count": [s for _, s in res["count"][0][1]], "lines": [s for _, s in res["lines"][0][1]]}
    if explain:
        res["explain"] = {k: store.query_bytes("EXPLAIN indexes = 1 " + v[0], "TSVRaw").decode()
                          for k, v in res["sql"].items()}
    res["want_counts"] = _expected_counts(store, service, start, end)
    res["want_lines"] = [_expected_lines(store, line_service, w, start, end) for w in words]
    res["service_rows"] = int(store.query_rows(  # type: ignore[call-overload]
        f"SELECT count() AS n FROM otel_logs WHERE ServiceName = {literal(service)}")[0]["n"])
    res["total"] = int(store.query_rows("SELECT count() AS n FROM otel_logs")[0]["n"])  # type: ignore[call-overload]
    store.close()
    out.put(res)


# --- step 3: the Loki HTTP API -------------------------------------------------------------------


def _got_counts(body: dict[str, Any], start: int) -> dict[str, dict[int, int]]:
    got: dict[str, dict[int, int]] = {}
    for s in body["data"]["result"]:
        d = got.setdefault(s["metric"].get("level", ""), {})
        for t, v in s["values"]:
            d[round((float(t) * 1e9 - start) / STEP_NS)] = int(float(v))
    return got


def _got_lines(body: dict[str, Any]) -> list[int]:
    return sorted(int(ts) for s in body["data"]["result"] for ts, _ in s["values"])


def _get(client: httpx.Client, params: dict[str, str]) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    r = client.get("/loki/api/v1/query_range", params=params)
    r.read()
    took = ms(t0)
    r.raise_for_status()
    return took, r.json()


def api(data_dir: Path, service: str, line_service: str, words: list[str], start: int, end: int, runs: int) -> dict[str, Any]:
    ferry = FerryProcess(data_dir)
    ferry.log_path.unlink(missing_ok=True)  # start() waits for "ferry is running" in this log
    ferry.start(timeout=180)
    span = {"start": str(start), "end": str(end)}
    out: dict[str, Any] = {"count": [], "lines": [], "count_bodies": [], "line_bodies": []}
    try:
        with httpx.Client(base_url=ferry.api, timeout=120) as client:
            ferry.wait_for(lambda: client.get("/healthz").status_code == 200)
            cq = {"query": count_query(service), "step": "60", **span}
            _get(client, cq)  # warm-up
            _get(client, {"query": line_query(line_service, words[0]), "limit": str(LIMIT), "direction": "backward", **span})
            for i in range(1, runs + 1):  # interleaved, so a burst of other load hits both alike
                t, body = _get(client, cq)
                out["count"].append((t, body["data"]["stats"]["summary"]["execTime"] * 1000))
                out["count_bodies"].append(_got_counts(body, start))
                lq = {"query": line_query(line_service, words[i]), "limit": str(LIMIT), "direction": "backward", **span}
                t, body = _get(client, lq)
                out["lines"].append((t, body["data"]["stats"]["summary"]["execTime"] * 1000))
                out["line_bodies"].append(_got_lines(body))
    finally:
        ferry.stop()
    return out


# --- main ----------------------------------------------------------------------------------------


def _row(label: str, xs: list[float]) -> str:
    return f"   {label:44s} p50 {pct(xs, 50):8.1f}   p99 {pct(xs, 99):8.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--data-dir", type=Path, help="use this data dir; load it only if it holds no finished load")
    ap.add_argument("--runs", type=int, default=20, help="timed runs per query")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--explain", action="store_true", help="print EXPLAIN indexes = 1 of the engine's SQL")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data dir")
    args = ap.parse_args()
    t_start = time.perf_counter()
    print(f"ferry LogQL bench: load average {load_avg()} (the machine is shared)")
    tmp = None
    if args.data_dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="ferry-logql-"))
        data_dir = tmp / "data"
    else:
        data_dir = args.data_dir.resolve()
    try:
        if (data_dir / search.META).exists():
            print(f"reusing {data_dir}: not loading")
        else:
            data_dir.mkdir(parents=True, exist_ok=True)
            print(f"\n1. loading {args.rows:,} rows into {data_dir}/store (bench/search.py's load step) ...")
            st = in_child(search.load, data_dir, args.rows, 100_000, args.seed, True)
            print(f"   {st['rows']:,} rows in {st['load_s']:.0f} s + OPTIMIZE FINAL {st['optimize_s']:.0f} s, "
                  f"{st['parts']} parts, otel_logs {st['table_bytes'] / 2**30:.2f} GiB")
        meta = json.loads((data_dir / search.META).read_text())
        end = meta["end_ns"] // STEP_NS * STEP_NS + STEP_NS
        start = end - DAY_NS
        service, line_service, words = plan(LogData(seed=meta["seed"]), args.runs)
        print(f"   metric query: {count_query(service)}  (step 60 s, 24 h = 1,441 steps)")
        print(f"   log query:    {line_query(line_service, words[1])}  (limit {LIMIT}, backward; a different word each run)")

        print(f"\n2. chDB step (separate process), load average {load_avg()} ...")
        d = in_child(direct, data_dir, service, line_service, words, start, end, args.runs, args.explain)
        print(f"   otel_logs {d['total']:,} rows, {service} {d['service_rows']:,} of them")
        print(f"\n3. API step: ferry run on the same data dir, load average {load_avg()} ...")
        a = api(data_dir, service, line_service, words, start, end, args.runs)

        print(f"\nms over {args.runs} runs after a warm-up (load average now {load_avg()}):")
        for key, label in (("count", "metric query"), ("lines", "log query")):
            print(f"  {label}")
            print(_row("API wall (HTTP request to last byte)", [t for t, _ in a[key]]))
            print(_row("API execTime (engine, in the store process)", [e for _, e in a[key]]))
            print(_row("engine in-process on chDB", [t for t, _ in d[key]]))
            print(_row("chDB alone, the engine's SQL", [sum(m for m, _ in s) for _, s in d[key]]))
            print(f"   statements per query: {statistics.median(len(s) for _, s in d[key]):.0f}")

        want = {lvl: {i: n for i, n in steps.items() if 0 <= i < DAY_NS // STEP_NS + 1}
                for lvl, steps in d["want_counts"].items()}
        ok_counts = sum(body == want for body in a["count_bodies"])
        lines_total = sum(sum(v.values()) for v in want.values())
        print(f"\ncorrect: metric query {ok_counts}/{len(a['count_bodies'])} answers equal to the plain-SQL count "
              f"({lines_total:,} lines in {len(want)} levels)")
        ok_lines = 0
        for i, got in enumerate(a["line_bodies"], start=1):
            n, newest = d["want_lines"][i]
            ok_lines += got == newest if n <= LIMIT else (len(got) == LIMIT and got[0] >= newest[0])
        matched = [d["want_lines"][i][0] for i in range(1, args.runs + 1)]
        print(f"correct: log query {ok_lines}/{len(a['line_bodies'])} answers hold the newest matching lines "
              f"(median {statistics.median(matched):.0f} matching lines in 24 h)")
        print("\nSQL of the metric query:\n   " + "\n   ".join(d["sql"]["count"]))
        if args.explain:
            for k, text in d["explain"].items():
                print(f"\nEXPLAIN indexes = 1, {k} query:")
                print("\n".join(line for line in text.splitlines() if line.strip()))
        print(f"\ntotal bench time {time.perf_counter() - t_start:.0f} s")
        if ok_counts != len(a["count_bodies"]) or ok_lines != len(a["line_bodies"]):
            raise SystemExit("some answers differ from the plain-SQL ones")
    finally:
        if tmp is not None and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp is not None:
            print(f"kept {data_dir}")


if __name__ == "__main__":
    main()
