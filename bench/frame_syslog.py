"""CPU cost of the TCP syslog framer alone (StreamFramer): lines/s and CPU µs per line for 500,000
generated RFC 5424 lines (~179 B) fed in 256 KiB reads, octet-counted and LF-framed."""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from types import ModuleType

from ferry.receivers.syslog import framing

CHUNK = 256 * 1024
FRAMING_PATH = "ferry/receivers/syslog/framing.py"


def make_lines(n: int) -> list[bytes]:
    """N distinct RFC 5424 lines, a quarter of them with structured data, ~179 bytes on average."""
    apps = ["sshd", "nginx", "postfix/smtpd", "kernel", "CRON", "dockerd", "systemd"]
    out = []
    for i in range(n):
        app = apps[i % len(apps)]
        sd = (
            f'[origin ip="10.{i % 250}.{(i >> 8) % 250}.{i % 254 + 1}" software="{app}"]'
            if i % 4 == 0
            else "-"
        )
        out.append(
            (
                f"<{(i * 7) % 192}>1 2024-05-{1 + i % 28:02d}T12:{i % 60:02d}:{(i // 60) % 60:02d}.{i % 1000000:06d}Z "
                f"web-{i % 40:02d}.fra1.example.net {app} {1000 + i % 50000} - {sd} "
                f"GET /api/v1/items/{i} HTTP/1.1 200 {i % 9000} bytes in {i % 250} ms ua=curl/8.5.0 req={i * 2654435761 % 2**32:08x} seq={i}"
            ).encode()
        )
    return out


def stream(lines: list[bytes], kind: str) -> bytes:
    if kind == "octet":
        return b"".join(b"%d %s" % (len(x), x) for x in lines)
    sep = b"\r\n" if kind == "crlf" else b"\n"
    return sep.join(lines) + sep


def load_revision(rev: str) -> ModuleType:
    """framing.py as of a git revision, to compare against (read-only `git show`)."""
    root = Path(__file__).resolve().parent.parent
    src = subprocess.run(
        ["git", "show", f"{rev}:{FRAMING_PATH}"], cwd=root, check=True, capture_output=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "framing_baseline.py"
    path.write_bytes(src)
    spec = importlib.util.spec_from_file_location("framing_baseline", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_once(mod: ModuleType, chunks: list[bytes], n: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) to frame every chunk on a fresh framer."""
    framer = mod.StreamFramer()
    got = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for chunk in chunks:
        got += len(framer.feed(chunk))
    got += len(framer.flush())
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if got != n:
        raise SystemExit(f"framer returned {got} lines, expected {n}")
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description="Time the TCP syslog framer alone.")
    ap.add_argument("--lines", type=int, default=500_000)
    ap.add_argument(
        "--repeat", type=int, default=3, help="runs per framer and framing (the machine may be shared)"
    )
    ap.add_argument("--framings", default="octet,lf", help="comma-separated: octet, lf, crlf")
    ap.add_argument(
        "--baseline", metavar="REV", help="also time framing.py from this git revision, e.g. HEAD~1"
    )
    args = ap.parse_args()

    lines = make_lines(args.lines)
    avg = sum(map(len, lines)) / len(lines)
    impls: list[tuple[str, ModuleType]] = [("current", framing)]
    if args.baseline:
        impls.insert(0, (args.baseline, load_revision(args.baseline)))
    print(
        f"{len(lines):,} lines, {avg:.0f} B avg, {CHUNK // 1024} KiB reads, best/median of {args.repeat} runs"
    )
    print(
        f"{'framing':<7} {'framer':<10} {'lines/s (best)':>15} {'CPU µs/line (best)':>19} {'(median)':>9}  runs (µs/line)"
    )
    for kind in args.framings.split(","):
        data = stream(lines, kind)
        chunks = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
        # Interleave the framers so a burst of load from a neighbour hits both alike.
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in impls}
        for _ in range(args.repeat):
            for name, mod in impls:
                runs[name].append(run_once(mod, chunks, len(lines)))
        for name, _ in impls:
            walls = [w for w, _ in runs[name]]
            cpus = [c * 1e6 / len(lines) for _, c in runs[name]]
            print(
                f"{kind:<7} {name:<10} {len(lines) / min(walls):>15,.0f} {min(cpus):>19.3f} "
                f"{statistics.median(cpus):>9.3f}  {' '.join(f'{c:.3f}' for c in cpus)}"
            )


if __name__ == "__main__":
    main()
