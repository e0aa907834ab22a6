"""Throughput of one parser stage with a five-transform chain (json, cast, enrich, redact, route) on
loghub-shaped JSON log records: records/s per process, CPU-s per million, and the cost of each step.

Runs the stage the way a parser process does (ParserStage._process on 64k-row batches), without the bus.
Goal (issue 10): >= 300,000 records/s per process.
"""

from __future__ import annotations

import argparse
import random
import resource
import time

import orjson
import pyarrow as pa

from ferry.bus import codec
from ferry.config.model import FerryConfig
from ferry.schema.tables import LOGS, conform
from ferry.stages.parser.stage import ParserStage
from ferry.testing.datasets import loghub
from ferry.transforms.chain import Chain, CompileContext

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
    stage._process("logging", [batch])  # warm-up: regex compilation, the json type cache
    t0, c0 = time.perf_counter(), cpu()
    for i in range(args.batches):
        outs = stage._process("logging", [codec.Batch(table, "logs", "otel_logs", "otlp", batch_id=f"b{i}")])
    wall, used = time.perf_counter() - t0, cpu() - c0
    n = args.rows * args.batches
    rate = n / wall
    print(f"parser with json, cast, enrich, redact, route: {rate:,.0f} records/s per process, "
          f"{used / n * 1e6:.2f} CPU-s per million ({n:,} records, {args.rows:,} a batch); goal >= {GOAL:,}: "
          f"{'met' if rate >= GOAL else 'short'} ({rate / GOAL:.2f}x)")
    print("outputs of the last batch: " + ", ".join(f"{o.topic} {o.batch.num_rows:,}" for o in outs))
    # Where the time goes: each transform alone, then the routes, on the same batch.
    from pydantic import TypeAdapter

    from ferry.transforms.config import Transform

    models = TypeAdapter(list[Transform]).validate_python(CHAIN)
    for m in models:
        chain = Chain.compile([m], CompileContext("bench", ("log_commit",)))
        chain.run(table).to_table()
        t = time.perf_counter()
        frame = chain.run(table)
        step = time.perf_counter() - t
        t = time.perf_counter()
        frame.to_table()
        fold = time.perf_counter() - t
        print(f"  {m.type:<10} {step / args.rows * 1e6:5.2f} us/record (+ {fold / args.rows * 1e6:.2f} to fold back to Arrow)")
    routes_only = ParserStage("log_parser", FerryConfig().pipeline.stages["log_parser"], cfg.pipeline)
    t = time.perf_counter()
    routes_only._process("logging", [batch])
    print(f"  {'route':<10} {(time.perf_counter() - t) / args.rows * 1e6:5.2f} us/record (the SIEM fork alone)")


if __name__ == "__main__":
    main()
