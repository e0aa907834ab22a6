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
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyarrow as pa  # noqa: E402

from bench._logdata import LogData  # noqa: E402
from ferry.config.model import RetentionConfig  # noqa: E402
from ferry.store.chdb_store import ChdbStore  # noqa: E402

DAY_NS = 86_400 * 10**9
META = "bench-search.json"


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

    tmp = None
    if args.data_dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="ferry-search-"))
        data_dir = tmp / "data"
    else:
        data_dir = args.data_dir.resolve()
    try:
        if not (data_dir / META).exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            st = _in_child(load, data_dir, args.rows, args.batch, args.seed, args.settle_s)
            print(st)
    finally:
        if tmp is not None and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
