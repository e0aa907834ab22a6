"""The field transforms: set, rename, drop, keep and cast, each compiled once into whole-batch polars steps.

Also the value conversions other transforms share: text -> timestamp (RFC 3339, epoch) and a value into a column's type.

Decisions (as an operator would expect them):
- A record whose source field is absent (`from`, a rename's old name) keeps its target as it was: `set
  {field: level, from: lvl}` does not blank the level of lines that carry no `lvl`.
- Setting `level` also sets SeverityNumber to the OTel number of that level name (the lowest of its range in
  ferry.query.language.LEVELS: error -> 17, warn -> 13, crit -> 18), so `level:>=error` finds the record; a
  literal level must be a known name (a config error otherwise); a level copied from a field that is not a
  known name gets SeverityNumber 0 (unspecified): the old number no longer describes the record.
- A value that does not convert into its target's type (a text time that does not parse into `timestamp`,
  `cast` of "abc" to int) leaves the target as it was (`set`/`rename`: the old field stays too) or, for
  `cast`, makes that attribute absent; the record is kept and counted as outcome `ignore_malformed`.
- `drop`/`keep` accept a trailing `*` (`http.*`), matched against the keys present in the batch.
- `cast` normalises attribute text only: int "042" -> "42"; float "1.50" -> "1.5" (NaN and infinities do not
  convert); bool true/t/yes/y/on/1 -> "true", false/f/no/n/off/0 -> "false" (any case); timestamp -> RFC 3339
  UTC text (`2024-01-02T03:04:05.5Z`). The record's own time is a column: `set {field: timestamp, from: KEY}`.

Measured (64 k OpenSSH loghub lines parsed as syslog, 2-core machine shared with other work, `Chain.run` +
`to_table` against an empty chain, so each figure includes ~0.3 us a record of folding touched attributes back
into their map): set literal 0.33 us a record, set level from an attribute 0.30, set timestamp from an RFC 3339
attribute 0.87 (with the attribute's own set), rename 0.47, drop/keep with patterns 0.21, cast int 0.50.
"""

from __future__ import annotations

import fnmatch

import polars as pl

from ferry.errors import ConfigError
from ferry.query.language import LEVELS
from ferry.schema.tables import LOGS
from ferry.transforms.chain import CompileContext, Step
from ferry.transforms.config import CastFields, DropFields, KeepFields, RenameFields, SetField
from ferry.transforms.frame import Frame, Where, where

# The type each column field has in a Frame (polars' view of the LOGS schema).
_COLUMN_TYPES: dict[str, pl.DataType] = dict(pl.Schema(pl.from_arrow(LOGS.empty_table()).schema))  # type: ignore[union-attr]
_TS = pl.Datetime("ns", "UTC")
RFC3339 = "%Y-%m-%dT%H:%M:%S%.fZ"
# Level name (any case) -> the OTel SeverityNumber a record set to it gets.
LEVEL_NUMBERS: dict[str, int] = {name: lo for name, (_, lo, _) in LEVELS.items()}
_TRUE = ("true", "t", "yes", "y", "on", "1")
_FALSE = ("false", "f", "no", "n", "off", "0")
_BOOLS = {**dict.fromkeys(_TRUE, "true"), **dict.fromkeys(_FALSE, "false")}


def compile(model: SetField | RenameFields | DropFields | KeepFields | CastFields, ctx: CompileContext) -> Step:
    if isinstance(model, SetField):
        return _compile_set(model)
    if isinstance(model, RenameFields):
        return _compile_rename(model)
    if isinstance(model, DropFields):
        return _compile_drop(model.fields)
    if isinstance(model, KeepFields):
        return _compile_keep(model.fields)
    return _compile_cast(model)


# -- conversions --------------------------------------------------------------------------------


def parse_timestamp(text: pl.Expr, fmt: str | None = None) -> pl.Expr:
    """Text -> Datetime(ns, UTC), null where it does not parse. With `fmt` (strftime), that format (a time
    without an offset is UTC); without, RFC 3339 / ISO 8601 (`T` or a space, `Z` or an offset or none,
    any fraction) or epoch seconds / milliseconds / microseconds / nanoseconds told apart by their digit count."""
    t = text.str.strip_chars()
    if fmt is not None:
        return t.str.strptime(_TS, fmt, strict=False)
    whole = t.str.extract(r"^(\d{1,19})(?:\.\d+)?$", 1)
    digits = whole.str.len_bytes()
    scale = (
        pl.when(digits <= 11).then(pl.lit(1_000_000_000, pl.Int64))
        .when(digits <= 14).then(pl.lit(1_000_000, pl.Int64))
        .when(digits <= 17).then(pl.lit(1_000, pl.Int64))
        .otherwise(pl.lit(1, pl.Int64))
    )  # fmt: skip
    # Float seconds lose precision below ~100 ns at today's epoch, which is below what logs carry.
    epoch = (
        pl.when(t.str.contains(".", literal=True))
        .then((t.cast(pl.Float64, strict=False) * scale.cast(pl.Float64)).cast(pl.Int64, strict=False))
        .otherwise(whole.str.to_integer(strict=False) * scale)
    )
    # Four strptime passes (~1.5 ms each on 64 k rows) cost less than one regex rewrite of the text.
    return pl.coalesce(
        *(t.str.strptime(_TS, f"%Y-%m-%d{sep}%H:%M:%S%.f{tz}", strict=False) for sep in "T " for tz in ("%#z", "")),
        pl.when(whole.is_not_null()).then(epoch.cast(_TS, strict=False)),
    )


def format_timestamp(ts: pl.Expr) -> pl.Expr:
    """Datetime -> RFC 3339 UTC text, fraction only as long as needed (0, 3, 6 or 9 digits)."""
    return ts.dt.convert_time_zone("UTC").dt.to_string(RFC3339)


def _text(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    return format_timestamp(expr) if isinstance(dtype, pl.Datetime) else expr.cast(pl.String, strict=False)


def convert(expr: pl.Expr, source: pl.DataType, target: pl.DataType) -> pl.Expr:
    """`expr` (of type `source`) as a value of `target`, null where it does not convert."""
    if source == target:
        return expr
    if target == pl.String:
        return _text(expr, source)
    if isinstance(target, pl.Datetime):
        return parse_timestamp(_text(expr, source))
    if source == pl.String:
        return expr.str.strip_chars().str.to_integer(strict=False).cast(target, strict=False)
    return expr.cast(target, strict=False)


def _dtype(w: Where) -> pl.DataType:
    return pl.String() if w.is_attribute else _COLUMN_TYPES[w.column]


def _present(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Whether a field holds a value: an attribute is present when not null, a text column when not empty."""
    return expr.is_not_null() & (expr != "") if dtype == pl.String else expr.is_not_null()


def empty_value(name: str) -> pl.Expr:
    """What `drop` leaves in a field: null (absent) for an attribute, "" or 0 for a column."""
    w = where(name)
    if w.is_attribute:
        return pl.lit(None, pl.String)
    dtype = _COLUMN_TYPES[w.column]
    if isinstance(dtype, pl.Datetime):
        raise ConfigError(f"{name}: the record's time cannot be emptied")
    return pl.lit("") if dtype == pl.String else pl.lit(0, dtype)


def _level_number(text: pl.Expr) -> pl.Expr:
    return text.str.to_lowercase().replace_strict(LEVEL_NUMBERS, default=0, return_dtype=pl.UInt8)


def _with_level(values: dict[Where, pl.Expr], target: Where, new: pl.Expr, changed: pl.Expr) -> None:
    """Setting SeverityText sets SeverityNumber from the level name too (module docstring)."""
    if target == Where("SeverityText"):
        values[Where("SeverityNumber")] = pl.when(changed).then(_level_number(new)).otherwise(pl.col("SeverityNumber"))


def _apply(frame: Frame, values: dict[Where, pl.Expr], failed: list[pl.Expr]) -> None:
    """Count the records where a conversion failed, then set; both from the frame as it was."""
    if not failed:
        frame.set(values)
        return
    # One select for the values and the count, so a conversion (a timestamp parse) runs once.
    keys = list(values)
    out = frame.df.select(
        *(e.alias(f"v{i}") for i, e in enumerate(values.values())),
        pl.any_horizontal(failed).fill_null(False).sum().alias("failed"),
    )
    frame.count("ignore_malformed", out["failed"][0])
    frame.set({w: pl.lit(out[f"v{i}"]) for i, w in enumerate(keys)})


# -- set ----------------------------------------------------------------------------------------


def _literal(value: str | int | float | bool) -> pl.Expr:
    if isinstance(value, bool):
        return pl.lit("true" if value else "false")
    return pl.lit(str(value))


def _compile_set(model: SetField) -> Step:
    target = where(model.field)
    tdtype = _dtype(target)
    when = None
    if model.when is not None:
        from ferry.transforms.predicate import compile_predicate

        when = compile_predicate(model.when)

    if model.from_ is None and model.value is None:
        empty = empty_value(model.field)

        def make(frame: Frame) -> tuple[pl.Expr, pl.Expr | None]:
            return empty, None

    elif model.from_ is None:
        assert model.value is not None
        lit = _literal(model.value)
        constant = pl.select(convert(lit, pl.String(), tdtype)).item()
        if constant is None:
            raise ConfigError(f"set {model.field}: {model.value!r} is not a value of that field's type ({tdtype})")
        value = pl.lit(constant, tdtype)

        def make(frame: Frame) -> tuple[pl.Expr, pl.Expr | None]:
            return value, None

    else:
        source = where(model.from_)
        sdtype = _dtype(source)

        def make(frame: Frame) -> tuple[pl.Expr, pl.Expr | None]:
            src = frame.get(source)
            return convert(src, sdtype, tdtype), _present(src, sdtype)

    def step(frame: Frame) -> None:
        new, present = make(frame)
        old = frame.get(target)
        cond = when(frame).fill_null(False) if when is not None else None
        changed = cond if cond is not None else pl.lit(True)
        failed: list[pl.Expr] = []
        if present is not None:
            failed.append(present & new.is_null() & changed)
            changed = changed & present & new.is_not_null()
        values = {target: pl.when(changed).then(new).otherwise(old)}
        _with_level(values, target, new, changed)
        _apply(frame, values, failed)

    return step


# -- rename -------------------------------------------------------------------------------------


def _compile_rename(model: RenameFields) -> Step:
    pairs = [(where(old), where(new), old) for old, new in model.fields.items() if where(old) != where(new)]
    targets = {new for _, new, _ in pairs}
    empties = {old_w: empty_value(old) for old_w, _, old in pairs if old_w not in targets}

    def step(frame: Frame) -> None:
        values: dict[Where, pl.Expr] = {}
        failed: list[pl.Expr] = []
        for old, new, _ in pairs:
            sdtype, tdtype = _dtype(old), _dtype(new)
            src = frame.get(old)
            conv = convert(src, sdtype, tdtype)
            present = _present(src, sdtype)
            moved = present & conv.is_not_null()
            failed.append(present & conv.is_null())
            values[new] = pl.when(moved).then(conv).otherwise(frame.get(new))
            _with_level(values, new, conv, moved)
            if old in empties:
                # A value that does not convert stays where it was, so nothing is lost.
                values[old] = pl.when(moved).then(empties[old]).otherwise(src)
        _apply(frame, values, failed)

    return step


# -- drop, keep ---------------------------------------------------------------------------------


def _is_glob(name: str) -> bool:
    return "*" in name or "?" in name


def _compile_drop(names: list[str]) -> Step:
    fixed = {where(n): empty_value(n) for n in names if not _is_glob(n)}
    globs = [where(n) for n in names if _is_glob(n)]  # attributes only (config validation)

    def step(frame: Frame) -> None:
        values: dict[Where, pl.Expr] = dict(fixed)
        for g in globs:
            assert g.key is not None
            for key in frame.attribute_keys(g.column):
                if fnmatch.fnmatchcase(key, g.key):
                    values[Where(g.column, key)] = pl.lit(None, pl.String)
        frame.set(values)

    return step


def _compile_keep(names: list[str]) -> Step:
    patterns = [str(where(n).key) for n in names]  # LogAttributes keys only (config validation)

    def step(frame: Frame) -> None:
        gone = [k for k in frame.attribute_keys() if not any(fnmatch.fnmatchcase(k, p) for p in patterns)]
        frame.set({Where("LogAttributes", k): pl.lit(None, pl.String) for k in gone})

    return step


# -- cast ---------------------------------------------------------------------------------------


def _cast_text(text: pl.Expr, to: str, fmt: str | None) -> pl.Expr:
    t = text.str.strip_chars()
    if to == "int":
        return t.str.to_integer(strict=False).cast(pl.String)
    if to == "float":
        f = t.cast(pl.Float64, strict=False)
        return pl.when(f.is_finite()).then(f.cast(pl.String))
    if to == "bool":
        return t.str.to_lowercase().replace_strict(_BOOLS, default=None, return_dtype=pl.String)
    return format_timestamp(parse_timestamp(t, fmt))


def _compile_cast(model: CastFields) -> Step:
    fields = [(where(name), to) for name, to in model.fields.items()]  # attributes only (config validation)

    def step(frame: Frame) -> None:
        # Each conversion once, then the failures from its result (naming the conversion twice in one
        # select ran it twice: 0.27 against 0.14 us a record for two fields).
        out = frame.df.select(
            *(_cast_text(frame.get(w), to, model.format).alias(f"v{i}") for i, (w, to) in enumerate(fields)),
            *(frame.get(w).is_not_null().alias(f"s{i}") for i, (w, _) in enumerate(fields)),
        )
        failed = out.select(pl.any_horizontal([pl.col(f"s{i}") & pl.col(f"v{i}").is_null() for i in range(len(fields))]).sum())
        frame.count("ignore_malformed", failed.item())
        frame.set({w: pl.lit(out[f"v{i}"]) for i, (w, _) in enumerate(fields)})

    return step
