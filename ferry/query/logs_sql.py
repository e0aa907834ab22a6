"""Compiles a log search query (ferry.query.language) into one safe ClickHouse SELECT over a table of
log rows: otel_logs, or siem_events (any of schema.tables.LOG_TABLES, which share columns and indexes).

Every user-supplied value reaches SQL through ferry.store.sql.literal() or as a validated number, never raw.
"""

from __future__ import annotations

from typing import Literal

from ferry.errors import BadRequest
from ferry.query.language import (
    KEY_RE,
    LEVEL_KEYS,
    LEVELS,
    And,
    Field,
    FieldOp,
    Node,
    Not,
    Or,
    Phrase,
    Word,
    parse,
)
from ferry.query.tokens import SEPARATOR_CLASS, TOKEN_RE, interior_tokens, tokens
from ferry.schema.tables import LOG_TABLES
from ferry.store.ddl import BODY_TOKENS
from ferry.store.sql import literal
from ferry.tenancy import tenant_conds

TABLE = "otel_logs"


def _log_table(table: str) -> str:
    # Table names reach SQL unquoted, so only the catalogue's log tables pass (never a user's text).
    if table not in LOG_TABLES:
        raise ValueError(f"{table!r} is not a table of log rows ({', '.join(LOG_TABLES)})")
    return table

# Keyset pagination: rows are ordered by (Timestamp, CURSOR_KEY) and a page resumes strictly after
# the last row's pair. The key is a row fingerprint so rows sharing a nanosecond still page
# deterministically; byte-identical rows tie and may be skipped at a page boundary.
CURSOR_TS = "_cursor_ts"
CURSOR_KEY = "_cursor_key"
_CURSOR_KEY_EXPR = (
    "hex(cityHash64(BatchId, ObservedTimestamp, TraceId, SpanId, ServiceName, Body, LogAttributes))"
)

_MAPS = ("LogAttributes", "ResourceAttributes", "ScopeAttributes")

# Field keys with a column of their own; everything else is looked up in the attribute maps.
_COLUMN_KEYS = {
    "service": "ServiceName",
    "source": "Source",
    "tenant": "Tenant",
    "trace_id": "TraceId",
    "trace": "TraceId",
    "span_id": "SpanId",
    "span": "SpanId",
    "host": "ResourceAttributes['host.name']",
}
# Names syslog users type (the README's `app:billing`, `facility:local3`) for where ferry keeps those
# fields. The key as typed is also tried as an attribute, so an OTLP attribute named `app` still matches.
ALIASES = {"app": "service", "facility": "syslog.facility", "procid": "syslog.procid", "msgid": "syslog.msgid"}
# Every key that is not looked up in the attribute maps.
KNOWN_KEYS = frozenset({*_COLUMN_KEYS, *LEVEL_KEYS, "body"})
# Hex ids are stored lower-case (OTLP bytes -> hex), but people paste them from anywhere.
_LOWERCASE_KEYS = frozenset({"trace_id", "trace", "span_id", "span"})

_GROUP_COLUMNS = {
    "service": "ServiceName",
    "servicename": "ServiceName",
    "level": "SeverityText",
    "severity": "SeverityText",
    "severitytext": "SeverityText",
    "host": "ResourceAttributes['host.name']",
    "source": "Source",
    "tenant": "Tenant",
}

_INT64_MAX = 2**63 - 1
def _string_array(values: list[str]) -> str:
    return "[" + ", ".join(literal(v) for v in dict.fromkeys(values)) + "]"


def _has_tokens(toks: list[str]) -> str:
    return f"hasAllTokens({BODY_TOKENS}, {_string_array(toks)})"


def _re_escape(text: str) -> str:
    # Tokens hold only letters, digits and non-ASCII characters, none of which RE2 treats
    # specially; escaping ASCII punctuation anyway keeps this safe for any caller.
    return "".join("\\" + c if c.isascii() and not c.isalnum() else c for c in text)


def _adjacent_regex(toks: list[str], open_end: bool) -> str:
    sep = SEPARATOR_CLASS
    body = (sep + "+").join(_re_escape(t) for t in toks)
    return f"(^|{sep}){body}" + ("" if open_end else f"({sep}|$)")


def _word(node: Word) -> str:
    toks = tokens(node.text)
    if not toks:
        # Pure punctuation ("->", "::") has no tokens to look up, so scan for it literally.
        return f"(position(Body, {literal(node.text)}) > 0)"
    # `foo-*` ends in a delimiter, so its last token is complete and the `*` adds nothing.
    open_end = node.prefix and TOKEN_RE.fullmatch(node.text[-1]) is not None
    whole = toks[:-1] if open_end else toks
    parts = [_has_tokens(whole)] if whole else []
    if len(toks) > 1 or open_end:
        parts.append(f"match({BODY_TOKENS}, {literal(_adjacent_regex(toks, open_end))})")
    return "(" + " AND ".join(parts) + ")"


def _phrase(node: Phrase) -> str:
    exact = f"position(Body, {literal(node.text)}) > 0"
    inner = interior_tokens(node.text)
    return f"({_has_tokens(inner)} AND {exact})" if inner else f"({exact})"


def _level(op: FieldOp, value: str) -> str:
    text = "lower(SeverityText)"
    v = value.lower()
    if op == "exists":
        return "(SeverityText != '' OR SeverityNumber > 0)"
    if op == "prefix":
        return f"startsWith({text}, {literal(v)})"
    if op == "=":
        if v not in LEVELS:
            return f"({text} = {literal(v)})"
        group, lo, hi = LEVELS[v]
        names = [n for n, (g, _, _) in LEVELS.items() if g == group]
        # Either field may be the one a sender filled in (OTLP often sets only the number, syslog
        # text says ERROR for crit), so a row matches on its text or on its number.
        return (
            f"({text} IN ({', '.join(literal(n) for n in names)}) OR SeverityNumber BETWEEN {lo} AND {hi})"
        )
    # A level name stands for its whole range (WARN is 13..16), so `> warn` starts above 16.
    threshold: float
    if v in LEVELS:
        _, lo, hi = LEVELS[v]
        threshold = {">=": lo, ">": hi, "<=": hi, "<": lo}[op]
    else:
        threshold = float(value)
    # Rows with no number are ranked by their text, each name counting as the start of its range.
    names = [n for n, (_, nlo, _) in LEVELS.items() if _compare(nlo, op, threshold)]
    by_text = f"{text} IN ({', '.join(literal(n) for n in names)})" if names else "0"
    return f"if(SeverityNumber > 0, SeverityNumber {op} {threshold!r}, {by_text})"


def _compare(a: float, op: FieldOp, b: float) -> bool:
    return {">=": a >= b, ">": a > b, "<=": a <= b, "<": a < b}[op]


def _number(value: str) -> str:
    return repr(float(value))


def _column(key: str, column: str, op: FieldOp, value: str) -> str:
    if key in _LOWERCASE_KEYS:
        value = value.lower()
    if op == "exists":
        if key == "host":
            return "mapContains(ResourceAttributes, 'host.name')"
        return f"({column} != '')"
    if op == "prefix":
        return f"startsWith({column}, {literal(value)})"
    if op == "=":
        return f"({column} = {literal(value)})"
    return f"ifNull(toFloat64OrNull({column}) {op} {_number(value)}, 0)"


def _attribute(key: str, op: FieldOp, value: str) -> str:
    k = literal(key)
    if op == "exists":
        return "(" + " OR ".join(f"mapContains({m}, {k})" for m in _MAPS) + ")"
    if op == "=" and value == "":
        # A missing key reads as "" in every map, so `key:""` means "set in none of them".
        return "(" + " AND ".join(f"{m}[{k}] = ''" for m in _MAPS) + ")"
    if op == "prefix":
        terms = [f"startsWith({m}[{k}], {literal(value)})" for m in _MAPS]
    elif op == "=":
        terms = [f"{m}[{k}] = {literal(value)}" for m in _MAPS]
    else:
        terms = [f"toFloat64OrNull({m}[{k}]) {op} {_number(value)}" for m in _MAPS]
        # Non-numeric or absent values compare as NULL; make them plain false so NOT stays sound.
        return "ifNull(" + " OR ".join(terms) + ", 0)"
    return "(" + " OR ".join(terms) + ")"


def _field(node: Field) -> str:
    key, op, value = node.key, node.op, node.value
    if op == "prefix" and value == "":
        op = "exists"
    lkey = key.lower()
    if lkey in LEVEL_KEYS:
        return _level(op, value)
    if lkey == "body":
        if op == "exists":
            return "(Body != '')"
        if op == "=":
            return f"(Body = {literal(value)})"
        if op == "prefix":
            return _word(Word(value, prefix=True))
        raise BadRequest("body: cannot be compared as a number")
    if lkey in _COLUMN_KEYS:
        return _column(lkey, _COLUMN_KEYS[lkey], op, value)
    if lkey in ALIASES:
        return f"({_field(Field(ALIASES[lkey], op, value))} OR {_attribute(key, op, value)})"
    return _attribute(key, op, value)


def compile_where(node: Node) -> str:
    """The boolean SQL expression a row of a log table must satisfy to match `node`."""
    if isinstance(node, Word):
        return _word(node)
    if isinstance(node, Phrase):
        return _phrase(node)
    if isinstance(node, Field):
        return _field(node)
    if isinstance(node, Not):
        return f"(NOT {compile_where(node.operand)})"
    if isinstance(node, And):
        if not node.operands:
            return "1"
        return "(" + " AND ".join(compile_where(n) for n in node.operands) + ")"
    if isinstance(node, Or):
        if not node.operands:
            return "0"
        return "(" + " OR ".join(compile_where(n) for n in node.operands) + ")"
    raise TypeError(f"not a query node: {node!r}")


def _ns(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _INT64_MAX:
        raise BadRequest(f"{name} must be an integer number of nanoseconds since the epoch, got {value!r}")
    return value


def _where(query: str, start_ns: int | None, end_ns: int | None, tenant: str | None = None) -> str:
    conds = tenant_conds(tenant)
    if start_ns is not None:
        conds.append(f"Timestamp >= fromUnixTimestamp64Nano({_ns('start_ns', start_ns)})")
    if end_ns is not None:
        conds.append(f"Timestamp < fromUnixTimestamp64Nano({_ns('end_ns', end_ns)})")
    conds.append(compile_where(parse(query)))
    return " AND ".join(conds)


def compile_logs(
    query: str,
    *,
    start_ns: int | None,
    end_ns: int | None,
    limit: int = 100,
    order: Literal["desc", "asc"] = "desc",
    columns: str = "*",
    after: tuple[int, str] | None = None,
    table: str = TABLE,
    tenant: str | None = None,
    hour_bound: bool = True,
) -> str:
    """SELECT the rows of `table` (a log table) in [start_ns, end_ns) matching `query`, newest first by default.

    `columns` is trusted SQL from ferry's own code, never from a user. Two columns are appended,
    `_cursor_ts` (Timestamp in ns) and `_cursor_key`; pass the last row's pair as `after` to get
    the next page. `tenant` keeps that tenant's rows only (None: every tenant's). `hour_bound=False`
    suits a table sorted by (Timestamp) alone (stores made before 2026-12-05), which reads in time
    order anyway: the hour bound costs it a few ms (rare word 42 -> 49 ms).
    """
    table = _log_table(table)
    if order not in ("desc", "asc"):
        raise BadRequest(f"order must be 'desc' or 'asc', got {order!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise BadRequest(f"limit must be a positive integer, got {limit!r}")
    where = inner = _where(query, start_ns, end_ns, tenant)
    if after is not None:
        if not (isinstance(after, tuple) and len(after) == 2 and isinstance(after[1], str)):
            raise BadRequest(f"after must be a (timestamp_ns, key) pair, got {after!r}")
        ts = f"fromUnixTimestamp64Nano({_ns('after timestamp', after[0])})"
        key = literal(after[1])
        op = "<" if order == "desc" else ">"

        def past_cursor(key_sql: str) -> str:
            # The plain Timestamp bound lets the primary key skip what earlier pages already covered.
            return f" AND Timestamp {op}= {ts} AND (Timestamp {op} {ts} OR {key_sql} {op} {key})"

        where += past_cursor(CURSOR_KEY)
        inner += past_cursor(_CURSOR_KEY_EXPR)  # the subquery below has no _cursor_key alias
    direction = order.upper()
    # Every row of the page lies at or past the limit-th matching Timestamp. Finding that Timestamp
    # reads only the Timestamp column; bounding the main query by it leaves the tie-break hash (which
    # reads Body and the maps) to the page's rows instead of every row the in-order read passes.
    # Measured at 10 M rows: rare-word search 235 -> 106 ms, byte-identical results.
    agg, cmp = ("min", ">=") if order == "desc" else ("max", "<=")
    # Those rows lie in the hours from the newest matching one back to the hour of the limit-th
    # match. Reading matches in hour order stops there on either sort key, (Timestamp) or
    # (toStartOfHour(Timestamp), ServiceName, Timestamp); the second cannot read in Timestamp order
    # and would otherwise sort every match of the range (10 M rows: empty query 24 h 200 -> 45 ms).
    hour = "toStartOfHour(Timestamp)"
    hours = (f"Timestamp >= (SELECT min(h) FROM (SELECT {hour} AS h FROM {table} WHERE {inner} "
             f"ORDER BY h DESC LIMIT {limit}))" if order == "desc" else
             f"Timestamp < (SELECT max(h) + 3600 FROM (SELECT {hour} AS h FROM {table} WHERE {inner} "
             f"ORDER BY h ASC LIMIT {limit}))")
    bound = f" AND {hours}" if hour_bound else ""
    edge = (
        f"Timestamp {cmp} (SELECT {agg}(Timestamp) FROM (SELECT Timestamp FROM {table} WHERE {inner}{bound} "
        f"ORDER BY Timestamp {direction} LIMIT {limit}))"
    )
    return (
        f"SELECT {columns}, toUnixTimestamp64Nano(Timestamp) AS {CURSOR_TS}, {_CURSOR_KEY_EXPR} AS {CURSOR_KEY}\n"
        f"FROM {table}\n"
        f"WHERE {where} AND {edge}\n"
        f"ORDER BY Timestamp {direction}, {CURSOR_KEY} {direction}\n"
        f"LIMIT {limit}"
    )


def group_column(key: str) -> str:
    """The SQL value a count groups by for `key`: a column, or the attribute of that name (log,
    then resource, then scope attributes)."""
    key = ALIASES.get(key.lower(), key)
    if key.lower() in _GROUP_COLUMNS:
        return _GROUP_COLUMNS[key.lower()]
    if key.lower() in KNOWN_KEYS or not KEY_RE.fullmatch(key):
        raise BadRequest(f"cannot group by {key!r}; choose service, level, host, source, tenant or an attribute key")
    k = literal(key)
    return (f"if(mapContains(LogAttributes, {k}), LogAttributes[{k}], "
            f"if(mapContains(ResourceAttributes, {k}), ResourceAttributes[{k}], ScopeAttributes[{k}]))")


def compile_logs_count(
    query: str,
    *,
    start_ns: int | None,
    end_ns: int | None,
    group_by: str | None = None,
    step_s: int | None = None,
    table: str = TABLE,
    tenant: str | None = None,
) -> str:
    """COUNT the rows matching `query`: one row, or one per `bucket` and/or group `key`.

    Output columns, in order: `bucket` (Int64 unix seconds at the start of a `step_s`-second
    bucket, aligned to the epoch) if step_s is given; `key` (the group_by value: service, level,
    host, source, tenant or an attribute) if group_by is given; then `count`.
    """
    table = _log_table(table)
    select: list[str] = []
    keys: list[str] = []
    if step_s is not None:
        if isinstance(step_s, bool) or not isinstance(step_s, int) or not 1 <= step_s <= 10**9:
            raise BadRequest(f"step_s must be a positive integer number of seconds, got {step_s!r}")
        select.append(f"intDiv(toUnixTimestamp64Nano(Timestamp), {step_s * 10**9}) * {step_s} AS bucket")
        keys.append("bucket")
    if group_by is not None:
        select.append(f"{group_column(group_by)} AS key")
        keys.append("key")
    select.append("count() AS count")
    sql = f"SELECT {', '.join(select)}\nFROM {table}\nWHERE {_where(query, start_ns, end_ns, tenant)}"
    if keys:
        order = ", ".join(keys) if step_s is not None else "count DESC, key"
        sql += f"\nGROUP BY {', '.join(keys)}\nORDER BY {order}"
    return sql
