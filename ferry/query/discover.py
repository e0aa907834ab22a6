"""What there is to search: the services seen, the fields of log lines with example values, and
warnings for query keys and values that match nothing in the time range (instead of a silent zero).
"""

from __future__ import annotations

import difflib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from ferry.errors import FerryError
from ferry.query.language import LEVELS, And, Field, Node, Not, Or, parse
from ferry.query.logs_sql import ALIASES, KNOWN_KEYS, group_column
from ferry.schema.tables import CATALOGUE, LOG_TABLES
from ferry.store.sql import literal
from ferry.tenancy import tenant_conds

Rows = Callable[[str], Awaitable[list[dict[str, Any]]]]

# `ferry fields` reads the newest lines of the range, not all of it: the keys and their common
# values show in any recent sample, and reading 100 k rows costs the same at any store size.
FIELDS_SAMPLE = 100_000
# Did-you-mean candidates for a missing key come from fewer lines still: this runs per query.
_KEYS_SAMPLE = 10_000
_TOP_VALUES = 5
_VALUE_CHARS = 80

# Columns as `ferry fields` lists them: (field, SQL). host and service are resource attributes too;
# they are listed once, under these names.
_COLUMNS = (
    ("service", "ServiceName"),
    ("level", "SeverityText"),
    ("host", "ResourceAttributes['host.name']"),
    ("source", "Source"),
    ("tenant", "Tenant"),
)
_HIDDEN_RESOURCE_KEYS = ("host.name", "service.name")
# Keys people type for a field ferry names otherwise: only hints, since data may hold such a key.
_HINTS = {"svc": "service", "application": "service", "program": "service", "appname": "service",
          "hostname": "host", "message": "body", "msg": "body", "lvl": "level", "sev": "level"}
_VALUE_KEYS = {"service": "ServiceName", "app": "ServiceName", "host": "ResourceAttributes['host.name']",
               "source": "Source", "tenant": "Tenant"}

# (what its rows count as, table, when a row happened) for every store table of the catalogue.
_SIGNALS = tuple((t.counted_as, t.name, t.time_column) for t in CATALOGUE)
# What /api/v1/services counts per service: the signals' own tables. siem_events holds copies of
# log rows (they would count twice) and links has no service.
SERVICE_COUNTS = ("logs", "spans", "metric_points")
_SERVICE_SIGNALS = tuple(s for s in _SIGNALS if s[0] in SERVICE_COUNTS)


def stored_sql() -> str:
    """Rows held under each /api/v1/status key ("logs", "spans", "metric_points"): one (signal, n)
    row per key, summed over every table counted under it."""
    parts = " UNION ALL ".join(f"SELECT {literal(key)} AS signal, count() AS n FROM {table}" for key, table, _ in _SIGNALS)
    return f"SELECT signal, sum(n) AS n FROM ({parts}) GROUP BY signal"


def _window(start_ns: int, end_ns: int | None, column: str = "Timestamp", tenant: str | None = None) -> str:
    """The time range (and the tenant, None: every tenant's rows) as a WHERE condition."""
    cond = f"{column} >= fromUnixTimestamp64Nano({int(start_ns)})"
    if end_ns is not None:
        cond += f" AND {column} < fromUnixTimestamp64Nano({int(end_ns)})"
    return " AND ".join([*tenant_conds(tenant), cond])


def _signals_by(column: str, name: str, start_ns: int, end_ns: int | None, tenant: str | None) -> str:
    """One row per value of `column` (named `name`): its log lines, spans and metric points in the
    range, and when last seen."""
    parts = []
    for signal, table, time_column in _SERVICE_SIGNALS:
        counts = ", ".join(f"{'count()' if s == signal else 'toUInt64(0)'} AS {s}" for s in SERVICE_COUNTS)
        parts.append(f"SELECT {column} AS {name}, {counts}, max({time_column}) AS last FROM {table} "
                     f"WHERE {_window(start_ns, end_ns, time_column, tenant)} GROUP BY {name}")
    return (
        f"SELECT {name}, sum(logs) AS logs, sum(spans) AS spans, sum(metric_points) AS metric_points, "
        f"toUnixTimestamp64Nano(max(last)) AS last_seen_ns FROM ({' UNION ALL '.join(parts)}) "
        f"GROUP BY {name} ORDER BY {name}"
    )


def services_sql(start_ns: int, end_ns: int | None, tenant: str | None = None) -> str:
    """One row per service: its log lines, spans and metric points in the range, and when last seen."""
    return _signals_by("ServiceName", "service", start_ns, end_ns, tenant)


def tenants_sql(start_ns: int, end_ns: int | None) -> str:
    """One row per tenant with rows in the range, counted as services_sql counts a service. Every
    tenant's, by design: it is what the UI's tenant picker offers."""
    return _signals_by("Tenant", "tenant", start_ns, end_ns, None)


def fields_sql(start_ns: int, end_ns: int | None, service: str | None = None, sample: int = FIELDS_SAMPLE,
               tenant: str | None = None) -> str:
    """One row per searchable field of the newest `sample` lines: where it lives (column, log,
    resource or scope attribute), the lines that have it, its distinct values and the commonest
    ones with their counts. A row with field '' counts the lines read."""
    where = _window(start_ns, end_ns, tenant=tenant)
    if service is not None:
        where += f" AND ServiceName = {literal(service)}"
    pairs = ["('', 'x', 'lines')", *(f"('{name}', {expr}, 'column')" for name, expr in _COLUMNS)]
    hidden = ", ".join(literal(k) for k in _HIDDEN_RESOURCE_KEYS)
    maps = [
        "arrayMap((k, v) -> (k, v, 'log attribute'), mapKeys(LogAttributes), mapValues(LogAttributes))",
        f"arrayFilter(x -> x.1 NOT IN ({hidden}), arrayMap((k, v) -> (k, v, 'resource attribute'), "
        "mapKeys(ResourceAttributes), mapValues(ResourceAttributes)))",
        "arrayMap((k, v) -> (k, v, 'scope attribute'), mapKeys(ScopeAttributes), mapValues(ScopeAttributes))",
    ]
    newest = (
        "SELECT ServiceName, SeverityText, Source, Tenant, LogAttributes, ResourceAttributes, ScopeAttributes "
        f"FROM otel_logs WHERE {where} ORDER BY Timestamp DESC LIMIT {int(sample)}"
    )
    values = (
        f"SELECT kv.1 AS field, kv.3 AS kind, substring(kv.2, 1, {_VALUE_CHARS}) AS value, count() AS c "
        f"FROM ({newest}) ARRAY JOIN arrayConcat([{', '.join(pairs)}], {', '.join(maps)}) AS kv "
        "WHERE kv.2 != '' GROUP BY field, kind, value"
    )
    columns = ", ".join(f"'{name}'" for name, _ in _COLUMNS)
    return (
        "SELECT field, kind, sum(c) AS lines, count() AS distinct_values, "
        f"arraySlice(arraySort(x -> (-toInt64(x.2), x.1), groupArray((value, c))), 1, {_TOP_VALUES}) AS top "
        f"FROM ({values}) GROUP BY field, kind "
        f"ORDER BY kind = 'column' DESC, indexOf([{columns}], field), lines DESC, field LIMIT 200"
    )


def aliases_of(field: str) -> list[str]:
    """The other names a field can be searched by (`app` for service)."""
    return sorted(a for a, target in ALIASES.items() if target == field)


def _fields(node: Node) -> Iterator[Field]:
    if isinstance(node, Field):
        yield node
    elif isinstance(node, Not):
        yield from _fields(node.operand)
    elif isinstance(node, And | Or):
        for n in node.operands:
            yield from _fields(n)


def _maps_contain(key: str) -> str:
    # On the maps' key subcolumns: ScopeAttributes has no key index, and mapContains() on it read
    # the whole map column (150 ms over 2 M rows, against 6 ms for the keys alone).
    k = literal(key)
    return " OR ".join(f"has({m}.keys, {k})" for m in ("LogAttributes", "ResourceAttributes", "ScopeAttributes"))


def _keys_present_sql(keys: list[str], start_ns: int, end_ns: int | None, table: str = "otel_logs",
                      tenant: str | None = None) -> str:
    # One LIMIT 1 probe per key: the key bloom filters skip every part without it, and a key that
    # is there stops the read at its first row, so this costs milliseconds at any store size.
    probes = [f"SELECT {literal(k)} AS key FROM (SELECT 1 FROM {table} WHERE {_window(start_ns, end_ns, tenant=tenant)} "
              f"AND ({_maps_contain(k)}) LIMIT 1)" for k in keys]
    return " UNION ALL ".join(probes)


def _sampled_keys_sql(start_ns: int, end_ns: int | None, table: str = "otel_logs", tenant: str | None = None) -> str:
    return (
        "SELECT DISTINCT arrayJoin(arrayConcat(mapKeys(LogAttributes), mapKeys(ResourceAttributes), "
        f"mapKeys(ScopeAttributes))) AS key FROM (SELECT LogAttributes, ResourceAttributes, ScopeAttributes "
        f"FROM {table} WHERE {_window(start_ns, end_ns, tenant=tenant)} ORDER BY Timestamp DESC LIMIT {_KEYS_SAMPLE})"
    )


def _values_sql(expr: str, start_ns: int, end_ns: int | None, extra: str = "1", table: str = "otel_logs",
                tenant: str | None = None) -> str:
    return (f"SELECT {expr} AS value, count() AS c FROM {table} WHERE {_window(start_ns, end_ns, tenant=tenant)} AND ({extra}) "
            "GROUP BY value ORDER BY c DESC LIMIT 1000")


def _closest(word: str, candidates: list[str]) -> str | None:
    by_case = [c for c in candidates if c.lower() == word.lower()]
    if by_case:
        return by_case[0]
    if word.lower() in _HINTS:
        return _HINTS[word.lower()]
    lower = {c.lower(): c for c in reversed(candidates) if c}  # the first spelling of a name wins
    found = difflib.get_close_matches(word.lower(), list(lower), n=1, cutoff=0.6)
    return lower[found[0]] if found else None


def _no_value(key: str, value: str, values: list[str]) -> str:
    near = _closest(value, values)
    if near is not None:
        return f"no line has {key} {value!r} in this time range; did you mean {near!r}?"
    common = ", ".join(repr(v) for v in values[:5] if v)
    return f"no line has {key} {value!r} in this time range" + (f"; the commonest are {common}" if common else "")


async def warnings(rows: Rows, query: str, start_ns: int, end_ns: int | None, *, found_any: bool,
                   table: str = "otel_logs", tenant: str | None = None) -> list[str]:
    """Plain-words warnings for the parts of `query` that cannot match: a key no line of `table`
    (a log table) in the range has (checked on every query; cheap), and, when nothing matched,
    values no line has. They are advice: a check the store cannot answer (busy, timed out) leaves
    its warning out rather than failing an answer already found."""
    if table not in LOG_TABLES:
        raise ValueError(f"{table!r} is not a table of log rows")
    try:
        return await _warnings(rows, query, start_ns, end_ns, found_any=found_any, table=table, tenant=tenant)
    except FerryError:
        return []


async def _warnings(rows: Rows, query: str, start_ns: int, end_ns: int | None, *, found_any: bool,
                    table: str, tenant: str | None) -> list[str]:
    fields = list(_fields(parse(query)))
    keys = list(dict.fromkeys(f.key for f in fields if f.key.lower() not in KNOWN_KEYS and f.key.lower() not in ALIASES))
    out: list[str] = []
    missing: set[str] = set()
    if keys:
        present = {str(r["key"]) for r in await rows(_keys_present_sql(keys, start_ns, end_ns, table, tenant))}
        missing = {k for k in keys if k not in present}
        if missing:
            known = sorted({*KNOWN_KEYS, *ALIASES} - {"trace", "span"})
            known += [str(r["key"]) for r in await rows(_sampled_keys_sql(start_ns, end_ns, table, tenant))]
            for k in (k for k in keys if k in missing):
                near = _closest(k, known)
                out.append(f"no field named {k!r}; did you mean {near!r}?" if near else
                           f"no field named {k!r} in this time range; `ferry fields` lists the fields")
    if found_any:
        return out
    for f in fields:
        lkey = f.key.lower()
        if f.op != "=" or f.value == "" or f.key in missing:
            continue
        if lkey in ("level", "severity"):
            if f.value.lower() not in LEVELS:
                levels = [str(r["value"]) for r in await rows(_values_sql("SeverityText", start_ns, end_ns, table=table, tenant=tenant))]
                if f.value.lower() not in {v.lower() for v in levels}:
                    out.append(_no_value("level", f.value, levels))
        elif lkey in _VALUE_KEYS:
            values = [str(r["value"]) for r in await rows(_values_sql(_VALUE_KEYS[lkey], start_ns, end_ns, table=table, tenant=tenant))]
            if f.value not in values and len(values) < 1000:
                out.append(_no_value(lkey, f.value, values))
        elif lkey not in KNOWN_KEYS:
            key = ALIASES.get(lkey, f.key)
            values = [str(r["value"]) for r in await rows(
                _values_sql(group_column(key), start_ns, end_ns, _maps_contain(key), table, tenant))]
            if f.value not in values and len(values) < 1000:
                out.append(_no_value(f.key, f.value, values))
    return out


# The API's routes as `GET /` lists them: (path, what it answers, a link to try it or "").
API_ROUTES = (
    ("/api/v1/pipeline", "the pipeline as it runs: topics (depth, bytes, rate in), stage instances (workers, lag, "
     "rate out)", "/api/v1/pipeline"),
    ("/api/v1/logs?q=&since=1h", "search log lines, newest first", "/api/v1/logs?q=&since=15m&limit=20"),
    ("/api/v1/logs/count?q=&by=&step=", "count matching lines, optionally by a field and per time step",
     "/api/v1/logs/count?q=&by=service"),
    ("/api/v1/logs/tail?q=&after=", "lines that arrived after a cursor, for following live", ""),
    ("/api/v1/siem/events?q=&since=1h", "search security events (siem_events), as /api/v1/logs",
     "/api/v1/siem/events?q=&since=1d&limit=20"),
    ("/api/v1/siem/events/count?q=&by=&step=", "count matching security events, as /api/v1/logs/count", ""),
    ("/api/v1/related?id=&depth=3&fanout=100", "the ids related to one (the links graph) and their log lines", ""),
    ("/api/v1/traces/{trace_id}", "one trace: its spans and its log lines", ""),
    ("/api/v1/metrics", "metric names with kind, unit, series and services", "/api/v1/metrics"),
    ("/api/v1/metrics/series?name=&label=&step=", "one metric's series; histograms with p50/p90/p99", ""),
    ("/api/v1/services", "services with their log, span and metric counts and when last seen", "/api/v1/services"),
    ("/api/v1/tenants?since=7d", "the tenants with data, with their log, span and metric counts", "/api/v1/tenants"),
    ("/api/v1/fields?service=", "the fields a search can use, with example values", "/api/v1/fields"),
    ("/api/v1/status", "is ferry taking data? rows, disk, lag, spool", "/api/v1/status"),
    ("/metrics", "ferry's own metrics, Prometheus text format", "/metrics"),
    ("/healthz", "liveness", "/healthz"),
)
