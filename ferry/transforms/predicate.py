"""The search language's meaning over a batch of log records: a query compiled once into a polars expression.

`compile_predicate(q)(frame)` holds (never null) on exactly the rows a store search for `q` finds:
every field mirrors ferry.query.logs_sql, and tests/transforms/test_predicate.py checks both agree.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from ferry.query.language import LEVEL_KEYS, LEVELS, And, Field, FieldOp, Node, Not, Or, Phrase, Word, parse
from ferry.query.logs_sql import ALIASES
from ferry.query.tokens import SEPARATOR_CLASS, TOKEN_RE, tokens
from ferry.store.ddl import _ANY_BOUNDARY, _BOUNDARIES
from ferry.transforms.frame import MAPS, Frame, Where

# Measured on 64 k loghub Linux+OpenSSH lines parsed as syslog, one core of the shared 2-core machine
# (test_predicate.py::test_speed; best of 5): the default SIEM-fork predicates (pipeline/default.py)
# SIEM_OS ~0.15-0.21 us a row and SIEM_APP ~0.07 (none of its keys in the batch); a 7-term
# `source:syslog (facility:auth OR ... app:passwd)` ~0.13-0.2; a free word ~0.2-0.4 us a row, most of
# it the word-delimiter split of the bodies that may hold it.

# Keys with a column of their own (logs_sql._COLUMN_KEYS): where each lives in a Frame.
_COLUMNS: dict[str, Where] = {
    "service": Where("ServiceName"),
    "source": Where("Source"),
    "tenant": Where("Tenant"),
    "trace_id": Where("TraceId"),
    "trace": Where("TraceId"),
    "span_id": Where("SpanId"),
    "span": Where("SpanId"),
    "host": Where("ResourceAttributes", "host.name"),
}
_LOWERCASE_KEYS = frozenset({"trace_id", "trace", "span_id", "span"})

Builder = Callable[["_Ctx"], pl.Expr]


@dataclass(frozen=True)
class _In:
    """`key:v1 OR key:v2 ...` folded into one lookup: the same rows, one map read instead of many."""

    key: str
    values: tuple[str, ...]


class _Ctx:
    """One evaluation over one frame: which attribute keys its maps hold at all."""

    def __init__(self, frame: Frame, scan: frozenset[str]) -> None:
        self.frame = frame
        self._scan = scan  # maps worth listing the keys of first (the predicate reads 2+ keys there)
        self._present: dict[str, frozenset[str] | None] = {}

    def attr(self, column: str, key: str) -> pl.Expr | None:
        """The attribute's values (null: absent), or None when no row of the batch holds it."""
        w = Where(column, key)
        if (column, key) in self.frame._touched:
            return self.frame.get(w)
        if column not in self._present:
            self._present[column] = self._keys(column)
        present = self._present[column]
        return None if present is not None and key not in present else self.frame.get(w)

    def _keys(self, column: str) -> frozenset[str] | None:
        """Keys present in the map on some row (None: not listed, look every key up). A lookup costs
        ~30 ns a row on 6-entry maps and listing the keys ~45: worth it from two keys up, and scope
        (often resource) maps are empty in whole batches, which costs ~1 ns a row to see."""
        s = self.frame.df.get_column(column)
        if not s.map.len().sum():
            return frozenset()
        if column not in self._scan:
            return None
        return frozenset(s.map.keys().explode().unique().drop_nulls().to_list())


@dataclass
class _Acc:
    """What compiling found the predicate reads: LOGS columns, and attribute keys per map."""

    columns: set[str] = field(default_factory=set)
    keys: dict[str, set[str]] = field(default_factory=lambda: {m: set() for m in MAPS})


@dataclass(frozen=True)
class Predicate:
    """A compiled query: call it with a Frame for the boolean expression over that frame's rows, and
    evaluate that expression on that frame as it is (a free word's answer is computed on the call)."""

    query: str
    reads: frozenset[str]  # the LOGS columns it reads (Body, ServiceName, LogAttributes, ...)
    _build: Builder = field(repr=False)
    _scan: frozenset[str] = field(repr=False, default=frozenset())

    def __call__(self, frame: Frame) -> pl.Expr:
        # `| False` over a full-height column: a predicate that folded to a constant (no row of the
        # batch has the keys it reads) still gives one value per row wherever it is selected.
        return self._build(_Ctx(frame, self._scan)) | _const(False)


def compile_predicate(query: str) -> Predicate:
    """Parse `query` (BadRequest naming the position when it is not valid) and compile it once."""
    acc = _Acc()
    build = _compile(_fold(parse(query)), acc)
    scan = frozenset(m for m, keys in acc.keys.items() if len(keys) > 1)
    return Predicate(query, frozenset(acc.columns), build, scan)


# ---------------------------------------------------------------------------------------------
# Rewrites and helpers


def _fold(node: Node | _In) -> Node | _In:
    """Fold equality fields on the same key inside each OR into one `_In` (the SIEM fork's shape)."""
    if isinstance(node, Not):
        return Not(_fold(node.operand))  # type: ignore[arg-type]
    if isinstance(node, And):
        return And(tuple(_fold(n) for n in node.operands))  # type: ignore[misc]
    if not isinstance(node, Or):
        return node
    groups: dict[str, list[str]] = {}
    rest: list[Node | _In] = []
    for n in node.operands:
        if (isinstance(n, Field) and n.op == "=" and n.value != ""
                and n.key.lower() not in LEVEL_KEYS and n.key.lower() != "body"):
            if n.key not in groups:
                groups[n.key] = []
                rest.append(_In(n.key, ()))  # placeholder keeps the position
            groups[n.key].append(n.value)
        else:
            rest.append(_fold(n))
    out = [_In(n.key, tuple(dict.fromkeys(groups[n.key]))) if isinstance(n, _In) else n for n in rest]
    return out[0] if len(out) == 1 else Or(tuple(out))  # type: ignore[arg-type]


def _const(value: bool) -> pl.Expr:
    # Full height, so a predicate that is a constant still selects one value per row.
    return pl.repeat(value, pl.len(), dtype=pl.Boolean)


def _any(exprs: list[pl.Expr]) -> pl.Expr:
    if not exprs:
        return pl.lit(False)
    out = exprs[0]
    for e in exprs[1:]:
        out = out | e
    return out


def _all(exprs: list[pl.Expr]) -> pl.Expr:
    if not exprs:
        return pl.lit(True)
    out = exprs[0]
    for e in exprs[1:]:
        out = out & e
    return out


def _ascii_ci(text: str) -> str:
    """A regex matching `text` with ASCII letters in either case and every other character as is
    (ClickHouse's lower() folds ASCII only; `(?i)` would also fold the Kelvin sign into k)."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isascii() and c.isalpha() else re.escape(c) for c in text)


def _number_cmp(values: pl.Expr, op: FieldOp, number: float) -> pl.Expr:
    """toFloat64OrNull(v) op n, null -> false. Polars' lenient cast reads exactly the strings
    toFloat64OrNull reads (checked on ±inf, nan, exponents, blanks, hex); NaN compares false there."""
    x = values.cast(pl.Float64, strict=False)
    cmp = {">": x > number, ">=": x >= number, "<": x < number, "<=": x <= number}[op]
    return (cmp & x.is_not_nan()).fill_null(False)


# ---------------------------------------------------------------------------------------------
# Compilation


def _compile(node: Node | _In, acc: _Acc) -> Builder:
    if isinstance(node, Word):
        return _word(node, acc)
    if isinstance(node, Phrase):
        acc.columns.add("Body")
        text = node.text
        return lambda ctx: pl.col("Body").str.contains(text, literal=True).fill_null(False)
    if isinstance(node, Field):
        return _field(node.key, node.op, node.value, acc)
    if isinstance(node, _In):
        return _field_in(node.key, node.values, acc)
    if isinstance(node, Not):
        inner = _compile(node.operand, acc)
        return lambda ctx: ~inner(ctx)
    if isinstance(node, And | Or):
        parts = [_compile(n, acc) for n in node.operands]
        if not parts:
            return lambda ctx: _const(isinstance(node, And))
        if len(parts) == 1:
            return parts[0]
        join = _all if isinstance(node, And) else _any
        return lambda ctx: join([p(ctx) for p in parts])
    raise TypeError(f"not a query node: {node!r}")


def _word(node: Word, acc: _Acc) -> Builder:
    acc.columns.add("Body")
    toks = tokens(node.text)
    if not toks:
        # Pure punctuation ("->") has no tokens: a literal substring, as the store looks for it.
        text = node.text
        return lambda ctx: pl.col("Body").str.contains(text, literal=True).fill_null(False)
    # Tokens adjacent and in order over the normalised body (logs_sql._adjacent_regex); a single token
    # bounded by separators on both sides is exactly hasAllTokens of it. Lower-casing is left to the
    # pattern (ASCII letters in either case), as polars' to_lowercase would also fold non-ASCII.
    open_end = node.prefix and TOKEN_RE.fullmatch(node.text[-1]) is not None
    sep = SEPARATOR_CLASS
    pattern = f"(^|{sep})" + f"{sep}+".join(_ascii_ci(t) for t in toks) + ("" if open_end else f"({sep}|$)")
    # Normalising only inserts spaces and folds ASCII case, so a body holding the word holds its
    # longest token in some case: a scan that skips most bodies before the costly part.
    likely = _ascii_ci(max(toks, key=len))  # measured faster than (?i)
    return lambda ctx: _word_rows(ctx.frame, likely, pattern)


def _word_rows(frame: Frame, likely: str, pattern: str) -> pl.Expr:
    """Which rows hold the word, computed now on the bodies that may: the split at word boundaries
    costs ~190 ns a row a pass, and polars runs a pass over every value of a column, masked or not."""
    body = frame.df.get_column("Body")
    maybe = body.str.contains(likely).fill_null(False)
    rows = maybe.arg_true()
    hit = np.zeros(frame.height, dtype=bool)
    if len(rows):
        text = body.gather(rows)
        split = text.str.contains(_ANY_BOUNDARY).fill_null(False)
        at = split.arg_true()
        if len(at):
            parts = text.gather(at)
            for b in _BOUNDARIES:
                parts = parts.str.replace_all(b, "${1} ${2}")
            text = text.scatter(at, parts)
        found = text.str.contains(pattern).fill_null(False).to_numpy()
        hit[rows.to_numpy()[found]] = True
    return pl.lit(pl.Series("word", hit))


def _field(key: str, op: FieldOp, value: str, acc: _Acc) -> Builder:
    if op == "prefix" and value == "":
        op = "exists"
    lkey = key.lower()
    if lkey in LEVEL_KEYS:
        acc.columns.update(("SeverityText", "SeverityNumber"))
        return _level(op, value)
    if lkey == "body":
        acc.columns.add("Body")
        body = pl.col("Body")
        if op == "exists":
            return lambda ctx: (body != "").fill_null(False)
        if op == "=":
            return lambda ctx: (body == value).fill_null(False)
        if op == "prefix":
            return _word(Word(value, prefix=True), acc)
        raise ValueError("body: cannot be compared as a number")  # parse() never lets this through
    if lkey in _COLUMNS:
        return _column(lkey, op, value, acc)
    if lkey in ALIASES:
        target = _field(ALIASES[lkey], op, value, acc)
        typed = _attribute(key, op, value, acc)
        return lambda ctx: target(ctx) | typed(ctx)
    return _attribute(key, op, value, acc)


def _field_in(key: str, values: tuple[str, ...], acc: _Acc) -> Builder:
    lkey = key.lower()
    if lkey in _COLUMNS:
        return _column(lkey, "=", values, acc)
    if lkey in ALIASES:
        target = _field_in(ALIASES[lkey], values, acc)
        typed = _attribute(key, "=", values, acc)
        return lambda ctx: target(ctx) | typed(ctx)
    return _attribute(key, "=", values, acc)


def _level(op: FieldOp, value: str) -> Builder:
    text, number = pl.col("SeverityText"), pl.col("SeverityNumber")
    v = value.lower()

    def text_is(names: list[str]) -> pl.Expr:
        if not names:
            return pl.lit(False)
        return text.str.contains("^(?:" + "|".join(_ascii_ci(n) for n in names) + ")$").fill_null(False)

    if op == "exists":
        return lambda ctx: ((text != "") | (number > 0)).fill_null(False)
    if op == "prefix":
        pattern = "^" + _ascii_ci(v)
        return lambda ctx: text.str.contains(pattern).fill_null(False)
    if op == "=":
        if v not in LEVELS:
            return lambda ctx: text_is([v])
        group, lo, hi = LEVELS[v]
        names = [n for n, (g, _, _) in LEVELS.items() if g == group]
        return lambda ctx: text_is(names) | number.is_between(lo, hi).fill_null(False)
    threshold: float
    if v in LEVELS:
        _, lo, hi = LEVELS[v]
        threshold = {">=": lo, ">": hi, "<=": hi, "<": lo}[op]
    else:
        threshold = float(value)
    # Rows with no number rank by their text, each name counting as the start of its range.
    ranked = [n for n, (_, nlo, _) in LEVELS.items() if _compare(nlo, op, threshold)]
    return lambda ctx: (pl.when(number > 0).then(_number_cmp(number, op, threshold))
                        .otherwise(text_is(ranked))).fill_null(False)


def _compare(a: float, op: FieldOp, b: float) -> bool:
    return {">=": a >= b, ">": a > b, "<=": a <= b, "<": a < b}[op]


def _column(lkey: str, op: FieldOp, value: str | tuple[str, ...], acc: _Acc) -> Builder:
    w = _COLUMNS[lkey]
    acc.columns.add(w.column)
    if w.key is not None:
        acc.keys[w.column].add(w.key)
    if lkey in _LOWERCASE_KEYS:
        value = value.lower() if isinstance(value, str) else tuple(v.lower() for v in value)

    def col(ctx: _Ctx) -> pl.Expr | None:
        if w.key is None:
            return pl.col(w.column)
        return ctx.attr(w.column, w.key)

    if op == "exists":
        if w.key is not None:  # host: present in the map, even if empty
            return lambda ctx: _present(col(ctx))
        return lambda ctx: (pl.col(w.column) != "").fill_null(False)
    if op == "prefix":
        assert isinstance(value, str)
        return lambda ctx: _or_absent(col(ctx), lambda c: c.str.starts_with(value), value == "")
    if op == "=":
        if isinstance(value, tuple):
            values = list(value)
            return lambda ctx: _or_absent(col(ctx), lambda c: c.is_in(values), "" in values)
        return lambda ctx: _or_absent(col(ctx), lambda c: c == value, value == "")
    assert isinstance(value, str)
    n = float(value)
    return lambda ctx: _or_absent(col(ctx), lambda c: _number_cmp(c, op, n), False)


def _present(values: pl.Expr | None) -> pl.Expr:
    return pl.lit(False) if values is None else values.is_not_null()


def _or_absent(values: pl.Expr | None, test: Callable[[pl.Expr], pl.Expr], absent: bool) -> pl.Expr:
    """`test` over the values, where an absent attribute reads as "" (ClickHouse's m[k] of a missing key)."""
    if values is None:
        return pl.lit(absent)
    return test(values.fill_null("")).fill_null(False)


def _attribute(key: str, op: FieldOp, value: str | tuple[str, ...], acc: _Acc) -> Builder:
    acc.columns.update(MAPS)
    for m in MAPS:
        acc.keys[m].add(key)
    if op == "exists":
        return lambda ctx: _any([_present(ctx.attr(m, key)) for m in MAPS])
    if op == "=" and value == "":
        # A missing key reads as "" in every map, so `key:""` means "set (to anything but "") in none".
        return lambda ctx: _all([_or_absent(ctx.attr(m, key), lambda c: c == "", True) for m in MAPS])
    test: Callable[[pl.Expr], pl.Expr]
    if op == "prefix":
        assert isinstance(value, str)
        prefix = value
        test = lambda c: c.str.starts_with(prefix)  # noqa: E731
    elif op == "=":
        values = [value] if isinstance(value, str) else list(value)
        test = (lambda c: c == values[0]) if len(values) == 1 else (lambda c: c.is_in(values))  # noqa: E731
    else:
        assert isinstance(value, str)
        n = float(value)
        test = lambda c: _number_cmp(c, op, n)  # noqa: E731
    # A value "" never passes these tests (prefix "" became exists above), so absent is false.
    return lambda ctx: _any([_or_absent(ctx.attr(m, key), test, False) for m in MAPS])
