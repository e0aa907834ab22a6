"""Throughput of the vectorised syslog parser on one core, in lines per second.

Prints rates for 50,000 RFC 5424 lines (nil SD, then all with SD), RFC 3164 lines and loghub Linux.
"""

from __future__ import annotations

import os

# One polars thread, so the figure is per core whatever the machine.
os.environ.setdefault("POLARS_MAX_THREADS", "1")

import datetime as dt  # noqa: E402
import time  # noqa: E402

import pyarrow as pa  # noqa: E402

from ferry.schema.tables import RAW_LINES  # noqa: E402
from ferry.stages.parser.syslog import parse_syslog  # noqa: E402
from ferry.testing.datasets import loghub  # noqa: E402

N = 50_000


def raw_table(lines: list[str]) -> pa.Table:
    now = dt.datetime.now(dt.UTC)
    n = len(lines)
    return pa.table(
        {
            "ReceivedAt": pa.array([now] * n, pa.timestamp("ns", tz="UTC")),
            "Peer": ["192.0.2.7:51514"] * n,
            "Transport": ["udp"] * n,
            "Line": lines,
        },
        schema=RAW_LINES,
    )


def rate(name: str, table: pa.Table, repeat: int = 5) -> None:
    parse_syslog(table)  # warm-up: regex compilation and first-call allocations
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        parse_syslog(table)
        best = min(best, time.perf_counter() - start)
    print(f"{name:<28} {table.num_rows:>7} lines  {table.num_rows / best:>12,.0f} lines/s")


def main() -> None:
    rfc5424 = [
        f"<{(i % 24) * 8 + i % 8}>1 2024-05-{1 + i % 28:02d}T12:{i % 60:02d}:{i % 60:02d}.{i % 1000:03d}Z "
        f"web-{i % 40}.example.com nginx {1000 + i % 5000} access - "
        f"GET /api/v1/items/{i} HTTP/1.1 200 {i % 9000} bytes in {i % 250} ms"
        for i in range(N)
    ]
    rfc3164 = [
        f"<{(i % 24) * 8 + i % 8}>May {1 + i % 28:>2} 12:{i % 60:02d}:{i % 60:02d} web-{i % 40} "
        f"sshd[{1000 + i % 5000}]: Accepted publickey for user{i % 97} from 198.51.100.{i % 255} port {i}"
        for i in range(N)
    ]
    with_sd = [
        f"<14>1 2024-05-01T12:00:{i % 60:02d}.{i % 1000:03d}Z web-{i % 40} app {i} ID47 "
        f'[exampleSDID@32473 iut="3" eventSource="App\\"lication" eventID="{i}"][meta seq="{i}"] msg {i}'
        for i in range(N)
    ]
    rate("RFC 5424 (SD '-')", raw_table(rfc5424))
    rate("RFC 5424 (every line SD)", raw_table(with_sd))
    rate("RFC 3164", raw_table(rfc3164))
    # A missing dataset stops the bench with loghub()'s error: a figure without it is not comparable.
    linux = loghub("Linux/Linux_2k.log").read_text(encoding="utf-8", errors="replace").splitlines()
    rate("loghub Linux (no PRI)", raw_table(linux))
    rate("loghub Linux x25", raw_table(linux * 25))


if __name__ == "__main__":
    main()
