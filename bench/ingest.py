"""End-to-end OTLP/HTTP log ingest: a separate load-generator process against a fresh `ferry run`.

Prints records/s from first send to all-queryable, CPU-seconds per million records, and peak RSS.
Usage: python bench/ingest.py [--seconds 60] [--batch 5000] [--conns 4] [--workers 1] [--receivers 1]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from bench import _overrides as overrides  # noqa: E402
from ferry.testing import FerryProcess  # noqa: E402
from ferry.testing.otlp import logs_request  # noqa: E402

WORDS = "payment checkout user order cache db timeout retry refused accepted PaymentService SD500 Wi-Fi".split()


def _payloads(batch: int, n: int) -> list[bytes]:
    out = []
    for p in range(n):
        bodies = [
            f"{WORDS[(i + p) % len(WORDS)]} request {p}-{i} took {(i * 7) % 900} ms for user u{(i * 13) % 5000} "
            f"on /api/v1/{WORDS[(i * 3) % len(WORDS)]}"
            for i in range(batch)
        ]
        out.append(logs_request(bodies, service=f"svc-{p % 8}", attrs={"env": "bench", "region": "eu-1"}))
    return out


def _unique_suffix(n: int) -> bytes:
    """A serialized ExportLogsServiceRequest holding one empty resource tagged `n`.

    Concatenated protobuf messages merge, so payload + suffix is a distinct request with the same
    records: ferry derives batch ids from request bytes and would rightly drop exact repeats.
    """
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    req = ExportLogsServiceRequest()
    req.resource_logs.add().resource.attributes.append(KeyValue(key="bench.seq", value=AnyValue(int_value=n)))
    return req.SerializeToString()


def _sender(url: str, payloads: list[bytes], seconds: float, conns: int, q: mp.Queue) -> None:  # type: ignore[type-arg]
    import threading

    sent = [0] * conns
    refused = [0] * conns
    stop = time.monotonic() + seconds

    def worker(k: int) -> None:
        with httpx.Client(timeout=30) as c:
            i = k
            while time.monotonic() < stop:
                body = payloads[i % len(payloads)] + _unique_suffix(i)
                r = c.post(url, content=body, headers={"content-type": "application/x-protobuf"})
                if r.status_code == 200:
                    sent[k] += 1
                else:
                    refused[k] += 1
                    time.sleep(float(r.headers.get("Retry-After", "0.2")) / 10)
                i += conns

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    q.put((sum(sent), sum(refused)))


def _procs_of(supervisor: int) -> list[int]:
    """The supervisor's children: every role process and the nats-server."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                continue
            if ppid == supervisor:
                pids.append(int(d.name))
    return pids


def _role(pid: int) -> str:
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    return " ".join(argv[-3:-1]) if "ferry.runtime.child" in argv else "nats-server"


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _hwm_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--workers", type=int, default=1, help="parser processes")
    ap.add_argument("--receivers", type=int, default=1, help="receiver processes")
    ap.add_argument("--insert-rows", type=int, default=None, help="writer.max_rows (rows per store insert)")
    ap.add_argument("--insert-wait", type=float, default=1.0, help="writer.max_wait_s")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra ferry config, dotted key (e.g. store.index_after_s=0); repeatable")
    args = ap.parse_args()
    config = overrides.apply(
        {"parser": {"workers": args.workers}, "receivers": {"workers": args.receivers},
         "pipeline": {"stages": {"writer": {"max_wait_s": args.insert_wait,
                                            **({"max_rows": args.insert_rows} if args.insert_rows else {})}}}},
        args.set,
    )

    tmp = Path(tempfile.mkdtemp(prefix="ferry-bench-"))
    f = FerryProcess(tmp / "data", config=config).start()
    try:
        pids = _procs_of(f.proc.pid)  # type: ignore[union-attr]
        cpu0 = {p: _cpu_s(p) for p in pids}
        payloads = _payloads(args.batch, 16)
        q: mp.Queue = mp.Queue()  # type: ignore[type-arg]
        t0 = time.monotonic()
        sender = mp.Process(target=_sender, args=(f"{f.otlp_http}/v1/logs", payloads, args.seconds, args.conns, q))
        sender.start()
        sent_batches, refused = q.get()
        sender.join()
        t_sent = time.monotonic() - t0
        want = sent_batches * args.batch
        while f.sql_count("logs") < want:
            time.sleep(0.2)
            if time.monotonic() - t0 > args.seconds * 10:
                raise SystemExit(f"only {f.sql_count('logs')} of {want} records queryable")
        t_done = time.monotonic() - t0
        cpu = sum(_cpu_s(p) - cpu0.get(p, 0.0) for p in pids if Path(f"/proc/{p}").exists())
        rss = {p: _hwm_kb(p) for p in pids if Path(f"/proc/{p}").exists()}
        print(f"records sent+acked     {want:,} in {t_sent:.1f}s ({want / t_sent:,.0f}/s acked); {refused} requests refused (429/503)")
        print(f"end to end             {want / t_done:,.0f} records/s (first send -> all queryable in {t_done:.1f}s)")
        print(f"ferry CPU              {cpu:.1f} CPU-s = {cpu / (want / 1e6):.1f} CPU-s per million records")
        print(f"peak RSS               {sum(rss.values()) / 1024:,.0f} MB summed over {len(rss)} processes "
              f"(largest {max(rss.values()) / 1024:,.0f} MB)")
        for p in pids:
            if Path(f"/proc/{p}").exists():
                print(f"  {_role(p):<22} {_cpu_s(p) - cpu0.get(p, 0.0):6.1f} CPU-s  peak RSS {rss[p] / 1024:,.0f} MB")
        prom = httpx.get(f"{f.api}/metrics").text.splitlines()

        def total(prefix: str) -> float:
            return sum(float(line.rsplit(" ", 1)[1]) for line in prom if line.startswith(prefix))

        inserts, busy = total('ferry_store_insert_seconds_count{table="otel_logs"}'), total('ferry_store_insert_seconds_sum{table="otel_logs"}')
        print(f"store inserts          {inserts:.0f} x {want / max(inserts, 1):,.0f} rows, {busy / max(inserts, 1) * 1000:.0f} ms each; "
              f"inserting {busy / t_done:.0%} of the time; "
              f"{total('ferry_store_late_index_builds_total{'):.0f} late index builds (parts no merge reached in time)")
        print(f"config                 batch={args.batch} conns={args.conns} parser workers={args.workers} "
              f"receivers={args.receivers} insert rows={args.insert_rows or 'default'} wait={args.insert_wait}s"
              f"{' ' + ' '.join(args.set) if args.set else ''}")
    finally:
        f.stop()


if __name__ == "__main__":
    main()
