"""The PromQL engine's refusals and API helpers: parse errors name the problem (bad_data), evaluation
failures are `execution`, and the API's time, duration and selector parsers read Prometheus' formats.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from ferry.errors import BadRequest
from ferry.query.promql import (
    PromQLError,
    instant_query,
    parse_duration_ms,
    parse_selector,
    parse_time_ms,
    range_query,
)
from ferry.query.promql.source import STALE_NAN, Matcher
from ferry.testing import promql_suite as suite
from tests.promql.memsource import MemorySource

START = 1_700_000_000_000
SRC = MemorySource(suite.dataset(START))
T = START + 1_800_000


def run_instant(q: str, t: int = T) -> dict:
    return asyncio.run(instant_query(q, t, SRC)).to_json()


def refusal(q: str) -> PromQLError:
    with pytest.raises(PromQLError) as e:
        run_instant(q)
    return e.value


def test_parse_error_is_bad_data_naming_the_problem() -> None:
    e = refusal("sum(rate(http_requests_total[5m])")
    assert e.error_type == "bad_data"
    assert "parenthesis" in str(e)
    assert isinstance(e, BadRequest)
    e = refusal("nosuchfunction(up)")
    assert e.error_type == "bad_data" and "nosuchfunction" in str(e)
    e = refusal("rate(up)")
    assert e.error_type == "bad_data" and "rate" in str(e)


def test_many_to_many_is_execution_error_naming_the_group() -> None:
    e = refusal("http_requests_total + on(job) group_left up")
    assert e.error_type == "execution"
    assert 'job="api"' in str(e) and "many-to-many matching not allowed" in str(e)
    e = refusal("http_requests_total / on(job, instance) up")
    assert e.error_type == "execution" and "group_left/group_right" in str(e)


def test_same_labelset_after_dropping_names_is_execution_error() -> None:
    e = refusal('rate({__name__=~"http_request_duration_seconds_(sum|count)"}[5m])')
    assert e.error_type == "execution" and "same labelset" in str(e)


def test_range_query_argument_errors() -> None:
    with pytest.raises(PromQLError, match="range vector") as e:
        asyncio.run(range_query("up[5m]", START, START + 60_000, 15_000, SRC))
    assert e.value.error_type == "bad_data"
    with pytest.raises(PromQLError, match="step"):
        asyncio.run(range_query("up", START, START + 60_000, 0, SRC))
    with pytest.raises(PromQLError, match="11,000"):
        asyncio.run(range_query("up", START, START + 86_400_000, 1000, SRC))
    with pytest.raises(PromQLError, match="before start"):
        asyncio.run(range_query("up", START + 1, START, 1000, SRC))


def test_staleness_marker_ends_a_series_and_lookback_ends_another() -> None:
    # batch_progress has its marker at 25 min; gap_metric's last sample before its hole is at 19m45s,
    # and the lookback window includes its start (Prometheus 2.x).
    assert run_instant("batch_progress", START + 1_485_000)["result"]
    assert run_instant("batch_progress", START + 1_500_000)["result"] == []
    assert run_instant("gap_metric", START + 1_185_000 + 300_000)["result"]
    assert run_instant("gap_metric", START + 1_185_000 + 300_001)["result"] == []


def test_json_shapes() -> None:
    assert run_instant("1 / 0") == {"resultType": "scalar", "result": [T // 1000, "+Inf"]}
    assert run_instant('"x"') == {"resultType": "string", "result": [T // 1000, "x"]}
    assert run_instant("up * 1e23")["result"][0]["value"][1] == "100000000000000000000000"
    assert run_instant("up / 3e7")["result"][0]["value"][1] == "0.000000033333333333333334"
    r = asyncio.run(range_query("time()", START, START + 30_500, 15_250, SRC)).to_json()
    assert r == {"resultType": "matrix", "result": [{"metric": {}, "values": [
        [START // 1000, str(START // 1000)], [(START + 15_250) / 1000, f"{(START + 15_250) / 1000}"],
        [(START + 30_500) / 1000, f"{(START + 30_500) / 1000}"]]}]}


def test_sort_orders_instant_vectors_with_nan_last() -> None:
    src = MemorySource([({"__name__": "m", "i": str(i)}, [(T - 1000, v)]) for i, v in
                        enumerate([3.0, float("nan"), -1.0, 7.0])] + [({"__name__": "m", "i": "s"}, [(T, STALE_NAN)])])
    asc = asyncio.run(instant_query("sort(m)", T, src)).to_json()["result"]
    assert [x["value"][1] for x in asc] == ["-1", "3", "7", "NaN"]
    desc = asyncio.run(instant_query("sort_desc(m)", T, src)).to_json()["result"]
    assert [x["value"][1] for x in desc] == ["7", "3", "-1", "NaN"]


def test_source_gets_time_bounds_and_hints() -> None:
    src = MemorySource(suite.dataset(START))
    asyncio.run(range_query("sum by (job) (rate(http_requests_total[5m] offset 1m))", START + 600_000,
                            START + 1_200_000, 30_000, src))
    matchers, lo, hi, hint = src.calls[-1]
    assert matchers == [Matcher("__name__", "=", "http_requests_total")]
    assert (lo, hi) == (START + 600_000 - 60_000 - 300_000, START + 1_200_000 - 60_000)
    assert hint is not None and hint.func == "rate" and hint.range_ms == 300_000 and hint.step_ms == 30_000
    assert hint.by == ("job",) and hint.without is None
    asyncio.run(instant_query("up", T, src))
    _, lo, hi, hint = src.calls[-1]
    assert (lo, hi) == (T - 300_000, T) and hint is not None and hint.func is None


def test_api_parsers() -> None:
    assert parse_time_ms("1435781451.781") == 1_435_781_451_781
    assert parse_time_ms("1435781451") == 1_435_781_451_000
    assert parse_time_ms("2015-07-01T20:10:51.781Z") == 1_435_781_451_781
    assert parse_time_ms("2015-07-01T22:10:51+02:00") == 1_435_781_451_000
    with pytest.raises(PromQLError, match="timestamp"):
        parse_time_ms("yesterday")
    assert parse_duration_ms("5m") == 300_000
    assert parse_duration_ms("1h30m") == 5_400_000
    assert parse_duration_ms("15") == 15_000
    assert parse_duration_ms("0.5") == 500
    assert parse_duration_ms("100ms") == 100
    with pytest.raises(PromQLError, match="duration"):
        parse_duration_ms("5 minutes")
    assert parse_selector('up{job="api",instance=~"10\\\\..*"}') == [
        Matcher("__name__", "=", "up"), Matcher("job", "=", "api"), Matcher("instance", "=~", "10\\..*")]
    with pytest.raises(PromQLError):
        parse_selector("sum(up)")


def test_large_range_is_vectorised() -> None:
    # 2,000 series x 6 h at 15 s, a dashboard query at step 30 s: well under a second or two.
    n, pts = 2000, 1440
    data = [({"__name__": "c", "i": str(i), "g": str(i % 10)}, [(START + k * 15_000, float(k * (i % 7 + 1)))
                                                               for k in range(pts)]) for i in range(n)]
    src = MemorySource(data)
    t0 = time.monotonic()
    r = asyncio.run(range_query("sum by (g) (rate(c[5m]))", START, START + (pts - 1) * 15_000, 30_000, src))
    elapsed = time.monotonic() - t0
    assert len(r.to_json()["result"]) == 10
    assert elapsed < 10, elapsed
