"""GET /api/v1/siem/events and `ferry query --siem`: security events searched like logs, over the
real Starlette app served over HTTP on a real chDB store filled through store.write_batches.

The store and app run in a child process (chDB allows one data path per process); `served_store`
is shared with test_related_api.py.
"""

from __future__ import annotations

import multiprocessing as mp
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest

from ferry.testing import free_port

S = 10**9
NOW = time.time_ns()


def log_rows(bodies: list[str], *, service: str = "sshd", ts_ns: int = NOW - 60 * S,
             attrs: list[dict[str, str]] | None = None) -> pa.Table:
    """LOGS-schema rows as the parser makes them (one second apart, oldest first)."""
    from ferry.schema.tables import LOGS, conform

    n = len(bodies)
    ts = pa.array([ts_ns + i * S for i in range(n)], pa.timestamp("ns", tz="UTC"))
    maps = pa.array([list((attrs[i] if attrs else {}).items()) for i in range(n)], pa.map_(pa.string(), pa.string()))
    return conform(pa.table({"Timestamp": ts, "IngestTime": ts, "Body": bodies, "ServiceName": [service] * n,
                             "LogAttributes": maps, "Source": ["syslog"] * n,
                             "Tenant": ["default"] * n}), LOGS)


def _serve(path: str, writes: list[tuple[str, str, pa.Table, bool]], port: int, answers: Any) -> None:
    """Child: open the store, write each (table, batch id, rows, redelivered) through write_batches,
    report the (written, skipped) pairs, then serve the API on 127.0.0.1:port until terminated."""
    import asyncio
    import socket

    from ferry.api.app import build_app
    from ferry.bus.codec import Batch
    from ferry.config.model import ApiConfig, RetentionConfig
    from ferry.host.http_server import http_server
    from ferry.host.sockets import listening
    from ferry.store.chdb_store import ChdbStore

    store = ChdbStore(Path(path), max_memory_bytes=2 * 1024**3)
    store.setup(RetentionConfig())
    results = [store.write_batches(table, [Batch(rows, "logs", table, "syslog", batch_id=bid, redelivered=again)])
               for table, bid, rows, again in writes]
    sock = listening(socket.SOCK_STREAM, "127.0.0.1", port)
    server = http_server(build_app(store, api=ApiConfig()), sock)

    async def run() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        answers.put(results)
        await task

    asyncio.run(run())


def served_store(tmp: Path, writes: list[tuple[str, str, pa.Table, bool]]) -> Iterator[tuple[str, list[Any]]]:
    """(API base URL, write results) of a child serving a store filled with `writes`."""
    ctx = mp.get_context("spawn")
    answers = ctx.Queue()
    port = free_port()
    child = ctx.Process(target=_serve, args=(str(tmp / "store"), writes, port, answers), daemon=True)
    child.start()
    try:
        results = answers.get(timeout=120)
        yield f"http://127.0.0.1:{port}", results
    finally:
        child.terminate()
        child.join(10)
        if child.is_alive():
            child.kill()


SSHD = [
    "Failed password for root from 203.0.113.7 port 4122 ssh2",
    "Accepted publickey for deploy from 198.51.100.4 port 50122 ssh2",
    "Invalid user admin from 203.0.113.7 port 4130",
    "pam_unix(sshd:auth): authentication failure; rhost=203.0.113.7 user=root",
]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[Any]]]:
    siem = log_rows(SSHD, attrs=[{"syslog.msgid": "auth"}] * len(SSHD))
    plain = log_rows(["GET /healthz 200", "Failed to open cache file"], service="web")
    writes = [
        ("siem_events", "siem-1", siem, False),
        ("siem_events", "siem-1", siem, True),  # a redelivery: skipped
        ("siem_events", "siem-1", siem, False),  # a second publish of the same batch: skipped by the ledger
        ("otel_logs", "logs-1", plain, False),
        ("otel_logs", "siem-1", siem, False),  # the fork: the same rows in the logs too, a batch of their own
    ]
    yield from served_store(tmp_path_factory.mktemp("siem"), writes)


def _get(base: str, path: str, **params: Any) -> httpx.Response:
    return httpx.get(base + path, params=params, timeout=30)


def _metric(base: str, handler: str, outcome: str) -> float:
    text = httpx.get(base + "/metrics", timeout=10).text
    want = f'ferry_api_requests_total{{handler="{handler}",outcome="{outcome}"}} '
    return next((float(line[len(want):]) for line in text.splitlines() if line.startswith(want)), 0.0)


def test_siem_batches_are_stored_exactly_once(api: tuple[str, list[Any]]) -> None:
    """write_batches into siem_events dedupes a redelivery and a re-publish, per table."""
    _, results = api
    assert results == [(4, 0), (0, 1), (0, 1), (2, 0), (4, 0)]


def test_siem_search_has_the_logs_shape_and_language(api: tuple[str, list[Any]]) -> None:
    """The same query language and answer as /api/v1/logs, over siem_events only."""
    base, _ = api
    r = _get(base, "/api/v1/siem/events", q="Failed", since="1d")
    assert r.status_code == 200
    siem = r.json()
    assert [x["body"] for x in siem["logs"]] == [SSHD[0]]  # the web line "Failed to open" is not a security event
    logs = _get(base, "/api/v1/logs", q="Failed", since="1d").json()
    assert sorted(x["body"] for x in logs["logs"]) == sorted([SSHD[0], "Failed to open cache file"])
    assert set(siem) == set(logs) and set(siem["logs"][0]) == set(logs["logs"][0])
    # Fields, phrases, negation and attributes work as in the logs search; newest first.
    q = 'facility:* OR msgid:auth "203.0.113.7" -Invalid'
    bodies = [x["body"] for x in _get(base, "/api/v1/siem/events", q=q, since="1d").json()["logs"]]
    assert bodies == [SSHD[3], SSHD[0]]
    # A key no security event has is named in a warning, from siem_events' own keys.
    warned = _get(base, "/api/v1/siem/events", q="msgidd:auth", since="1d").json()["warnings"]
    assert warned and "msgidd" in warned[0]


def test_siem_search_pages_with_a_cursor(api: tuple[str, list[Any]]) -> None:
    """A full page carries a cursor; passing it back gives the next page, without repeats."""
    base, _ = api
    seen: list[str] = []
    cursor = ""
    for _ in range(5):
        page = _get(base, "/api/v1/siem/events", since="1d", limit=3, cursor=cursor).json()
        seen += [x["body"] for x in page["logs"]]
        if page["cursor"] is None:
            break
        cursor = page["cursor"]
    assert seen == SSHD[::-1]


def test_siem_count(api: tuple[str, list[Any]]) -> None:
    base, _ = api
    assert _get(base, "/api/v1/siem/events/count", q="203.0.113.7", since="1d").json()["count"] == 3
    groups = _get(base, "/api/v1/siem/events/count", since="1d", by="service").json()["groups"]
    assert groups == [{"key": "sshd", "count": 4}]


def test_bad_parameters_are_400_and_counted(api: tuple[str, list[Any]]) -> None:
    base, _ = api
    before = _metric(base, "siem_search", "bad_request")
    for params in ({"q": "(unclosed"}, {"limit": "0"}, {"cursor": "nonsense"}, {"since": "forever"}):
        r = _get(base, "/api/v1/siem/events", **params)
        assert r.status_code == 400, (params, r.text)
        assert "SELECT" not in r.text
    assert _get(base, "/api/v1/siem/events", cursor="x").json()["error"].startswith("cursor:")
    assert _metric(base, "siem_search", "bad_request") == before + 5


def test_ferry_query_and_count_siem(api: tuple[str, list[Any]]) -> None:
    """`ferry query --siem` and `ferry count --siem` read the security events."""
    base, _ = api

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ferry", *args, "--api", base], capture_output=True, text=True,
                              timeout=60)

    r = cli("query", "--siem", "203.0.113.7", "--since", "1d")
    assert r.returncode == 0, r.stderr
    assert "Failed password for root" in r.stdout and "Failed to open" not in r.stdout
    assert "-- 3 lines" in r.stderr
    r = cli("count", "--siem", "--since", "1d", "--json")
    assert r.returncode == 0 and '"count":4' in r.stdout
