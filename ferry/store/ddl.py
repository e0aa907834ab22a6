"""ClickHouse DDL for ferry's tables: the OTel Collector exporter schema plus ferry's columns.

The same statements run on embedded chDB and on a ClickHouse server; only the engine differs.
"""

from __future__ import annotations

import re

from ferry.schema.tables import CATALOGUE, LOG_TABLES, TABLE_NAMES
from ferry.schema.tables import table as catalogue_entry

# Word-delimiter tokenisation, applied identically by the index and by queries (see ferry.query.tokens):
# a space goes in at lower->Upper, letter->digit and digit->letter boundaries, then everything is
# lower-cased and the index splits on non-alphanumerics. One simple pattern per boundary kind: a
# pattern's matches cannot overlap and inserted spaces make no new boundaries, so each pass is
# complete — and three simple passes cost a third of one alternation (measured on 400 k rows).
_BOUNDARIES = ("([a-z])([A-Z])", "([A-Za-z])([0-9])", "([0-9])([A-Za-z])")
# Most log lines have no such boundary at all (81 % of the loghub Linux/OpenSSH bodies), and one
# capture-free scan finds that for a fraction of the three rewriting passes: every merge rebuilds
# the text index from this expression, and the guard took its cost from 1.42 to 0.61 us a row.
_ANY_BOUNDARY = "[a-z][A-Z]|[A-Za-z][0-9]|[0-9][A-Za-z]"


def split_boundaries(column: str) -> str:
    """SQL expression: `column` with a space put in at every boundary (the three passes)."""
    expr = column
    for pattern in _BOUNDARIES:
        expr = f"replaceRegexpAll({expr}, '{pattern}', '\\\\1 \\\\2')"
    return expr


def normalised(column: str) -> str:
    """SQL expression the full-text index is built on; queries must search this exact expression."""
    return f"lower(if(match({column}, '{_ANY_BOUNDARY}'), {split_boundaries(column)}, {column}))"


BODY_TOKENS = normalised("Body")
BODY_INDEX_TYPE = "text(tokenizer = splitByNonAlpha)"

# Indexes whose definition has changed between ferry versions: a store created by an older ferry
# gets them redefined on open (see ChdbStore.setup), since queries search exactly these expressions.
# table -> index name -> (expression, type)
EVOLVING_INDEXES: dict[str, dict[str, tuple[str, str]]] = {
    t: {"idx_body": (BODY_TOKENS, BODY_INDEX_TYPE)} for t in LOG_TABLES
}

_FERRY_COLS = """
    Tenant LowCardinality(String) CODEC(ZSTD(1)),
    Source LowCardinality(String) CODEC(ZSTD(1)),
    IngestTime DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    BatchId String CODEC(LZ4),
    INDEX idx_batch BatchId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_ingest IngestTime TYPE minmax GRANULARITY 1"""

# Attribute maps keep plain String keys: LowCardinality keys inside a Map made every insert and merge
# rebuild per-part key dictionaries, ~30% of the store's CPU per row (measured, /tmp/store-exp), for
# no query benefit — the key bloom filters already cover lookups.
# Maps and hex ids use LZ4, not the exporter's ZSTD(1): compressing the maps was a quarter of the
# insert CPU of a syslog row (4.0 -> 2.8 us/row), and a search page reads its rows' maps lazily, where
# faster decompression took ~15 ms off a 10 M-row search (p50 67 -> 55 ms); the price is ~14 % more
# disk. Hex ids barely compress either way. Body (most of the bytes) and timestamps stay ZSTD.
_MAP = "Map(String, String) CODEC(LZ4)"
_ID = "String CODEC(LZ4)"

# Settings of every data table that setup also applies to tables an older ferry made. A part under
# 64 MB uncompressed (an insert of up to ~200 k syslog rows) is written compact, all columns in one
# file, instead of two files per column and map subcolumn: 10-20 % less insert CPU per syslog row
# (measured 1.72-1.79 vs 1.98-2.81 us, 55 k-row inserts). Merged parts past it are wide, the layout
# that reads one column of a big part cheaply.
# Strings keep their lengths inline (ClickHouse's classic layout) rather than in a separate sizes
# stream per String column and map subcolumn: a syslog row takes 57 bytes on disk instead of 79
# (500 k rows merged into one part: 28.4 vs 39.6 MB), at the same insert and merge CPU. ferry never
# reads a string's length without the string.
TABLE_SETTINGS: dict[str, int | str] = {
    "min_bytes_for_wide_part": 64 << 20,
    "string_serialization_version": "'single_stream'",
}
_SETTINGS = (
    "SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, fsync_after_insert = 1, fsync_part_directory = 1, "
    + ", ".join(f"{k} = {v}" for k, v in TABLE_SETTINGS.items())
)


# Skip indexes that inserts leave to merges. A merge rebuilds every skip index of the part it writes,
# and a fresh part is merged within seconds, so building these at insert too paid for them twice:
# deferring them cut the store's insert+merge CPU by ~30 % (measured: 10.6 -> 7.3 CPU-s per million
# OTel log rows). store/indexes.py builds them for the parts no merge reaches. Kept at insert: the
# batch-id bloom (exactly-once lookups), trace ids (a trace is fetched moments after it ends), minmax.
_MAP_BLOOMS = ("idx_res_attr_key", "idx_res_attr_value")
DEFERRED_INDEXES: dict[str, tuple[str, ...]] = {
    **{t: ("idx_body", *_MAP_BLOOMS, "idx_log_attr_key", "idx_log_attr_value") for t in LOG_TABLES},
    "otel_traces": (*_MAP_BLOOMS, "idx_span_attr_key", "idx_span_attr_value"),
}


def ttl_expr(table: str, days: int) -> str | None:
    """Retention of `table`: rows are kept `days` from the later of when they happened and when
    they reached ferry (_TTL_TIMES). A line stamped in the past (a device with a wrong clock, an
    agent flushing a week-old buffer) lands and stays as long as a fresh one, instead of being
    dropped by TTL within the very insert that stored it. None keeps forever."""
    happened, received = _TTL_TIMES[table]
    return f"toDateTime(greatest({happened}, {received})) + toIntervalDay({days})" if days > 0 else None


def _ttl(name: str, days: int) -> str:
    expr = ttl_expr(name, days)
    return f"TTL {expr}" if expr else ""


_PARTITION_FN = {"hour": "toStartOfHour", "day": "toDate"}


def _partition_by(name: str) -> str:
    """PARTITION BY of a catalogue table: its time column cut at the catalogue's partition kind."""
    t = catalogue_entry(name)
    return f"PARTITION BY {_PARTITION_FN[t.partition]}({t.time_column})"


# Rows of one service sit together within each hour: a service's lines are read without reading every
# other service's (LogQL `{service="x"} |= "..."` at 10 M rows: count per minute 2.5 s -> 0.11 s, see
# docs/performance.md), while searches still read newest hours first (logs_sql bounds them by hour).
# Tables made before keep ORDER BY (Timestamp) (changing it rewrites the table); all SQL serves both.
LOGS_ORDER_BY = "ORDER BY (toStartOfHour(Timestamp), ServiceName, Timestamp)"


def logs(days: int, table: str = "otel_logs") -> str:
    """A table of log rows: otel_logs, and siem_events with the same columns, indexes and sort key."""
    return f"""
CREATE TABLE IF NOT EXISTS {table} (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    ObservedTimestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TraceId {_ID},
    SpanId {_ID},
    TraceFlags UInt8,
    SeverityText LowCardinality(String) CODEC(ZSTD(1)),
    SeverityNumber UInt8,
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    Body String CODEC(ZSTD(1)),
    ResourceSchemaUrl LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes {_MAP},
    ScopeSchemaUrl LowCardinality(String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion LowCardinality(String) CODEC(ZSTD(1)),
    ScopeAttributes {_MAP},
    LogAttributes {_MAP},{_FERRY_COLS},
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_log_attr_key mapKeys(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_log_attr_value mapValues(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_body {BODY_TOKENS} TYPE {BODY_INDEX_TYPE}
) ENGINE = MergeTree
{_partition_by(table)}
{LOGS_ORDER_BY}
{_ttl(table, days)}
{_SETTINGS}"""


# Lookups go both ways: by FromId through the sort key, by ToId through a bloom filter on it. Measured
# on 1 M links over 4 daily partitions, merged, 2 cores (median of 5): ToId = one id 2.4 ms with the
# bloom filter, 2.6 ms with a projection ORDER BY ToId, 8.2 ms with neither; ToId IN 20 ids 4.4 ms
# bloom, 9.3 ms projection. The bloom filter costs 4 % more disk (47 vs 45 MB), the projection 100 %
# (90 MB) and twice the insert time, so the bloom filter it is.
def links(days: int) -> str:
    return f"""
CREATE TABLE IF NOT EXISTS links (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    FromId String CODEC(ZSTD(1)),
    ToId String CODEC(ZSTD(1)),
    Kind LowCardinality(String) CODEC(ZSTD(1)),{_FERRY_COLS},
    INDEX idx_to_id ToId TYPE bloom_filter(0.001) GRANULARITY 1
) ENGINE = MergeTree
{_partition_by("links")}
ORDER BY (FromId, ToId)
{_ttl("links", days)}
{_SETTINGS}"""


def traces(days: int) -> str:
    return f"""
CREATE TABLE IF NOT EXISTS otel_traces (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TraceId {_ID},
    SpanId {_ID},
    ParentSpanId {_ID},
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes {_MAP},
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes {_MAP},
    Duration UInt64 CODEC(ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    `Events.Timestamp` Array(DateTime64(9)) CODEC(ZSTD(1)),
    `Events.Name` Array(LowCardinality(String)) CODEC(ZSTD(1)),
    `Events.Attributes` Array({_MAP.split(" CODEC")[0]}) CODEC(ZSTD(1)),
    `Links.TraceId` Array(String) CODEC(ZSTD(1)),
    `Links.SpanId` Array(String) CODEC(ZSTD(1)),
    `Links.TraceState` Array(String) CODEC(ZSTD(1)),
    `Links.Attributes` Array({_MAP.split(" CODEC")[0]}) CODEC(ZSTD(1)),{_FERRY_COLS},
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1
) ENGINE = MergeTree
{_partition_by("otel_traces")}
ORDER BY (ServiceName, SpanName, toDateTime(Timestamp))
{_ttl("otel_traces", days)}
{_SETTINGS}"""


# A family is reported again at every sender's metadata interval (1 min by default): a few rows per
# family a minute, read by family, newest first (argMax over TimeUnix). A plain MergeTree rather than a
# ReplacingMergeTree: the writer's exactly-once check counts a batch's rows in the table, which a
# replacing merge would shrink (and the batch would be rewritten as "partly written").
def prom_metadata(days: int) -> str:
    return f"""
CREATE TABLE IF NOT EXISTS prom_metadata (
    TimeUnix DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    MetricFamily String CODEC(ZSTD(1)),
    Type LowCardinality(String) CODEC(ZSTD(1)),
    Help String CODEC(ZSTD(1)),
    Unit LowCardinality(String) CODEC(ZSTD(1)),{_FERRY_COLS}
) ENGINE = MergeTree
{_partition_by("prom_metadata")}
ORDER BY (Tenant, MetricFamily, TimeUnix)
{_ttl("prom_metadata", days)}
{_SETTINGS}"""


def trace_id_ts(days: int) -> list[str]:
    """Trace id -> time range lookup, so a trace fetch reads only the partitions it lives in."""
    return [
        f"""
CREATE TABLE IF NOT EXISTS otel_traces_trace_id_ts (
    TraceId {_ID},
    Start DateTime CODEC(Delta, ZSTD(1)),
    End DateTime CODEC(Delta, ZSTD(1)),
    Seen DateTime DEFAULT now() CODEC(Delta, ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = MergeTree
PARTITION BY toDate(Start)
ORDER BY (TraceId, Start)
{_ttl("otel_traces_trace_id_ts", days)}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1""",
        """
CREATE MATERIALIZED VIEW IF NOT EXISTS otel_traces_trace_id_ts_mv TO otel_traces_trace_id_ts AS
SELECT TraceId, min(toDateTime(Timestamp)) AS Start, max(toDateTime(Timestamp)) AS End
FROM otel_traces WHERE TraceId != '' GROUP BY TraceId""",
    ]


_METRIC_COMMON = f"""
    ResourceAttributes {_MAP},
    ResourceSchemaUrl String CODEC(ZSTD(1)),
    ScopeName LowCardinality(String) CODEC(ZSTD(1)),
    ScopeVersion LowCardinality(String) CODEC(ZSTD(1)),
    ScopeAttributes {_MAP},
    ScopeDroppedAttrCount UInt32 CODEC(ZSTD(1)),
    ScopeSchemaUrl String CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    MetricName LowCardinality(String) CODEC(ZSTD(1)),
    MetricDescription LowCardinality(String) CODEC(ZSTD(1)),
    MetricUnit LowCardinality(String) CODEC(ZSTD(1)),
    Attributes {_MAP},
    StartTimeUnix DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TimeUnix DateTime64(9) CODEC(Delta(8), ZSTD(1)),"""

_EXEMPLARS = """
    `Exemplars.FilteredAttributes` Array(Map(String, String)) CODEC(ZSTD(1)),
    `Exemplars.TimeUnix` Array(DateTime64(9)) CODEC(ZSTD(1)),
    `Exemplars.Value` Array(Float64) CODEC(ZSTD(1)),
    `Exemplars.SpanId` Array(String) CODEC(ZSTD(1)),
    `Exemplars.TraceId` Array(String) CODEC(ZSTD(1)),"""

_METRIC_IDX = """
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_key mapKeys(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_value mapValues(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1"""

_METRIC_SPECIFIC = {
    "otel_metrics_gauge": f"""
    Value Float64 CODEC(ZSTD(1)),
    Flags UInt32 CODEC(ZSTD(1)),{_EXEMPLARS}""",
    "otel_metrics_sum": f"""
    Value Float64 CODEC(ZSTD(1)),
    Flags UInt32 CODEC(ZSTD(1)),{_EXEMPLARS}
    AggregationTemporality Int32 CODEC(ZSTD(1)),
    IsMonotonic Bool CODEC(Delta, ZSTD(1)),""",
    "otel_metrics_histogram": f"""
    Count UInt64 CODEC(Delta, ZSTD(1)),
    Sum Float64 CODEC(ZSTD(1)),
    BucketCounts Array(UInt64) CODEC(ZSTD(1)),
    ExplicitBounds Array(Float64) CODEC(ZSTD(1)),{_EXEMPLARS}
    Flags UInt32 CODEC(ZSTD(1)),
    Min Float64 CODEC(ZSTD(1)),
    Max Float64 CODEC(ZSTD(1)),
    AggregationTemporality Int32 CODEC(ZSTD(1)),""",
    "otel_metrics_exponential_histogram": f"""
    Count UInt64 CODEC(Delta, ZSTD(1)),
    Sum Float64 CODEC(ZSTD(1)),
    Scale Int32 CODEC(ZSTD(1)),
    ZeroCount UInt64 CODEC(ZSTD(1)),
    PositiveOffset Int32 CODEC(ZSTD(1)),
    PositiveBucketCounts Array(UInt64) CODEC(ZSTD(1)),
    NegativeOffset Int32 CODEC(ZSTD(1)),
    NegativeBucketCounts Array(UInt64) CODEC(ZSTD(1)),{_EXEMPLARS}
    Flags UInt32 CODEC(ZSTD(1)),
    Min Float64 CODEC(ZSTD(1)),
    Max Float64 CODEC(ZSTD(1)),
    AggregationTemporality Int32 CODEC(ZSTD(1)),""",
    "otel_metrics_summary": """
    Count UInt64 CODEC(Delta, ZSTD(1)),
    Sum Float64 CODEC(ZSTD(1)),
    `ValueAtQuantiles.Quantile` Array(Float64) CODEC(ZSTD(1)),
    `ValueAtQuantiles.Value` Array(Float64) CODEC(ZSTD(1)),
    Flags UInt32 CODEC(ZSTD(1)),""",
}


# Every metric table of the catalogue has its columns here, and nothing else does.
_METRIC_TABLES = tuple(t.name for t in CATALOGUE if t.name.startswith("otel_metrics_"))
if set(_METRIC_SPECIFIC) != set(_METRIC_TABLES):
    raise RuntimeError(f"ddl._METRIC_SPECIFIC {sorted(_METRIC_SPECIFIC)} != catalogue metric tables {sorted(_METRIC_TABLES)}")

DEFERRED_INDEXES.update({t: (*_MAP_BLOOMS, "idx_attr_key", "idx_attr_value") for t in _METRIC_TABLES})


# A series' identity as one integer, for the PromQL reads (query/prom_store.py) to group and match
# samples by instead of reading the attribute maps of every row; stores made before it compute it on read.
# Scope, metric name and unit are LowCardinality above for the same reads: filtering 8.5 M rows on a plain
# ScopeName took ~250 ms of decompressing and comparing, 40 ms as LowCardinality.
SERIES_ID = ("SeriesId UInt64 MATERIALIZED cityHash64(Tenant, ServiceName, ScopeName, ScopeVersion, MetricName, "
             "MetricUnit, Attributes, ResourceAttributes) CODEC(ZSTD(1))")


def metrics(table: str, days: int) -> str:
    return f"""
CREATE TABLE IF NOT EXISTS {table} ({_METRIC_COMMON}{_METRIC_SPECIFIC[table]}{_FERRY_COLS},
    {SERIES_ID},{_METRIC_IDX}
) ENGINE = MergeTree
{_partition_by(table)}
ORDER BY (ServiceName, MetricName, Attributes, toUnixTimestamp64Nano(TimeUnix))
{_ttl(table, days)}
{_SETTINGS}"""


DATA_TABLES = TABLE_NAMES


def batch_ledger(days: int) -> list[str]:
    """Which batch ids each table holds, keyed by id so the writer's exactly-once check stays a
    primary-key lookup however large the data tables grow. Materialised views fill it inside the
    same insert as the rows."""
    out = [
        f"""
CREATE TABLE IF NOT EXISTS ferry_batches (
    TableName LowCardinality(String),
    BatchId String,
    Rows UInt64,
    IngestTime DateTime64(9)
) ENGINE = MergeTree
PARTITION BY toDate(IngestTime)
ORDER BY (TableName, BatchId)
TTL {ledger_ttl(days)}
SETTINGS ttl_only_drop_parts = 1, fsync_after_insert = 1, fsync_part_directory = 1"""
    ]
    for t in DATA_TABLES:
        out.append(
            f"""
CREATE MATERIALIZED VIEW IF NOT EXISTS {t}_batches_mv TO ferry_batches AS
SELECT '{t}' AS TableName, BatchId, count() AS Rows, max(IngestTime) AS IngestTime
FROM {t} WHERE BatchId != '' GROUP BY BatchId"""
        )
    return out


def ledger_ttl(days: int) -> str:
    """The batch ledger outlives the longest retention by a day (a redelivery is always older)."""
    return f"toDateTime(IngestTime) + toIntervalDay({max(days, 1) + 1})"


# table -> (when its rows happened, when they reached ferry): what its retention counts from.
_TTL_TIMES = {
    **{t.name: (t.time_column, "IngestTime") for t in CATALOGUE},
    "otel_traces_trace_id_ts": ("Start", "Seen"),
}
# Tables outside the catalogue (derived lookups) -> the signal whose retention they follow.
_DERIVED_SIGNAL = {"otel_traces_trace_id_ts": "traces"}


# The retention setting of each table (retention.<key>_days): the catalogue's, and the derived tables' signal.
_RETENTION_KEY = {**{t.name: t.retention_key for t in CATALOGUE}, **_DERIVED_SIGNAL}
DEFAULT_SIEM_DAYS = 400


def retention(logs_days: int, traces_days: int, metrics_days: int, siem_days: int = DEFAULT_SIEM_DAYS) -> dict[str, str | None]:
    """table -> its TTL expression (None: kept forever); setup applies changes to existing tables
    (never shortening an immutable table's)."""
    by_key = {"logs": logs_days, "traces": traces_days, "metrics": metrics_days, "siem": siem_days}
    out = {t: ttl_expr(t, by_key[_RETENTION_KEY[t]]) for t in _TTL_TIMES}
    # Not stretched to siem_days: a year of every table's batch ids for nothing, since a siem batch
    # seen again after the ledger forgot it (a redelivery, a spool resubmit, a writer's first fetch)
    # is looked up in siem_events itself (ChdbStore.write_batches), and a fresh batch has a fresh id.
    out["ferry_batches"] = ledger_ttl(max(logs_days, traces_days, metrics_days))
    return out


def ttl_days(expr: str | None) -> int | None:
    """The days of a TTL this module wrote (None: kept forever); -1 for one it cannot read."""
    if expr is None:
        return None
    m = re.search(r"toIntervalDay\((\d+)\)", expr)
    return int(m.group(1)) if m else -1


# Columns added since the first stores were made: (table, column definition) for ADD COLUMN IF NOT EXISTS.
ADDED_COLUMNS = [("otel_traces_trace_id_ts", "Seen DateTime DEFAULT now() CODEC(Delta, ZSTD(1))"),
                 *((t, SERIES_ID) for t in _METRIC_TABLES)]


def all_statements(logs_days: int, traces_days: int, metrics_days: int, siem_days: int = DEFAULT_SIEM_DAYS) -> list[str]:
    """Every CREATE, in dependency order: each catalogue table, then what derives from them."""
    days = {"logs": logs_days, "traces": traces_days, "metrics": metrics_days, "siem": siem_days}
    create = {"otel_logs": logs, "otel_traces": traces, "siem_events": lambda d: logs(d, "siem_events"), "links": links,
              "prom_metadata": prom_metadata}
    out = [create[t.name](days[t.retention_key]) if t.name in create else metrics(t.name, days[t.retention_key])
           for t in CATALOGUE]
    out += trace_id_ts(traces_days)
    out += batch_ledger(max(logs_days, traces_days, metrics_days))
    return out
