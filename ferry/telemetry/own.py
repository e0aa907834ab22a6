"""ferry's own telemetry into its own pipeline: each role's log records go to the `logging` topic and
its /metrics page to `metrics`, as service `ferry`, so ferry is searched and graphed like any service.

Hook (runtime/roles.py): `own = await start(js, cfg, role, page=...)` once the role is connected to the
bus, `await own.stop()` before the bus connection closes. `page` returns the Prometheus text a role
serves; the store role passes its API's page. A role given none reads its own page when it runs alone
(no PROMETHEUS_MULTIPROC_DIR), and none at all under `ferry run`, where the store's page already sums
every process: so each page is stored once.

Decisions:
- Logs: a handler on the root logger (and uvicorn's loggers, runtime/logfiles.add_handler), behind the
  role's repeat filter, turns each record at `own_telemetry.logs_level` (INFO) and above into an
  otel_logs row: ServiceName and service.name `ferry`, Source `ferry`, SeverityText the Python level
  name as the role's log file writes it, SeverityNumber OTel's (INFO 9, WARNING 13, ERROR 17, CRITICAL 21),
  Body the message, ScopeName and LogAttributes `logger.name` the logger, `code.*` where it was logged,
  `exception.type/message/stacktrace` (OTel's names) when there is one. The role is a resource
  attribute (`ferry.role`, with `host.name` and `process.pid`); a search for `ferry.role:parser` finds
  it there. The `ferry` logger is lowered to logs_level if FERRY_LOG_LEVEL is higher, with the file's
  handlers kept at FERRY_LOG_LEVEL: the file says what it always said, the store gets ferry's INFO
  lines too; other libraries stay at FERRY_LOG_LEVEL.
- Volume: ferry's own logs are low by design (nothing is logged per record, events log one line per
  interval, repeats are folded), so the handler keeps the record as a small tuple, and one batch a
  second is built with pyarrow from lists. The queue holds at most MAX_QUEUED records; past that the
  newest are dropped (the start of a storm says most about it), counted as
  ferry_dropped_records_total{component="own_telemetry",reason="queue_full"}. Bodies and stack traces
  are cut at MAX_TEXT characters.
- A record logged with `extra=FILE_ONLY` stays in the role's log file: the API's failed-query lines
  carry the engine's text and SQL, which no API answer may carry (and /api/v1/logs would).
- No feedback loop: records logged while this module publishes (the bus being down makes publish log
  its retries) are not queued; a batch the bus refuses is tried once more at the next flush (same batch
  id, so a publish that did land is deduplicated), then dropped and counted (reason unavailable,
  overload, disk_full, too_large or internal), never logged per record. The event's own line, once an
  interval, is an ordinary record.
- Metrics: every `metrics_interval_s` (15 s) and once more at stop, the page is parsed
  (prometheus_client's parser) into the tables the OTLP receiver fills: counters to otel_metrics_sum
  (MetricName with `_total`, monotonic, cumulative), histograms to otel_metrics_histogram (bucket counts
  per bucket, bounds without +Inf, cumulative, Min and Max 0 as an SDK that does not track them),
  summaries to otel_metrics_summary, everything else (gauges, info, unknown) to otel_metrics_gauge;
  the labels are the Attributes (sorted by key, so a series keeps one identity), the unit is read from
  the name's `_seconds` / `_bytes` suffix. A cumulative series starts at its `_created` sample, else
  (multiprocess pages have none) at the first time this `ferry run` stored its page (a stamp in the
  multiprocess directory, which the supervisor empties at each start), else when this process began.
  A snapshot the bus refuses is dropped and counted, not retried: the next one carries the same
  counters, later.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import os
import socket
import time
import traceback
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
from prometheus_client.parser import text_string_to_metric_families

from ferry.bus import Bus, codec
from ferry.bus.publish import publish
from ferry.bus.topics import LOGGING, METRICS
from ferry.config.model import FerryConfig
from ferry.errors import Backpressure, DiskFull, RetryableError, TooLarge
from ferry.schema.tables import LOGS, METRICS_GAUGE, METRICS_HISTOGRAM, METRICS_SUM, METRICS_SUMMARY, conform
from ferry.telemetry import events

log = logging.getLogger("ferry.own_telemetry")

SERVICE = "ferry"
SOURCE = "ferry"
COMPONENT = "own_telemetry"
MAX_QUEUED = 10_000
MAX_TEXT = 32 * 1024
LOGS_EVERY_S = 1.0
# Per publish attempt; publish tries 3 times. Short, so that a flush never holds the loop for long.
_PUBLISH_TIMEOUT_S = 2.0
# What stop() may take for its last flush and snapshot with the bus gone.
_STOP_BUDGET_S = 5.0
_PROCESS_START_NS = time.time_ns()
_STAMP = "own_telemetry.start"


# Set while this module publishes: what is logged then (publish's retries) is not queued again.
_publishing: contextvars.ContextVar[bool] = contextvars.ContextVar("ferry_own_publishing", default=False)

_DROP_REASONS = ("overload", "disk_full", "unavailable", "too_large", "internal")
_RETRYABLE = frozenset({"overload", "disk_full", "unavailable"})


def severity_number(levelno: int) -> int:
    """OTel's SeverityNumber for a Python level: the lowest number of the range it falls in."""
    for floor, number in ((logging.CRITICAL, 21), (logging.ERROR, 17), (logging.WARNING, 13), (logging.INFO, 9),
                          (logging.DEBUG, 5)):
        if levelno >= floor:
            return number
    return 1


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + f"… [{len(text) - MAX_TEXT} characters cut]"


def _type_name(cls: type) -> str:
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


# One queued record: (created, levelno, levelname, logger, body, pathname, lineno, funcName, exception)
_Record = tuple[float, int, str, str, str, str, int, str, tuple[str, str, str] | None]


class LogShipper(logging.Handler):
    """Keeps what a role logs as small tuples for the next flush; bounded, never blocks the caller."""

    def __init__(self, level: int, max_queued: int = MAX_QUEUED) -> None:
        super().__init__(level)
        self.max_queued = max_queued
        self._queue: deque[_Record] = deque()
        self._full = 0

    def emit(self, record: logging.LogRecord) -> None:
        # The root's handler and uvicorn's forwarding filter may both see one record; publish's own
        # retry lines are not queued (no loop through a bus that is down).
        if _publishing.get() or getattr(record, "_ferry_own", False) or getattr(record, "ferry_file_only", False):
            return
        record._ferry_own = True
        if len(self._queue) >= self.max_queued:  # emit runs under the handler's lock
            self._full += 1
            return
        try:
            body = record.getMessage()
        except Exception:  # a bad %-format: keep what was given
            body = f"{record.msg!r} % {record.args!r}"
        exception = None
        if record.exc_info and record.exc_info[0] is not None:
            cls, value, tb = record.exc_info
            stack = record.exc_text or "".join(traceback.format_exception(cls, value, tb))
            exception = (_type_name(cls), _cut(str(value)), _cut(stack))
        elif record.stack_info:
            exception = ("", "", _cut(record.stack_info))
        self._queue.append((record.created, record.levelno, record.levelname, record.name, _cut(body),
                            record.pathname, record.lineno, record.funcName, exception))

    def take(self) -> tuple[list[_Record], int]:
        """Everything queued, and how many records were left out as the queue was full, since last time."""
        self.acquire()
        try:
            records, self._queue = list(self._queue), deque()
            full, self._full = self._full, 0
        finally:
            self.release()
        return records, full


_EXCEPTION_KEYS = ("exception.type", "exception.message", "exception.stacktrace")


def log_table(records: list[_Record], resource: list[tuple[str, str]], tenant: str, now_ns: int) -> pa.Table:
    """otel_logs rows of queued records."""
    ts = [int(r[0] * 1e9) for r in records]
    attrs = []
    for _, _, _, name, _, path, line, func, exc in records:
        a = [("logger.name", name), ("code.filepath", path), ("code.lineno", str(line)), ("code.function", func)]
        if exc is not None:
            a += [(k, v) for k, v in zip(_EXCEPTION_KEYS, exc, strict=True) if v]
        attrs.append(a)
    n = len(records)
    table = pa.table({
        "Timestamp": pa.array(ts, LOGS.field("Timestamp").type),
        "ObservedTimestamp": pa.array(ts, LOGS.field("ObservedTimestamp").type),
        "SeverityText": pa.array([r[2] for r in records], pa.string()),
        "SeverityNumber": pa.array([severity_number(r[1]) for r in records], pa.uint8()),
        "ServiceName": pa.array([SERVICE] * n, pa.string()),
        "Body": pa.array([r[4] for r in records], pa.string()),
        "ResourceAttributes": pa.array([resource] * n, LOGS.field("ResourceAttributes").type),
        "ScopeName": pa.array([r[3] for r in records], pa.string()),
        "LogAttributes": pa.array(attrs, LOGS.field("LogAttributes").type),
        "Tenant": pa.array([tenant] * n, pa.string()),
        "Source": pa.array([SOURCE] * n, pa.string()),
        "IngestTime": pa.array([now_ns] * n, LOGS.field("IngestTime").type),
    })
    return conform(table, LOGS)


_UNITS = (("_seconds", "s"), ("_bytes", "By"))


def _unit(name: str) -> str:
    base = name.removesuffix("_total")
    return next((unit for suffix, unit in _UNITS if base.endswith(suffix)), "")


def _key(labels: dict[str, str], without: str = "") -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, str(v)) for k, v in labels.items() if k != without))


class _Rows:
    """Columns of one metric table, appended a point at a time (a page has hundreds, not millions)."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.cols: dict[str, list[Any]] = {}

    def add(self, **values: Any) -> None:
        for k, v in values.items():
            self.cols.setdefault(k, []).append(v)

    def table(self, common: dict[str, Any]) -> pa.Table | None:
        n = len(self.cols.get("MetricName", []))
        if not n:
            return None
        cols = {**{k: [v] * n for k, v in common.items()}, **self.cols}
        return conform(pa.table({k: pa.array(v, self.schema.field(k).type) for k, v in cols.items()}), self.schema)


def metric_tables(text: str, resource: list[tuple[str, str]], tenant: str, now_ns: int,
                  start_ns: int) -> dict[str, pa.Table]:
    """Store table name -> rows of one /metrics page, in the schemas the OTLP receiver decodes into."""
    families = list(text_string_to_metric_families(text))
    cumulative = {f.name for f in families if f.type in ("counter", "histogram", "summary")}
    created: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
    for f in families:
        base = f.name.removesuffix("_created")
        if base != f.name and base in cumulative:
            for s in f.samples:
                created[(base, _key(s.labels))] = int(s.value * 1e9)
    gauge, sums, hist, summ = (_Rows(s) for s in (METRICS_GAUGE, METRICS_SUM, METRICS_HISTOGRAM, METRICS_SUMMARY))
    for f in families:
        if f.name.removesuffix("_created") in cumulative and f.name.endswith("_created"):
            continue
        meta = {"MetricDescription": f.documentation, "TimeUnix": now_ns}
        if f.type == "counter":
            for s in f.samples:
                if s.name.endswith("_total"):
                    key = _key(s.labels)
                    sums.add(**meta, MetricName=s.name, MetricUnit=_unit(s.name), Attributes=list(key),
                             StartTimeUnix=created.get((f.name, key), start_ns), Value=float(s.value),
                             AggregationTemporality=2, IsMonotonic=True)
        elif f.type in ("histogram", "summary"):
            series: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
            for s in f.samples:
                point = series.setdefault(_key(s.labels, "le" if f.type == "histogram" else "quantile"),
                                          {"buckets": [], "quantiles": [], "count": 0.0, "sum": 0.0})
                if s.name == f.name + "_bucket":
                    point["buckets"].append((float(s.labels["le"]), s.value))
                elif s.name == f.name + "_count":
                    point["count"] = s.value
                elif s.name == f.name + "_sum":
                    point["sum"] = s.value
                elif s.name == f.name and "quantile" in s.labels:
                    point["quantiles"].append((float(s.labels["quantile"]), s.value))
            for key, p in series.items():
                common = {**meta, "MetricName": f.name, "MetricUnit": _unit(f.name), "Attributes": list(key),
                          "StartTimeUnix": created.get((f.name, key), start_ns), "Count": int(p["count"]),
                          "Sum": float(p["sum"])}
                if f.type == "summary":
                    p["quantiles"].sort()
                    summ.add(**common, **{"ValueAtQuantiles.Quantile": [q for q, _ in p["quantiles"]],
                                          "ValueAtQuantiles.Value": [v for _, v in p["quantiles"]]})
                    continue
                # Prometheus buckets are cumulative and end at +Inf; OTLP's count each bucket alone
                # and name only the finite bounds.
                p["buckets"].sort()
                bounds = [le for le, _ in p["buckets"] if not math.isinf(le)]
                running = [int(v) for _, v in p["buckets"]]
                if not p["buckets"] or not math.isinf(p["buckets"][-1][0]):
                    running.append(int(p["count"]))
                counts = [max(c - prev, 0) for prev, c in zip([0, *running[:-1]], running, strict=True)]
                hist.add(**common, BucketCounts=counts, ExplicitBounds=bounds, AggregationTemporality=2)
        elif f.type != "gaugehistogram":  # gauge, info, stateset, unknown: a value as it stands
            for s in f.samples:
                gauge.add(**meta, MetricName=s.name, MetricUnit=_unit(s.name), Attributes=list(_key(s.labels)),
                          StartTimeUnix=0, Value=float(s.value))
    common = {"ResourceAttributes": resource, "ServiceName": SERVICE, "Tenant": tenant, "Source": SOURCE,
              "IngestTime": now_ns}
    names = ("otel_metrics_gauge", "otel_metrics_sum", "otel_metrics_histogram", "otel_metrics_summary")
    out = {name: rows.table(common) for name, rows in zip(names, (gauge, sums, hist, summ), strict=True)}
    return {name: t for name, t in out.items() if t is not None}


def counting_since() -> int:
    """Start of the cumulative series on a page without `_created` samples (see the module's notes)."""
    d = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not d:
        return _PROCESS_START_NS
    stamp = Path(d) / _STAMP
    try:
        return int(stamp.read_text())
    except (OSError, ValueError):
        pass
    tmp = stamp.with_name(f"{_STAMP}.{os.getpid()}")
    try:
        tmp.write_text(str(time.time_ns()))
        try:
            os.link(tmp, stamp)  # the first writer wins; a restarted store reads the same start
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
        return int(stamp.read_text())
    except (OSError, ValueError):
        return _PROCESS_START_NS


def _reason(e: BaseException) -> str:
    if isinstance(e, DiskFull):
        return "disk_full"
    if isinstance(e, Backpressure):
        return "overload"
    if isinstance(e, RetryableError):
        return "unavailable"
    if isinstance(e, TooLarge):
        return "too_large"
    return "internal"


def declare() -> None:
    events.declare("dropped", COMPONENT, ("logs",), ("queue_full", *_DROP_REASONS))
    events.declare("dropped", COMPONENT, ("metrics",), _DROP_REASONS)


class OwnTelemetry:
    """A role's own logs and (with a page) metrics, shipped until stop()."""

    def __init__(self, js: Bus, cfg: FerryConfig, role: str, page: Callable[[], bytes | str] | None) -> None:
        self._js = js
        self._tenant = cfg.tenant
        own = cfg.own_telemetry
        self._interval_s = own.metrics_interval_s
        self._page = page
        self._level = logging.getLevelName(own.logs_level)
        self.handler = LogShipper(self._level)
        host = socket.gethostname()
        self._metric_resource = [("service.name", SERVICE), ("host.name", host), ("ferry.role", role)]
        self._log_resource = [*self._metric_resource, ("process.pid", str(os.getpid()))]
        self._retry: codec.Batch | None = None  # a logs batch in flight or refused once
        self._tasks: list[asyncio.Task[None]] = []
        self._levels: list[tuple[logging.Logger | logging.Handler, int]] = []

    async def start(self) -> None:
        from ferry.runtime import logfiles

        declare()
        self._lower_ferry_level()
        logfiles.add_handler(self.handler)
        self._tasks.append(asyncio.create_task(self._every(LOGS_EVERY_S, self.flush_logs), name="own-logs"))
        if self._page is not None:
            self._tasks.append(asyncio.create_task(self._every(self._interval_s, self.snapshot), name="own-metrics"))

    def _lower_ferry_level(self) -> None:
        """ferry's loggers at logs_level when FERRY_LOG_LEVEL is higher, the file's handlers kept at it."""
        root, ferry = logging.getLogger(), logging.getLogger("ferry")
        file_level = root.getEffectiveLevel()
        if ferry.getEffectiveLevel() <= self._level:
            return
        for h in root.handlers:
            if h.level < file_level:
                self._levels.append((h, h.level))
                h.setLevel(file_level)
        self._levels.append((ferry, ferry.level))
        ferry.setLevel(self._level)

    async def stop(self) -> None:
        """Ship what is held (the logs queue and a last snapshot), within a few seconds, then stop.
        What is logged after this began is in the role's log file only."""
        from ferry.runtime import logfiles

        logfiles.remove_handler(self.handler)
        for obj, level in reversed(self._levels):
            obj.setLevel(level)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        last = [self.flush_logs(final=True)] + ([self.snapshot()] if self._page is not None else [])
        try:
            await asyncio.wait_for(asyncio.gather(*last), _STOP_BUDGET_S)
        except TimeoutError:
            held = self._retry.num_rows if self._retry is not None else 0
            self._retry = None
            if held:
                events.dropped(COMPONENT, "logs", "unavailable", held, detail="bus did not answer at stop")

    async def _every(self, every_s: float, job: Callable[[], Any]) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await job()
            except Exception as e:  # a telemetry slip must not end the loop; logged once a minute at most
                log.warning("own telemetry: %s failed: %r", getattr(job, "__name__", "a job"), e)

    async def _send(self, topic: str, batch: codec.Batch) -> str | None:
        """None once `batch` is durable on `topic`, else the reason it is not."""
        token = _publishing.set(True)
        try:
            await publish(self._js, topic, batch, timeout=_PUBLISH_TIMEOUT_S)
            return None
        except Exception as e:
            return _reason(e)
        finally:
            _publishing.reset(token)

    async def flush_logs(self, final: bool = False) -> None:
        """Publish the batch refused last time once more, then what was logged since, as one batch."""
        if self._retry is not None:
            batch = self._retry
            reason = await self._send(LOGGING, batch)
            self._retry = None
            if reason is not None:
                events.dropped(COMPONENT, "logs", reason, batch.num_rows, detail=f"{LOGGING} twice refused")
        records, full = self.handler.take()
        if full:
            events.dropped(COMPONENT, "logs", "queue_full", full, detail=f"over {self.handler.max_queued} queued")
        if not records:
            return
        token = _publishing.set(True)
        try:
            table = await asyncio.to_thread(log_table, records, self._log_resource, self._tenant, time.time_ns())
        finally:
            _publishing.reset(token)
        batch = self._retry = codec.Batch(table, "logs", "otel_logs", SOURCE, self._tenant)
        reason = await self._send(LOGGING, batch)
        if reason is None:
            self._retry = None
        elif final or reason not in _RETRYABLE:
            self._retry = None
            events.dropped(COMPONENT, "logs", reason, batch.num_rows, detail=LOGGING)

    async def snapshot(self) -> None:
        """Read the page once and publish its rows, one batch per metric table."""
        assert self._page is not None
        page = self._page
        token = _publishing.set(True)
        try:
            text = await asyncio.to_thread(page)
            if isinstance(text, bytes):
                text = text.decode()
            tables = await asyncio.to_thread(metric_tables, text, self._metric_resource, self._tenant,
                                             time.time_ns(), await asyncio.to_thread(counting_since))
        finally:
            _publishing.reset(token)
        batches = [codec.Batch(t, "metrics", name, SOURCE, self._tenant) for name, t in tables.items()]
        reasons = await asyncio.gather(*(self._send(METRICS, b) for b in batches))
        for b, reason in zip(batches, reasons, strict=True):
            if reason is not None:
                events.dropped(COMPONENT, "metrics", reason, b.num_rows, detail=f"{METRICS} ({b.target})")


async def start(js: Bus, cfg: FerryConfig, role: str,
                page: Callable[[], bytes | str] | None = None) -> OwnTelemetry | _Off:
    """Ship this role's own logs, and the /metrics `page` (see the module's notes on which role reads
    one), until `stop()`. Returns an object whose stop() does nothing when own_telemetry is off."""
    if not cfg.own_telemetry.enabled:
        return _Off()
    if page is None and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from ferry.telemetry import metrics

        page = metrics.render  # a role on its own: its page is this process's counters
    own = OwnTelemetry(js, cfg, role, page)
    await own.start()
    return own


class _Off:
    async def stop(self) -> None:
        return None
