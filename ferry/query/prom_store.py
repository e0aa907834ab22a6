"""The store seen as Prometheus sees it: OTLP metrics under their Prometheus names, remote_write series verbatim.

The PromQL engine's Source (select), and the SQL behind /series, /labels, /label/<n>/values, /metadata, /query_exemplars.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ferry.query.promql.source import STALE_NAN, Hint, Matcher, Series
from ferry.store.sql import literal

Rows = Callable[[str], Awaitable[list[dict[str, Any]]]]
Arrow = Callable[[str], Awaitable[pa.Table]]

# Rows the remote_write receiver stored: their labels come back exactly as written, no OTLP naming.
RW_SCOPE = "prometheus.remote_write"
METADATA_TABLE = "prom_metadata"
METADATA_WINDOW_MS = 86_400_000

# OTLP data point flag FLAG_NO_RECORDED_VALUE; remote_write staleness markers carry it too.
_NO_VALUE = 1
_DELTA = 1  # AggregationTemporality

# Exponential histograms are left out: the specification maps them to Prometheus *native* histograms,
# which PromQL 2.42 treats as a separate sample type (no classic `_bucket` series, functions that
# Prometheus itself only half supports there), and the engine here evaluates float samples only. Folding
# them into classic buckets would invent bucket bounds the sender never had.
_TABLES = {
    "gauge": "otel_metrics_gauge",
    "sum": "otel_metrics_sum",
    "histogram": "otel_metrics_histogram",
    "summary": "otel_metrics_summary",
}

# ---------------------------------------------------------------------------------------------------
# Naming (OpenTelemetry specification, "Prometheus and OpenMetrics compatibility")

_UNITS = {
    "d": "days", "h": "hours", "min": "minutes", "s": "seconds", "ms": "milliseconds", "us": "microseconds",
    "ns": "nanoseconds", "By": "bytes", "KiBy": "kibibytes", "MiBy": "mebibytes", "GiBy": "gibibytes",
    "TiBy": "tebibytes", "KBy": "kilobytes", "MBy": "megabytes", "GBy": "gigabytes", "TBy": "terabytes",
    "m": "meters", "V": "volts", "A": "amperes", "J": "joules", "W": "watts", "g": "grams", "Cel": "celsius",
    "Hz": "hertz", "%": "percent",
}
# The denominator of a rate unit ("m/s" -> meters_per_second) is singular.
_PER_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month", "y": "year"}

_INVALID_NAME = re.compile(r"[^a-zA-Z0-9_:]")
_INVALID_LABEL = re.compile(r"[^a-zA-Z0-9_]")
_UNDERSCORES = re.compile(r"__+")
_BRACES = re.compile(r"\{[^}]*\}")


def _unit_word(unit: str, table: dict[str, str]) -> str:
    unit = _BRACES.sub("", unit).strip()
    if not unit:
        return ""
    word = table.get(unit, unit)
    return _UNDERSCORES.sub("_", _INVALID_LABEL.sub("_", word)).strip("_")


def unit_suffix(unit: str, kind: str) -> str:
    """The Prometheus unit word of a UCUM unit ('s' -> 'seconds', 'By/s' -> 'bytes_per_second', '{req}' -> '');
    '1' is 'ratio' for gauges and nothing otherwise."""
    if unit == "1":
        return "ratio" if kind == "gauge" else ""
    main, slash, per = unit.partition("/")
    main_word = _unit_word(main, _UNITS)
    per_word = _unit_word(per, _PER_UNITS) if slash else ""
    if main_word and per_word:
        return f"{main_word}_per_{per_word}"
    if per_word:
        return f"per_{per_word}"
    return main_word


def sanitize_name(name: str) -> str:
    out = _UNDERSCORES.sub("_", _INVALID_NAME.sub("_", name))
    return f"_{out}" if out[:1].isdigit() else out


def sanitize_label(name: str) -> str:
    out = _UNDERSCORES.sub("_", _INVALID_LABEL.sub("_", name))
    return f"key_{out}" if out[:1].isdigit() else out


def family_name(metric: str, unit: str, kind: str, monotonic: bool = False) -> str:
    """The Prometheus metric family name of an OTLP metric: sanitised name, unit suffix, `_total`
    for a monotonic sum (a counter). `kind` is the OTLP point type: gauge, sum, histogram, summary."""
    name = sanitize_name(metric)
    word = unit_suffix(unit, "gauge" if kind == "gauge" else kind)
    if word and not name.endswith(f"_{word}") and name != word:
        name = f"{name}_{word}"
    if kind == "sum" and monotonic and not name.endswith("_total"):
        name = f"{name}_total"
    return name


def prom_type(kind: str, monotonic: bool) -> str:
    if kind == "sum":
        return "counter" if monotonic else "gauge"
    return kind


def variants(kind: str, family: str) -> list[tuple[str, str]]:
    """(variant, series name) of each Prometheus series name an OTLP metric of `kind` appears under."""
    if kind == "histogram":
        return [("bucket", f"{family}_bucket"), ("sum", f"{family}_sum"), ("count", f"{family}_count")]
    if kind == "summary":
        return [("quantile", family), ("sum", f"{family}_sum"), ("count", f"{family}_count")]
    return [("value", family)]


# ---------------------------------------------------------------------------------------------------
# SQL pieces


def _sql_sanitize(expr: str) -> str:
    """sanitize_label in SQL."""
    s = f"replaceRegexpAll(replaceRegexpAll({expr}, '[^a-zA-Z0-9_]', '_'), '__+', '_')"
    return f"if(match({s}, '^[0-9]'), concat('key_', {s}), {s})"


def _labels_from(attrs: str, reserved: str, n: str) -> tuple[str, str]:
    """(helper columns, labels expression) of a series whose labels are the map `attrs` with its names
    sanitised, overridden by the map `reserved`. Names that collide after sanitising keep every
    value, joined with ';' in the order of the original names (as the specification says); empty
    values are dropped, since in Prometheus an empty label is no label."""
    helpers = (f"arraySort(mapKeys({attrs})) AS _k{n}, arraySort((v, k) -> k, mapValues({attrs}), mapKeys({attrs})) AS _v{n}, "
               f"arrayMap(k -> {_sql_sanitize('k')}, _k{n}) AS _s{n}, arrayDistinct(_s{n}) AS _u{n}")
    sanitized = f"mapFromArrays(_u{n}, arrayMap(u -> arrayStringConcat(arrayFilter((v, s) -> s = u, _v{n}, _s{n}), ';'), _u{n}))"
    return helpers, f"mapFilter((k, v) -> v != '', mapUpdate({sanitized}, {reserved}))"


JOB_SQL = "if(ra['service.namespace'] != '', concat(ra['service.namespace'], '/', ServiceName), ServiceName)"
_IDENTIFYING = ("service.name", "service.namespace", "service.instance.id")


def _otlp_labels(name_expr: str) -> tuple[str, str]:
    """Labels of an OTLP series (over columns of a grouped query): sanitised point attributes, then
    __name__, job, instance and the scope, which win over attributes of the same name."""
    reserved = (f"map('__name__', {name_expr}, 'job', {JOB_SQL}, 'instance', ra['service.instance.id'], "
                "'otel_scope_name', ScopeName, 'otel_scope_version', ScopeVersion)")
    return _labels_from("Attributes", reserved, "a")


def _match_sql(expr: str, m: Matcher) -> str:
    if m.op in ("=~", "!~"):
        # Anchored as Prometheus anchors; (?-s): the store's `.` also matches a newline, Prometheus' does not.
        cond = f"match({expr}, {literal('(?-s)^(?:' + m.value + ')$')})"
        return cond if m.op == "=~" else f"NOT {cond}"
    return f"{expr} {'=' if m.op == '=' else '!='} {literal(m.value)}"


def _ms(column: str = "TimeUnix") -> str:
    return f"toUnixTimestamp64Milli({column})"


# The store's DateTime64(9) ends in 2262; Prometheus' "all of time" reaches 9999.
_LAST_MS = 9_000_000_000_000


def _time_ms(ms: int) -> str:
    return f"fromUnixTimestamp64Milli(toInt64({min(max(int(ms), 0), _LAST_MS)}))"


def _until(end_ms: int, column: str = "TimeUnix") -> str:
    """`column` at or before END_MS, counting a nanosecond stamp by its millisecond as Prometheus would."""
    return f"{column} < {_time_ms(end_ms + 1)}"


@dataclass(frozen=True)
class Family:
    kind: str  # gauge, sum, histogram, summary (the OTLP point type), or "rw" (remote_write, verbatim)
    metric: str  # MetricName as stored
    unit: str
    monotonic: bool
    help: str

    @property
    def name(self) -> str:
        return self.metric if self.kind == "rw" else family_name(self.metric, self.unit, self.kind, self.monotonic)

    @property
    def prom_type(self) -> str:
        return "unknown" if self.kind == "rw" else prom_type(self.kind, self.monotonic)

    def series_names(self) -> list[str]:
        return [self.name] if self.kind == "rw" else [n for _, n in variants(self.kind, self.name)]


# What one LZ4-compressed sample of a regular scrape took in an Arrow answer, and what it takes
# uncompressed (time and value, 8 bytes each, and the series' offsets).
_LZ4_SAMPLE_BYTES = 4
_RAW_SAMPLE_BYTES = 17


def raw_answer_cap(max_result_bytes: int) -> int:
    """The byte cap of an uncompressed sample read: the samples the API's answer cap held when the
    reads came LZ4-compressed. Python holds the same decoded table either way (an uncompressed
    answer is used in place, where a compressed one was unpacked into a second copy)."""
    return max_result_bytes // _LZ4_SAMPLE_BYTES * _RAW_SAMPLE_BYTES


# The active parts of the metric tables: (table, name, partition id, first block, last block).
_Parts = frozenset[tuple[str, str, str, int, int]]


@dataclass(frozen=True)
class _Catalog:
    checked: float  # monotonic time it was last found current
    read: float  # ... and last read in full
    families: list[Family]
    parts: _Parts  # the parts it covers


# (scope, tenant, first minute, last minute) -> the catalogue the requests of that window share.
_CATALOG: dict[tuple[object, str, int, int], _Catalog] = {}


def _covered(ranges: list[tuple[int, int]], lo: int, hi: int) -> bool:
    """Whether the block ranges cover every block from LO to HI."""
    at = lo
    for a, b in sorted(ranges):
        if a > at:
            break
        at = max(at, b + 1)
        if at > hi:
            return True
    return at > hi


def _added_parts(before: _Parts, now: _Parts) -> dict[str, list[str]] | None:
    """table -> the parts of NOW holding blocks no part of BEFORE held (what was written since); None
    when blocks of BEFORE are in no part of NOW (data dropped). A merged or mutated part holds
    blocks its sources held, so it adds nothing."""
    def ranges(parts: _Parts) -> dict[tuple[str, str], list[tuple[int, int]]]:
        out: dict[tuple[str, str], list[tuple[int, int]]] = {}
        for table, _, partition, lo, hi in parts:
            out.setdefault((table, partition), []).append((lo, hi))
        return out

    old, new = ranges(before), ranges(now)
    for (table, _, partition, lo, hi) in before - now:
        if not _covered(new.get((table, partition), []), lo, hi):
            return None
    added: dict[str, list[str]] = {}
    for (table, name, partition, lo, hi) in now - before:
        if not _covered(old.get((table, partition), []), lo, hi):
            added.setdefault(table, []).append(name)
    return added


def _merge_families(old: list[Family], more: list[Family]) -> list[Family]:
    seen = {(f.kind, f.metric, f.unit, f.monotonic): f for f in old}
    for f in more:
        seen.setdefault((f.kind, f.metric, f.unit, f.monotonic), f)
    return list(seen.values())

# (scope, SeriesId) -> labels of a remote_write series. A SeriesId is a hash of everything its labels
# come from (ddl.SERIES_ID), so an entry never goes stale: reads group samples by the integer and
# take the labels from here, reading the attribute maps only for series not seen before (as
# Prometheus keeps its series index in memory). Bounded by clearing.
# Kept with each: its labels' sorted items, the key the engine orders series by.
_SERIES_LABELS: dict[tuple[object, int], tuple[dict[str, str], tuple[tuple[str, str], ...]]] = {}
_SERIES_LABELS_MAX = 1_000_000
_IDS_PER_READ = 8_000  # series ids in one label read: 20 digits each, well under the 256 KiB a statement may be

# scope -> (when checked, whether every part of the gauge table has SeriesId written). A store made
# before the column existed computes it on read from the maps, slower than grouping by them.
_IDS_READY: dict[object, tuple[float, bool]] = {}
_IDS_READY_TTL_S = 60.0


def _name_ok(name: str, matchers: list[Matcher]) -> bool:
    for m in matchers:
        if m.op == "=":
            ok = name == m.value
        elif m.op == "!=":
            ok = name != m.value
        else:
            try:
                found = re.fullmatch(m.value, name) is not None
            except re.error:
                continue  # RE2 syntax Python lacks: the store decides (its filter on __name__ is exact)
            ok = found if m.op == "=~" else not found
        if not ok:
            return False
    return True


class PromStore:
    """A Source over the store for one tenant, plus the metadata reads of the Prometheus API."""

    # A dashboard refresh sends many queries at once; they share the metric catalogue this long.
    CATALOG_TTL_S = 5.0
    # Past this, a catalogue kept current from the parts added since is read again in full.
    CATALOG_FULL_S = 60.0

    def __init__(self, rows: Rows, tenant: str, scope: object = None, arrow: Arrow | None = None) -> None:
        """`scope`: what the catalogue is shared across (one per store; `rows` itself by default).
        `arrow`: the same reader answering Arrow, for the sample reads (else they go through `rows`)."""
        self.rows = rows
        self.arrow = arrow
        self.tenant = tenant
        self.scope = scope if scope is not None else rows

    # --- catalogue -------------------------------------------------------------------------------
    def _where(self, start_ms: int, end_ms: int) -> str:
        return f"Tenant = {literal(self.tenant)} AND TimeUnix >= {_time_ms(start_ms)} AND {_until(end_ms)}"

    async def families(self, start_ms: int, end_ms: int, matchers: list[Matcher] | None = None) -> list[Family]:
        """Every metric with points in [start, end] (whole minutes around it): its kind, stored name and
        unit. Shared by the requests of the last CATALOG_TTL_S; read afresh when `matchers` name a
        metric exactly that the shared copy lacks (it may have arrived since)."""
        lo, hi = start_ms // 60_000, min(end_ms, _LAST_MS) // 60_000 + 1
        key = (self.scope, self.tenant, lo, hi)
        w = self._where(lo * 60_000, hi * 60_000)
        hit = _CATALOG.get(key)
        parts: _Parts | None = None
        if hit and time.monotonic() - hit.checked >= self.CATALOG_TTL_S:
            # Past its time, the copy still holds while the metric tables have the very parts they
            # had when it was read: a few ms to ask, not a scan. Parts are immutable, so when only
            # parts were added (or merged, which adds no family), only those added are read and
            # their families joined to the copy's; a part gone without a successor (a dropped
            # partition) means a full read, as does a copy older than CATALOG_FULL_S (families
            # whose points a delete removed leave it then).
            parts = await self._parts()
            added = _added_parts(hit.parts, parts)
            if added is None or time.monotonic() - hit.read >= self.CATALOG_FULL_S:
                hit = None
            else:
                fams = hit.families
                if added:
                    more = await self._read_families(w, added)
                    # A part merged away before the read began was not read: then in full.
                    names = {n for ns in added.values() for n in ns}
                    fams = _merge_families(fams, more) if names <= {x[1] for x in await self._parts()} else None
                hit = None if fams is None else _Catalog(time.monotonic(), hit.read, fams, parts)
                if hit is not None:
                    _CATALOG[key] = hit
        if hit:
            wanted = {m.value for m in matchers or [] if m.name == "__name__" and m.op == "="} - {"target_info"}
            known = {n for f in hit.families for n in f.series_names()}
            if wanted <= known:
                return hit.families
        if parts is None:
            parts = await self._parts()
        fams = await self._read_families(w, None)
        if len(_CATALOG) > 256:
            _CATALOG.clear()
        now = time.monotonic()
        _CATALOG[key] = _Catalog(now, now, fams, parts)
        return fams

    async def _read_families(self, w: str, only: dict[str, list[str]] | None) -> list[Family]:
        """The families with rows matching `w` in every metric table, or with `only` (table -> part
        names) in those parts alone."""
        def within(table: str) -> str:
            if only is None:
                return w
            return f"{w} AND _part IN ({', '.join(literal(n) for n in only[table])})"

        # Grouped by the tables' sort-key prefix (ServiceName, MetricName), which the store aggregates
        # in order: a third faster than grouping by the name alone.
        rw = f"ScopeName = {literal(RW_SCOPE)}"
        variants_of = {"gauge": f"(MetricUnit, {rw})", "sum": "(MetricUnit, IsMonotonic)",
                       "histogram": "(MetricUnit, false)", "summary": "(MetricUnit, false)"}
        selects = [f"SELECT {literal(k)} AS kind, MetricName AS metric, groupUniqArray({variants_of[k]}) AS variants, "
                   f"any(MetricDescription) AS help FROM {t} WHERE {within(t)} GROUP BY ServiceName, MetricName"
                   for k, t in _TABLES.items() if only is None or t in only]
        found = await self.rows(" UNION ALL ".join(selects) + " SETTINGS optimize_aggregation_in_order = 1")
        seen: dict[tuple[str, str, str, bool], Family] = {}
        for r in found:
            for unit, flag in r["variants"]:
                kind = "rw" if r["kind"] == "gauge" and flag else r["kind"]
                mono = bool(flag) and kind == "sum"
                seen.setdefault((kind, r["metric"], unit, mono), Family(kind, r["metric"], unit, mono, r["help"]))
        return list(seen.values())

    async def _parts(self) -> _Parts:
        """The active parts of the metric tables: (table, name, partition, first block, last block)."""
        tables = ", ".join(literal(t) for t in _TABLES.values())
        found = await self.rows(
            "SELECT table, name, partition_id AS p, toString(min_block_number) AS lo, toString(max_block_number) AS hi "
            f"FROM system.parts WHERE active AND database = currentDatabase() AND table IN ({tables})")
        return frozenset((r["table"], r["name"], r["p"], int(r["lo"]), int(r["hi"])) for r in found)

    # --- series SQL --------------------------------------------------------------------------------
    def _selects(self, fams: list[Family], matchers: list[Matcher], start_ms: int, end_ms: int,
                 samples: bool, thin_step_ms: int | None = None, rw_by_id: list[str] | None = None) -> list[str]:
        """One SELECT per (table, variant) giving `labels` and, with `samples`, the columns of
        _to_series: delta, base, ts, vs, stale. Only matchers on labels are applied here; the
        names were chosen from the catalogue. `thin_step_ms`: see _rw_select. With `rw_by_id`, the
        remote_write SELECTs go there instead, giving `sid` (the SeriesId) in place of `labels`."""
        names = [m for m in matchers if m.name == "__name__"]
        # The catalogue chose the names by Python's regular expressions; the store checks again with
        # RE2's, Prometheus' own (the two differ in corners).
        labels = [m for m in matchers if m.name != "__name__" or m.op in ("=~", "!~")]
        wanted: dict[tuple[str, str], list[tuple[Family, str]]] = {}
        for f in fams:
            for variant, series_name in ([("value", f.name)] if f.kind == "rw" else variants(f.kind, f.name)):
                if _name_ok(series_name, names):
                    wanted.setdefault((f.kind, variant), []).append((f, series_name))
        out = []
        for (kind, variant), chosen in wanted.items():
            if kind == "rw" and rw_by_id is not None and samples:
                rw_by_id.append(self._rw_select(chosen, labels, start_ms, end_ms, samples, thin_step_ms, by_id=True))
            elif kind == "rw":
                out.append(self._rw_select(chosen, labels, start_ms, end_ms, samples, thin_step_ms))
            else:
                out.append(self._otlp_select(kind, variant, chosen, labels, start_ms, end_ms, samples))
        if _name_ok("target_info", names):
            out.extend(self._target_info_selects(labels, start_ms, end_ms, samples))
        return out

    def _rw_select(self, chosen: list[tuple[Family, str]], labels: list[Matcher], start_ms: int, end_ms: int,
                   samples: bool, thin_step_ms: int | None = None, by_id: bool = False) -> str:
        """Remote-write series. With `thin_step_ms` (an instant selector evaluated at END_MS, END_MS -
        step, END_MS - 2 step, ...; 0 for END_MS alone), only the last sample at or before each of
        those times is read: exactly the samples such a selector can return (a staleness marker
        included), so a dashboard's gauges at a 1 min step read a quarter of a 15 s scrape's samples.
        `by_id`: grouped by SeriesId, which it gives as `sid` instead of `labels` (see _series_labels):
        the attribute maps are then read only where a label matcher needs them."""
        metrics = ", ".join(literal(f.metric) for f, _ in chosen)
        where = [self._where(start_ms, end_ms), f"ScopeName = {literal(RW_SCOPE)}", f"MetricName IN ({metrics})"]
        where += [_match_sql("MetricName" if m.name == "__name__" else f"Attributes[{literal(m.name)}]", m) for m in labels]
        lab = "CAST(mapUpdate(Attributes, map('__name__', MetricName)), 'Map(String, String)') AS labels"
        if not samples:
            # Distinct series first, in the table's order (five times faster than distinct label maps).
            return (f"SELECT DISTINCT {lab} FROM (SELECT MetricName, Attributes FROM otel_metrics_gauge "
                    f"WHERE {' AND '.join(where)} GROUP BY ServiceName, MetricName, Attributes)")
        stale = f"groupArrayIf({_ms()}, bitAnd(Flags, {_NO_VALUE}) != 0) AS stale"
        source = f"otel_metrics_gauge WHERE {' AND '.join(where)} GROUP BY ServiceName, MetricName, Attributes"
        if by_id:
            lab = "SeriesId AS sid"
            source = f"otel_metrics_gauge WHERE {' AND '.join(where)} GROUP BY SeriesId"
        if thin_step_ms is None:
            # Sorted here (at no measurable cost): the parts the samples come from interleave, and
            # sorted series need no work of their own in Python (_arrow_series).
            return (f"SELECT {lab}, toUInt8(0) AS delta, [] :: Array(Float64) AS base, arraySort(groupArray({_ms()})) AS ts, "
                    f"arraySort((v, t) -> t, groupArray(Value), groupArray({_ms()})) AS vs, {stale} FROM {source}")
        # Sorted per series, a sample is kept when the next one falls after the next evaluation time.
        # (Arrays per series: grouping by series and step instead was five times slower.)
        k = f"intDiv(toInt64({int(end_ms)}) - x, {int(thin_step_ms)})" if thin_step_ms > 0 else "0"
        sort = (f"arraySort(groupArray({_ms()})) AS t0, arraySort((v, t) -> t, groupArray(Value), groupArray({_ms()})) AS v0, "
                f"arrayMap(x -> {k}, t0) AS k0, arrayMap(i -> i = length(k0) OR k0[i] != k0[i + 1], arrayEnumerate(k0)) AS m0")
        return (f"SELECT {'sid' if by_id else 'labels'}, delta, base, ts, vs, stale FROM ("
                f"SELECT {lab}, toUInt8(0) AS delta, [] :: Array(Float64) AS base, arrayFilter((x, m) -> m, t0, m0) AS ts, "
                f"arrayFilter((x, m) -> m, v0, m0) AS vs, {stale}, {sort} FROM {source})")

    def _otlp_select(self, kind: str, variant: str, chosen: list[tuple[Family, str]], labels: list[Matcher],
                     start_ms: int, end_ms: int, samples: bool) -> str:
        table = _TABLES[kind]
        mono = "IsMonotonic" if kind == "sum" else "false"
        keys = [f"{f.metric}\x00{f.unit}\x00{int(f.monotonic)}" for f, _ in chosen]
        name_expr = (f"transform(concat(MetricName, '\\0', MetricUnit, '\\0', toString(mono_)), "
                     f"[{', '.join(literal(k) for k in keys)}], [{', '.join(literal(n) for _, n in chosen)}], '')")
        metrics = ", ".join(sorted({literal(f.metric) for f, _ in chosen}))
        delta = f"AggregationTemporality = {_DELTA}" if kind in ("sum", "histogram") else "false"
        in_window = f"TimeUnix >= {_time_ms(start_ms)}"
        where = [f"Tenant = {literal(self.tenant)}", f"MetricName IN ({metrics})", _until(end_ms),
                 # A delta series is summed from its first point: earlier points are read as its base.
                 f"({in_window} OR {delta})" if samples else in_window]
        if kind == "gauge":
            where.append(f"ScopeName != {literal(RW_SCOPE)}")
        where += self._prefilters(labels)
        extra_key = {"bucket": ", ExplicitBounds AS eb", "quantile": ", `ValueAtQuantiles.Quantile` AS qs"}.get(variant, "")
        value = {"value": "Value", "sum": "Sum", "count": "toFloat64(Count)",
                 "bucket": "arrayMap(x -> toFloat64(x), arrayCumSum(BucketCounts))",
                 "quantile": "`ValueAtQuantiles.Value`"}[variant]
        # The sort key's columns first, so that the store can aggregate in order.
        group = (f"ServiceName, MetricName, Attributes, MetricUnit, toUInt8({mono}) AS mono_, toUInt8({delta}) AS delta, "
                 f"ResourceAttributes AS ra, ScopeName, ScopeVersion{extra_key}")
        stale = f"bitAnd(Flags, {_NO_VALUE}) != 0"
        if not samples:
            inner = f"SELECT {group} FROM {table} WHERE {' AND '.join(where)} GROUP BY ALL"
        else:
            base = (f"sumForEachIf({value}, NOT ({in_window}))" if variant == "bucket" else
                    "[] :: Array(Float64)" if variant == "quantile" else f"[sumIf({value}, NOT ({in_window}))]")
            inner = (f"SELECT {group}, {base} AS base_, groupArrayIf({_ms()}, {in_window}) AS ts, "
                     f"groupArrayIf({value}, {in_window}) AS vs_, groupArrayIf({_ms()}, {in_window} AND {stale}) AS stale "
                     f"FROM {table} WHERE {' AND '.join(where)} GROUP BY ALL")
        helpers, lab = _otlp_labels(name_expr)
        per_series = "base_ AS base, vs_ AS vs"
        if variant == "bucket":
            lab = f"mapUpdate({lab}, map('le', if(i > length(eb), '+Inf', toString(eb[i]))))"
            helpers += ", arrayJoin(range(1, length(eb) + 2)) AS i"
            per_series = "[toFloat64(base_[i])] AS base, arrayMap(a -> a[i], vs_) AS vs"
        elif variant == "quantile":
            lab = f"mapUpdate({lab}, map('quantile', toString(qs[i])))"
            helpers += ", arrayJoin(arrayEnumerate(qs)) AS i"
            per_series = "base_ AS base, arrayMap(a -> a[i], vs_) AS vs"
        cols = f"{lab} AS labels" + (f", delta, {per_series}, ts, stale" if samples else "")
        outer = f"SELECT {helpers}, {cols} FROM ({inner})"
        post = [_match_sql(f"labels[{literal(m.name)}]", m) for m in labels]
        final = "labels, delta, base, ts, vs, stale" if samples else "DISTINCT labels"
        return f"SELECT {final} FROM ({outer})" + (f" WHERE {' AND '.join(post)}" if post else "")

    @staticmethod
    def _prefilters(labels: list[Matcher]) -> list[str]:
        """Cheap row conditions implied by the matchers (the exact test is on the finished labels):
        reserved labels have a column of their own, and an attribute label equal to a value needs
        that value among the point's attribute values (the attribute-value bloom index answers it)."""
        out = []
        for m in labels:
            if m.name == "job" and m.op == "=" and m.value and "/" not in m.value:
                out.append(f"ServiceName = {literal(m.value)}")
            elif m.name == "instance" and m.op in ("=", "!="):
                out.append(_match_sql("ResourceAttributes['service.instance.id']", m))
            elif m.name == "otel_scope_name" and m.op in ("=", "!="):
                out.append(_match_sql("ScopeName", m))
            elif (m.op == "=" and m.value and ";" not in m.value
                  and m.name not in ("job", "instance", "otel_scope_name", "otel_scope_version", "le", "quantile")):
                out.append(f"has(mapValues(Attributes), {literal(m.value)})")
        return out

    def _target_info_selects(self, labels: list[Matcher], start_ms: int, end_ms: int, samples: bool) -> list[str]:
        """target_info: one series per resource with attributes beyond its identity, value 1 at
        every time the resource reported a point."""
        identity = ", ".join(literal(k) for k in _IDENTIFYING)
        reserved = f"map('__name__', 'target_info', 'job', {JOB_SQL}, 'instance', ra['service.instance.id'])"
        helpers, lab = _labels_from("o", reserved, "t")
        post = [_match_sql(f"labels[{literal(m.name)}]", m) for m in labels]
        final = "labels, delta, base, ts, vs, stale" if samples else "DISTINCT labels"
        out = []
        for kind, table in _TABLES.items():
            where = [self._where(start_ms, end_ms),
                     f"length(mapFilter((k, v) -> k NOT IN ({identity}), ResourceAttributes)) > 0"]
            if kind == "gauge":
                where.append(f"ScopeName != {literal(RW_SCOPE)}")
            ts = f", groupUniqArray({_ms()}) AS ts" if samples else ""
            inner = (f"SELECT ServiceName, ResourceAttributes AS ra, mapFilter((k, v) -> k NOT IN ({identity}), ra) AS o{ts} "
                     f"FROM {table} WHERE {' AND '.join(where)} GROUP BY ServiceName, ra")
            cols = ("toUInt8(0) AS delta, [] :: Array(Float64) AS base, ts, arrayMap(x -> 1.0, ts) AS vs, "
                    "[] :: Array(Int64) AS stale") if samples else "1"
            sel = f"SELECT {helpers}, {lab} AS labels, {cols} FROM ({inner})"
            out.append(f"SELECT {final} FROM ({sel})" + (f" WHERE {' AND '.join(post)}" if post else ""))
        return out

    # --- Source ------------------------------------------------------------------------------------
    async def select(self, matchers: list[Matcher], start_ms: int, end_ms: int, hint: Hint | None = None) -> list[Series]:
        fams = await self.families(start_ms, end_ms, matchers)
        # An instant selector (no range function, no range) returns at most one sample per step.
        thin = hint.step_ms if hint is not None and hint.func is None and hint.range_ms == 0 else None
        rw: list[str] | None = [] if self.arrow is not None and await self._ids_ready() else None
        selects = self._selects(fams, matchers, start_ms, end_ms, samples=True, thin_step_ms=thin, rw_by_id=rw)
        if not selects and not rw:
            return []
        if self.arrow is None:
            sql = " UNION ALL ".join(selects) + " SETTINGS optimize_aggregation_in_order = 1"
            return _to_series(await self.rows(sql + ", output_format_json_quote_denormals = 1"))
        arrow = self.arrow
        # Uncompressed (see raw_answer_cap): LZ4 took ~0.4 s of a 6 k-series read to write and unpack.
        settings = (" SETTINGS optimize_aggregation_in_order = 1, output_format_arrow_string_as_string = 1, "
                    "output_format_arrow_compression_method = 'none'")

        async def by_labels() -> list[Series]:
            return _arrow_series(await arrow(" UNION ALL ".join(selects) + settings)) if selects else []

        async def by_id() -> list[Series]:
            if not rw:
                return []
            table = await arrow(" UNION ALL ".join(rw) + settings)
            if table.num_rows == 0:
                return []
            sids = table.column("sid").to_numpy()
            labels = await self._series_labels(sids, fams, start_ms, end_ms)
            if any(x is None for x in labels):  # gone between the two reads (retention): left out
                table = table.filter(pa.array([x is not None for x in labels]))
            known = [x for x in labels if x is not None]
            return _arrow_series(table, [x[0] for x in known], [x[1] for x in known])

        # On connections of their own: the store runs both at once.
        a, b = await asyncio.gather(by_labels(), by_id())
        return a + b

    async def _ids_ready(self) -> bool:
        """Whether the remote_write reads may group by SeriesId: every active part of the gauge table
        has it written (parts from before the column get it when merged or materialised)."""
        hit = _IDS_READY.get(self.scope)
        if hit is not None and time.monotonic() - hit[0] < _IDS_READY_TTL_S:
            return hit[1]
        parts = "FROM system.{} WHERE active AND table = 'otel_metrics_gauge' AND database = currentDatabase()"
        found = await self.rows(f"SELECT count() AS n {parts.format('parts')} AND name NOT IN "
                                f"(SELECT name {parts.format('parts_columns')} AND column = 'SeriesId')")
        ready = bool(found) and int(found[0]["n"]) == 0
        _IDS_READY[self.scope] = (time.monotonic(), ready)
        return ready

    async def _series_labels(self, sids: np.ndarray, fams: list[Family], start_ms: int,
                             end_ms: int) -> list[tuple[dict[str, str], tuple[tuple[str, str], ...]] | None]:
        """The labels of remote_write series by SeriesId: from _SERIES_LABELS, and for those it lacks
        one read of their maps (the labels the `labels` column of _rw_select would have given)."""
        ids = [int(x) for x in sids.tolist()]
        missing = sorted({x for x in ids if (self.scope, x) not in _SERIES_LABELS})
        if missing:
            metrics = ", ".join(sorted({literal(f.metric) for f in fams if f.kind == "rw"}))
            found = []
            # In slices: the store parses at most 256 KiB of SQL (max_query_size), ~12 k ids.
            for i in range(0, len(missing), _IDS_PER_READ):
                found += await self.rows(
                    "SELECT toString(SeriesId) AS sid, any(MetricName) AS name, any(Attributes) AS attrs "
                    f"FROM otel_metrics_gauge WHERE {self._where(start_ms, end_ms)} AND ScopeName = {literal(RW_SCOPE)} "
                    f"AND MetricName IN ({metrics}) "
                    f"AND SeriesId IN ({', '.join(map(str, missing[i:i + _IDS_PER_READ]))}) GROUP BY SeriesId")
            if len(_SERIES_LABELS) + len(found) > _SERIES_LABELS_MAX:
                _SERIES_LABELS.clear()
            for r in found:
                labels = {**r["attrs"], "__name__": r["name"]}
                _SERIES_LABELS[(self.scope, int(r["sid"]))] = (labels, tuple(sorted(labels.items())))
        return [_SERIES_LABELS.get((self.scope, x)) for x in ids]

    # --- metadata reads ------------------------------------------------------------------------------
    async def series_labels(self, selectors: list[list[Matcher]], start_ms: int, end_ms: int) -> list[dict[str, str]]:
        """The label sets of every series matching any of `selectors` (all series with none)."""
        fams = await self.families(start_ms, end_ms, [m for sel in selectors for m in sel])
        selects: list[str] = []
        for matchers in selectors or [[]]:
            selects += self._selects(fams, matchers, start_ms, end_ms, samples=False)
        if not selects:
            return []
        found = await self.rows(f"SELECT DISTINCT labels FROM ({' UNION ALL '.join(selects)}) "
                                "SETTINGS optimize_aggregation_in_order = 1")
        return [r["labels"] for r in found]

    async def label_names(self, selectors: list[list[Matcher]], start_ms: int, end_ms: int) -> list[str]:
        names = {k for labels in await self.series_labels(selectors, start_ms, end_ms) for k in labels}
        return sorted(names)

    async def label_values(self, name: str, selectors: list[list[Matcher]], start_ms: int, end_ms: int) -> list[str]:
        if name == "__name__" and not selectors:
            fams = await self.families(start_ms, end_ms)
            names = {n for f in fams for n in f.series_names()}
            if any(f.kind != "rw" for f in fams) and await self.series_labels([[Matcher("__name__", "=", "target_info")]],
                                                                             start_ms, end_ms):
                names.add("target_info")
            return sorted(names)
        values = {labels.get(name, "") for labels in await self.series_labels(selectors, start_ms, end_ms)}
        values.discard("")
        return sorted(values)

    async def metadata(self, metric: str | None, limit: int | None) -> dict[str, list[dict[str, str]]]:
        """TYPE/HELP/UNIT per metric family: remote_write's metadata as sent, OTLP metrics' from their
        kind, description and unit."""
        out: dict[str, list[dict[str, str]]] = {}
        now = int(time.time() * 1000)
        # Metrics reported in the last day, as Prometheus lists the metadata of the targets it scrapes
        # now (and all of retention would be a scan of every metric table).
        for f in await self.families(now - METADATA_WINDOW_MS, now + 3_600_000):
            if f.kind == "rw":
                continue
            unit = unit_suffix(f.unit, f.kind)
            entry = {"type": f.prom_type, "help": f.help, "unit": unit}
            if entry not in out.setdefault(f.name, []):
                out[f.name].append(entry)
        exists = await self.rows(f"SELECT count() AS n FROM system.tables WHERE name = {literal(METADATA_TABLE)} "
                                 "AND database = currentDatabase()")
        if exists and int(exists[0]["n"]):
            found = await self.rows(
                "SELECT MetricFamily AS name, argMax(Type, TimeUnix) AS type, argMax(Help, TimeUnix) AS help, "
                f"argMax(Unit, TimeUnix) AS unit FROM {METADATA_TABLE} WHERE Tenant = {literal(self.tenant)} "
                "GROUP BY MetricFamily")
            for r in found:
                out[r["name"]] = [{"type": r["type"], "help": r["help"], "unit": r["unit"]}]
        if metric is not None:
            out = {k: v for k, v in out.items() if k == metric}
        names = sorted(out)[:limit] if limit else sorted(out)
        return {k: out[k] for k in names}

    async def exemplars(self, selectors: list[list[Matcher]], start_ms: int, end_ms: int) -> list[dict[str, Any]]:
        """Exemplars of the series matching any selector, in Prometheus' /query_exemplars shape. For
        OTLP histograms each exemplar goes to the `_bucket` series of the bucket its value falls in."""
        fams = await self.families(start_ms, end_ms, [m for sel in selectors for m in sel])
        selects: list[str] = []
        for matchers in selectors:
            selects += self._exemplar_selects(fams, matchers, start_ms, end_ms)
        if not selects:
            return []
        found = await self.rows(" UNION ALL ".join(selects) + " SETTINGS output_format_json_quote_denormals = 1")
        by_series: dict[tuple[tuple[str, str], ...], list[dict[str, Any]]] = {}
        for r in found:
            labels = dict(r["ex_labels"])
            if r["trace_id"]:
                labels["trace_id"] = r["trace_id"]
            if r["span_id"]:
                labels["span_id"] = r["span_id"]
            key = tuple(sorted(r["labels"].items()))
            ex = {"labels": labels, "value": _fmt(float(r["value"])), "timestamp": int(r["t"]) / 1000}
            if ex not in by_series.setdefault(key, []):
                by_series[key].append(ex)
        return [{"seriesLabels": dict(k), "exemplars": sorted(v, key=lambda e: e["timestamp"])}
                for k, v in by_series.items()]

    def _exemplar_selects(self, fams: list[Family], matchers: list[Matcher], start_ms: int, end_ms: int) -> list[str]:
        exploded = ("arrayJoin(arrayZip(`Exemplars.TimeUnix`, `Exemplars.Value`, `Exemplars.FilteredAttributes`, "
                    "`Exemplars.TraceId`, `Exemplars.SpanId`)) AS ex")
        cols = (f"labels, {_ms('ex.1')} AS t, ex.2 AS value, mapFilter((k, v) -> v != '', ex.3) AS ex_labels, "
                "ex.4 AS trace_id, ex.5 AS span_id")
        window = f"ex.1 >= {_time_ms(start_ms)} AND {_until(end_ms, 'ex.1')}"
        names = [m for m in matchers if m.name == "__name__"]
        post = [_match_sql(f"labels[{literal(m.name)}]", m) for m in matchers if m.name != "__name__"]
        # Exemplars are stamped near their point; a day either side bounds the scan by partition.
        near = (f"Tenant = {literal(self.tenant)} AND notEmpty(`Exemplars.TimeUnix`) "
                f"AND TimeUnix >= {_time_ms(start_ms - 86_400_000)} AND TimeUnix <= {_time_ms(end_ms + 86_400_000)}")
        out = []
        for f in fams:
            if f.kind == "rw":
                if not _name_ok(f.metric, names):
                    continue
                sel = (f"SELECT CAST(mapUpdate(Attributes, map('__name__', MetricName)), 'Map(String, String)') AS labels, "
                       f"{exploded} FROM otel_metrics_gauge WHERE {near} AND ScopeName = {literal(RW_SCOPE)} "
                       f"AND MetricName = {literal(f.metric)}")
            elif f.kind == "histogram" or (f.kind == "sum" and f.monotonic):
                series_name = f"{f.name}_bucket" if f.kind == "histogram" else f.name
                if not _name_ok(series_name, names):
                    continue
                helpers, lab = _otlp_labels(literal(series_name))
                if f.kind == "histogram":
                    at = "arrayFirstIndex(b -> ex.2 <= b, ExplicitBounds)"
                    lab = f"mapUpdate({lab}, map('le', if({at} = 0, '+Inf', toString(ExplicitBounds[{at}]))))"
                mono = " AND IsMonotonic" if f.kind == "sum" else ""
                sel = (f"SELECT {exploded}, {helpers}, {lab} AS labels FROM (SELECT *, ResourceAttributes AS ra "
                       f"FROM {_TABLES[f.kind]} WHERE {near} AND MetricName = {literal(f.metric)} "
                       f"AND MetricUnit = {literal(f.unit)}{mono})")
            else:
                continue
            out.append(f"SELECT {cols} FROM ({sel}) WHERE {' AND '.join([window, *post])}")
        return out


def _fmt(v: float) -> str:
    """A sample value as Prometheus writes it in JSON."""
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v) if not v.is_integer() or abs(v) >= 1e21 else str(int(v))


def _floats(values: list[Any]) -> np.ndarray:
    """Values as the store's JSON gives them (numbers; "nan", "inf", "-inf" quoted) to float64."""
    try:
        return np.array(values, dtype=np.float64)
    except (TypeError, ValueError):  # a quoted NaN or infinity among the numbers
        return np.array([float(x) for x in values], dtype=np.float64)


def _flat(col: pa.Array, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """A list array as (all elements end to end, n + 1 offsets into them): views of its buffers."""
    offs = col.offsets.to_numpy().astype(np.int64)
    values = col.values.to_numpy().astype(dtype, copy=False)
    return values[offs[0]:offs[-1]], offs - offs[0]


def _arrow_series(table: pa.Table, labels: list[dict[str, str]] | None = None,
                  keys: list[tuple[tuple[str, str], ...]] | None = None) -> list[Series]:
    """_to_series over the SELECTs' answer as Arrow. Plain rows (no delta points, no staleness
    markers, samples strictly in order) become views into the answer's own buffers, batch by batch
    (the engine copies them end to end once), with no work per sample; the others, and every row
    when two rows share a label set, go through _to_series. `labels`: each row's labels, when the
    answer has no `labels` column; `keys`: their sorted items, when known."""
    if table.num_rows == 0:
        return []
    if labels is None:
        labels = [dict(x) for x in table.column("labels").to_pylist()]
    else:
        labels = [dict(x) for x in labels]
    if keys is None:
        keys = [tuple(sorted(x.items())) for x in labels]
    shared = len(set(keys)) < len(labels)
    out: list[Series] = []
    rest: list[dict[str, Any]] = []
    row0 = 0
    for batch in table.to_batches():
        if batch.num_rows == 0:
            continue
        ts, offs = _flat(batch.column("ts"), np.int64)
        vs, voffs = _flat(batch.column("vs"), np.float64)
        base, boffs = _flat(batch.column("base"), np.float64)
        stale, soffs = _flat(batch.column("stale"), np.int64)
        delta = batch.column("delta").to_numpy()
        plain = (delta == 0) & (np.diff(soffs) == 0) & (np.diff(offs) == np.diff(voffs))
        # A row is out of order where a sample does not follow the one before it in the same row.
        after = np.flatnonzero(np.diff(ts) <= 0) + 1
        if len(after):
            after = after[~np.isin(after, offs)]
            plain[np.searchsorted(offs, after, side="right") - 1] = False
        if shared:
            plain[:] = False
        out += [Series(labels=labels[row0 + i], t=ts[offs[i]:offs[i + 1]], v=vs[offs[i]:offs[i + 1]], key=keys[row0 + i])
                for i in np.flatnonzero(plain).tolist()]
        rest += [{"labels": labels[row0 + i], "delta": int(delta[i]), "ts": ts[offs[i]:offs[i + 1]],
                  "vs": vs[voffs[i]:voffs[i + 1]], "base": base[boffs[i]:boffs[i + 1]],
                  "stale": stale[soffs[i]:soffs[i + 1]]} for i in np.flatnonzero(~plain).tolist()]
        row0 += batch.num_rows
    return out + _to_series(rest)


def _to_series(found: list[dict[str, Any]]) -> list[Series]:
    """Rows of the series SELECTs to Series: sorted, one sample per timestamp, delta points summed
    onto their base, staleness markers in place; rows whose labels came out equal are one series."""
    merged: dict[tuple[tuple[str, str], ...], list[tuple[np.ndarray, np.ndarray]]] = {}
    for r in found:
        t = np.asarray(r["ts"], dtype=np.int64)
        v = _floats(r["vs"])
        stale_t = np.asarray(r["stale"], dtype=np.int64)
        order = np.argsort(t, kind="stable")
        t, v = t[order], v[order]
        stale = np.isin(t, stale_t) if len(stale_t) else np.zeros(len(t), bool)
        if int(r["delta"]):
            base = float(_floats(r["base"]).sum()) if len(r["base"]) else 0.0
            v = base + np.cumsum(np.where(stale, 0.0, v))
        if stale.any():
            v = np.where(stale, STALE_NAN, v)
        merged.setdefault(tuple(sorted(r["labels"].items())), []).append((t, v))
    out = []
    for key, parts in merged.items():
        if len(parts) == 1:
            t, v = parts[0]
        else:
            t = np.concatenate([p[0] for p in parts])
            v = np.concatenate([p[1] for p in parts])
            order = np.argsort(t, kind="stable")
            t, v = t[order], v[order]
        if len(t) > 1:
            keep = np.concatenate(([True], t[1:] != t[:-1]))
            if not keep.all():
                t, v = t[keep], v[keep]
        out.append(Series(labels=dict(key), t=t, v=v, key=key))
    return out
