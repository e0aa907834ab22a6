"""PromQL conformance: the same samples in a real Prometheus 2.42 (by remote_write) and in ferry's
engine (an in-memory Source); every suite query answered by both and compared point by point.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from ferry.query.promql import PromQLError, instant_query, range_query
from ferry.testing import promql_suite as suite
from tests.promql.memsource import MemorySource

pytestmark = pytest.mark.skipif(not suite.PROMETHEUS_BINARY.exists(), reason="Prometheus 2.42 not unpacked")

# Dataset start: two hours ago on a minute boundary (Prometheus' head takes recent samples).
START = (int(time.time() * 1000) - 2 * 3_600_000) // 60_000 * 60_000
# 12.5 min: a NaN sample; 20 min and 20.25 min: +Inf and -Inf; 40.5 min: up == 0 on web; 25 min: the
# staleness marker; 1 h and later: the end of all data.
INSTANT_TIMES = [START + ms for ms in (120_000, 750_000, 1_200_000, 1_215_000, 1_357_123, 1_500_000, 1_800_000,
                                       2_430_000, 3_599_000, 3_780_000)]
# Absolute @ times can only be written once the dataset's start is known.
AT_QUERIES = [f"up @ {(START + 600_000) / 1000}", f"rate(http_requests_total[5m] @ {(START + 1_234_567) / 1000})",
              f"max_over_time(node_temperature_celsius[10m:1m] @ {(START + 1_800_000) // 1000})",
              f"sum(batch_progress @ {(START + 1_499_000) / 1000})", f"up[1m] @ {(START + 900_000) / 1000}"]
RANGES = [(START, START + 3_900_000, 60_000), (START + 197_500, START + 3_660_000, 37_000),
          (START + 600_000, START + 1_800_000, 15_000), (START - 600_000, START + 4_200_000, 300_000)]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, base = suite.start_prometheus(tmp_path_factory.mktemp("prometheus"))
    try:
        suite.send_remote_write(f"{base}/api/v1/write", suite.dataset(START))
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


def _ask(client: httpx.Client, base: str, path: str, params: dict[str, Any]) -> dict[str, Any]:
    body = client.get(f"{base}{path}", params=params).json()
    if body["status"] != "success":
        return {"error": body.get("errorType"), "message": body.get("error")}
    return body["data"]


def _expected(base: str) -> dict[tuple[str, str, tuple[int, ...]], dict[str, Any]]:
    jobs: list[tuple[str, str, tuple[int, ...], dict[str, Any]]] = []
    for q in suite.INSTANT_QUERIES + AT_QUERIES:
        for t in INSTANT_TIMES:
            jobs.append(("i", q, (t,), {"query": q, "time": t / 1000}))
    for q in suite.ERROR_QUERIES:
        jobs.append(("i", q, (INSTANT_TIMES[0],), {"query": q, "time": INSTANT_TIMES[0] / 1000}))
        a, b, s = RANGES[0]
        jobs.append(("r", q, (a, b, s), {"query": q, "start": a / 1000, "end": b / 1000, "step": s / 1000}))
    for q in suite.RANGE_QUERIES + AT_QUERIES[:-1]:
        for a, b, s in RANGES:
            jobs.append(("r", q, (a, b, s), {"query": q, "start": a / 1000, "end": b / 1000, "step": s / 1000}))
    with httpx.Client(timeout=30) as client, ThreadPoolExecutor(8) as pool:
        answers = pool.map(lambda j: _ask(client, base, "/api/v1/query" if j[0] == "i" else "/api/v1/query_range", j[3]), jobs)
        return {(k, q, args): ans for (k, q, args, _), ans in zip(jobs, answers, strict=True)}


async def _engine(src: MemorySource, kind: str, q: str, args: tuple[int, ...]) -> dict[str, Any]:
    try:
        if kind == "i":
            return (await instant_query(q, args[0], src)).to_json()
        return (await range_query(q, args[0], args[1], args[2], src)).to_json()
    except PromQLError as e:
        return {"error": e.error_type, "message": str(e)}


@pytest.fixture(scope="module")
def expected(prometheus: str) -> dict[tuple[str, str, tuple[int, ...]], dict[str, Any]]:
    return _expected(prometheus)


def test_suite_matches_prometheus(expected: dict[tuple[str, str, tuple[int, ...]], dict[str, Any]]) -> None:
    _check(MemorySource(suite.dataset(START)), expected)


def test_suite_matches_prometheus_with_range_functions_in_the_source(
        expected: dict[tuple[str, str, tuple[int, ...]], dict[str, Any]]) -> None:
    # A store that computes rate() and *_over_time itself (RangeFunctionSource) answers the same.
    src = MemorySource(suite.dataset(START), pushdown=True)
    _check(src, expected)
    assert {"rate", "increase", "sum_over_time", "last_over_time"} <= set(src.pushed)


def _check(src: MemorySource, expected: dict[tuple[str, str, tuple[int, ...]], dict[str, Any]]) -> None:
    failures: dict[str, str] = {}
    t0 = time.monotonic()
    for (kind, q, args), exp in expected.items():
        key = f"{'instant' if kind == 'i' else 'range'} {q}"
        if key in failures:
            continue
        got = asyncio.run(_engine(src, kind, q, args))
        if q in suite.ERROR_QUERIES and "error" not in exp:
            diff = f"Prometheus did not refuse it: {exp}"
        elif "error" in exp or "error" in got:
            diff = None if exp.get("error") == got.get("error") else f"error {got} expected {exp}"
        else:
            top = q.strip()
            diff = suite.compare(exp, got, ordered=kind == "i" and top.startswith(("sort(", "sort_desc(")))
        if diff:
            failures[key] = f"at {args}: {diff}"
    elapsed = time.monotonic() - t0
    total = len({f"{'instant' if k == 'i' else 'range'} {q}" for k, q, _ in expected})
    for k, v in failures.items():
        print(f"MISMATCH {k}\n    {v}")
    print(f"{total - len(failures)}/{total} queries match Prometheus (engine {elapsed:.1f} s for {len(expected)} evaluations)")
    assert not failures, f"{len(failures)} of {total} queries differ from Prometheus"
