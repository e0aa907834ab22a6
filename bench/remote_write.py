"""remote_write ingest: the same sender against ferry and against Prometheus 2.42's own receiver, one run.

Pre-encoded snappy WriteRequests (SERIES series x SAMPLES samples each, timestamps rising per series)
posted from THREADS threads; a sample counts once its request is answered 2xx, which for ferry is once
it is durable on the bus. Prints samples/s of each and the ratio ferry/Prometheus.

    .venv/bin/python bench/remote_write.py [--series 2000] [--samples 5] [--requests 20] [--threads 4]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import cramjam
import httpx

from ferry.receivers.prometheus import proto
from ferry.testing import FerryProcess, free_port

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
    a = ap.parse_args()
    prometheus = str(_UNPACKED) if _UNPACKED.exists() else shutil.which("prometheus")
    if prometheus is None:
        raise SystemExit("prometheus not found (scripts/test unpacks it into .cache/peers/bin)")
    per_request = a.series * a.samples
    start_ms = int(time.time() * 1000) - 50 * 60 * 1000  # within Prometheus' 1 h window of accepted samples
    print(f"encoding {a.threads} x {a.requests} requests of {a.series} series x {a.samples} samples ...")
    bodies = [requests_for(i, a.series, a.samples, a.requests, start_ms) for i in range(a.threads)]
    mb = sum(len(b) for t in bodies for b in t) / 1e6
    print(f"  {mb:.1f} MB snappy, {per_request * a.requests * a.threads:,} samples")

    with tempfile.TemporaryDirectory(prefix="ferry-bench-rw-") as tmp:
        results = {}
        f = FerryProcess(Path(tmp) / "ferry").start()
        try:
            send(f.remote_write_url, [b[:1] for b in bodies], per_request)  # warm-up (also primes the decode path)
            results["ferry"] = send(f.remote_write_url, [b[1:] for b in bodies], per_request)
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
            send(url, [b[:1] for b in bodies], per_request)
            results["prometheus"] = send(url, [b[1:] for b in bodies], per_request)
        finally:
            prom.terminate()
            prom.wait(30)

    rate = {}
    for name, (secs, samples, statuses) in results.items():
        rate[name] = samples / secs
        print(f"{name:10s} {samples:>10,} samples in {secs:6.2f} s = {rate[name]:>12,.0f} samples/s  answers {statuses}")
    print(f"ratio ferry/Prometheus = {rate['ferry'] / rate['prometheus']:.2f}")


if __name__ == "__main__":
    main()
