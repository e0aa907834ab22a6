"""The spanmetrics stage: per batch of spans, RED metrics by service/operation and the service graph, as
delta OTLP metric rows in the store's schemas, named as the OpenTelemetry Collector connectors name them.

Decisions:
- One point per series per input batch, DELTA temporality: StartTimeUnix is the batch's earliest span
  start, TimeUnix its latest span end, so several batches (and parser processes) add up at read time
  (query/prom_store.py accumulates deltas) and rate() follows the spans' own clock, not arrival.
- Names and attributes are the connectors': `traces.span.metrics.calls` (a monotonic sum →
  traces_span_metrics_calls_total) and `traces.span.metrics.duration` (unit s → ..._seconds_bucket)
  by service.name, span.name, span.kind and status.code (errors are the STATUS_CODE_ERROR series);
  `traces_service_graph_request[_failed]` sums and `..._request_server`/`_client` histograms (unit s)
  by client, server, connection_type. Resource service.name is the span's service (→ job); the graph's
  points have no service of their own.
- An edge is a server (or consumer) span whose parent is a client (or producer) span of another
  service. Both halves wait in a window (`window_s`, at most `max_pending` per side) because a caller
  and its callee export separately: a pair made with a span of an earlier batch is counted in the
  batch that completes it. A span that waits out `window_s` unpaired (a call to an uninstrumented
  service) is let go without an edge; one pushed out because the window is full is counted as
  dropped (reason size_limit). An input batch with a half still waiting is held (not acknowledged;
  `Result.hold`, released once none of its halves waits): if the process dies, the bus redelivers
  it and its halves wait again in the next one (its RED points, same ids, are deduplicated). Halves
  whose twin another parser process took (`workers` > 1) make no edge.
- Outputs carry `<batch id>@<table>`, so a redelivered batch's points are stored once; a span seen
  twice while waiting is kept once.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import polars as pl
import pyarrow as pa

from ferry.bus import codec
from ferry.schema.tables import ATTRS, METRICS_HISTOGRAM, METRICS_SUM, TRACES, TS, conform
from ferry.stages.contract import FetchPolicy, Output, Result, StageContext
from ferry.stages.spanmetrics.config import SpanMetricsConfig
from ferry.telemetry import events

COMPONENT = "spanmetrics"
CALLS = "traces.span.metrics.calls"
DURATION = "traces.span.metrics.duration"
GRAPH_REQUEST = "traces_service_graph_request"
GRAPH_FAILED = "traces_service_graph_request_failed"
GRAPH_SERVER = "traces_service_graph_request_server"
GRAPH_CLIENT = "traces_service_graph_request_client"
SUM_TABLE, HIST_TABLE = "otel_metrics_sum", "otel_metrics_histogram"
DELTA = 1  # AggregationTemporality (OTLP's enum)
ERROR = "STATUS_CODE_ERROR"
SPAN_ATTRS = ("service.name", "span.name", "span.kind", "status.code")
EDGE_ATTRS = ("client", "server", "connection_type")
# Caller and callee kinds, with the connection_type their pair gets.
CALLERS = {"SPAN_KIND_CLIENT": "", "SPAN_KIND_PRODUCER": "messaging_system"}
CALLEES = {"SPAN_KIND_SERVER": "", "SPAN_KIND_CONSUMER": "messaging_system"}
_COLS = ["Timestamp", "TraceId", "SpanId", "ParentSpanId", "SpanName", "SpanKind", "ServiceName", "Duration", "StatusCode"]
_KEY = ["tenant", "trace", "span"]
_PENDING = {"tenant": pl.String, "trace": pl.String, "span": pl.String, "service": pl.String, "dur": pl.Float64,
            "failed": pl.Boolean, "conn": pl.String, "seen": pl.Float64, "bid": pl.String}

# Measured (tests/stages/test_spanmetrics.py::test_speed, batches of 512 spans, one core): ~4 µs a span when
# the runner gathers 32 batches a call, ~30 µs with one batch a call (a fixed ~15 ms a call: a trickle).


def _buckets(col: str, n_bounds: int, prefix: str) -> list[pl.Expr]:
    """Per-group counts of each bucket index (0 .. n_bounds) of the precomputed index column `col`."""
    return [(pl.col(col) == i).sum().cast(pl.UInt64).alias(f"{prefix}{i}") for i in range(n_bounds + 1)]


def _bucket_lists(df: pl.DataFrame, prefix: str, n_bounds: int) -> pa.Array:
    flat = df.select([f"{prefix}{i}" for i in range(n_bounds + 1)]).to_numpy().astype(np.uint64).ravel()
    offsets = np.arange(0, flat.size + 1, n_bounds + 1, dtype=np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, pa.uint64()))


def _attrs(names: tuple[str, ...], cols: list[pa.Array]) -> pa.Array:
    """A map column of the same keys on every row, values from `cols` (row-major, without a loop)."""
    n, k = len(cols[0]), len(names)
    items = pa.concat_arrays([pa.array(c, pa.string()).fill_null("") for c in cols])
    order = (np.arange(k)[None, :] * n + np.arange(n)[:, None]).ravel()
    keys = pa.array(np.tile(np.array(names, dtype=object), n), pa.string())
    return pa.MapArray.from_arrays(pa.array(np.arange(0, n * k + 1, k, dtype=np.int32)), keys, items.take(pa.array(order)))


def _common(n: int, metric: str | pa.Array, unit: str, service: pa.Array | None, attrs: pa.Array,
            per_row: dict[str, pa.Array]) -> dict[str, pa.Array]:
    if service is None:
        svc = pa.repeat(pa.scalar(""), n)
        resource = pa.array([[]] * n, ATTRS)
    else:
        svc = service
        resource = _attrs(("service.name",), [service])
    return {
        "ResourceAttributes": resource,
        "ServiceName": svc,
        "MetricName": metric if isinstance(metric, pa.Array) else pa.repeat(pa.scalar(metric), n),
        "MetricUnit": pa.repeat(pa.scalar(unit), n),
        "Attributes": attrs,
        "AggregationTemporality": pa.repeat(pa.scalar(DELTA, pa.int32()), n),
        "IngestTime": pa.repeat(pa.scalar(time.time_ns(), pa.int64()), n).cast(TS),
        **per_row,
    }


class SpanMetricsStage:
    def __init__(self, name: str, cfg: SpanMetricsConfig) -> None:
        self.group = name
        self.kind = cfg.kind
        self.cfg = cfg
        self.output = cfg.outputs[0] if cfg.outputs else "metrics_commit"
        self.bounds = np.array(cfg.buckets_s, dtype=np.float64)
        self.fetch = FetchPolicy(max_msgs=32, max_rows=64_000, max_wait_s=0.05)
        empty = pl.DataFrame(schema=_PENDING)
        self.clients = empty  # unpaired callers, keyed by their own span id
        self.servers = empty  # unpaired callees, keyed by their parent's span id
        self.clock = time.monotonic  # the window's clock (tests replace it)
        self.held: set[str] = set()  # input batches with a half still waiting: not acknowledged yet
        self._ctx: StageContext | None = None
        self._lock = asyncio.Lock()
        self._ticker: asyncio.Task[None] | None = None

    def bind(self, ctx: StageContext) -> None:
        """The runner's release(); a ticker lets go of expired halves while no spans come."""
        self._ctx = ctx
        self._ticker = asyncio.get_running_loop().create_task(self._tick(), name=f"{self.group}:window")

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(max(0.5, self.cfg.window_s / 4))
            async with self._lock:
                self._expire(self.clock())
                await self._release()

    async def _release(self) -> None:
        """Acknowledge the held inputs none of whose halves wait any more (paired, expired or pushed out)."""
        done = self.held - self.waiting()
        if done and self._ctx is not None:
            await self._ctx.release(done)
        self.held -= done

    def waiting(self) -> set[str]:
        """Input batch ids with a half in the window."""
        return set(self.clients.get_column("bid").unique().to_list()) | set(self.servers.get_column("bid").unique().to_list())

    async def process(self, topic: str, batches: list[codec.Batch]) -> list[Output] | Result:
        async with self._lock:
            outputs = await asyncio.to_thread(self.process_now, batches)
            # A batch whose halves wait stays unacknowledged (kept alive by the runner): if this
            # process dies, it is redelivered and its halves wait again in the next one.
            waiting = self.waiting()
            hold = frozenset(b.batch_id for b in batches if b.batch_id in waiting)
            await self._release()
            self.held |= hold
            return Result(outputs, hold) if hold else outputs

    def process_now(self, batches: list[codec.Batch]) -> list[Output]:
        """All batches of a call in one pass (a fixed cost per pass dominates small batches), with a
        batch index column that every grouping keeps, then cut back into one output per batch and table."""
        batches = [b for b in batches if b.num_rows]
        if not batches:
            return []
        frames = []
        for i, b in enumerate(batches):
            t = b.table
            if not set(_COLS) <= set(t.column_names):
                t = conform(t, TRACES)
            f = pl.from_arrow(t.select(_COLS))
            assert isinstance(f, pl.DataFrame)
            frames.append(f.with_columns(pl.lit(i, pl.Int32).alias("bi"), pl.lit(b.tenant).alias("tenant"),
                                         pl.lit(b.batch_id).alias("bid")))
            events.received(COMPONENT, "traces", t.num_rows)
        now_ns = time.time_ns()
        df = pl.concat(frames, how="vertical_relaxed").with_columns(
            pl.col("Timestamp").cast(pl.Int64).fill_null(now_ns).alias("start"),
            (pl.col("Duration").cast(pl.Float64).fill_null(0.0) / 1e9).alias("dur"),
            pl.col("ServiceName").fill_null(""), pl.col("SpanName").fill_null(""),
            pl.col("SpanKind").fill_null("SPAN_KIND_UNSPECIFIED"), pl.col("StatusCode").fill_null("STATUS_CODE_UNSET"),
        )
        df = df.with_columns(pl.Series("b", np.searchsorted(self.bounds, df.get_column("dur").to_numpy(), side="left")))
        # Each batch's points cover its spans: earliest start .. latest end.
        span = df.group_by("bi").agg(
            pl.col("start").min().alias("t0"),
            (pl.col("start") + pl.col("Duration").cast(pl.Int64).fill_null(0)).max().alias("t1"),
        )
        nb = len(self.bounds)
        keys = ["bi", "ServiceName", "SpanName", "SpanKind", "StatusCode"]
        red = df.group_by(keys).agg(
            pl.len().alias("n"), pl.col("dur").sum().alias("sum"), pl.col("dur").min().alias("min"),
            pl.col("dur").max().alias("max"), *_buckets("b", nb, "b"),
        ).join(span, on="bi").sort(keys)
        per_row = self._per_row(red, batches)
        svc = red.get_column("ServiceName").to_arrow()
        attrs = _attrs(SPAN_ATTRS, [red.get_column(k).to_arrow() for k in keys[1:]])
        sums = [(red.get_column("bi"), self._sums(CALLS, svc, attrs, red.get_column("n").cast(pl.Float64).to_arrow(), per_row))]
        hists = [(red.get_column("bi"), self._hists(DURATION, svc, attrs, red, "b", "", per_row))]

        edges = self._pair(df)
        if edges.height:
            edges = edges.join(span, on="bi").sort(["bi", "client", "server", "conn"])
            e_row = self._per_row(edges, batches)
            e_attrs = _attrs(EDGE_ATTRS, [edges.get_column(k).to_arrow() for k in ("client", "server", "conn")])
            n = edges.height
            names = pa.concat_arrays([pa.repeat(pa.scalar(GRAPH_REQUEST), n), pa.repeat(pa.scalar(GRAPH_FAILED), n)])
            values = pa.concat_arrays([edges.get_column("n").cast(pl.Float64).to_arrow(),
                                       edges.get_column("failed").cast(pl.Float64).to_arrow()])
            twice = {k: pa.concat_arrays([v, v]) for k, v in e_row.items()}
            bi = edges.get_column("bi")
            sums.append((pl.concat([bi, bi]), self._sums(names, None, pa.concat_arrays([e_attrs, e_attrs]), values, twice)))
            hists.append((bi, self._hists(GRAPH_SERVER, None, e_attrs, edges, "s", "s_", e_row)))
            hists.append((bi, self._hists(GRAPH_CLIENT, None, e_attrs, edges, "c", "c_", e_row)))
        out: list[Output] = []
        for table, schema, parts in ((SUM_TABLE, METRICS_SUM, sums), (HIST_TABLE, METRICS_HISTOGRAM, hists)):
            whole = conform(pa.concat_tables([t for _, t in parts], promote_options="permissive"), schema)
            bis = pl.concat([b for b, _ in parts]).to_numpy()
            order = np.argsort(bis, kind="stable")
            whole, bis = whole.take(pa.array(order)), bis[order]
            cuts = np.searchsorted(bis, np.arange(len(batches) + 1), side="left")
            for i, b in enumerate(batches):
                if cuts[i + 1] > cuts[i]:
                    rows = whole.slice(int(cuts[i]), int(cuts[i + 1] - cuts[i]))
                    out.append(Output(self.output, codec.Batch(rows, "metrics", table, b.source, b.tenant,
                                                               f"{b.batch_id}@{table}")))
        return out

    @staticmethod
    def _per_row(df: pl.DataFrame, batches: list[codec.Batch]) -> dict[str, pa.Array]:
        """The columns a point takes from its batch: time range, tenant, source."""
        bi = pa.array(df.get_column("bi").to_numpy())
        return {
            "StartTimeUnix": df.get_column("t0").to_arrow().cast(pa.int64()).cast(TS),
            "TimeUnix": df.get_column("t1").to_arrow().cast(pa.int64()).cast(TS),
            "Tenant": pa.array([b.tenant for b in batches], pa.string()).take(bi),
            "Source": pa.array([b.source for b in batches], pa.string()).take(bi),
        }

    def _sums(self, metric: str | pa.Array, svc: pa.Array | None, attrs: pa.Array, values: pa.Array,
              per_row: dict[str, pa.Array]) -> pa.Table:
        n = len(values)
        cols = _common(n, metric, "", svc, attrs, per_row)
        cols |= {"Value": values, "IsMonotonic": pa.repeat(pa.scalar(True), n)}
        return pa.table(cols)

    def _hists(self, metric: str, svc: pa.Array | None, attrs: pa.Array, df: pl.DataFrame, prefix: str,
               col_prefix: str, per_row: dict[str, pa.Array]) -> pa.Table:
        n = df.height
        cols = _common(n, metric, "s", svc, attrs, per_row)
        bounds = pa.array([self.bounds.tolist()] * n, pa.list_(pa.float64()))
        cols |= {
            "Count": df.get_column("n").cast(pl.UInt64).to_arrow(),
            "Sum": df.get_column(f"{col_prefix}sum").to_arrow(),
            "Min": df.get_column(f"{col_prefix}min").to_arrow(),
            "Max": df.get_column(f"{col_prefix}max").to_arrow(),
            "BucketCounts": _bucket_lists(df, prefix, len(self.bounds)),
            "ExplicitBounds": bounds,
        }
        return pa.table(cols)

    def _pair(self, df: pl.DataFrame) -> pl.DataFrame:
        """Edges (batch index, client, server, conn → n, failed, both sides' duration sums and buckets)
        of the pairs these batches complete, each in the batch of its later half; unpaired halves wait."""
        now = self.clock()
        common = [pl.col("tenant"), pl.col("TraceId").alias("trace")]
        tail = [pl.col("ServiceName").alias("service"), pl.col("dur"), (pl.col("StatusCode") == ERROR).alias("failed")]
        new_c = df.filter(pl.col("SpanKind").is_in(list(CALLERS))).select(
            *common, pl.col("SpanId").alias("span"), *tail,
            pl.col("SpanKind").replace_strict(CALLERS, return_dtype=pl.String).alias("conn"), pl.lit(now).alias("seen"),
            pl.col("bid"), pl.col("bi"))
        new_s = df.filter(pl.col("SpanKind").is_in(list(CALLEES)) & (pl.col("ParentSpanId").fill_null("") != "")).select(
            *common, pl.col("ParentSpanId").alias("span"), *tail,
            pl.col("SpanKind").replace_strict(CALLEES, return_dtype=pl.String).alias("conn"), pl.lit(now).alias("seen"),
            pl.col("bid"), pl.col("bi"))
        if new_c.height == 0 and new_s.height == 0:
            self._expire(now)
            return pl.DataFrame()
        waiting = {**_PENDING, "bi": pl.Int32}
        old_c = self.clients.with_columns(pl.lit(-1, pl.Int32).alias("bi"))
        old_s = self.servers.with_columns(pl.lit(-1, pl.Int32).alias("bi"))
        clients = pl.concat([old_c, new_c.cast(waiting)]).unique(_KEY, keep="first", maintain_order=True)  # type: ignore[arg-type]
        servers = pl.concat([old_s, new_s.cast(waiting)]).unique(_KEY, keep="first", maintain_order=True)  # type: ignore[arg-type]
        pairs = servers.join(clients, on=_KEY, how="inner", suffix="_c")
        self.clients = clients.join(pairs.select(_KEY), on=_KEY, how="anti").drop("bi")
        self.servers = servers.join(pairs.select(_KEY), on=_KEY, how="anti").drop("bi")
        self._expire(now)
        pairs = pairs.filter(pl.col("service") != pl.col("service_c"))
        if pairs.height == 0:
            return pl.DataFrame()
        nb = len(self.bounds)
        pairs = pairs.with_columns(
            pl.Series("s", np.searchsorted(self.bounds, pairs.get_column("dur").to_numpy(), side="left")),
            pl.Series("c", np.searchsorted(self.bounds, pairs.get_column("dur_c").to_numpy(), side="left")),
            # A client's producer/consumer kind wins: the connection is what the caller made.
            pl.when(pl.col("conn_c") != "").then(pl.col("conn_c")).otherwise(pl.col("conn")).alias("conn"),
            pl.max_horizontal("bi", "bi_c").alias("bi"),
        )
        keys = ["bi", "client", "server", "conn"]
        return pairs.rename({"service_c": "client", "service": "server"}).group_by(keys).agg(
            pl.len().alias("n"), (pl.col("failed") | pl.col("failed_c")).sum().alias("failed"),
            pl.col("dur").sum().alias("s_sum"), pl.col("dur").min().alias("s_min"), pl.col("dur").max().alias("s_max"),
            pl.col("dur_c").sum().alias("c_sum"), pl.col("dur_c").min().alias("c_min"), pl.col("dur_c").max().alias("c_max"),
            *_buckets("s", nb, "s"), *_buckets("c", nb, "c"),
        )

    def _expire(self, now: float) -> None:
        """Let go of halves older than the window, then of the oldest past max_pending (counted)."""
        oldest = now - self.cfg.window_s
        for side in ("clients", "servers"):
            pending: pl.DataFrame = getattr(self, side)
            if pending.height and pending.get_column("seen").min() < oldest:  # type: ignore[operator]
                pending = pending.filter(pl.col("seen") >= oldest)
            over = pending.height - self.cfg.max_pending
            if over > 0:
                events.dropped(COMPONENT, "traces", "size_limit", over,
                               detail=f"unpaired {side[:-1]} spans past max_pending={self.cfg.max_pending}: no service-graph edge")
                pending = pending.tail(self.cfg.max_pending)
            setattr(self, side, pending)

    async def close(self) -> None:
        # What is still held goes back to the bus unacknowledged (the runner naks it): another
        # process takes those batches, and their halves wait there.
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
