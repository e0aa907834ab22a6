"""Syslog TCP ingest throughput: a fresh `ferry run` against a private rsyslogd and syslog-ng (TCP in -> file).

Sends the same N distinct octet-counted RFC 5424 lines to each in turn; prints lines/s, CPU, peak RSS, ferry's ratios and goals.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from bench import _overrides as overrides  # noqa: E402
from ferry.config.model import SyslogConfig, WriterConfig  # noqa: E402
from ferry.testing import FerryProcess, free_port  # noqa: E402
from ferry.testing.datasets import loghub  # noqa: E402
from ferry.testing.peers import start_syslog_ng, syslog_ng_binary  # noqa: E402

SOURCES = ["Linux/Linux_2k.log", "OpenSSH/OpenSSH_2k.log"]
# "Jun 14 15:16:01 combo sshd(pam_unix)[19939]: message" -> app, pid, message
_RAW = re.compile(r"^\w{3}\s+\d+\s+[\d:]+\s+\S+\s+([^\s\[:]+)(?:\[(\d+)\])?:\s?(.*)$")
CHUNK = 256 * 1024
SAMPLES = 8


# --- workload -----------------------------------------------------------------------------------


def load_bodies() -> list[tuple[str, str, str]]:
    """(app, procid, message) for every parseable line of the loghub Linux and OpenSSH samples."""
    out: list[tuple[str, str, str]] = []
    for name in SOURCES:
        for raw in loghub(name).read_text(errors="replace").splitlines():
            m = _RAW.match(raw)
            if m and m.group(3).strip():
                app = re.sub(r"[^\x21-\x7e]", "_", m.group(1))[:48]
                out.append((app, m.group(2) or "-", m.group(3).strip()))
    if not out:
        raise SystemExit(f"no usable lines in {SOURCES}")
    return out


def make_lines(n: int, seed: int = 5424) -> list[bytes]:
    """N distinct RFC 5424 messages (no framing); message i ends in the token `seq=i`."""
    rng = random.Random(seed)
    bodies = load_bodies()
    hosts = [f"{kind}-{i:02d}.{dc}.example.net" for kind in ("web", "db", "cache", "auth", "edge")
             for i in range(1, 9) for dc in ("fra1", "ams2")]
    msgids = ["-"] * 6 + ["AUTH", "SESS", "ID47", "PAM", "NET", "AUDIT"]
    facilities = [4, 10, 3, 1, 16, 17, 18, 23]  # auth, authpriv, daemon, user, local0-2, local7
    severities = [6] * 8 + [5] * 3 + [4] * 3 + [3] * 2 + [7] * 2 + [2]
    base = datetime.now(UTC) - timedelta(minutes=5)
    out: list[bytes] = []
    for i in range(n):
        app, pid, msg = bodies[rng.randrange(len(bodies))]
        host = hosts[rng.randrange(len(hosts))]
        pri = facilities[rng.randrange(len(facilities))] * 8 + severities[rng.randrange(len(severities))]
        procid = pid if pid != "-" and rng.random() < 0.8 else str(rng.randint(100, 65000))
        ts = (base + timedelta(microseconds=i * 400)).isoformat(timespec="microseconds").replace("+00:00", "Z")
        r = rng.random()
        if r < 0.15:
            sd = f'[origin ip="10.{i % 250}.{(i >> 8) % 250}.{rng.randint(1, 254)}" software="{app}"]'
        elif r < 0.25:
            sd = (f'[exampleSDID@32473 iut="{rng.randint(1, 9)}" eventSource="{app}" eventID="{1000 + i % 97}"]'
                  f'[meta sequenceId="{i}"]')
        else:
            sd = "-"
        line = f"<{pri}>1 {ts} {host} {app} {procid} {msgids[rng.randrange(len(msgids))]} {sd} {msg} seq={i}"
        out.append(line.encode())
    return out


def octet_counted(lines: list[bytes]) -> bytes:
    """RFC 6587 octet-counting framing: `LEN SP MSG` back to back."""
    return b"".join(b"%d %s" % (len(x), x) for x in lines)


# --- sender -------------------------------------------------------------------------------------


def _send(port: int, payload: bytes, q: Any) -> None:
    """Runs in a forked process: one TCP connection, sendall in chunks, report monotonic start/end
    and the CPU it used (the sender shares the two cores with the receiver under test)."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
        view = memoryview(payload)
        t0 = time.monotonic()
        for off in range(0, len(view), CHUNK):
            s.sendall(view[off : off + CHUNK])
        t1 = time.monotonic()
        s.shutdown(socket.SHUT_WR)
    r = resource.getrusage(resource.RUSAGE_SELF)
    q.put((t0, t1, r.ru_utime + r.ru_stime))


def start_sender(port: int, payload: bytes) -> tuple[mp.process.BaseProcess, Any]:
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_send, args=(port, payload, q), daemon=True)
    p.start()
    return p, q


# --- process memory ---------------------------------------------------------------------------------


def vm_hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _stat(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return ["0"] * 13


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, seconds."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of a live process by thread name (chDB names its threads by job: QueryPipeline
    for inserts, MergeMutate for merges), digits stripped so pool members add up."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            head, _, rest = (task / "stat").read_text().partition(" (")
            name, _, fields = rest.rpartition(")")
        except OSError:
            continue
        name = name.rstrip("0123456789:_-") or "unnamed"
        f = fields.split()
        out[name] = out.get(name, 0.0) + (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    return out


def minor_faults(pid: int) -> int:
    """Page faults served without I/O: each one zeroes a fresh page, which is where memory an
    allocator gave back to the kernel and takes again shows up as CPU."""
    return int(_stat(pid)[7])


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def ferry_processes(supervisor: int) -> dict[str, int]:
    """label -> pid for the supervisor's role processes and its nats-server."""
    out: dict[str, int] = {}
    for pid in children(supervisor):
        argv = cmdline(pid)
        if "ferry.runtime.child" in argv:
            i = argv.index("ferry.runtime.child")
            out[f"{argv[i + 1]}-{argv[i + 2]}"] = pid
        elif argv and "nats-server" in os.path.basename(argv[0]):
            out["nats-server"] = pid
    return out


# --- runs ---------------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    lines: int = 0
    seconds: float = 0.0
    send_seconds: float = 0.0
    sender_cpu_s: float = 0.0
    wire_bytes: int = 0
    rss_kb: dict[str, int] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    milestones: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.lines / self.seconds if self.seconds else 0.0

    @property
    def mbps(self) -> float:
        return self.wire_bytes / 1e6 / self.seconds if self.seconds else 0.0


def wait_port(port: int, proc: subprocess.Popen[bytes], name: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not open its port") from None
            time.sleep(0.05)


def _file_lines(path: Path, want: int, timeout: float, name: str, pos: int = 0,
                seen: int = 0) -> tuple[int, int, float]:
    """Follow `path` until it holds `want` lines: (lines, bytes read, monotonic time it got there)."""
    deadline = time.monotonic() + timeout
    while seen < want:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} wrote {seen}/{want} lines within {timeout:.0f}s")
        if path.exists():
            with open(path, "rb") as f:
                f.seek(pos)
                chunk = f.read()
            pos += len(chunk)
            seen += chunk.count(b"\n")
            if seen >= want:
                break
        time.sleep(0.02)
    return seen, pos, time.monotonic()


def _time_file_peer(res: Result, proc: subprocess.Popen[bytes], label: str, port: int, out: Path,
                    payload: bytes, n: int, timeout: float, warmup: bytes, w: int) -> Result:
    """Send the workload to a peer daemon that writes one line per message to `out`; its clock stops
    when the file holds every line. Stops the daemon on the way out."""
    sender: mp.process.BaseProcess | None = None
    try:
        wait_port(port, proc, label)
        seen, pos = 0, 0
        if w:
            warm, wq = start_sender(port, warmup)
            seen, pos, _ = _file_lines(out, w, timeout, label)
            wq.get(timeout=30)
            warm.join()
        cpu0 = cpu_seconds(proc.pid)
        sender, q = start_sender(port, payload)
        seen, pos, t_done = _file_lines(out, w + n, timeout, label, pos, seen)
        t0, t1, res.sender_cpu_s = q.get(timeout=30)
        res.lines, res.seconds, res.send_seconds = seen - w, t_done - t0, t1 - t0
        res.rss_kb[label] = vm_hwm_kb(proc.pid)
        res.cpu_s[label] = cpu_seconds(proc.pid) - cpu0
        # Every line once, not merely N newlines: the exact count after the sender is done and the
        # daemon had a moment to write any duplicate, and sampled seq tokens (not timed).
        sender.join(30)
        time.sleep(0.5)
        text = out.read_bytes()
        if (count := text.count(b"\n")) != w + n:
            raise RuntimeError(f"{label} output holds {count} lines, expected {w + n}")
        for i in random.Random(1).sample(range(n), min(SAMPLES, n)):
            if b" seq=%d\n" % i not in text:
                raise RuntimeError(f"{label} output lacks seq={i}")
        res.notes.append(f"output file {out.stat().st_size / 1e6:.1f} MB, exactly {w + n:,} lines, "
                         f"{SAMPLES} sampled seq tokens found")
        return res
    finally:
        if sender is not None and sender.is_alive():
            sender.kill()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run_rsyslog(work: Path, payload: bytes, n: int, timeout: float, warmup: bytes, w: int) -> Result:
    res = Result("rsyslog", wire_bytes=len(payload))
    port = free_port()
    out = work / "messages.log"
    spool = work / "spool"
    spool.mkdir(parents=True)
    conf = work / "rsyslog.conf"
    conf.write_text(
        f"""global(workDirectory="{spool}")
module(load="imtcp")
input(type="imtcp" port="{port}" address="127.0.0.1" ruleset="bench")
ruleset(name="bench") {{
  action(type="omfile" file="{out}" template="RSYSLOG_FileFormat")
}}
"""
    )
    proc = subprocess.Popen(["rsyslogd", "-n", "-f", str(conf), "-i", str(work / "rsyslog.pid")],
                            stdout=open(work / "rsyslogd.out", "wb"), stderr=subprocess.STDOUT)
    return _time_file_peer(res, proc, "rsyslogd", port, out, payload, n, timeout, warmup, w)


# syslog-ng's own defaults read 10 messages per wakeup (log-fetch-limit) and, under flow control,
# let a connection have log-iw-size / max-connections = 10 unwritten messages: ~200 k lines/s here.
# Its administration guide tells whoever expects bursts to raise both; the tuned run does, to the
# sizes that stop mattering on this workload (larger windows measured no faster).
SYSLOG_NG_TUNED = "log-iw-size(100000) log-fetch-limit(1000)"


def run_syslog_ng(work: Path, payload: bytes, n: int, timeout: float, warmup: bytes, w: int,
                  tuned: bool) -> Result:
    res = Result("syslog-ng (tuned)" if tuned else "syslog-ng (defaults)", wire_bytes=len(payload))
    port = free_port()
    out = work / "messages.log"
    # Debian's shipped options (no DNS lookups, one host name, no stats lines in the output); the
    # syslog() source reads RFC 6587 octet counting and RFC 5424 headers. flow-control makes a full
    # file writer slow the reader rather than drop, as rsyslog's imtcp does, so both keep every line.
    conf = f"""@version: 3.38
options {{ stats-freq(0); use-dns(no); dns-cache(no); keep-hostname(yes); chain-hostnames(no); }};
source s_bench {{ syslog(ip("127.0.0.1") port({port}) transport("tcp") {SYSLOG_NG_TUNED if tuned else ""}); }};
destination d_file {{ file("{out}"); }};
log {{ source(s_bench); destination(d_file); flags(flow-control); }};
"""
    work.mkdir(parents=True)
    proc = start_syslog_ng(conf, work, stdout=open(work / "syslog-ng.out", "wb"))
    if tuned:
        res.notes.append(f"source options {SYSLOG_NG_TUNED}")
    return _time_file_peer(res, proc, "syslog-ng", port, out, payload, n, timeout, warmup, w)


def _profile(pids: dict[str, int], seconds: int, outdir: Path) -> list[subprocess.Popen[bytes]]:
    """py-spy (Python frames) per ferry process; with FERRY_BENCH_PERF=1, `perf record` instead,
    which also sees chDB's native threads (read with `perf report -i DIR/store-0.data`);
    FERRY_BENCH_PERF_ARGS replaces its default `-F 499 -g` (e.g. `-e page-faults --call-graph dwarf`)."""
    outdir.mkdir(parents=True, exist_ok=True)
    native = os.environ.get("FERRY_BENCH_PERF") == "1"
    spies = []
    for label, pid in pids.items():
        if label == "nats-server" and not native:
            continue
        perf_args = os.environ.get("FERRY_BENCH_PERF_ARGS", "-F 499 -g").split()
        cmd = (["perf", "record", *perf_args, "-p", str(pid), "-o", str(outdir / f"{label}.data"),
                "--", "sleep", str(seconds)] if native else
               ["py-spy", "record", "--pid", str(pid), "-d", str(seconds), "-r", "50", "-f", "raw",
                "-o", str(outdir / f"{label}.txt")])
        spies.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return spies


# /metrics series whose reaching N marks a pipeline stage as done with the whole workload.
_MILESTONES = {
    "received by ingest": ("ferry_received_records_total", 'component="syslog"'),
    "parsed": ("ferry_stage_records_total", 'stage="parser"'),
    "written to store": ("ferry_written_rows_total", 'table="otel_logs"'),
}


def _counters(text: str) -> dict[str, float]:
    """Each _MILESTONES counter in a /metrics page, summed over series and processes."""
    out = dict.fromkeys(_MILESTONES, 0.0)
    for label, (name, selector) in _MILESTONES.items():
        for line in text.splitlines():
            if line.startswith(name + "{") and selector in line:
                out[label] += float(line.rpartition(" ")[2])
    return out


def _inserts(page: str) -> tuple[float, float]:
    """(inserts into otel_logs, seconds they took) from a /metrics page."""
    count, total = (sum(float(line.rpartition(" ")[2]) for line in page.splitlines()
                        if line.startswith(f'ferry_store_insert_seconds_{k}{{table="otel_logs"'))
                    for k in ("count", "sum"))
    return count, total


def run_ferry(work: Path, payload: bytes, n: int, workers: int, timeout: float,
              profile: tuple[Path, int] | None, settings: list[str], warmup: bytes, w: int) -> Result:
    res = Result(f"ferry (parser workers={workers})", wire_bytes=len(payload))
    # FerryProcess tunes batch waits down for tests; put back the shipped defaults.
    cfg = {
        "parser": {"workers": workers},
        "receivers": {"syslog": {"batch_wait_s": SyslogConfig().batch_wait_s}},
        "pipeline": {"stages": {w: {"max_wait_s": WriterConfig.model_fields["max_wait_s"].default} for w in ("writer", "siem_writer")}},
    }
    ferry = FerryProcess(work / "data", config=overrides.apply(cfg, settings))
    sender: mp.process.BaseProcess | None = None
    spies: list[subprocess.Popen[bytes]] = []
    try:
        ferry.start()
        assert ferry.proc is not None
        pids = ferry_processes(ferry.proc.pid)
        client = httpx.Client(base_url=ferry.api, timeout=30)
        base = dict.fromkeys(_MILESTONES, 0.0)
        if w:
            warm, wq = start_sender(ferry.syslog_port, warmup)
            ferry.wait_for(lambda: int(client.get("/api/v1/status").json()["stored"].get("logs", 0)) >= w, timeout)
            wq.get(timeout=30)
            warm.join()
            base = _counters(client.get("/metrics").text)
        inserts0 = _inserts(client.get("/metrics").text)
        cpu0 = {label: cpu_seconds(pid) for label, pid in pids.items()}
        faults0 = {label: minor_faults(pid) for label, pid in pids.items()}
        threads0 = {label: thread_cpu(pid) for label, pid in pids.items() if label.startswith("store")}
        sender, q = start_sender(ferry.syslog_port, payload)
        if profile is not None:
            spies = _profile(pids, profile[1], profile[0])
        # /api/v1/status costs the store ~10 ms of CPU per call (three count() queries), /metrics a
        # third of that: poll /metrics until the writer reports N rows, then confirm with status.
        stored, t_done, counts = 0, 0.0, dict.fromkeys(_MILESTONES, 0.0)
        deadline = time.monotonic() + timeout
        while stored < n:
            now = time.monotonic()
            if now > deadline:
                raise RuntimeError(f"ferry did not store {n} lines within {timeout:.0f}s: status {stored}, "
                                   f"/metrics {counts}\n{ferry.output()[-2000:]}")
            try:
                if "written to store" not in res.milestones:
                    counts = _counters(client.get("/metrics").text)
                    for label, value in counts.items():
                        if value - base[label] >= n:
                            res.milestones.setdefault(label, now)
                if "written to store" in res.milestones:
                    stored = int(client.get("/api/v1/status").json()["stored"].get("logs", 0)) - w
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            if stored >= n:
                t_done = time.monotonic()
                break
            time.sleep(0.05 if "written to store" in res.milestones else 0.1)
        cpu1 = {label: cpu_seconds(pid) for label, pid in pids.items()}
        res.faults = {label: minor_faults(pid) - faults0[label] for label, pid in pids.items()}
        for label, before in threads0.items():
            after = thread_cpu(pids[label])
            busy = sorted(((k, v - before.get(k, 0.0)) for k, v in after.items()), key=lambda kv: -kv[1])
            res.notes.append(f"{label} CPU s by thread: " + ", ".join(f"{k} {v:.2f}" for k, v in busy if v >= 0.01))
        t0, t1, res.sender_cpu_s = q.get(timeout=30)
        res.lines, res.seconds, res.send_seconds = stored, t_done - t0, t1 - t0
        res.milestones = {k: v - t0 for k, v in res.milestones.items()}
        res.cpu_s = {label: cpu1[label] - cpu0[label] for label in pids}
        for label, pid in sorted(pids.items()):
            res.rss_kb[label] = vm_hwm_kb(pid)
        inserts, busy = (a - b for a, b in zip(_inserts(client.get("/metrics").text), inserts0, strict=True))
        res.notes.append(f"store inserts: {inserts:.0f} x {stored / max(inserts, 1):,.0f} rows, "
                         f"{busy / max(inserts, 1) * 1000:.0f} ms each")
        # Queryable, not just counted: sampled seq tokens are each found exactly once (not timed).
        tv = time.monotonic()
        for i in random.Random(1).sample(range(n), min(SAMPLES, n)):
            rows = client.get("/api/v1/logs", params={"q": f"seq={i}", "since": "1d", "limit": 10}).json()["logs"]
            if len(rows) != 1 or not rows[0]["body"].endswith(f" seq={i}"):
                raise RuntimeError(f"search for seq={i} returned {len(rows)} rows: {rows[:2]}")
        res.notes.append(f"{SAMPLES} sampled seq tokens each found once via /api/v1/logs "
                         f"({(time.monotonic() - tv) / SAMPLES * 1000:.0f} ms/query)")
        if stored != n:
            res.notes.append(f"WARNING: stored {stored} rows for {n} lines sent")
        client.close()
        return res
    finally:
        for spy in spies:
            try:
                spy.wait(profile[1] + 30 if profile else 1)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()
        if sender is not None and sender.is_alive():
            sender.kill()
        ferry.stop()


# --- report -------------------------------------------------------------------------------------


# ferry's goals against each peer (ferry issue 10): its lines/s over the peer's, on the same traffic.
GOALS = {"syslog-ng": 1.0, "rsyslog": 0.3}


def _goal(name: str) -> float | None:
    return next((g for peer, g in GOALS.items() if name.startswith(peer)), None)


def report(results: list[Result], n: int, payload: bytes, warmup: int) -> None:
    print(f"\nworkload: {n:,} distinct RFC 5424 lines, octet-counted TCP framing (RFC 6587), one connection, "
          f"{len(payload) / 1e6:.1f} MB on the wire, {len(payload) / n:.0f} B/frame")
    print("clock: from the sender's first byte until a peer's file holds N lines / ferry's status counts N rows")
    print("CPU-s/M: the receiver's own processes (ferry: all of them, nats-server included), not the sender's")
    if warmup:
        print(f"warm-up: {warmup:,} other lines sent to each receiver and stored first, untimed")
    for r in results:
        parts = ", ".join(f"{k} {v / 1024:.1f}" for k, v in sorted(r.rss_kb.items()))
        print(f"  {r.name} VmHWM MB: {parts}")
        cpu = ", ".join(f"{k} {v:.1f}" for k, v in sorted(r.cpu_s.items()))
        print(f"  {r.name} CPU s during the run: {cpu} (total {sum(r.cpu_s.values()):.1f}; the sender {r.sender_cpu_s:.1f})")
        if r.faults:
            faults = ", ".join(f"{k} {v / 1000:.0f}k" for k, v in sorted(r.faults.items()))
            print(f"  {r.name} minor page faults during the run: {faults}")
        if r.milestones:
            steps = ", ".join(f"{k} at {v:.1f}s" for k, v in sorted(r.milestones.items(), key=lambda kv: kv[1]))
            print(f"  {r.name} all {r.lines:,} lines {steps} (0.1 s polls of /metrics)")
        for note in r.notes:
            print(f"  {r.name}: {note}")
    ferry = next(r for r in results if r.name.startswith("ferry"))
    print(f"\n{'receiver':<28}{'lines':>9}{'seconds':>9}{'lines/s':>11}{'MB/s':>7}{'CPU-s/M':>9}{'RSS MB':>8}"
          f"{'ferry/this':>12}{'goal':>8}  verdict")
    for r in results:
        cpu_per_m = sum(r.cpu_s.values()) / r.lines * 1e6 if r.lines else 0.0
        rss = sum(r.rss_kb.values()) / 1024
        line = (f"{r.name:<28}{r.lines:>9,}{r.seconds:>9.2f}{r.rate:>11,.0f}{r.mbps:>7.2f}{cpu_per_m:>9.2f}"
                f"{rss:>8.0f}")
        goal = _goal(r.name)
        if r is not ferry and goal is not None and r.rate:
            ratio = ferry.rate / r.rate
            line += f"{ratio:>11.3f}x{f'>={goal:.1f}x':>8}  {'meets' if ratio >= goal else 'SHORT'}"
        print(line)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=500_000, help="distinct lines to send (default 500000)")
    ap.add_argument("--parser-workers", type=int, default=1, help="ferry config parser.workers (default 1)")
    ap.add_argument("--warmup", type=int, default=0, metavar="N",
                    help="first send N other lines to each receiver, untimed, so the timed run sees warm "
                         "processes (default 0: cold start, as the figures in docs/performance.md)")
    ap.add_argument("--keep", action="store_true", help="leave the temporary data dirs in place")
    ap.add_argument("--timeout", type=float, default=300.0, help="per-receiver limit, seconds (default 300)")
    ap.add_argument("--profile", metavar="DIR", type=Path,
                    help="py-spy record (raw) ferry's ingest/parser/store during the ferry run into DIR")
    ap.add_argument("--profile-seconds", type=int, default=15)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra ferry config, dotted key (e.g. writer.drained_wait_s=1); repeatable")
    args = ap.parse_args(argv)
    if shutil.which("rsyslogd") is None:
        print("rsyslogd not found", file=sys.stderr)
        return 2
    # syslog-ng is no system package here (it conflicts with rsyslog): without scripts/test's
    # unpacked copy the bench still measures ferry against rsyslog, and says what it left out.
    have_syslog_ng = syslog_ng_binary() is not None
    n = args.lines
    t = time.monotonic()
    lines = make_lines(n)
    if len(set(lines)) != n:
        raise RuntimeError("generated lines are not distinct")
    payload = octet_counted(lines)
    # Warm-up lines carry `wseq=` instead of `seq=`, so the timed run's spot checks never match them.
    warmup = octet_counted([x.replace(b" seq=", b" wseq=") for x in make_lines(args.warmup, seed=3164)]) if args.warmup else b""
    print(f"generated {n:,} lines in {time.monotonic() - t:.1f}s; e.g.\n  {lines[0].decode()}\n  {lines[7].decode()}")
    del lines
    load0 = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="ferry-bench-"))
    # SIGTERM becomes an exception so the finally blocks stop the peers, ferry and the sender.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        results = [run_rsyslog(tmp / "rsyslog", payload, n, args.timeout, warmup, args.warmup)]
        if have_syslog_ng:
            for tuned in (False, True):
                results.append(run_syslog_ng(tmp / f"syslog-ng-{'tuned' if tuned else 'defaults'}", payload, n,
                                             args.timeout, warmup, args.warmup, tuned))
        for r in results:
            print(f"{r.name}: {r.lines:,} lines in {r.seconds:.2f}s", flush=True)
        prof = (args.profile, args.profile_seconds) if args.profile else None
        results.append(run_ferry(tmp / "ferry", payload, n, args.parser_workers, args.timeout, prof, args.set,
                                 warmup, args.warmup))
        print(f"{results[-1].name}: {results[-1].lines:,} lines in {results[-1].seconds:.2f}s", flush=True)
        report(results, n, payload, args.warmup)
        if not have_syslog_ng:
            print("syslog-ng not measured: not found (scripts/test unpacks it into .cache/peers)")
        print(f"machine: {os.cpu_count()} CPUs, 1-min load average {load0:.2f} before, "
              f"{os.getloadavg()[0]:.2f} after (shared machine: expect run-to-run variance)")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
