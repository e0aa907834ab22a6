"""The LogQL syntax tree: what ferry.query.logql.parser builds and the SQL compiler and evaluator read.

Frozen dataclasses; durations are whole nanoseconds, label names as LogQL spells them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MatchOp = Literal["=", "!=", "=~", "!~"]
LineOp = Literal["|=", "!=", "|~", "!~"]
CmpOp = Literal["==", "!=", ">", ">=", "<", "<="]


@dataclass(frozen=True)
class Matcher:
    """One stream selector matcher `name op "value"`; regular expressions are anchored at both ends."""

    name: str
    op: MatchOp
    value: str


@dataclass(frozen=True)
class LineFilter:
    """`|= "a" or "b"`: for `|=` and `|~` any value may match; for `!=` and `!~` none may."""

    op: LineOp
    values: tuple[str, ...]


@dataclass(frozen=True)
class Parser:
    """`| json`, `| logfmt`, `| regexp "re"`, `| pattern "p"`, `| unpack`; `params` are json's or
    logfmt's `label="expression"` extractions (name, expression)."""

    kind: Literal["json", "logfmt", "regexp", "pattern", "unpack"]
    expr: str = ""
    params: tuple[tuple[str, str], ...] = ()
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabelCmp:
    """`name op value` where value is a string (=, !=, =~, !~) or a number, duration or byte size
    (kind says which; `number` is then the value in its base unit: seconds or bytes)."""

    name: str
    op: str
    kind: Literal["string", "number", "duration", "bytes"]
    text: str = ""
    number: float = 0.0


@dataclass(frozen=True)
class LabelAnd:
    left: LabelExpr
    right: LabelExpr


@dataclass(frozen=True)
class LabelOr:
    left: LabelExpr
    right: LabelExpr


LabelExpr = LabelCmp | LabelAnd | LabelOr


@dataclass(frozen=True)
class LabelFilter:
    expr: LabelExpr


@dataclass(frozen=True)
class LineFormat:
    template: str


@dataclass(frozen=True)
class LabelFormat:
    """`| label_format dst=src, dst2="template"`: (destination, source, source is a template)."""

    items: tuple[tuple[str, str, bool], ...]


@dataclass(frozen=True)
class Drop:
    """`| drop a, b="v"` (or `| keep ...`): bare names, or matchers that pick rows where they hold."""

    keep: bool
    names: tuple[str, ...]
    matchers: tuple[Matcher, ...]


@dataclass(frozen=True)
class Decolorize:
    pass


@dataclass(frozen=True)
class Unwrap:
    label: str
    conversion: Literal["", "duration", "duration_seconds", "bytes"] = ""


Stage = LineFilter | Parser | LabelFilter | LineFormat | LabelFormat | Drop | Decolorize | Unwrap


@dataclass(frozen=True)
class LogQuery:
    """A stream selector and its pipeline: answers log lines."""

    matchers: tuple[Matcher, ...]
    stages: tuple[Stage, ...] = ()

    @property
    def unwrap(self) -> Unwrap | None:
        return next((s for s in self.stages if isinstance(s, Unwrap)), None)


@dataclass(frozen=True)
class Grouping:
    without: bool
    labels: tuple[str, ...]


@dataclass(frozen=True)
class RangeAgg:
    """`func([param,] query [range] [offset o]) [by|without (...)]`."""

    func: str
    query: LogQuery
    range_ns: int
    offset_ns: int = 0
    param: float | None = None
    grouping: Grouping | None = None


@dataclass(frozen=True)
class VectorAgg:
    """`op [by|without (...)] ([param,] expr)`."""

    op: str
    expr: MetricExpr
    grouping: Grouping | None = None
    param: float | None = None


@dataclass(frozen=True)
class Number:
    value: float


@dataclass(frozen=True)
class VectorOf:
    """`vector(n)`: one series with no labels and value n at every step."""

    value: float


@dataclass(frozen=True)
class VectorMatching:
    on: bool
    labels: tuple[str, ...]


@dataclass(frozen=True)
class BinOp:
    op: str
    left: MetricExpr
    right: MetricExpr
    bool_modifier: bool = False
    matching: VectorMatching | None = None


@dataclass(frozen=True)
class LabelReplace:
    expr: MetricExpr
    dst: str
    replacement: str
    src: str
    regex: str


MetricExpr = RangeAgg | VectorAgg | Number | VectorOf | BinOp | LabelReplace
Expr = LogQuery | MetricExpr

RANGE_FUNCS = frozenset({
    "count_over_time", "rate", "bytes_over_time", "bytes_rate", "absent_over_time",
    "sum_over_time", "avg_over_time", "min_over_time", "max_over_time", "stddev_over_time",
    "stdvar_over_time", "quantile_over_time", "first_over_time", "last_over_time", "rate_counter",
})
# Range functions that read a value unwrapped from a label rather than count lines.
UNWRAPPED_FUNCS = frozenset({
    "sum_over_time", "avg_over_time", "min_over_time", "max_over_time", "stddev_over_time",
    "stdvar_over_time", "quantile_over_time", "first_over_time", "last_over_time", "rate_counter",
})
VECTOR_OPS = frozenset({"sum", "avg", "min", "max", "count", "stddev", "stdvar", "topk", "bottomk",
                        "sort", "sort_desc"})
