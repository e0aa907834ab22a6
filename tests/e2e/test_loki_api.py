"""Grafana's Loki data source against a running ferry: every /loki/api/v1 route, LogQL and the WebSocket tail.

Lines go in through the OpenTelemetry SDK (OTLP), syslog and the python-logging-loki client; the
expected answers are counted here from what the test sent.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from typing import Any

import httpx
import orjson
import pytest
import websockets
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from ferry.testing import FerryProcess

RUN = uuid.uuid4().hex[:8]
SHOP = f"shop-{RUN}"  # the OTel SDK app
APP = f"sysapp{RUN}"  # the syslog app
LOKI_SVC = f"billing-{RUN}"  # the python-logging-loki app
CATEGORIZE = {"X-Loki-Response-Encoding-Flags": "categorize-labels"}
# What the SDK app logs: (level, message). Lines with "error" in them: 3 (two ERROR, one WARNING).
SHOP_LINES = [("ERROR", "payment error card declined order=1"), ("INFO", "order 2 placed"),
              ("ERROR", "payment error timeout order=3"), ("WARNING", "retry after error order=4"),
              ("INFO", '{"order": 5, "user": {"id": "u5"}, "took": "250ms"}')]


@pytest.fixture(scope="module")
def sent(ferry: FerryProcess) -> dict[str, Any]:
    resource = Resource.create({"service.name": SHOP, "host.name": "web-1", "deployment.environment": "test"})
    lp = LoggerProvider(resource=resource)
    lp.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{ferry.otlp_http}/v1/logs")))
    tp = TracerProvider(resource=resource)
    pylog = logging.getLogger(f"shop.{RUN}")
    pylog.propagate = False
    pylog.setLevel(logging.INFO)
    pylog.addHandler(LoggingHandler(level=logging.INFO, logger_provider=lp))
    levels = {"ERROR": logging.ERROR, "INFO": logging.INFO, "WARNING": logging.WARNING}
    with tp.get_tracer("shop").start_as_current_span("checkout") as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
        pylog.log(levels[SHOP_LINES[0][0]], SHOP_LINES[0][1], extra={"order.id": "1"})
    for level, msg in SHOP_LINES[1:]:
        pylog.log(levels[level], msg)
    lp.force_flush()
    lp.shutdown()
    tp.shutdown()

    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    syslog = [f"<{16 * 8 + 3}>1 {stamp} host-s {APP} - - - disk error on sda {RUN}",
              f"<{16 * 8 + 6}>1 {stamp} host-s {APP} - - - disk ok {RUN}"]
    with socket.create_connection(("127.0.0.1", ferry.syslog_port), timeout=10) as s:
        s.sendall("".join(line + "\n" for line in syslog).encode())

    loki_lines = 0
    if hasattr(FerryProcess, "loki_push_url"):
        import logging_loki

        handler = logging_loki.LokiHandler(url=ferry.loki_push_url, tags={"service_name": LOKI_SVC, "env": "prod"},
                                           version="1")
        llog = logging.getLogger(f"loki.{RUN}")
        llog.propagate = False
        llog.addHandler(handler)
        llog.error("invoice %s failed", RUN)
        handler.close()
        loki_lines = 1
    total = len(SHOP_LINES) + len(syslog) + loki_lines
    ferry.wait_for(lambda: len(ferry.search(RUN)) + len(ferry.search(f"service:{SHOP}")) >= total, timeout=60)
    return {"trace_id": trace_id, "loki_lines": loki_lines}


def loki(ferry: FerryProcess, path: str, headers: dict[str, str] | None = None, **params: Any) -> httpx.Response:
    return httpx.get(f"{ferry.api}/loki/api/v1/{path}", params=params, headers=headers, timeout=30)


def ok(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    return r.json()


def lines_of(result: list[dict[str, Any]]) -> list[str]:
    return [v[1] for s in result for v in s["values"]]


def test_grafana_shaped_log_query_with_trace_id_metadata(ferry: FerryProcess, sent: dict[str, Any]) -> None:
    now = time.time_ns()
    r = loki(ferry, "query_range", headers={**CATEGORIZE, "X-Query-Tags": "Source=grafana"},
             direction="backward", end=str(now + 60 * 10**9), limit="1000", query=f'{{service_name="{SHOP}"}}',
             start=str(now - 3600 * 10**9), step="2000ms")
    body = ok(r)
    data = body["data"]
    assert body["status"] == "success" and data["resultType"] == "streams"
    assert data["encodingFlags"] == ["categorize-labels"] and "summary" in data["stats"]
    assert sorted(lines_of(data["result"])) == sorted(m for _, m in SHOP_LINES)
    for s in data["result"]:
        assert s["stream"]["service_name"] == SHOP and s["stream"]["host_name"] == "web-1"
        assert s["stream"]["deployment_environment"] == "test" and s["stream"]["source"] == "otlp"
        assert "trace_id" not in s["stream"]  # structured metadata, not a stream label
        ts = [int(v[0]) for v in s["values"]]
        assert ts == sorted(ts, reverse=True)
    first = next(v for s in data["result"] for v in s["values"] if v[1] == SHOP_LINES[0][1])
    assert first[2]["structuredMetadata"]["trace_id"] == sent["trace_id"]
    assert first[2]["structuredMetadata"]["order_id"] == "1"
    levels = {v[1]: s["stream"]["level"] for s in data["result"] for v in s["values"]}
    assert levels[SHOP_LINES[0][1]] == "error" and levels[SHOP_LINES[3][1]] == "warn"


def test_older_clients_get_metadata_as_labels_and_plain_lines(ferry: FerryProcess, sent: dict[str, Any]) -> None:
    data = ok(loki(ferry, "query_range", query=f'{{service_name="{SHOP}"}} |= "card declined"', since="1h"))["data"]
    (stream,) = data["result"]
    assert stream["stream"]["trace_id"] == sent["trace_id"]
    assert [v for v in stream["values"]] == [[stream["values"][0][0], SHOP_LINES[0][1]]]


def test_line_filters_parsers_and_direction(ferry: FerryProcess, sent: dict[str, Any]) -> None:
    q = f'{{service_name="{SHOP}"}} |= "error" != "timeout"'
    got = lines_of(ok(loki(ferry, "query_range", query=q, since="1h"))["data"]["result"])
    assert sorted(got) == sorted(m for _, m in SHOP_LINES if "error" in m and "timeout" not in m)
    q = f'{{service_name="{SHOP}"}} | json | user_id="u5" and took > 100ms | line_format "{{{{.order}}}} by {{{{.user_id}}}}"'
    assert lines_of(ok(loki(ferry, "query_range", query=q, since="1h"))["data"]["result"]) == ["5 by u5"]
    q = f'{{service_name="{SHOP}"}} |~ "order[ =][0-9]" | regexp "order[ =](?P<n>[0-9])" | n >= 3'
    assert sorted(lines_of(ok(loki(ferry, "query_range", query=q, since="1h"))["data"]["result"])) == sorted(
        m for _, m in SHOP_LINES[2:4])
    fwd = ok(loki(ferry, "query_range", query=f'{{service_name="{SHOP}"}}', since="1h", limit=2, direction="forward"))
    values = [v for s in fwd["data"]["result"] for v in s["values"]]
    assert len(values) == 2
    every = ok(loki(ferry, "query_range", query=f'{{service_name="{SHOP}"}}', since="1h", direction="forward"))
    oldest = sorted(int(v[0]) for s in every["data"]["result"] for v in s["values"])[:2]
    assert sorted(int(v[0]) for v in values) == oldest


def test_syslog_and_loki_client_lines_by_their_labels(ferry: FerryProcess, sent: dict[str, Any]) -> None:
    got = ok(loki(ferry, "query_range", query=f'{{source="syslog", service="{APP}", level="error"}}', since="1h"))
    (stream,) = got["data"]["result"]
    assert stream["stream"]["host_name"] == "host-s" and lines_of([stream]) == [f"disk error on sda {RUN}"]
    if sent["loki_lines"]:
        got = ok(loki(ferry, "query_range", query=f'{{service_name="{LOKI_SVC}", env="prod"}}', since="1h"))
        (stream,) = got["data"]["result"]
        assert lines_of([stream]) == [f"invoice {RUN} failed"] and stream["stream"]["source"] == "loki"
        assert stream["stream"]["level"] == "error"


def test_metric_queries_count_what_was_sent(ferry: FerryProcess, sent: dict[str, Any]) -> None:
    q = f'sum by (level) (count_over_time({{service_name="{SHOP}"}} |= "error" [10m]))'
    got = ok(loki(ferry, "query", query=q, time=str(time.time_ns() + 10**9)))["data"]
    assert got["resultType"] == "vector"
    counts = {r["metric"]["level"]: r["value"][1] for r in got["result"]}
    assert counts == {"error": "2", "warn": "1"}
    end = time.time_ns() + 10**9  # every window (t - 1h, t] holds every line sent
    got = ok(loki(ferry, "query_range", query=f'sum(count_over_time({{service_name="{SHOP}"}}[1h]))',
                  start=str(end), end=str(end + 120 * 10**9), step="60"))["data"]
    assert got["resultType"] == "matrix"
    (series,) = got["result"]
    assert series["metric"] == {} and [v[1] for v in series["values"]] == [str(len(SHOP_LINES))] * 3
    assert [round(v[0] - series["values"][0][0]) for v in series["values"]] == [0, 60, 120]
    q = f'sum(bytes_over_time({{service_name="{SHOP}"}} |= "order" [10m])) > 0'
    got = ok(loki(ferry, "query", query=q))["data"]["result"]
    assert got[0]["value"][1] == str(sum(len(m.encode()) for _, m in SHOP_LINES if "order" in m))
    q = f'max_over_time({{service_name="{SHOP}"}} | json | unwrap duration(took) [10m])'
    (r,) = ok(loki(ferry, "query", query=q))["data"]["result"]
    assert r["value"][1] == "0.25" and "took" not in r["metric"]
    got = ok(loki(ferry, "query", query="vector(1)+vector(1)"))["data"]
    assert got["result"][0]["value"][1] == "2"


def test_labels_values_series_and_index(ferry: FerryProcess, sent: dict[str, Any]) -> None:
    names = ok(loki(ferry, "labels", since="1h"))["data"]
    assert {"service_name", "level", "source", "host_name", "deployment_environment"} <= set(names)
    values = ok(loki(ferry, "label/service_name/values", since="1h"))["data"]
    assert {SHOP, APP} <= set(values)
    scoped = ok(loki(ferry, "label/level/values", since="1h", query=f'{{service_name="{SHOP}"}}'))["data"]
    assert scoped == ["error", "info", "warn"]
    series = ok(loki(ferry, "series", since="1h", **{"match[]": f'{{service_name="{SHOP}"}}'}))["data"]
    assert sorted(s["level"] for s in series) == ["error", "info", "warn"]
    assert all(s["host_name"] == "web-1" for s in series)
    stats = ok(loki(ferry, "index/stats", since="1h", query=f'{{service_name="{SHOP}"}}'))
    assert stats["streams"] == 3 and stats["entries"] == len(SHOP_LINES) and stats["chunks"] >= 1
    assert stats["bytes"] == sum(len(m.encode()) for _, m in SHOP_LINES)
    vol = ok(loki(ferry, "index/volume", since="1h", query=f'{{service_name=~"{SHOP}|{APP}"}}'))["data"]
    got = {r["metric"]["service_name"]: int(r["value"][1]) for r in vol["result"]}
    assert got[SHOP] == stats["bytes"] and set(got) == {SHOP, APP}
    vol = ok(loki(ferry, "index/volume_range", since="1h", step="600", query=f'{{service_name="{SHOP}"}}',
                  targetLabels="level"))["data"]
    assert vol["resultType"] == "matrix"
    assert {r["metric"]["level"]: sum(int(v[1]) for v in r["values"]) for r in vol["result"]} == {
        lvl: sum(len(m.encode()) for lv, m in SHOP_LINES if {"ERROR": "error", "WARNING": "warn"}.get(lv, "info") == lvl)
        for lvl in ("error", "info", "warn")}
    fields = ok(loki(ferry, "detected_fields", since="1h", query=f'{{service_name="{SHOP}"}}'))["fields"]
    by_name = {f["label"]: f for f in fields}
    assert by_name["trace_id"]["parsers"] is None and by_name["user_id"]["parsers"] == ["json"]
    assert by_name["took"]["type"] == "duration" and by_name["order"]["type"] == "int"
    detected = ok(loki(ferry, "detected_labels", since="1h", query=f'{{service_name="{SHOP}"}}'))["detectedLabels"]
    assert {d["label"]: d["cardinality"] for d in detected}["level"] == 3
    info = ok(httpx.get(f"{ferry.api}/loki/api/v1/status/buildinfo", timeout=10))
    assert info["version"].startswith("3.")
    assert httpx.get(f"{ferry.api}/ready", timeout=10).status_code == 200


def test_tenants_see_only_their_own_lines(ferry: FerryProcess, sent: dict[str, Any]) -> None:
    other = ok(loki(ferry, "query_range", headers={"X-Scope-OrgID": "someone-else"},
                    query=f'{{service_name="{SHOP}"}}', since="1h"))["data"]["result"]
    assert other == []
    assert SHOP not in ok(loki(ferry, "label/service_name/values", headers={"X-Scope-OrgID": "someone-else"},
                               since="1h"))["data"]


@pytest.mark.parametrize("params, message", [
    ({"query": '{service_name="x"'}, "parse error"),
    ({"query": '{service_name=~".*"}'}, "empty-compatible"),
    ({"query": '{service_name="x"}', "limit": "100000"}, "max entries limit"),
    ({"query": '{service_name="x"}', "direction": "sideways"}, "direction"),
    ({"query": '{service_name="x"}', "start": "yesterday"}, "start"),
    ({"query": 'rate({service_name="x"}[1m])', "step": "0"}, "step"),
    ({}, "query is required"),
])
def test_bad_requests_are_400_naming_the_problem(ferry: FerryProcess, params: dict[str, str], message: str) -> None:
    r = loki(ferry, "query_range", **params)
    assert r.status_code == 400 and message in r.text, r.text


def test_log_query_as_instant_query_is_refused(ferry: FerryProcess) -> None:
    r = loki(ferry, "query", query='{service_name="x"}')
    assert r.status_code == 400 and "instant query" in r.text


def test_tail_streams_new_lines_over_websocket(ferry: FerryProcess, sent: dict[str, Any]) -> None:
    tag = f"tail{uuid.uuid4().hex[:8]}"
    url = (ferry.api.replace("http://", "ws://") + "/loki/api/v1/tail?" +
           httpx.QueryParams(query=f'{{service_name="{APP}"}} |= "{tag}"', start=str(time.time_ns())).__str__())

    async def go() -> list[dict[str, Any]]:
        async with websockets.connect(url) as ws:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            with socket.create_connection(("127.0.0.1", ferry.syslog_port), timeout=10) as s:
                s.sendall(f"<134>1 {stamp} host-t {APP} - - - first {tag}\n<134>1 {stamp} host-t {APP} - - - other\n"
                          f"<134>1 {stamp} host-t {APP} - - - second {tag}\n".encode())
            frames: list[dict[str, Any]] = []
            deadline = time.monotonic() + 30
            while sum(len(s["values"]) for f in frames for s in f["streams"]) < 2 and time.monotonic() < deadline:
                frames.append(orjson.loads(await asyncio.wait_for(ws.recv(), timeout=30)))
            return frames

    frames = asyncio.run(go())
    got = [v[1] for f in frames for s in f["streams"] for v in s["values"]]
    assert got == [f"first {tag}", f"second {tag}"]
    assert all(s["stream"]["service_name"] == APP for f in frames for s in f["streams"])


def test_tail_with_a_bad_query_closes_with_the_reason(ferry: FerryProcess) -> None:
    url = ferry.api.replace("http://", "ws://") + "/loki/api/v1/tail?query=%7Bbad"

    async def go() -> websockets.ConnectionClosed:
        async with websockets.connect(url) as ws:
            try:
                await asyncio.wait_for(ws.recv(), timeout=10)
            except websockets.ConnectionClosed as e:
                return e
        raise AssertionError("the tail stayed open")

    closed = asyncio.run(go())
    assert closed.rcvd is not None and closed.rcvd.code == 1008 and "parse error" in closed.rcvd.reason


def test_tails_past_the_cap_are_closed_with_the_reason_and_others_keep_working(ferry: FerryProcess) -> None:
    """More open tails than the cap would take every query turn the API has: the one past it is
    closed at once (1013, try again later) and counted, and a normal query is still answered."""
    from ferry.api.loki import MAX_TAILS

    url = (ferry.api.replace("http://", "ws://") + "/loki/api/v1/tail?" +
           str(httpx.QueryParams(query=f'{{service_name="{APP}"}} |= "nothing-matches-this"')))

    async def go() -> websockets.ConnectionClosed:
        held = [await websockets.connect(url) for _ in range(MAX_TAILS)]
        try:
            async with websockets.connect(url) as extra:
                try:
                    await asyncio.wait_for(extra.recv(), timeout=10)
                except websockets.ConnectionClosed as e:
                    r = await asyncio.to_thread(loki, ferry, "labels")
                    assert r.status_code == 200, r.text
                    return e
            raise AssertionError("the tail past the cap stayed open")
        finally:
            for ws in held:
                await ws.close()

    closed = asyncio.run(go())
    assert closed.rcvd is not None and closed.rcvd.code == 1013 and f"more than {MAX_TAILS} tails" in closed.rcvd.reason
    page = httpx.get(ferry.api + "/metrics", timeout=10).text
    assert any('handler="loki_tail"' in ln and 'outcome="busy"' in ln and ln.endswith(" 1.0")
               for ln in page.splitlines() if ln.startswith("ferry_api_requests_total")), page[:2000]
