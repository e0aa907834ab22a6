"""Discovery reads (ferry.query.discover) and the syslog aliases, against a real chDB store.

Services, the fields with example values, and warnings for keys and values no line has.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from ferry.config.model import RetentionConfig
from ferry.errors import BadRequest
from ferry.query.discover import fields_sql, services_sql, warnings
from ferry.query.logs_sql import compile_logs, compile_logs_count
from ferry.schema.tables import LOGS, TRACES, conform
from ferry.store.chdb_store import ChdbStore

S = 10**9
NOW = time.time_ns()
START = NOW - 3600 * S

LINES: list[dict[str, Any]] = [
    {"ServiceName": "billing", "SeverityText": "ERR", "SeverityNumber": 17, "Source": "syslog", "Body": "charge failed",
     "LogAttributes": [("syslog.facility", "local3"), ("syslog.procid", "42")], "ResourceAttributes": [("host.name", "web1")]},
    {"ServiceName": "sshd", "SeverityText": "NOTICE", "SeverityNumber": 10, "Source": "syslog", "Body": "Failed password",
     "LogAttributes": [("syslog.facility", "user")], "ResourceAttributes": [("host.name", "web1")]},
    {"ServiceName": "checkout", "SeverityText": "ERROR", "SeverityNumber": 17, "Source": "otlp", "Body": "declined",
     "LogAttributes": [("code.function.name", "charge")], "ResourceAttributes": [("service.name", "checkout")]},
    {"ServiceName": "web", "Source": "otlp", "Body": "k8s pod", "LogAttributes": [("app", "billing")]},
]


def _insert(store: ChdbStore, table: str, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
    keys = {k for r in rows for k in r}
    cols = {k: pa.array([r.get(k, [] if "Attributes" in k else None) for r in rows], schema.field(k).type) for k in keys}
    store.insert(table, conform(pa.table(cols), schema))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChdbStore]:
    s = ChdbStore(Path(tmp_path_factory.mktemp("discover")))
    s.setup(RetentionConfig())
    _insert(s, "otel_logs", [{**r, "Timestamp": NOW - (10 - i) * S} for i, r in enumerate(LINES)], LOGS)
    _insert(s, "otel_traces", [{"ServiceName": "checkout", "Timestamp": NOW - S, "TraceId": "a" * 32, "SpanId": "b" * 16}],
            TRACES)
    try:
        yield s
    finally:
        s.close()


def _warn(store: ChdbStore, query: str) -> list[str]:
    async def rows(sql: str) -> list[dict[str, Any]]:
        return store.query_rows(sql)  # type: ignore[return-value]

    found = store.query_rows(compile_logs(query, start_ns=START, end_ns=None, limit=10))
    return asyncio.run(warnings(rows, query, START, None, found_any=bool(found)))


def _bodies(store: ChdbStore, query: str) -> set[str]:
    return {str(r["Body"]) for r in store.query_rows(compile_logs(query, start_ns=START, end_ns=None, columns="Body"))}


def test_syslog_aliases(store: ChdbStore) -> None:
    """`app:` is the service (or an `app` attribute), `facility:`/`procid:` the syslog attributes."""
    assert _bodies(store, "app:billing") == {"charge failed", "k8s pod"}
    assert _bodies(store, "app:sshd") == {"Failed password"}
    assert _bodies(store, "facility:local3") == {"charge failed"}
    assert _bodies(store, "procid:42 -facility:user") == {"charge failed"}
    counts = store.query_rows(compile_logs_count("", start_ns=START, end_ns=None, group_by="facility"))
    assert {(r["key"], int(r["count"])) for r in counts} == {("local3", 1), ("user", 1), ("", 2)}
    with pytest.raises(BadRequest):
        compile_logs_count("", start_ns=START, end_ns=None, group_by="body")


def test_services_count_each_signal(store: ChdbStore) -> None:
    """Each service with its log lines, spans and metric points in the range, and when it was last seen."""
    rows = {r["service"]: r for r in store.query_rows(services_sql(START, None))}
    assert set(rows) == {"billing", "sshd", "checkout", "web"}
    assert (int(rows["checkout"]["logs"]), int(rows["checkout"]["spans"])) == (1, 1)
    assert int(rows["checkout"]["last_seen_ns"]) == NOW - S and int(rows["billing"]["spans"]) == 0


def test_fields_list_columns_and_attribute_keys_with_examples(store: ChdbStore) -> None:
    """Columns first, then attribute keys, each with the lines that have it and its commonest values."""
    rows = {(r["field"], r["kind"]): r for r in store.query_rows(fields_sql(START, None))}
    assert int(rows[("", "lines")]["lines"]) == 4
    svc = rows[("service", "column")]
    assert int(svc["lines"]) == 4 and int(svc["distinct_values"]) == 4
    fac = rows[("syslog.facility", "log attribute")]
    assert int(fac["lines"]) == 2 and sorted(v for v, _ in fac["top"]) == ["local3", "user"]
    assert ("service.name", "resource attribute") not in rows, "listed once, as service"
    assert int(rows[("level", "column")]["lines"]) == 3
    only = {r["field"] for r in store.query_rows(fields_sql(START, None, service="billing"))}
    assert "syslog.procid" in only and "code.function.name" not in only


def test_warnings_name_missing_keys_and_values(store: ChdbStore) -> None:
    """A key no line has, or (when nothing matched) a value no line has, is named with a guess."""
    assert _warn(store, "svc:billing") == ["no field named 'svc'; did you mean 'service'?"]
    assert _warn(store, "syslog.facilty:local3") == ["no field named 'syslog.facilty'; did you mean 'syslog.facility'?"]
    assert _warn(store, "service:biling") == ["no line has service 'biling' in this time range; did you mean 'billing'?"]
    assert _warn(store, "facility:locl3") == [
        "no line has facility 'locl3' in this time range; did you mean 'local3'?"]
    assert _warn(store, "level:eror") == ["no line has level 'eror' in this time range; did you mean 'ERROR'?"]
    assert _warn(store, "zzzz:1")[0].startswith("no field named 'zzzz' in this time range")
    # known keys and values that exist say nothing, even when the whole query matches nothing
    assert _warn(store, "service:billing facility:local3 level:error") == []
    assert _warn(store, "service:billing declined") == []
