"""ferry's own telemetry: a real /metrics page becomes rows of the OTLP metric tables, log records
become otel_logs rows, and both reach a real bus; a bus that refuses costs counted drops, never a loop."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import io
import logging
import time
from pathlib import Path

import pyarrow as pa
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, Summary, generate_latest

from ferry.bus import codec
from ferry.bus.client import connect
from ferry.bus.topics import LOGGING, METRICS, stream_of
from ferry.config.model import FerryConfig
from ferry.runtime import logfiles
from ferry.schema.tables import TABLES
from ferry.telemetry import FILE_ONLY, events, own
from ferry.testing.bus import private_bus

RESOURCE = [("service.name", "ferry"), ("host.name", "h"), ("ferry.role", "store")]
START_NS = 1_700_000_000 * 10**9


def _rows(table: pa.Table) -> list[dict[str, object]]:
    return table.to_pylist()


def _page() -> str:
    registry = CollectorRegistry()
    requests = Counter("t_requests_total", "Requests.", ["code"], registry=registry)
    requests.labels("200").inc(3)
    requests.labels("500").inc()
    Gauge("t_queue_bytes", "Queued bytes.", registry=registry).set(7)
    latency = Histogram("t_latency_seconds", "Latency.", ["op"], buckets=(0.1, 1.0), registry=registry)
    for v in (0.05, 0.5, 5.0):
        latency.labels("insert").observe(v)
    Summary("t_size", "Sizes.", registry=registry).observe(2.0)
    return generate_latest(registry).decode()


def test_a_metrics_page_becomes_rows_of_the_otlp_metric_tables() -> None:
    page = _page()
    now = time.time_ns()
    tables = own.metric_tables(page, RESOURCE, "default", now, START_NS)
    assert set(tables) == {"otel_metrics_sum", "otel_metrics_gauge", "otel_metrics_histogram", "otel_metrics_summary"}
    for name, table in tables.items():
        assert table.schema == TABLES[name], name
        assert set(table.column("ServiceName").to_pylist()) == {"ferry"}
        assert set(table.column("Source").to_pylist()) == {"ferry"}

    sums = {tuple(r["Attributes"]): r for r in _rows(tables["otel_metrics_sum"])}
    assert {r["MetricName"] for r in sums.values()} == {"t_requests_total"}
    assert sums[(("code", "200"),)]["Value"] == 3.0 and sums[(("code", "500"),)]["Value"] == 1.0
    for r in sums.values():
        assert r["IsMonotonic"] is True and r["AggregationTemporality"] == 2
        assert r["MetricDescription"] == "Requests."
        # A counter of this process carries its _created time: the start of its cumulative series.
        created_ns = int(r["StartTimeUnix"].timestamp() * 1e9)
        assert START_NS < created_ns <= now

    (gauge,) = _rows(tables["otel_metrics_gauge"])  # no `_created` series show up as gauges
    assert (gauge["MetricName"], gauge["Value"], gauge["MetricUnit"]) == ("t_queue_bytes", 7.0, "By")
    assert dict(gauge["ResourceAttributes"]) == dict(RESOURCE)

    (hist,) = _rows(tables["otel_metrics_histogram"])
    assert (hist["MetricName"], hist["MetricUnit"], hist["Attributes"]) == ("t_latency_seconds", "s", [("op", "insert")])
    assert hist["ExplicitBounds"] == [0.1, 1.0]
    assert hist["BucketCounts"] == [1, 1, 1]  # one per bucket, not Prometheus' running total
    assert (hist["Count"], hist["Sum"], hist["AggregationTemporality"]) == (3, 5.55, 2)

    (summary,) = _rows(tables["otel_metrics_summary"])
    assert (summary["MetricName"], summary["Count"], summary["Sum"]) == ("t_size", 1, 2.0)


def test_a_page_without_created_series_starts_every_cumulative_series_at_one_time() -> None:
    # What a multiprocess page (`ferry run`) looks like: no _created samples.
    page = "\n".join(line for line in _page().splitlines() if "_created" not in line) + "\n"
    tables = own.metric_tables(page, RESOURCE, "default", time.time_ns(), START_NS)
    for name in ("otel_metrics_sum", "otel_metrics_histogram"):
        starts = {int(t.timestamp() * 1e9) for t in tables[name].column("StartTimeUnix").to_pylist()}
        assert starts == {START_NS}, name


def test_ferry_run_keeps_one_start_across_store_restarts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    first = own.counting_since()
    assert first == own.counting_since()
    assert sorted(p.name for p in tmp_path.iterdir()) == [own._STAMP]


def _shipper(level: int = logging.INFO, max_queued: int = 100) -> tuple[logging.Logger, own.LogShipper]:
    handler = own.LogShipper(level, max_queued)
    logger = logging.getLogger(f"ferry.test_own.{time.monotonic_ns()}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    return logger, handler


def test_log_records_become_otel_logs_rows() -> None:
    logger, handler = _shipper()
    logger.debug("below the level")
    logger.info("started %d workers", 3)
    try:
        raise ValueError("bad value")
    except ValueError:
        logger.exception("insert failed")
    records, full = handler.take()
    assert full == 0 and handler.take() == ([], 0)
    table = own.log_table(records, [*RESOURCE, ("process.pid", "42")], "default", time.time_ns())
    assert table.schema == TABLES["otel_logs"]
    info, error = _rows(table)
    assert (info["Body"], info["SeverityText"], info["SeverityNumber"]) == ("started 3 workers", "INFO", 9)
    assert (error["SeverityText"], error["SeverityNumber"]) == ("ERROR", 17)
    assert info["ServiceName"] == "ferry" and info["Source"] == "ferry" and info["ScopeName"] == logger.name
    attrs = dict(error["LogAttributes"])
    assert attrs["logger.name"] == logger.name and attrs["code.function"] == "test_log_records_become_otel_logs_rows"
    assert attrs["exception.type"] == "ValueError" and attrs["exception.message"] == "bad value"
    assert "raise ValueError" in attrs["exception.stacktrace"]
    assert "exception.type" not in dict(info["LogAttributes"])
    assert dict(info["ResourceAttributes"])["process.pid"] == "42"
    assert [own.severity_number(n) for n in (5, 10, 25, 30, 40, 50)] == [1, 5, 9, 13, 17, 21]


def test_a_full_queue_drops_the_newest_and_says_how_many() -> None:
    logger, handler = _shipper(max_queued=10)
    for i in range(25):
        logger.warning("line %d", i)
    records, full = handler.take()
    assert [r[4] for r in records] == [f"line {i}" for i in range(10)] and full == 15


def test_what_is_logged_while_publishing_is_not_queued_again() -> None:
    logger, handler = _shipper()

    def publishing() -> None:
        own._publishing.set(True)
        logger.warning("retried 1 logs batches at publish: bus_unavailable")

    contextvars.copy_context().run(publishing)
    logger.warning("an ordinary line")
    assert [r[4] for r in handler.take()[0]] == ["an ordinary line"]


def test_a_repeat_left_out_of_the_file_is_left_out_here_too() -> None:
    logger, handler = _shipper()
    file = logging.StreamHandler(io.StringIO())
    repeats = logfiles.RepeatFilter(60)
    for h in (file, handler):  # as logfiles.add_handler puts the role's filter on both
        h.addFilter(repeats)
    logger.addHandler(file)
    for fd in (17, 18, 19):
        logger.warning("accept failed on fd %d", fd)
    assert len(file.stream.getvalue().splitlines()) == 1
    assert [r[4] for r in handler.take()[0]] == ["accept failed on fd 17"]


def test_a_file_only_line_is_not_stored() -> None:
    """The API's failed-query lines carry the engine's SQL, which no API answer (/api/v1/logs) may show."""
    logger, handler = _shipper()
    logger.warning("API query failed (timeout): ...\nSQL: SELECT 1", extra=FILE_ONLY)
    logger.warning("retention of otel_logs: 7 -> 3 days")
    assert [r[4] for r in handler.take()[0]] == ["retention of otel_logs: 7 -> 3 days"]


def _dropped(signal: str, reason: str) -> float:
    labels = {"component": "own_telemetry", "signal": signal, "reason": reason}
    return REGISTRY.get_sample_value("ferry_dropped_records_total", labels) or 0.0


async def _ship_and_read(tmp: Path) -> None:
    cfg = FerryConfig.model_validate({"own_telemetry": {"metrics_interval_s": 3600}})
    async with private_bus(tmp) as (_, js):
        tel = own.OwnTelemetry(js, cfg, "store", page=_page)
        tel.handler.handle(logging.LogRecord("ferry.x", logging.WARNING, __file__, 1, "disk nearly full", None, None))
        await tel.flush_logs()
        msg = await js.get_msg(stream_of(LOGGING), 1)
        batch = codec.from_message(msg.data, msg.headers)
        assert (batch.signal, batch.target, batch.source) == ("logs", "otel_logs", "ferry")
        assert batch.table.column("Body").to_pylist() == ["disk nearly full"]
        await tel.snapshot()
        info = await js.stream_info(stream_of(METRICS))
        targets = set()
        for seq in range(1, info.state.messages + 1):
            m = await js.get_msg(stream_of(METRICS), seq)
            targets.add(codec.from_message(m.data, m.headers).target)
        assert targets == {"otel_metrics_sum", "otel_metrics_gauge", "otel_metrics_histogram", "otel_metrics_summary"}


def test_logs_and_a_snapshot_reach_the_bus(tmp_path: Path) -> None:
    asyncio.run(_ship_and_read(tmp_path))


async def _bus_gone(tmp: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = FerryConfig()
    async with private_bus(tmp) as (server, _):
        nc = await connect(server.url, "own-test")
        tel = own.OwnTelemetry(nc.jetstream(), cfg, "ingest", page=None)
        server.stop()  # the connection now reconnects: publishes time out, publish logs its retries
        caplog.set_level(logging.WARNING)
        tel.handler.handle(logging.LogRecord("ferry.x", logging.ERROR, __file__, 1, "lost the bus", None, None))
        before = _dropped("logs", "unavailable")
        await tel.flush_logs()  # refused: held for one more try
        assert _dropped("logs", "unavailable") == before
        assert any("retried" in r.getMessage() for r in caplog.records if r.name == "ferry.events")
        assert tel.handler.take() == ([], 0)  # publish's own lines were not queued
        await tel.flush_logs()  # refused again: dropped and counted, not logged per record
        assert _dropped("logs", "unavailable") == before + 1
        with contextlib.suppress(ConnectionError):  # closing a connection whose server is gone
            await nc.close()


def test_a_bus_that_refuses_twice_costs_counted_drops_and_no_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(own, "_PUBLISH_TIMEOUT_S", 0.2)
    monkeypatch.setattr(events, "_throttle", events._Throttle())
    own.declare()
    asyncio.run(_bus_gone(tmp_path, caplog))
