"""Column layout of each signal, following the OpenTelemetry Collector ClickHouse exporter.

ferry adds Tenant, Source, IngestTime and BatchId (exactly-once dedupe) to every store table.
Attribute values are always strings, so services that disagree on a value's type never break ingest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

# 2: rows bound for the store carry their batch id in BatchId when published.
SCHEMA_VERSION = "2"

TS = pa.timestamp("ns", tz="UTC")
STR = pa.string()
ATTRS = pa.map_(pa.string(), pa.string())

# Columns every store table carries, filled by receivers (IngestTime, Source, Tenant) and by the
# stage that produced the bus message (BatchId).
_FERRY = [
    pa.field("Tenant", STR),
    pa.field("Source", STR),
    pa.field("IngestTime", TS),
    pa.field("BatchId", STR),
]

LOGS = pa.schema(
    [
        pa.field("Timestamp", TS),
        pa.field("ObservedTimestamp", TS),
        pa.field("TraceId", STR),
        pa.field("SpanId", STR),
        pa.field("TraceFlags", pa.uint8()),
        pa.field("SeverityText", STR),
        pa.field("SeverityNumber", pa.uint8()),
        pa.field("ServiceName", STR),
        pa.field("Body", STR),
        pa.field("ResourceSchemaUrl", STR),
        pa.field("ResourceAttributes", ATTRS),
        pa.field("ScopeSchemaUrl", STR),
        pa.field("ScopeName", STR),
        pa.field("ScopeVersion", STR),
        pa.field("ScopeAttributes", ATTRS),
        pa.field("LogAttributes", ATTRS),
        *_FERRY,
    ]
)

TRACES = pa.schema(
    [
        pa.field("Timestamp", TS),
        pa.field("TraceId", STR),
        pa.field("SpanId", STR),
        pa.field("ParentSpanId", STR),
        pa.field("TraceState", STR),
        pa.field("SpanName", STR),
        pa.field("SpanKind", STR),
        pa.field("ServiceName", STR),
        pa.field("ResourceAttributes", ATTRS),
        pa.field("ScopeName", STR),
        pa.field("ScopeVersion", STR),
        pa.field("SpanAttributes", ATTRS),
        pa.field("Duration", pa.uint64()),
        pa.field("StatusCode", STR),
        pa.field("StatusMessage", STR),
        pa.field("Events.Timestamp", pa.list_(TS)),
        pa.field("Events.Name", pa.list_(STR)),
        pa.field("Events.Attributes", pa.list_(ATTRS)),
        pa.field("Links.TraceId", pa.list_(STR)),
        pa.field("Links.SpanId", pa.list_(STR)),
        pa.field("Links.TraceState", pa.list_(STR)),
        pa.field("Links.Attributes", pa.list_(ATTRS)),
        *_FERRY,
    ]
)

_METRIC_COMMON = [
    pa.field("ResourceAttributes", ATTRS),
    pa.field("ResourceSchemaUrl", STR),
    pa.field("ScopeName", STR),
    pa.field("ScopeVersion", STR),
    pa.field("ScopeAttributes", ATTRS),
    pa.field("ScopeDroppedAttrCount", pa.uint32()),
    pa.field("ScopeSchemaUrl", STR),
    pa.field("ServiceName", STR),
    pa.field("MetricName", STR),
    pa.field("MetricDescription", STR),
    pa.field("MetricUnit", STR),
    pa.field("Attributes", ATTRS),
    pa.field("StartTimeUnix", TS),
    pa.field("TimeUnix", TS),
]

_EXEMPLARS = [
    pa.field("Exemplars.FilteredAttributes", pa.list_(ATTRS)),
    pa.field("Exemplars.TimeUnix", pa.list_(TS)),
    pa.field("Exemplars.Value", pa.list_(pa.float64())),
    pa.field("Exemplars.SpanId", pa.list_(STR)),
    pa.field("Exemplars.TraceId", pa.list_(STR)),
]

METRICS_GAUGE = pa.schema(
    [*_METRIC_COMMON, pa.field("Value", pa.float64()), pa.field("Flags", pa.uint32()), *_EXEMPLARS, *_FERRY]
)

METRICS_SUM = pa.schema(
    [
        *_METRIC_COMMON,
        pa.field("Value", pa.float64()),
        pa.field("Flags", pa.uint32()),
        *_EXEMPLARS,
        pa.field("AggregationTemporality", pa.int32()),
        pa.field("IsMonotonic", pa.bool_()),
        *_FERRY,
    ]
)

METRICS_HISTOGRAM = pa.schema(
    [
        *_METRIC_COMMON,
        pa.field("Count", pa.uint64()),
        pa.field("Sum", pa.float64()),
        pa.field("BucketCounts", pa.list_(pa.uint64())),
        pa.field("ExplicitBounds", pa.list_(pa.float64())),
        *_EXEMPLARS,
        pa.field("Flags", pa.uint32()),
        pa.field("Min", pa.float64()),
        pa.field("Max", pa.float64()),
        pa.field("AggregationTemporality", pa.int32()),
        *_FERRY,
    ]
)

METRICS_EXP_HISTOGRAM = pa.schema(
    [
        *_METRIC_COMMON,
        pa.field("Count", pa.uint64()),
        pa.field("Sum", pa.float64()),
        pa.field("Scale", pa.int32()),
        pa.field("ZeroCount", pa.uint64()),
        pa.field("PositiveOffset", pa.int32()),
        pa.field("PositiveBucketCounts", pa.list_(pa.uint64())),
        pa.field("NegativeOffset", pa.int32()),
        pa.field("NegativeBucketCounts", pa.list_(pa.uint64())),
        *_EXEMPLARS,
        pa.field("Flags", pa.uint32()),
        pa.field("Min", pa.float64()),
        pa.field("Max", pa.float64()),
        pa.field("AggregationTemporality", pa.int32()),
        *_FERRY,
    ]
)

METRICS_SUMMARY = pa.schema(
    [
        *_METRIC_COMMON,
        pa.field("Count", pa.uint64()),
        pa.field("Sum", pa.float64()),
        pa.field("ValueAtQuantiles.Quantile", pa.list_(pa.float64())),
        pa.field("ValueAtQuantiles.Value", pa.list_(pa.float64())),
        pa.field("Flags", pa.uint32()),
        *_FERRY,
    ]
)

# "id A is related to id B", as a link rule found them in a record (Kind: the rule's name). Timestamp
# is the record's, for the daily partition and the logs retention; the rest is ferry's as everywhere.
LINKS = pa.schema(
    [
        pa.field("Timestamp", TS),
        pa.field("FromId", STR),
        pa.field("ToId", STR),
        pa.field("Kind", STR),
        *_FERRY,
    ]
)

# Prometheus metric metadata as remote_write sends it (WriteRequest.metadata): one row per family each
# time a sender reports it (TimeUnix = when received); the newest row of a family is its metadata.
# Type is lower-case: counter, gauge, histogram, gaugehistogram, summary, info, stateset, unknown.
PROM_METADATA = pa.schema(
    [
        pa.field("TimeUnix", TS),
        pa.field("MetricFamily", STR),
        pa.field("Type", STR),
        pa.field("Help", STR),
        pa.field("Unit", STR),
        *_FERRY,
    ]
)

# Raw lines as a line-oriented receiver (syslog) takes them off the wire; the parser stage turns
# them into LOGS rows. Peer is "ip:port", Transport is "udp" | "tcp".
RAW_LINES = pa.schema(
    [
        pa.field("ReceivedAt", TS),
        pa.field("Peer", STR),
        pa.field("Transport", STR),
        pa.field("Line", STR),
    ]
)

# The bus target of REMOTE_WRITE_REQUESTS batches (as "raw_lines" is RAW_LINES').
REMOTE_WRITE_TARGET = "remote_write"
# remote_write requests as the receiver took them (snappy block-compressed `prometheus.WriteRequest`s,
# already checked well-formed), one per row; the metrics parser decodes them into METRICS_GAUGE rows.
REMOTE_WRITE_REQUESTS = pa.schema(
    [
        pa.field("ReceivedAt", TS),
        pa.field("Request", pa.binary()),
    ]
)

@dataclass(frozen=True)
class Table:
    """One store table as every layer sees it: the catalogue below is the only list of them.

    The DDL (store/ddl.py: partitioning, TTL, ledger views), the writer's and upkeep's self-metric
    labels, `/api/v1/status` and the service counts all iterate CATALOGUE; a new table is one line
    here plus its column definitions in store/ddl.py (tests/store/test_catalogue.py checks both agree).
    """

    name: str
    signal: str  # "logs" | "traces" | "metrics": the retention setting (retention.<signal>_days) it follows
    schema: pa.Schema
    time_column: str  # when a row happened: partitions, TTL and time-range reads use it
    partition: str  # "hour" | "day": logs and spans are searched by the hour, metric points span days
    counted_as: str  # the key its rows are counted under in /api/v1/status (and /api/v1/services, for the signals')
    # The retention setting it follows is retention.<retention>_days; "" means its signal's.
    retention: str = ""
    # Kept whole for its retention whatever else happens: setup never shortens its TTL, the size cap
    # never drops its partitions, and no ferry command or API route deletes from it (SIEM evidence).
    # The one DELETE that can touch it is ChdbStore.write_batches' repair of a batch a crash left
    # partly written: that batch's rows go only to be written again whole, in the same call.
    immutable: bool = False

    @property
    def retention_key(self) -> str:
        return self.retention or self.signal


CATALOGUE: tuple[Table, ...] = (
    Table("otel_logs", "logs", LOGS, "Timestamp", "hour", "logs"),
    Table("otel_traces", "traces", TRACES, "Timestamp", "hour", "spans"),
    Table("otel_metrics_gauge", "metrics", METRICS_GAUGE, "TimeUnix", "day", "metric_points"),
    Table("otel_metrics_sum", "metrics", METRICS_SUM, "TimeUnix", "day", "metric_points"),
    Table("otel_metrics_histogram", "metrics", METRICS_HISTOGRAM, "TimeUnix", "day", "metric_points"),
    Table("otel_metrics_exponential_histogram", "metrics", METRICS_EXP_HISTOGRAM, "TimeUnix", "day", "metric_points"),
    Table("otel_metrics_summary", "metrics", METRICS_SUMMARY, "TimeUnix", "day", "metric_points"),
    # Security events a pipeline routes here (a copy of their log rows): the LOGS columns, searched
    # like otel_logs, kept `retention.siem_days` (a year and more, as audits ask) and never cut short.
    # Daily partitions: 400 days by the hour would be ~9,600 partitions (parts never merge across
    # one), where ClickHouse wants hundreds; a search still skips parts by their Timestamp range.
    Table("siem_events", "logs", LOGS, "Timestamp", "day", "siem_events", retention="siem", immutable=True),
    # The related-id graph a link transform emits; GET /api/v1/related walks it.
    Table("links", "logs", LINKS, "Timestamp", "day", "links"),
    # Metric families' type, help and unit from Prometheus remote_write; kept as long as metrics.
    Table("prom_metadata", "metrics", PROM_METADATA, "TimeUnix", "day", "prom_metadata"),
)

# Store table name -> schema. The bus header "Ferry-Table" names one of these keys.
TABLES: dict[str, pa.Schema] = {t.name: t.schema for t in CATALOGUE}
TABLE_NAMES: tuple[str, ...] = tuple(t.name for t in CATALOGUE)
# Tables holding log rows (the LOGS schema): the log search and count read any of them.
LOG_TABLES: tuple[str, ...] = tuple(t.name for t in CATALOGUE if t.schema is LOGS)
# Tables ferry never deletes from before their retention ends.
IMMUTABLE_TABLES: tuple[str, ...] = tuple(t.name for t in CATALOGUE if t.immutable)
# The keys of /api/v1/status "stored", in the catalogue's order.
COUNTED_AS: tuple[str, ...] = tuple(dict.fromkeys(t.counted_as for t in CATALOGUE))


def table(name: str) -> Table:
    """The catalogue entry of store table `name` (KeyError for a name that is none)."""
    for t in CATALOGUE:
        if t.name == name:
            return t
    raise KeyError(name)


def empty_table(schema: pa.Schema) -> pa.Table:
    return schema.empty_table()


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Return `table` with exactly `schema`'s columns, in order; missing columns become defaults.

    Missing strings become "", numbers 0, maps/lists empty, timestamps null (the store default).
    """
    n = table.num_rows
    cols = []
    for field in schema:
        if field.name in table.column_names:
            col = table.column(field.name)
            if col.type != field.type:
                col = col.cast(field.type)
            cols.append(col)
        else:
            cols.append(_default_column(field.type, n))
    return pa.Table.from_arrays(cols, schema=schema)


def _default_column(typ: pa.DataType, n: int) -> pa.Array:
    # Built from buffers, not Python lists: a list of n values costs ~30 ns a row, a hot spot of
    # every receiver's decode (measured: a quarter of a 10,000-sample remote_write request).
    if pa.types.is_string(typ):
        return pa.Array.from_buffers(typ, n, [None, pa.py_buffer(np.zeros(n + 1, np.int32)), pa.py_buffer(b"")])
    if pa.types.is_integer(typ) or pa.types.is_floating(typ):
        return pa.array(np.zeros(n, typ.to_pandas_dtype()), typ)
    if pa.types.is_boolean(typ):
        return pa.array(np.zeros(n, bool), typ)
    if pa.types.is_map(typ):
        empty = pa.array([], pa.string())
        return pa.MapArray.from_arrays(pa.array(np.zeros(n + 1, np.int32)), empty.cast(typ.key_type),
                                       empty.cast(typ.item_type), type=typ)
    if pa.types.is_list(typ):
        return pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, np.int32)), pa.array([], typ.value_type), type=typ)
    return pa.nulls(n, typ)
