"""What of a LogQL query runs in the store: stream labels, selectors, line filters and counts per step, as SQL.

Stream labels of an otel_logs row (the one mapping every Loki route uses, written down here):
  - every ResourceAttributes key with dots turned into underscores (`host.name` -> `host_name`, as
    Loki's OTLP ingestion does; a Loki-pushed stream's labels are stored there verbatim);
  - `service_name` = ServiceName, `level` = SeverityText lower-cased and normalised as Loki's
    detected_level (err -> error, warning -> warn, crit/alert/emerg -> critical; from SeverityNumber
    when there is no text), `source` = Source (otlp, syslog, loki, ...); these three win over a
    resource attribute of the same label name;
  - selector aliases: `service` means service_name, `host` means the `host` attribute if the row has
    one, else host.name.
A label with an empty value does not exist (as in Loki). Structured metadata (labels of a line that
are not stream labels): `trace_id`, `span_id` and LogAttributes (dots -> underscores).
"""

from __future__ import annotations

import re

from ferry.query.logql import ast
from ferry.query.tokens import interior_tokens
from ferry.store.ddl import BODY_TOKENS
from ferry.store.sql import literal

TABLE = "otel_logs"

_RA = "ResourceAttributes"

# SeverityText spellings folded onto Loki's level names (syslog's short names, OTel's WARNING).
LEVEL_NAMES = {"err": "error", "eror": "error", "warning": "warn", "crit": "critical", "alert": "critical",
               "emerg": "critical", "emergency": "critical", "information": "info", "informational": "info",
               "dbg": "debug"}
LEVEL_SQL = (
    "multiIf(SeverityText != '', transform(lower(SeverityText), "
    f"[{', '.join(literal(k) for k in LEVEL_NAMES)}], [{', '.join(literal(v) for v in LEVEL_NAMES.values())}], "
    "lower(SeverityText)), SeverityNumber = 0, '', SeverityNumber <= 4, 'trace', SeverityNumber <= 8, 'debug', "
    "SeverityNumber <= 12, 'info', SeverityNumber <= 16, 'warn', SeverityNumber <= 20, 'error', 'critical')"
)

# Labels with a column of their own (cheap to read: no map column is touched).
COLUMN_LABELS = {"service_name": "ServiceName", "level": LEVEL_SQL, "source": "Source"}
ALIASES = {"service": "service_name"}

_underscored = f"mapApply((k, v) -> (replaceAll(k, '.', '_'), v), {_RA})"
# Every stream label of a row as Map(String, String), empty values left out.
LABELS_SQL = (
    f"mapFilter((k, v) -> v != '', mapUpdate({_underscored}, "
    f"map('service_name', ServiceName, 'level', {LEVEL_SQL}, 'source', Source)))"
)
# Structured metadata of a row: trace and span id and the log record's attributes.
METADATA_SQL = (
    "mapFilter((k, v) -> v != '', mapUpdate(mapApply((k, v) -> (replaceAll(k, '.', '_'), v), LogAttributes), "
    "map('trace_id', TraceId, 'span_id', SpanId)))"
)

LABEL_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def label_sql(name: str) -> str:
    """SQL value of stream label `name` on a row ('' when the row lacks it)."""
    name = ALIASES.get(name, name)
    if name in COLUMN_LABELS:
        return COLUMN_LABELS[name]
    k = literal(name)
    if name == "host":
        return f"if(mapContains({_RA}, 'host'), {_RA}['host'], {_RA}['host.name'])"
    if "_" not in name:
        return f"{_RA}[{k}]"
    # host_name is host.name, k8s_pod_name k8s.pod.name: try the exact key, then the key with dots
    # where the label has underscores (short-circuited, so the common cases touch one lookup).
    dotted = literal(name.replace("_", "."))
    return (f"if(mapContains({_RA}, {k}), {_RA}[{k}], if(mapContains({_RA}, {dotted}), {_RA}[{dotted}], "
            f"arrayElement(mapValues(mapFilter((k, v) -> replaceAll(k, '.', '_') = {k}, {_RA})), 1)))")


def anchored(regex: str) -> str:
    """A LogQL (RE2) regular expression anchored at both ends, as Loki matches label values."""
    return f"^(?:{regex})$"


def matcher_sql(m: ast.Matcher) -> str:
    value = label_sql(m.name)
    if m.op == "=":
        return f"{value} = {literal(m.value)}"
    if m.op == "!=":
        return f"{value} != {literal(m.value)}"
    cond = f"match({value}, {literal(anchored(m.value))})"
    return cond if m.op == "=~" else f"NOT {cond}"


def contains_sql(text: str) -> str:
    """Body contains `text` (case-sensitive substring, Loki's `|=`). Words wholly inside `text` are
    whole tokens of any line containing it, so the full-text index may skip granules lacking them;
    the substring check then decides."""
    exact = f"position(Body, {literal(text)}) > 0"
    inner = list(dict.fromkeys(interior_tokens(text)))
    if inner:
        return f"(hasAllTokens({BODY_TOKENS}, [{', '.join(literal(t) for t in inner)}]) AND {exact})"
    return f"({exact})"


def line_filter_sql(f: ast.LineFilter) -> str:
    if f.op in ("|=", "!="):
        if any(v == "" for v in f.values):
            return "1" if f.op == "|=" else "0"
        terms = [contains_sql(v) for v in f.values]
    else:
        terms = [f"match(Body, {literal(v)})" for v in f.values]
    anyof = terms[0] if len(terms) == 1 else "(" + " OR ".join(terms) + ")"
    return anyof if f.op in ("|=", "|~") else f"NOT {anyof}"


def pushed_filters(query: ast.LogQuery) -> tuple[list[ast.LineFilter], tuple[ast.Stage, ...]]:
    """(line filters the store applies, the stages left for the evaluator). Filters before the
    first stage that rewrites the line read the stored Body; parsers and label stages do not touch it."""
    pushed: list[ast.LineFilter] = []
    rest: list[ast.Stage] = []
    rewritten = False
    for s in query.stages:
        if isinstance(s, ast.LineFormat | ast.Decolorize) or isinstance(s, ast.Parser) and s.kind == "unpack":
            rewritten = True
        if isinstance(s, ast.LineFilter) and not rewritten:
            pushed.append(s)
        else:
            rest.append(s)
    return pushed, tuple(rest)


def where_sql(query: ast.LogQuery, tenant_where: str, start_ns: int, end_ns: int, *, end_inclusive: bool = False,
              filters: list[ast.LineFilter] | None = None) -> str:
    """WHERE for the rows of `query`'s streams in [start_ns, end_ns) (or (start, end] with end_inclusive,
    as a metric window is), with the line filters the store can apply."""
    lo, hi = (">", "<=") if end_inclusive else (">=", "<")
    conds = [tenant_where,
             f"Timestamp {lo} fromUnixTimestamp64Nano({int(start_ns)})",
             f"Timestamp {hi} fromUnixTimestamp64Nano({int(end_ns)})"]
    conds += [matcher_sql(m) for m in query.matchers]
    if filters is None:
        filters, _ = pushed_filters(query)
    conds += [line_filter_sql(f) for f in filters]
    return " AND ".join(f"({c})" for c in conds)


LINE_COLUMNS = (
    "toUnixTimestamp64Nano(Timestamp) AS ts, Body AS line, "
    f"{LABELS_SQL} AS labels, {METADATA_SQL} AS metadata"
)
TAIL_COLUMNS = LINE_COLUMNS + ", toUnixTimestamp64Nano(IngestTime) AS ingest_ns"


def lines_sql(where: str, *, limit: int, backward: bool, columns: str = LINE_COLUMNS) -> str:
    order = "DESC" if backward else "ASC"
    return f"SELECT {columns} FROM {TABLE} WHERE {where} ORDER BY Timestamp {order} LIMIT {int(limit)}"


def bucket_counts_sql(where: str, *, phase_ns: int, width_ns: int, by: tuple[str, ...] | None) -> str:
    """Lines and bytes per (label set, bucket): bucket k holds (phase + (k-1) w, phase + k w]. `by` groups
    by those labels only (a sum over the full label sets), None by every stream label."""
    bucket = f"intDiv(toUnixTimestamp64Nano(Timestamp) - {int(phase_ns)} + {int(width_ns) - 1}, {int(width_ns)})"
    if by is None:
        key = f"{LABELS_SQL} AS labels"
        group = "labels"
    elif by:
        key = "map(" + ", ".join(f"{literal(n)}, {label_sql(n)}" for n in by) + ") AS labels"
        group = "labels"
    else:
        key = "map() AS labels"
        group = ""
    group_by = f"{group}, k" if group else "k"
    return (f"SELECT {key}, {bucket} AS k, count() AS n, sum(length(Body)) AS b FROM {TABLE} "
            f"WHERE {where} GROUP BY {group_by}")
