"""A batch of log records while a parser's transforms run over it: one polars DataFrame, fields by name.

Transforms read and write fields through `get`/`set` (polars expressions, whole batch at once); the
attribute maps are folded back into Arrow map columns once, at the end (`to_table`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from ferry.schema.tables import ATTRS, LOGS, conform

# Field names a transform or a route may use, and where each lives. Anything else is an attribute:
# `attributes.KEY` or a bare `KEY` (LogAttributes), `resource.KEY` (ResourceAttributes), `scope.KEY`.
COLUMNS: dict[str, str] = {
    "body": "Body",
    "message": "Body",
    "service": "ServiceName",
    "level": "SeverityText",
    "severity": "SeverityText",
    "severity_text": "SeverityText",
    "severity_number": "SeverityNumber",
    "timestamp": "Timestamp",
    "observed_timestamp": "ObservedTimestamp",
    "trace_id": "TraceId",
    "span_id": "SpanId",
    "source": "Source",
    "tenant": "Tenant",
}
# Short names for attributes people type (as the search language has them).
ALIASES: dict[str, tuple[str, str]] = {
    "host": ("ResourceAttributes", "host.name"),
    "app": ("ResourceAttributes", "service.name"),
    "facility": ("LogAttributes", "syslog.facility"),
    "procid": ("LogAttributes", "syslog.procid"),
    "msgid": ("LogAttributes", "syslog.msgid"),
}
_MAP_PREFIXES = {"attributes.": "LogAttributes", "resource.": "ResourceAttributes", "scope.": "ScopeAttributes"}
MAPS = ("LogAttributes", "ResourceAttributes", "ScopeAttributes")


@dataclass(frozen=True)
class Where:
    """Where a field lives: a column of its own, or one key of an attribute map."""

    column: str
    key: str | None = None  # set: an entry of the map `column`

    @property
    def is_attribute(self) -> bool:
        return self.key is not None


def where(name: str) -> Where:
    """Resolve a field name as typed in config (`body`, `level`, `resource.k8s.pod`, `user.id`)."""
    lname = name.lower()
    if lname in COLUMNS:
        return Where(COLUMNS[lname])
    if lname in ALIASES:
        return Where(*ALIASES[lname])
    for prefix, column in _MAP_PREFIXES.items():
        if name.startswith(prefix) and len(name) > len(prefix):
            return Where(column, name[len(prefix):])
    return Where("LogAttributes", name)


@dataclass
class Emitted:
    """Rows a transform produced besides the log records: metric points, links."""

    topic: str | None  # None: the stage's default output
    target: str  # store table
    table: pa.Table


@dataclass
class Frame:
    """The records of one call; `df` holds every LOGS column (maps as polars Map columns).

    An attribute a transform has touched lives in a working column (`@LogAttributes/key`) until
    `to_table`: null there means absent. `counts` are (transform label, outcome) -> records, which
    the stage turns into ferry_transform_records_total.
    """

    df: pl.DataFrame
    tenant: str = "default"
    label: str = ""  # the transform running now, as counted: "<index>:<type>"
    emitted: list[Emitted] = field(default_factory=list)
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    _touched: dict[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def from_table(cls, table: pa.Table, tenant: str = "default") -> Frame:
        df = pl.from_arrow(table)
        assert isinstance(df, pl.DataFrame)
        return cls(df, tenant)

    @property
    def height(self) -> int:
        return self.df.height

    # -- reading and writing fields -------------------------------------------------------------

    def get(self, name: str | Where) -> pl.Expr:
        """The field's values as an expression (String for attributes; null where absent)."""
        w = where(name) if isinstance(name, str) else name
        if w.key is None:
            return pl.col(w.column)
        work = self._touched.get((w.column, w.key))
        if work is not None:
            return pl.col(work)
        return pl.col(w.column).map.get(w.key)

    def set(self, values: dict[str, pl.Expr] | dict[Where, pl.Expr] | dict[str | Where, pl.Expr]) -> None:
        """Set fields from expressions over the current frame, all evaluated before any is written
        (so `{a: get(b), b: get(a)}` swaps). A null sets an attribute absent; a column field keeps
        its type (the value is cast to it; a value that does not cast becomes the column's null)."""
        exprs = []
        for name, expr in values.items():
            w = where(name) if isinstance(name, str) else name
            if w.key is None:
                dtype = self.df.schema[w.column]
                exprs.append(expr.cast(dtype, strict=False).alias(w.column))
            else:
                work = self._touched.setdefault((w.column, w.key), f"@{w.column}/{w.key}")
                exprs.append(expr.cast(pl.String, strict=False).alias(work))
        if exprs:
            self.df = self.df.with_columns(exprs)

    def drop(self, names: list[str]) -> None:
        """Make attributes absent (a column field is set to its empty value)."""
        self.set({n: (pl.lit(None, pl.String) if where(n).is_attribute else pl.lit("")) for n in names})

    def attribute_keys(self, column: str = "LogAttributes") -> list[str]:
        """Every key present in the map `column` on some row (touched ones included)."""
        present = self.df.select(pl.col(column).map.keys().explode().unique().drop_nulls()).to_series().to_list()
        touched = [k for (c, k) in self._touched if c == column]
        return sorted(set(present) | set(touched))

    def touched(self, column: str = "LogAttributes") -> dict[str, str]:
        """key -> working column, for the attributes of `column` transforms have set or dropped."""
        return {k: work for (c, k), work in self._touched.items() if c == column}

    def filter(self, keep: pl.Expr) -> int:
        """Keep the rows where `keep` holds (null = drop); returns how many rows left."""
        before = self.df.height
        self.df = self.df.filter(keep.fill_null(False))
        return before - self.df.height

    def count(self, outcome: str, n: int) -> None:
        if n:
            self.counts[(self.label, outcome)] += int(n)

    def emit(self, target: str, table: pa.Table, topic: str | None = None) -> None:
        if table.num_rows:
            self.emitted.append(Emitted(topic, target, table))

    # -- back to Arrow --------------------------------------------------------------------------

    def to_table(self) -> pa.Table:
        """The records in exactly the LOGS schema, touched attributes folded into their maps."""
        work = set(self._touched.values())
        out = self.df.select([c for c in self.df.columns if c not in work and c not in MAPS]).to_arrow()
        for m in MAPS:
            pending = self.touched(m)
            col = self.df.get_column(m).to_arrow()
            folded = _fold(col, [(k, self.df.get_column(w).to_arrow()) for k, w in pending.items()]) if pending else col
            out = out.append_column(m, folded)
        return conform(out, LOGS)


def _flat(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def _fold(mapcol: pa.Array | pa.ChunkedArray, pending: list[tuple[str, pa.Array | pa.ChunkedArray]]) -> pa.Array:
    """Rebuild a map column: entries whose key is pending are replaced by the pending values (null:
    absent), appended after the row's other entries. Index arithmetic on flat arrays, as in
    stages/parser/syslog._build_map: per-row list filtering in polars cost ~3 us a row."""
    m = _flat(mapcol).cast(ATTRS)
    n = len(m)
    offsets = np.asarray(m.offsets, dtype=np.int64)
    start, end = int(offsets[0]), int(offsets[-1])
    keys = m.keys.slice(start, end - start) if len(m.keys) != end - start else m.keys
    items = m.items.slice(start, end - start) if len(m.items) != end - start else m.items
    lengths = np.diff(offsets)
    entry_row = np.repeat(np.arange(n, dtype=np.int64), lengths)
    keep = ~np.asarray(pc.is_in(keys, pa.array([k for k, _ in pending], pa.string())).fill_null(False), dtype=bool)
    rows = [entry_row[keep]]
    key_parts = [keys.filter(pa.array(keep))]
    value_parts = [items.filter(pa.array(keep)).cast(pa.string())]
    for key, values in pending:
        v = _flat(values).cast(pa.string())
        present = np.asarray(v.is_valid(), dtype=bool)
        idx = np.nonzero(present)[0]
        rows.append(idx.astype(np.int64))
        key_parts.append(pa.array([key], pa.string()).take(pa.array(np.zeros(len(idx), dtype=np.int64))))
        value_parts.append(v.filter(pa.array(present)))
    all_rows = np.concatenate(rows)
    order = pa.array(np.argsort(all_rows, kind="stable"))
    out_keys = pa.concat_arrays(key_parts).take(order)
    out_values = pa.concat_arrays(value_parts).take(order)
    new_offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(np.bincount(all_rows, minlength=n), out=new_offsets[1:])
    return pa.MapArray.from_arrays(pa.array(new_offsets), out_keys, out_values, type=ATTRS)
