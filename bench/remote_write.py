"""remote_write ingest: the same sender against ferry and against Prometheus 2.42's own receiver, one run.

Pre-encoded snappy WriteRequests (SERIES series x SAMPLES samples each, timestamps rising per series)
posted from THREADS threads; a sample counts once its request is answered 2xx, which for ferry is once
it is durable on the bus. ferry runs WORKERS ingest processes (`receivers.workers`, sharing the port);
its store writer runs alongside, as it would. Each of ROUNDS rounds sends later samples of the same
series to both; prints samples/s of each per round with the CPU its server's processes spent, the
medians and their ratio ferry/Prometheus. For ferry it also prints how long until every sample sent
was in the store: the rate its whole pipeline sustains, not only its receivers.

    .venv/bin/python bench/remote_write.py [--series 2000] [--samples 5] [--requests 20] [--threads 4]
                                           [--workers 1] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cramjam
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import load_avg  # noqa: E402
from ferry.receivers.prometheus import proto  # noqa: E402
from ferry.testing import FerryProcess, free_port  # noqa: E402

SNAPPY = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
          "X-Prometheus-Remote-Write-Version": "0.1.0"}
_UNPACKED = Path(__file__).resolve().parents[1] / ".cache/peers/bin/prometheus"


def requests_for(thread: int, series: int, samples: int, count: int, start_ms: int) -> list[bytes]:
    """`count` requests for this thread's own series, each `samples` later points of every series."""
    out = []
    for r in range(count):
        req = proto.WriteRequest()
        for s in range(series):
            ts = req.timeseries.add()
            ts.labels.add(name="__name__", value=f"bench_metric_{s % 50}")
            ts.labels.add(name="instance", value=f"host-{thread}-{s // 50}:9100")
            ts.labels.add(name="job", value="bench")
            for k in range(samples):
                ts.samples.add(value=float(r * samples + k + s), timestamp=start_ms + (r * samples + k) * 1000)
        out.append(bytes(cramjam.snappy.compress_raw(req.SerializeToString())))
    return out


def cpu_by_process(root: int) -> dict[str, float]:
    """CPU seconds (user + system) so far of `root` and every process under it, by what it runs:
    a ferry role (`ingest 0`, `store 0`, ...) or the program's name (nats-server, prometheus)."""
    hz = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                parent[int(d)] = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    out: dict[str, float] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        todo += [p for p, pp in parent.items() if pp == pid]
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
        except OSError:
            continue
        name = " ".join(argv[-2:]) if "ferry.runtime.child" in argv else Path(argv[0]).name if argv else "?"
        out[name] = out.get(name, 0.0) + (int(stat[11]) + int(stat[12])) / hz
    return out


def rounds_of(a: argparse.Namespace, start_ms: int) -> list[list[list[bytes]]]:
    """Per round, per thread: its requests; each round's samples come after the previous round's."""
    span_ms = a.requests * a.samples * 1000
    return [[requests_for(i, a.series, a.samples, a.requests, start_ms + r * span_ms) for i in range(a.threads)]
            for r in range(a.rounds)]


Run = tuple[float, int, dict[int, int], dict[str, float], str]  # seconds, samples, answers, CPU s, load


def run_rounds(url: str, rounds: list[list[list[bytes]]], per_request: int, server_pid: int) -> list[Run]:
    """Each round: the first request of every thread unmeasured (a warm-up), then the rest measured,
    with the CPU seconds the server's processes spent meanwhile."""
    out = []
    for bodies in rounds:
        send(url, [b[:1] for b in bodies], per_request)
        before = cpu_by_process(server_pid)
        secs, samples, statuses = send(url, [b[1:] for b in bodies], per_request)
        after = cpu_by_process(server_pid)
        cpu = {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0) >= 0.005}
        out.append((secs, samples, statuses, cpu, load_avg()))
    return out


def send(url: str, bodies: list[list[bytes]], per_request: int) -> tuple[float, int, dict[int, int]]:
    """(seconds, samples acknowledged, answers by status) for every thread posting its bodies."""
    ok = [0] * len(bodies)
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def run(i: int) -> None:
        with httpx.Client(timeout=60) as c:
            for body in bodies[i]:
                while True:
                    r = c.post(url, content=body, headers=SNAPPY)
                    with lock:
                        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                    if r.status_code in (429, 503):  # what Prometheus does: back off, same request again
                        time.sleep(float(r.headers.get("Retry-After", "1")))
                        continue
                    if 200 <= r.status_code < 300:
                        ok[i] += per_request
                    break

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(bodies))]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, sum(ok), statuses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=2000)
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--requests", type=int, default=20, help="requests per thread")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--workers", type=int, default=1, help="ferry ingest processes (receivers.workers)")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    prometheus = str(_UNPACKED) if _UNPACKED.exists() else shutil.which("prometheus")
    if prometheus is None:
        raise SystemExit("prometheus not found (scripts/test unpacks it into .cache/peers/bin)")
    per_request = a.series * a.samples
    # Within Prometheus' window of accepted samples (the head's last hour), every round included.
    start_ms = int(time.time() * 1000) - 50 * 60 * 1000
    if (a.rounds * a.requests * a.samples) > 2400:
        raise SystemExit("rounds x requests x samples spans more than 40 min of sample time: use fewer")
    print(f"encoding {a.rounds} rounds of {a.threads} x {a.requests} requests of {a.series} series x {a.samples} samples ...")
    rounds = rounds_of(a, start_ms)
    mb = sum(len(b) for t in rounds[0] for b in t) / 1e6
    print(f"  per round {mb:.1f} MB snappy, {per_request * a.requests * a.threads:,} samples "
          f"({per_request * (a.requests - 1) * a.threads:,} measured)")

    with tempfile.TemporaryDirectory(prefix="ferry-bench-rw-") as tmp:
        results = {}
        config = {"receivers": {"workers": a.workers}}
        f = FerryProcess(Path(tmp) / "ferry", config=config).start()
        try:
            assert f.proc is not None
            def points() -> int:
                return int(f.get("/api/v1/status")["stored"]["metric_points"])

            before = points()
            t0 = time.perf_counter()
            results[f"ferry ({a.workers} ingest)"] = run_rounds(f.remote_write_url, rounds, per_request, f.proc.pid)
            acked = time.perf_counter() - t0
            sent = a.rounds * a.threads * a.requests * per_request
            f.wait_for(lambda: points() - before >= sent, timeout=600, interval=0.1)
            stored = time.perf_counter() - t0
            print(f"ferry: {sent:,} samples answered within {acked:.2f} s, all in the store after {stored:.2f} s "
                  f"= {sent / stored:,.0f} samples/s through the whole pipeline")
        finally:
            f.stop()
        port = free_port()
        (Path(tmp) / "p.yml").write_text("global: {scrape_interval: 1m}\n")
        prom = subprocess.Popen(
            [prometheus, f"--config.file={Path(tmp) / 'p.yml'}", f"--storage.tsdb.path={Path(tmp) / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--web.enable-remote-write-receiver"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}/api/v1/write"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/-/ready", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            results["prometheus"] = run_rounds(url, rounds, per_request, prom.pid)
        finally:
            prom.terminate()
            prom.wait(30)

    rates, cpus = {}, {}
    for name, runs in results.items():
        rates[name] = [samples / secs for secs, samples, *_ in runs]
        cpus[name] = [sum(cpu.values()) / samples * 1e6 for _, samples, _, cpu, _ in runs]
        for i, (secs, samples, statuses, cpu, load) in enumerate(runs):
            print(f"{name:18s} round {i + 1}: {samples:>9,} samples in {secs:6.2f} s = {samples / secs:>12,.0f} "
                  f"samples/s  answers {statuses}  load {load}")
            per_m = {k: v / samples * 1e6 for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])}
            print(f"{'':18s}   server CPU s per million samples: {sum(per_m.values()):.2f} = "
                  + ", ".join(f"{k} {v:.2f}" for k, v in per_m.items()))
    (ferry, prom), (ferry_cpu, prom_cpu) = rates.values(), cpus.values()
    plural = "es" if a.workers > 1 else ""
    # The rounds of the two do not run at once, so medians are compared, not round against round.
    print(f"median: ferry ({a.workers} ingest process{plural}) {statistics.median(ferry):,.0f} samples/s, "
          f"Prometheus {statistics.median(prom):,.0f}: ratio ferry/Prometheus = "
          f"{statistics.median(ferry) / statistics.median(prom):.2f}")
    # CPU per sample hardly moves with what else runs on the machine, unlike samples/s.
    print(f"server CPU s per million samples, median: ferry {statistics.median(ferry_cpu):.2f}, "
          f"Prometheus {statistics.median(prom_cpu):.2f}")


if __name__ == "__main__":
    main()
