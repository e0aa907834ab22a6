"""SQL for `ferry tail`: log rows ingested after a cursor that match a query, oldest first.

The cursor is IngestTime (when ferry took the line), so late-timestamped lines still show up.
"""

from __future__ import annotations

from ferry.query.language import parse
from ferry.query.logs_sql import compile_where
from ferry.tenancy import tenant_conds


def compile_tail(query: str, *, after_ingest_ns: int, limit: int, columns: str, tenant: str | None = None) -> str:
    where = " AND ".join([*tenant_conds(tenant), f"({compile_where(parse(query))})"])
    return (
        f"SELECT {columns} FROM otel_logs "
        f"WHERE IngestTime > fromUnixTimestamp64Nano({int(after_ingest_ns)}) AND {where} "
        f"ORDER BY IngestTime ASC, Timestamp ASC LIMIT {int(limit)}"
    )
