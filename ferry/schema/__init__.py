"""Arrow schemas of every batch that travels the bus and lands in the store.

One schema per store table; receivers build these, stages transform them, writers insert them as-is.
"""

from ferry.schema.tables import (
    ATTRS,
    LOGS,
    METRICS_EXP_HISTOGRAM,
    METRICS_GAUGE,
    METRICS_HISTOGRAM,
    METRICS_SUM,
    METRICS_SUMMARY,
    RAW_LINES,
    SCHEMA_VERSION,
    TABLES,
    TRACES,
    conform,
    empty_table,
)

__all__ = [
    "ATTRS",
    "LOGS",
    "METRICS_EXP_HISTOGRAM",
    "METRICS_GAUGE",
    "METRICS_HISTOGRAM",
    "METRICS_SUM",
    "METRICS_SUMMARY",
    "RAW_LINES",
    "SCHEMA_VERSION",
    "TABLES",
    "TRACES",
    "conform",
    "empty_table",
]
