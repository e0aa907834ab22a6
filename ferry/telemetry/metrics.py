"""ferry's own counters, served at GET /metrics in Prometheus text format.

Every role (receivers, parser workers, writer) runs in its own process; prometheus_client's
multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by the supervisor) sums them into one page.
The store's API serves that page; `ferry run --role ingest|parser` on a host without the store
serves it itself (`app()`, on `metrics.port`).
Reason labels take values from fixed sets so that cardinality stays bounded. What happens to records
and batches (received, refused, dropped, retried, spooled, …) is counted through telemetry/events.py,
which holds those counters; this module keeps the rest.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

# generate_latest() writes the 0.0.4 text format whatever CONTENT_TYPE_LATEST says in this
# prometheus_client version; the API's /metrics sends the same type.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

refused_connections = Counter(
    "ferry_refused_connections_total",
    "Connections a receiver closed before a whole request arrived: read_timeout (too slow), too_many (over the cap).",
    ["component", "reason"],
)
closed_connections = Counter(
    "ferry_closed_connections_total",
    "Open connections a receiver closed: idle (silent for idle_timeout_s), buffer_limit (held the most "
    "unterminated bytes when all together held too many). The line in progress is kept.",
    ["component", "reason"],
)
published = Counter("ferry_published_batches_total", "Batches made durable on a topic.", ["topic"])
bus_duplicates = Counter("ferry_bus_duplicate_batches_total", "Publishes the bus dropped as duplicates.", ["topic"])
split_batches = Counter(
    "ferry_split_batches_total",
    "Batches cut into several bus messages because they were larger than the bus's max payload.",
    ["topic"],
)
processed = Counter("ferry_stage_records_total", "Records a stage produced.", ["stage"])
# Labelled by stage instance (pipeline.stages NAME), route and transform: bounded by the config.
route_records = Counter(
    "ferry_route_records_total", "Records each route of a parser or router matched and sent to its topics.",
    ["stage", "route"],
)
transform_records = Counter(
    "ferry_transform_records_total",
    "Records a transform changed, could not parse or convert (ignore_malformed, no_match, not_json), filtered or "
    "sampled out, by stage instance, transform (<position>:<type>) and outcome.",
    ["stage", "transform", "outcome"],
)
written = Counter("ferry_written_rows_total", "Rows inserted into the store.", ["table"])
unspooled = Counter("ferry_spool_resubmitted_batches_total", "Spooled batches later inserted.", ["table"])
spool_pending = Gauge("ferry_spool_pending_batches", "Batches waiting in the spool.", multiprocess_mode="livesum")
refusing = Gauge(
    "ferry_receivers_refusing",
    "1 while receivers refuse new data for this reason (disk_full, backpressure), else 0.",
    ["reason"],
    multiprocess_mode="livemax",
)
open_connections = Gauge(
    "ferry_open_connections",
    "Connections a receiver holds open now (syslog_tcp: against receivers.syslog.max_connections per worker).",
    ["component"],
    multiprocess_mode="livesum",
)
indexed_late = Counter(
    "ferry_store_late_index_builds_total",
    "Partitions whose unmerged parts got their deferred skip indexes built after insert.",
    ["table"],
)
api_requests = Counter(
    "ferry_api_requests_total",
    "API requests by handler and outcome: ok, bad_request (400), too_big (422), timeout (504: cut at "
    "api.max_query_seconds), busy (429: api.max_concurrent_queries all taken), store (503), internal (500), "
    "forbidden_host (403: DNS-rebinding check; handler host_check).",
    ["handler", "outcome"],
)
API_OUTCOMES = ("ok", "bad_request", "too_big", "timeout", "busy", "store", "internal")
api_queries_running = Gauge(
    "ferry_api_queries_running",
    "API queries the store is running now (at most api.max_concurrent_queries), including any the "
    "store has not yet stopped after their client was answered 504.",
    multiprocess_mode="livesum",
)
log_suppressed = Counter(
    "ferry_log_messages_suppressed_total",
    "Log messages left out as repeats of one logged less than logs.repeat_interval_s before.",
    ["level"],
)
insert_seconds = Histogram(
    "ferry_store_insert_seconds",
    "Latency of one bulk insert into the store.",
    ["table"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class CallbackCollector(Collector):
    """Gauges computed at scrape time (consumer lag) by the process that serves /metrics."""

    def __init__(self, fn: Callable[[], Iterable[tuple[str, str, dict[str, str], float]]]) -> None:
        self._fn = fn

    def collect(self) -> Iterable[GaugeMetricFamily]:
        families: dict[str, GaugeMetricFamily] = {}
        for name, doc, labels, value in self._fn():
            fam = families.get(name)
            if fam is None:
                fam = families[name] = GaugeMetricFamily(name, doc, labels=list(labels))
            fam.add_metric(list(labels.values()), value)
        return list(families.values())


def _registry() -> CollectorRegistry:
    """Every process's series (multiprocess files) under `ferry run`, else this process's own."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    from prometheus_client import REGISTRY

    return REGISTRY


def render(extra: Collector | None = None) -> bytes:
    """The /metrics page: every process's counters plus scrape-time gauges."""
    registry = _registry()
    if extra is not None:
        registry.register(extra)
        try:
            return generate_latest(registry)
        finally:
            registry.unregister(extra)
    return generate_latest(registry)


def current(*names: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """name -> (labels, value) of each series of those metrics, summed (or max'd, per its mode) over
    processes; one read of every process's files for all of them."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {n: [] for n in names}
    for fam in _registry().collect():
        for s in fam.samples:
            if s.name in out:
                out[s.name].append((s.labels, s.value))
    return out


def app(ready: Callable[[], bool]) -> Starlette:
    """/metrics and /healthz of a role with no store API on its host (nothing else: no data here)."""

    async def prom(_: Request) -> Response:
        # In multiprocess mode rendering reads every process's files: off the event loop, as the API does.
        return Response(await asyncio.to_thread(render), media_type=CONTENT_TYPE)

    async def health(_: Request) -> Response:
        # 503 until the role serves (bus connected, ports bound), as a load balancer expects.
        ok = ready()
        body = orjson.dumps({"status": "ok" if ok else "starting"})
        return Response(body, 200 if ok else 503, media_type="application/json")

    return Starlette(routes=[Route("/metrics", prom), Route("/healthz", health)])
