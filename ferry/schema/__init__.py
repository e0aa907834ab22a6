"""Arrow schemas of every batch that travels the bus and lands in the store.

One schema per store table; receivers build these, stages transform them, writers insert them as-is.
"""

from ferry.schema.tables import (
    ATTRS,
    CATALOGUE,
    COUNTED_AS,
    LOGS,
    METRICS_EXP_HISTOGRAM,
    METRICS_GAUGE,
    METRICS_HISTOGRAM,
    METRICS_SUM,
    METRICS_SUMMARY,
    RAW_LINES,
    REMOTE_WRITE_REQUESTS,
    REMOTE_WRITE_TARGET,
    SCHEMA_VERSION,
    TABLE_NAMES,
    TABLES,
    TRACES,
    Table,
    conform,
    empty_table,
    table,
)

__all__ = [
    "ATTRS",
    "CATALOGUE",
    "COUNTED_AS",
    "LOGS",
    "METRICS_EXP_HISTOGRAM",
    "METRICS_GAUGE",
    "METRICS_HISTOGRAM",
    "METRICS_SUM",
    "METRICS_SUMMARY",
    "RAW_LINES",
    "REMOTE_WRITE_REQUESTS",
    "REMOTE_WRITE_TARGET",
    "SCHEMA_VERSION",
    "TABLES",
    "TABLE_NAMES",
    "TRACES",
    "Table",
    "conform",
    "empty_table",
    "table",
]
