"""The query API against hostile clients: bad parameters, runaway queries, oversized answers, DNS rebinding.

Every request goes to a real `ferry run` over HTTP; what is refused or cut is also read back from /metrics.
"""

from __future__ import annotations

import concurrent.futures
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from ferry.testing import FerryProcess
from ferry.testing.otlp import logs_request

PB = {"Content-Type": "application/x-protobuf"}
LEAKS = ("SELECT", "Code:", "DB::Exception", "FROM otel_", "fromUnixTimestamp64Nano")

# 2 KB bodies of ten words always in the same order. The slow query asks for 64 word pairs that
# are never adjacent: every token is in every row (no index can skip a row), so each of the 64
# regular expressions reads every body to its end. 20 k such rows take 6-16 s uncut on 2 cores.
WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
UNIT = " ".join(WORDS) + " "
ROWS = 20_000
SLOW_Q = " OR ".join(
    [a + b.capitalize() for a in WORDS for b in WORDS if a != b and WORDS.index(b) != (WORDS.index(a) + 1) % 10][:64]
)
LIMIT_S = 2.0


@pytest.fixture(scope="module")
def ferry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerryProcess]:
    config = {
        "api": {
            "max_query_seconds": LIMIT_S,
            "max_concurrent_queries": 2,
            "max_result_bytes": 1_000_000,
            "allowed_hosts": ["ferry.test", "*.corp.test"],
        }
    }
    proc = FerryProcess(tmp_path_factory.mktemp("ferry") / "data", config=config).start()
    try:
        now = time.time_ns() - 60 * 10**9
        for k in range(ROWS // 2000):
            bodies = [UNIT * 36 + f"row {k * 2000 + i}" for i in range(2000)]
            r = httpx.post(f"{proc.otlp_http}/v1/logs", content=logs_request(bodies, time_ns=now), headers=PB, timeout=60)
            r.raise_for_status()
        httpx.post(f"{proc.otlp_http}/v1/logs", content=logs_request(["needle in the haystack"], time_ns=now),
                   headers=PB, timeout=60).raise_for_status()
        proc.wait_for(lambda: proc.sql_count("logs") >= ROWS + 1, timeout=60)
        yield proc
    finally:
        proc.stop_cleanly()


def _get(ferry: FerryProcess, path: str, params: dict[str, Any] | None = None, **kw: Any) -> httpx.Response:
    r = httpx.get(ferry.api + path, params=params, timeout=60, **kw)
    for leak in LEAKS:
        assert leak not in r.text, f"{path} {params} answered {r.status_code} with engine internals: {r.text[:500]}"
    return r


def _outcome(ferry: FerryProcess, handler: str, outcome: str) -> float:
    return ferry.metric("ferry_api_requests_total", handler=handler, outcome=outcome)


def _store_idle(ferry: FerryProcess) -> bool:
    """No API query left in the store (a cut query's client is answered before the store stops it)."""
    return ferry.metric("ferry_api_queries_running") == 0


def _normal_query_works(ferry: FerryProcess) -> bool:
    r = _get(ferry, "/api/v1/logs", {"q": "needle", "since": "1d", "limit": "10"})
    return r.status_code == 200 and [x["body"] for x in r.json()["logs"]] == ["needle in the haystack"]


BAD = [
    ("/api/v1/logs", {"limit": "abc"}, "limit"),
    ("/api/v1/logs", {"limit": "0"}, "limit"),
    ("/api/v1/logs", {"limit": str(10**30)}, "limit"),
    ("/api/v1/logs", {"limit": "\u00b2"}, "limit"),  # "²": str.isdigit() says yes, int() says no
    ("/api/v1/logs", {"limit": "1" * 5000}, "limit"),  # int() refuses over 4300 digits
    ("/api/v1/logs", {"start": "-1e40"}, "start"),
    ("/api/v1/logs", {"start": "abc"}, "start"),
    ("/api/v1/logs", {"start": "\uff11\uff17"}, "start"),  # full-width digits
    ("/api/v1/logs", {"end": str(10**23)}, "end"),
    ("/api/v1/logs", {"since": "abc"}, "since"),
    ("/api/v1/logs", {"since": "0s"}, "since"),
    ("/api/v1/logs", {"since": "9" * 30 + "w"}, "since"),
    ("/api/v1/logs", {"start": "2030-01-01T00:00:00Z", "end": "2029-01-01T00:00:00Z"}, "start"),
    ("/api/v1/logs/count", {"step": "0"}, "step"),
    ("/api/v1/logs/count", {"step": "99999999999999999999"}, "step"),
    ("/api/v1/logs/count", {"step": "abc"}, "step"),
    ("/api/v1/logs/count", {"step": "1", "since": "1000w"}, "step"),  # 604 800 000 buckets
    ("/api/v1/logs/tail", {"after": "abc"}, "after"),
    ("/api/v1/logs/tail", {"after": "-5"}, "after"),
    ("/api/v1/logs/tail", {"after": str(10**23)}, "after"),
    ("/api/v1/logs/tail", {"limit": "1e3"}, "limit"),
    ("/api/v1/metrics/series", {"name": "m", "step": "0"}, "step"),
    ("/api/v1/metrics/series", {"name": "m", "step": "99999999999999999999"}, "step"),
    ("/api/v1/metrics/series", {"name": "m", "step": "1", "since": "4w"}, "step"),
    ("/api/v1/metrics/series", {"name": "m", "start": "-1e40"}, "start"),
]


def test_bad_parameters_are_400_naming_the_parameter(ferry: FerryProcess) -> None:
    before = {h: _outcome(ferry, h, "bad_request") for h in ("search", "count", "tail", "series")}
    handler = {"/api/v1/logs": "search", "/api/v1/logs/count": "count", "/api/v1/logs/tail": "tail",
               "/api/v1/metrics/series": "series"}
    sent = dict.fromkeys(before, 0)
    for path, params, name in BAD:
        r = _get(ferry, path, params)
        assert r.status_code == 400, (path, params, r.status_code, r.text)
        assert r.json()["error"].startswith(name), (path, params, r.text)
        assert len(r.text) < 400, r.text  # a 5000-digit value is not echoed back whole
        sent[handler[path]] += 1
    for h, n in sent.items():
        assert _outcome(ferry, h, "bad_request") - before[h] == n, h


def test_unset_and_empty_parameters_take_their_defaults(ferry: FerryProcess) -> None:
    r = _get(ferry, "/api/v1/logs", {"limit": "", "start": "", "end": "", "since": "", "q": "needle"})
    assert r.status_code == 200 and len(r.json()["logs"]) == 1
    r = _get(ferry, "/api/v1/logs/count", {"step": "1h", "since": "1d", "q": "needle"})
    assert r.status_code == 200 and sum(g["count"] for g in r.json()["groups"]) == 1
    r = _get(ferry, "/api/v1/logs/tail", {"after": "0", "limit": "1"})
    assert r.status_code == 200 and len(r.json()["logs"]) == 1 and r.json()["cursor"] > 0


def test_a_runaway_query_is_cut_at_the_limit_and_counted(ferry: FerryProcess) -> None:
    ferry.wait_for(lambda: _store_idle(ferry), timeout=60)
    before = _outcome(ferry, "count", "timeout")
    t0 = time.monotonic()
    r = _get(ferry, "/api/v1/logs/count", {"q": SLOW_Q, "since": "1d"})
    took = time.monotonic() - t0
    assert r.status_code == 504, r.text
    assert r.json() == {"error": f"the query took longer than {LIMIT_S:g} s; narrow the time range or the query"}
    assert "Retry-After" not in r.headers  # the same query would take as long again
    assert took < LIMIT_S + 3, f"answered after {took:.1f} s"
    assert _outcome(ferry, "count", "timeout") - before == 1
    # The engine stopped it (not just the answer): its error and the SQL are in the store's log.
    log = ferry.data_dir / "run" / "store-0.log"
    ferry.wait_for(lambda: "API query failed (timeout)" in _text(log) and "TIMEOUT_EXCEEDED" in _text(log))
    assert "SQL: SELECT count() AS count" in _text(log)
    assert _normal_query_works(ferry)


def test_queries_beyond_the_concurrency_cap_wait_then_get_429(ferry: FerryProcess) -> None:
    ferry.wait_for(lambda: _store_idle(ferry), timeout=60)
    before = _outcome(ferry, "search", "busy")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        slow = [pool.submit(_get, ferry, "/api/v1/logs/count", {"q": SLOW_Q, "since": "1d"}) for _ in range(2)]
        # Both hold the two turns until the store stops them, LIMIT_S after they began at the
        # earliest; a third waits LIMIT_S / 2 for a turn, so it is refused whatever the timing.
        ferry.wait_for(lambda: ferry.metric("ferry_api_queries_running") == 2, timeout=LIMIT_S / 2, interval=0.02)
        t0 = time.monotonic()
        r = _get(ferry, "/api/v1/logs", {"q": "needle", "since": "1d"})
        waited = time.monotonic() - t0
        assert [f.result().status_code for f in slow] == [504, 504]
        assert [f.result().status_code for f in slow] == [504, 504]
    assert r.status_code == 429, r.text
    assert r.json() == {"error": "the store is busy with other queries; retry later"}
    assert int(r.headers["Retry-After"]) > 0
    assert LIMIT_S / 2 <= waited < LIMIT_S / 2 + 2, waited
    assert _outcome(ferry, "search", "busy") - before == 1
    # The turns come back once the store has stopped the runaway queries.
    ferry.wait_for(lambda: _normal_query_works(ferry), timeout=60)


def test_an_answer_over_max_result_bytes_is_422(ferry: FerryProcess) -> None:
    ferry.wait_for(lambda: _normal_query_works(ferry), timeout=60)
    before = _outcome(ferry, "search", "too_big")
    r = _get(ferry, "/api/v1/logs", {"since": "1d", "limit": "1000"})  # ~2 MB of bodies
    assert r.status_code == 422, r.text
    assert r.json() == {"error": "the answer is larger than 977 KiB; lower the limit or narrow the query"}
    assert _outcome(ferry, "search", "too_big") - before == 1
    assert _get(ferry, "/api/v1/logs", {"since": "1d", "limit": "100"}).status_code == 200


def test_every_route_still_answers_a_normal_query(ferry: FerryProcess) -> None:
    ferry.wait_for(lambda: _normal_query_works(ferry), timeout=60)
    count = _get(ferry, "/api/v1/logs/count", {"q": "needle", "since": "1d"})
    assert count.status_code == 200 and count.json()["count"] == 1
    tail = _get(ferry, "/api/v1/logs/tail", {"q": "needle", "after": "0"})
    assert tail.status_code == 200 and [x["body"] for x in tail.json()["logs"]] == ["needle in the haystack"]
    series = _get(ferry, "/api/v1/metrics/series", {"name": "m", "step": "5m", "since": "1d"})
    assert series.status_code == 200 and series.json()["series"] == []
    trace = _get(ferry, "/api/v1/traces/" + "ab" * 16)
    assert trace.status_code == 200 and trace.json()["found"] is False
    status = _get(ferry, "/api/v1/status")
    assert status.status_code == 200 and status.json()["stored"]["logs"] == ROWS + 1


@pytest.mark.parametrize("path", ["/api/v1/logs", "/metrics", "/healthz"])
def test_a_foreign_host_name_is_refused_on_loopback(ferry: FerryProcess, path: str) -> None:
    before = _outcome(ferry, "host_check", "forbidden_host")
    for host in ("evil.example", "evil.example:8686", "ferry.test.evil.example", "10.1.2.3", "corp.test"):
        r = _get(ferry, path, headers={"Host": host})
        assert r.status_code == 403, (host, r.text)
        assert "api.allowed_hosts" in r.json()["error"]
    assert _outcome(ferry, "host_check", "forbidden_host") - before == 5
    for host in ("localhost", "LOCALHOST:1234", "127.0.0.1", "[::1]:8686", "ferry.test", "ferry.test:80",
                 "a.corp.test", "b.a.corp.test:9"):
        assert _get(ferry, path, headers={"Host": host}).status_code == 200, host


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def test_a_foreign_host_name_cannot_open_the_loki_tail_websocket(ferry: FerryProcess) -> None:
    """The DNS-rebinding check covers WebSockets: a page on a rebound name cannot open the tail."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    path = "/loki/api/v1/tail?query=" + quote('{service_name="x"}')
    port = int(ferry.api.rsplit(":", 1)[1])
    before = _outcome(ferry, "host_check", "forbidden_host")
    # The browser's view after rebinding: the name is evil.example, the socket reaches ferry.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock, pytest.raises(InvalidStatus) as refused:
        connect(f"ws://evil.example:{port}{path}", sock=sock, open_timeout=10)
    assert refused.value.response.status_code == 403
    assert _outcome(ferry, "host_check", "forbidden_host") - before == 1
    with connect(f"ws://127.0.0.1:{port}{path}", open_timeout=10) as ws:  # under its own name it is served
        ws.close()
