"""Throughput of one parser stage with a five-transform chain (json, cast, enrich, redact, route) on
loghub-shaped JSON log records: records/s per process, CPU-s per million, and the cost of each step.

Runs the stage the way a parser process does (ParserStage._process on 64k-row batches, allocators tuned
as runtime/child.py tunes them, batches arriving as the bus's LZ4 IPC payloads), without the bus; then
again with the outputs encoded for the bus, as the runner does. The per-step figures are CPU time (best
of 3, polars' threads included), steps run in turn on one frame as the chain runs them.
Goal (issue 10): >= 300,000 records/s per process.
"""

from __future__ import annotations

# As a parser process does (runtime/child.py), before polars and pyarrow load: freed batch memory is
# kept for the next batch instead of being faulted in again page by page.
from ferry.host.memory import tune_allocators

tune_allocators()

import argparse  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import orjson  # noqa: E402
import pyarrow as pa  # noqa: E402

from ferry.bus import codec  # noqa: E402
from ferry.config.model import FerryConfig  # noqa: E402
from ferry.schema.tables import LOGS, conform  # noqa: E402
from ferry.stages.parser.stage import ParserStage  # noqa: E402
from ferry.testing.datasets import loghub  # noqa: E402

GOAL = 300_000
CHAIN = [
    {"type": "json"},
    {"type": "cast", "fields": {"status": "int", "latency_ms": "float"}},
    {"type": "enrich", "static": {"region": "eu-west-1", "cluster": "prod-a"}},
    {"type": "redact"},
]


def records(n: int) -> pa.Table:
    """JSON bodies whose message is a real loghub line (OpenSSH and Linux), with the fields an app adds."""
    rnd = random.Random(7)
    lines = []
    for name in ("OpenSSH/OpenSSH_2k.log", "Linux/Linux_2k.log"):
        lines += (loghub() / name).read_text(errors="replace").splitlines()
    apps = ["sshd", "checkout", "payments", "su", "api"]
    bodies = [orjson.dumps({
        "msg": lines[i % len(lines)], "user": f"user{rnd.randrange(500)}", "status": str(rnd.choice([200, 200, 404, 500])),
        "latency_ms": f"{rnd.random() * 300:.2f}", "client": f"10.{i % 250}.{i % 7}.{i % 200}",
        **({"email": f"u{i}@example.com"} if i % 10 == 0 else {}),
    }).decode() for i in range(n)]
    now = pa.scalar(time.time_ns(), pa.timestamp("ns", tz="UTC"))
    svc = [apps[i % len(apps)] for i in range(n)]
    table = pa.table({
        "Timestamp": pa.array([now.value] * n, pa.timestamp("ns", tz="UTC")),
        "ServiceName": svc,
        "Body": bodies,
        "SeverityText": ["INFO"] * n,
        "SeverityNumber": pa.array([9] * n, pa.uint8()),
        "Source": ["otlp"] * n,
        "Tenant": ["default"] * n,
        "ResourceAttributes": pa.array([[("service.name", s), ("host.name", f"web-{i % 20}")] for i, s in enumerate(svc)],
                                       pa.map_(pa.string(), pa.string())),
    })
    return conform(table, LOGS)


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=64_000, help="rows per batch (a parser call)")
    ap.add_argument("--batches", type=int, default=8)
    args = ap.parse_args()
    table = records(args.rows)
    cfg = FerryConfig.model_validate({"pipeline": {"stages": {"log_parser": {"transforms": CHAIN}}}})
    stage = ParserStage("log_parser", cfg.pipeline.stages["log_parser"], cfg.pipeline)
    batch = codec.Batch(table, "logs", "otel_logs", "otlp", batch_id="bench")
    # Batches arrive from the bus as LZ4 IPC payloads (in the logs table's schema, as the OTLP receiver
    # publishes them), which the stage decodes.
    payload = batch.payload()

    def arrived(i: int) -> codec.Batch:
        return codec.Batch(None, "logs", "otel_logs", "otlp", batch_id=f"b{i}", payload=payload, rows=args.rows)

    stage._process("logging", [arrived(-1)])  # warm-up: regex compilation, the json type cache
    t0, c0 = time.perf_counter(), cpu()
    for i in range(args.batches):
        outs = stage._process("logging", [arrived(i)])
    wall, used = time.perf_counter() - t0, cpu() - c0
    n = args.rows * args.batches
    rate = n / wall
    print(f"parser with json, cast, enrich, redact, route: {rate:,.0f} records/s per process, "
          f"{used / n * 1e6:.2f} CPU-s per million ({n:,} records, {args.rows:,} a batch); goal >= {GOAL:,}: "
          f"{'met' if rate >= GOAL else 'short'} ({rate / GOAL:.2f}x)")
    print("outputs of the last batch: " + ", ".join(f"{o.topic} {o.batch.num_rows:,}" for o in outs))
    stage_cpu = used
    # The runner then encodes each output for the bus (outside the stage, in the same process).
    t0, c0 = time.perf_counter(), cpu()
    for i in range(args.batches):
        for o in stage._process("logging", [arrived(i)]):
            o.batch.payload()
    wall, used = time.perf_counter() - t0, cpu() - c0
    print(f"  with the outputs encoded for the bus: {n / wall:,.0f} records/s, {used / n * 1e6:.2f} CPU-s per million")
    # Where the time goes: each step of the chain in turn on one frame (as the stage runs them, so
    # redact sees the attributes json added), the fold back to Arrow, and the routes; CPU time, best
    # of 3 (polars' threads included, a loaded machine's waits not).
    from ferry.transforms.frame import Frame

    chain = stage.chain
    best: dict[str, float] = {}

    def clock(name: str, fn: Callable[[], object]) -> object:
        c = time.process_time()
        out = fn()
        best[name] = min(best.get(name, float("inf")), time.process_time() - c)
        return out

    for _ in range(3):
        b = arrived(0)
        frame = clock("decode", lambda b=b: Frame.from_table(b.table))
        assert isinstance(frame, Frame)
        for label, step in chain.steps:
            frame.label = label
            clock(label, lambda step=step, frame=frame: step(frame))
        clock("fold to Arrow", frame.to_table)
        clock("routes", lambda frame=frame: _routes(stage, frame))
    for name, secs in best.items():
        print(f"  {name:<14} {secs / args.rows * 1e6:5.2f} us/record")
    print(f"  {'sum':<14} {sum(best.values()) / args.rows * 1e6:5.2f} us/record, of {stage_cpu / n * 1e6:.2f} CPU-s per million "
          "in the timed loop (the rest: route masks, cutting the output batches)")


def _routes(stage: ParserStage, frame: object) -> None:
    """The stage's route predicates over the transformed frame, as _transform evaluates them."""
    import polars as pl

    from ferry.transforms.frame import Frame

    assert isinstance(frame, Frame)
    frame.df.select([r.matches(frame).fill_null(False).alias(f"r{i}") for i, r in enumerate(stage.routes)] or [pl.lit(True)])

if __name__ == "__main__":
    main()
