"""The LogQL pipeline stages the store cannot run, over fetched lines in one polars DataFrame.

Columns `@ts` (ns), `@line` and one String column per label (null = the line lacks it); parsers add columns.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
import polars as pl

from ferry.errors import BadRequest
from ferry.query.logql import ast
from ferry.query.logql.parser import parse_bytes, parse_duration_ns
from ferry.query.logql.sql import anchored

TS = "@ts"
LINE = "@line"
VALUE = "@value"
ERROR = "__error__"
ERROR_DETAILS = "__error_details__"

STREAM, METADATA, PARSED = "stream", "metadata", "parsed"

_LABEL_BAD = re.compile(r"[^A-Za-z0-9_]")
_ANSI = r"\x1b\[[0-9;]*[A-Za-z]"


def sanitize(name: str) -> str:
    """A parsed key as a label name, as Loki makes it: other characters become `_`, no leading digit."""
    out = _LABEL_BAD.sub("_", name)
    return "_" + out if out[:1].isdigit() or not out else out


@dataclass
class Lines:
    """Fetched lines and where each label came from (stream, structured metadata, or a parser)."""

    df: pl.DataFrame
    kinds: dict[str, str] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return [c for c in self.df.columns if not c.startswith("@")]


def from_rows(rows: list[dict[str, Any]]) -> Lines:
    """Lines from store rows with `ts`, `line`, `labels` (stream) and `metadata` maps (sql.LINE_COLUMNS)."""
    base = pl.DataFrame({TS: [int(r["ts"]) for r in rows], LINE: [r["line"] for r in rows]},
                        schema={TS: pl.Int64, LINE: pl.String})
    kinds: dict[str, str] = {}
    parts = [base]
    for key, kind in (("labels", STREAM), ("metadata", METADATA)):
        frame = _dicts_frame([r.get(key) or {} for r in rows], len(rows))
        frame = frame.select([c for c in frame.columns if c not in kinds])
        kinds.update(dict.fromkeys(frame.columns, kind))
        parts.append(frame)
    return Lines(pl.concat(parts, how="horizontal"), kinds)


def _dicts_frame(dicts: list[dict[str, Any]], n: int) -> pl.DataFrame:
    names = list(dict.fromkeys(k for d in dicts for k in d))
    if not names:
        return pl.DataFrame()
    return pl.DataFrame({k: [d.get(k) for d in dicts] for k in names}, schema=dict.fromkeys(names, pl.String))


# ---------------------------------------------------------------------------------------------
# Stages


def run(lines: Lines, stages: Iterable[ast.Stage]) -> Lines:
    """Apply `stages` in order (line filters the store already applied must not be passed again)."""
    for stage in stages:
        if lines.df.height == 0 and not isinstance(stage, ast.Unwrap):
            continue
        lines = _STAGES[type(stage)](lines, stage)
    return lines


def _line_filter(lines: Lines, f: ast.Stage) -> Lines:
    assert isinstance(f, ast.LineFilter)
    line = pl.col(LINE)
    if f.op in ("|=", "!="):
        terms = [line.str.contains(v, literal=True) for v in f.values]
    else:
        terms = [line.str.contains(v) for v in f.values]
    anyof = pl.any_horizontal(terms)
    return Lines(lines.df.filter(anyof if f.op in ("|=", "|~") else ~anyof), lines.kinds)


def _col(lines: Lines, name: str) -> pl.Expr:
    return pl.col(name) if name in lines.df.columns else pl.lit(None, pl.String)


def _add_parsed(lines: Lines, parsed: pl.DataFrame, keep_existing: Callable[[str], bool] | None = None) -> Lines:
    """Join parsed label columns onto `lines`. A parsed name clashing with a stream or metadata label
    gets `_extracted` (as Loki does); one clashing with an earlier parser's label replaces it where
    the new value is present."""
    df = lines.df
    kinds = dict(lines.kinds)
    new: list[pl.Series] = []
    for name in parsed.columns:
        s = parsed.get_column(name)
        target = name
        if kinds.get(name) in (STREAM, METADATA):
            target = name + "_extracted"
        if target in df.columns:
            s = pl.select(pl.coalesce(s, df.get_column(target))).to_series()
        new.append(s.alias(target))
        kinds[target] = PARSED
    if new:
        df = df.with_columns(new)
    return Lines(df, kinds)


def _flatten(obj: dict[str, Any], prefix: str, out: dict[str, str]) -> None:
    for k, v in obj.items():
        name = prefix + sanitize(k)
        if isinstance(v, dict):
            _flatten(v, name + "_", out)
        elif isinstance(v, list):
            continue  # Loki's json parser skips arrays unless a parameter names an element
        elif isinstance(v, str):
            out[name] = v
        elif isinstance(v, bool):
            out[name] = "true" if v else "false"
        elif v is None:
            out[name] = ""
        else:
            out[name] = orjson.dumps(v).decode()


_PATH_PART = re.compile(r'\.?([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\["((?:[^"\\]|\\.)*)"\]')


def _json_path(expr: str) -> list[str | int]:
    out: list[str | int] = []
    pos = 0
    while pos < len(expr):
        m = _PATH_PART.match(expr, pos)
        if m is None or m.end() == pos:
            raise BadRequest(f"json: cannot read the expression {expr!r} (use a.b, a[0] or a[\"key\"])")
        if m.group(1) is not None:
            out.append(m.group(1))
        elif m.group(2) is not None:
            out.append(int(m.group(2)))
        else:
            out.append(m.group(3).replace('\\"', '"'))
        pos = m.end()
    return out


def _walk(obj: Any, path: list[str | int]) -> str | None:
    for step in path:
        if isinstance(step, int):
            if not isinstance(obj, list) or step >= len(obj):
                return None
        elif not isinstance(obj, dict) or step not in obj:
            return None
        obj = obj[step]
    if isinstance(obj, str):
        return obj
    if obj is None:
        return ""
    return orjson.dumps(obj).decode()


def _parse_with(lines: Lines, parse_one: Callable[[str], dict[str, str] | None], error: str) -> Lines:
    """Run a per-line parser (C-speed json/regex underneath); None marks a line it could not read."""
    out: list[dict[str, str]] = []
    for text in lines.df.get_column(LINE).to_list():
        got = parse_one(text)
        out.append({ERROR: error} if got is None else got)
    return _add_parsed(lines, _dicts_frame(out, len(out)))


def _json(lines: Lines, p: ast.Parser) -> Lines:
    params = [(sanitize(name), _json_path(expr)) for name, expr in p.params]

    def one(text: str) -> dict[str, str] | None:
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(obj, dict):
            return None
        if params:
            return {name: v for name, path in params if (v := _walk(obj, path)) is not None}
        got: dict[str, str] = {}
        _flatten(obj, "", got)
        return got

    return _parse_with(lines, one, "JSONParserErr")


# key=value, key="quoted \" value", or a bare key.
_LOGFMT = re.compile(r'([^\s=]+)(?:=("(?:[^"\\]|\\.)*"|[^\s]*))?')


def _unquote(v: str) -> str:
    if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
        try:
            return str(orjson.loads(v))
        except orjson.JSONDecodeError:
            return v[1:-1]
    return v


def _logfmt(lines: Lines, p: ast.Parser) -> Lines:
    keep_empty = "keep-empty" in p.flags
    strict = "strict" in p.flags
    params = [(sanitize(name), expr) for name, expr in p.params]

    def one(text: str) -> dict[str, str] | None:
        got: dict[str, str] = {}
        for key, value in _LOGFMT.findall(text):
            if strict and '"' in key:
                return None
            v = _unquote(value)
            if v or keep_empty:
                got[sanitize(key)] = v
        if params:
            return {name: got[sanitize(src)] for name, src in params if sanitize(src) in got}
        return got

    return _parse_with(lines, one, "LogfmtParserErr")


def _regex_parse(lines: Lines, pattern: str) -> Lines:
    names = re.findall(r"\(\?P?<([A-Za-z_][A-Za-z0-9_]*)>", pattern)
    rust = re.sub(r"\(\?<([A-Za-z_])", r"(?P<\1", pattern)
    try:
        groups = lines.df.select(pl.col(LINE).str.extract_groups(rust).alias("g")).unnest("g")
    except pl.exceptions.PolarsError as e:
        raise BadRequest(f"regexp: cannot use {pattern!r}: {e}") from None
    return _add_parsed(lines, groups.select([sanitize(n) for n in dict.fromkeys(names) if n in groups.columns]))


def pattern_regex(pattern: str) -> str:
    """The regular expression of a Loki `pattern`: literals in order, `<name>` captures, `<_>` skips."""
    parts = re.split(r"(<[A-Za-z_][A-Za-z0-9_]*>)", pattern)
    out = ["^"]
    for i, part in enumerate(parts):
        if not part:
            continue
        if part.startswith("<") and part.endswith(">"):
            last = all(not p for p in parts[i + 1:])
            body = "(.*)" if last else "(.*?)"
            name = part[1:-1]
            out.append(body.replace("(", "(?:", 1) if name == "_" else f"(?P<{name}>{body[1:-1]})")
        else:
            out.append(re.escape(part))
    return "".join(out)


def _regexp(lines: Lines, p: ast.Parser) -> Lines:
    return _regex_parse(lines, p.expr)


def _pattern(lines: Lines, p: ast.Parser) -> Lines:
    return _regex_parse(lines, pattern_regex(p.expr))


def _unpack(lines: Lines, p: ast.Parser) -> Lines:
    texts = lines.df.get_column(LINE).to_list()
    parsed: list[dict[str, str]] = []
    new_lines: list[str] = []
    for text in texts:
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError:
            obj = None
        if not isinstance(obj, dict):
            parsed.append({ERROR: "JSONParserErr"})
            new_lines.append(text)
            continue
        entry = obj.pop("_entry", None)
        parsed.append({sanitize(k): v for k, v in obj.items() if isinstance(v, str)})
        new_lines.append(entry if isinstance(entry, str) else text)
    out = _add_parsed(lines, _dicts_frame(parsed, len(parsed)))
    return Lines(out.df.with_columns(pl.Series(LINE, new_lines, pl.String)), out.kinds)


def _parser(lines: Lines, p: ast.Stage) -> Lines:
    assert isinstance(p, ast.Parser)
    return {"json": _json, "logfmt": _logfmt, "regexp": _regexp, "pattern": _pattern, "unpack": _unpack}[p.kind](
        lines, p)


def _converted(lines: Lines, name: str, kind: str) -> pl.Expr:
    """Label `name` as a float in its base unit (seconds for durations, bytes for sizes); null when
    the value does not read as one. Converted per distinct value, not per line."""
    col = _col(lines, name)
    if kind == "number":
        return col.cast(pl.Float64, strict=False)
    if name not in lines.df.columns:
        return pl.lit(None, pl.Float64)
    mapping: dict[str, float | None] = {}
    for v in lines.df.get_column(name).drop_nulls().unique().to_list():
        try:
            mapping[v] = parse_duration_ns(v) / 1e9 if kind == "duration" else parse_bytes(v)
        except ValueError:
            try:
                mapping[v] = float(v)
            except ValueError:
                mapping[v] = None
    return col.replace_strict(mapping, default=None, return_dtype=pl.Float64)


_NUMERIC_OPS: dict[str, Callable[[pl.Expr, float], pl.Expr]] = {
    "==": lambda c, v: c == v, "!=": lambda c, v: c != v, ">": lambda c, v: c > v, ">=": lambda c, v: c >= v,
    "<": lambda c, v: c < v, "<=": lambda c, v: c <= v,
}


def label_expr(lines: Lines, e: ast.LabelExpr) -> pl.Expr:
    """Boolean polars expression of a label filter; a missing label reads as "" for string matchers."""
    if isinstance(e, ast.LabelAnd):
        return label_expr(lines, e.left) & label_expr(lines, e.right)
    if isinstance(e, ast.LabelOr):
        return label_expr(lines, e.left) | label_expr(lines, e.right)
    if e.kind == "string":
        return string_match(_col(lines, e.name).fill_null(""), e.op, e.text)
    return _NUMERIC_OPS[e.op](_converted(lines, e.name, e.kind), e.number).fill_null(False)


def string_match(col: pl.Expr, op: str, value: str) -> pl.Expr:
    if op == "=":
        return col == value
    if op == "!=":
        return col != value
    cond = col.str.contains(anchored(value))
    return cond if op == "=~" else ~cond


def _label_filter(lines: Lines, f: ast.Stage) -> Lines:
    assert isinstance(f, ast.LabelFilter)
    return Lines(lines.df.filter(label_expr(lines, f.expr)), lines.kinds)


# -- Go template subset for line_format and label_format ----------------------------------------

_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.DOTALL)
_OPERAND = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`|\.[A-Za-z_][A-Za-z0-9_]*|[A-Za-z_][A-Za-z0-9_]*|-?\d+(?:\.\d+)?|\|')

_FUNCS: dict[str, tuple[int, Callable[..., pl.Expr]]] = {
    # name: (arguments before the piped value, builder)
    "ToUpper": (0, lambda x: x.str.to_uppercase()),
    "upper": (0, lambda x: x.str.to_uppercase()),
    "ToLower": (0, lambda x: x.str.to_lowercase()),
    "lower": (0, lambda x: x.str.to_lowercase()),
    "Title": (0, lambda x: x.str.to_titlecase()),
    "title": (0, lambda x: x.str.to_titlecase()),
    "TrimSpace": (0, lambda x: x.str.strip_chars()),
    "trim": (0, lambda x: x.str.strip_chars()),
    "len": (0, lambda x: x.str.len_chars().cast(pl.String)),
    "default": (1, lambda d, x: pl.when(x.is_null() | (x == "")).then(d).otherwise(x)),
    "replace": (2, lambda old, new, x: x.str.replace_all(old, new, literal=True)),
    "trimPrefix": (1, lambda p, x: x.str.strip_prefix(p)),
    "trimSuffix": (1, lambda s, x: x.str.strip_suffix(s)),
    "regexReplaceAll": (2, lambda r, s, x: x.str.replace_all(r, s)),
    "trunc": (1, lambda n, x: x.str.slice(0, pl.lit(n).cast(pl.Int64))),
}


def template_expr(lines: Lines, template: str) -> pl.Expr:
    """A String expression rendering a Go template: text, {{.label}}, {{__line__}}, {{__timestamp__}},
    and pipelines of the functions in _FUNCS ({{ .a | ToUpper }}, {{ default "-" .b }})."""
    parts: list[pl.Expr] = []
    pos = 0
    for m in _ACTION.finditer(template):
        if m.start() > pos:
            parts.append(pl.lit(template[pos:m.start()]))
        parts.append(_action(lines, m.group(1)).fill_null(""))
        pos = m.end()
    if pos < len(template):
        parts.append(pl.lit(template[pos:]))
    if not parts:
        return pl.lit("")
    return pl.concat_str(parts) if len(parts) > 1 else parts[0]


def _operand(lines: Lines, tok: str) -> pl.Expr:
    if tok.startswith('"'):
        return pl.lit(str(orjson.loads(tok)))
    if tok.startswith("`"):
        return pl.lit(tok[1:-1])
    if tok.startswith("."):
        return _col(lines, tok[1:])
    if tok == "__line__":
        return pl.col(LINE)
    if tok == "__timestamp__":
        return pl.from_epoch(pl.col(TS), time_unit="ns").dt.strftime("%Y-%m-%dT%H:%M:%S%.9fZ")
    if re.fullmatch(r"-?\d+(?:\.\d+)?", tok):
        return pl.lit(tok)
    raise BadRequest(f"template: unsupported value {tok!r} (supported: .label, \"text\", __line__, __timestamp__ "
                     f"and the functions {', '.join(sorted(_FUNCS))})")


def _action(lines: Lines, text: str) -> pl.Expr:
    toks = _OPERAND.findall(text)
    if "".join(toks).replace(" ", "") != re.sub(r"\s+", "", text):
        raise BadRequest(f"template: cannot read {{{{{text}}}}}")
    commands: list[list[str]] = [[]]
    for t in toks:
        if t == "|":
            commands.append([])
        else:
            commands[-1].append(t)
    value: pl.Expr | None = None
    for cmd in commands:
        if not cmd:
            raise BadRequest(f"template: empty command in {{{{{text}}}}}")
        head = cmd[0]
        if head in _FUNCS:
            nargs, fn = _FUNCS[head]
            args = [_operand(lines, t) for t in cmd[1:]]
            if value is not None:
                args.append(value)
            if len(args) != nargs + 1:
                raise BadRequest(f"template: {head} takes {nargs + 1} argument(s), got {len(args)}")
            value = fn(*args)
        elif len(cmd) == 1 and value is None:
            value = _operand(lines, head)
        else:
            raise BadRequest(f"template: unknown function {head!r} (supported: {', '.join(sorted(_FUNCS))})")
    assert value is not None
    return value.cast(pl.String)


def _line_format(lines: Lines, f: ast.Stage) -> Lines:
    assert isinstance(f, ast.LineFormat)
    return Lines(lines.df.with_columns(template_expr(lines, f.template).alias(LINE)), lines.kinds)


def _label_format(lines: Lines, f: ast.Stage) -> Lines:
    assert isinstance(f, ast.LabelFormat)
    df, kinds = lines.df, dict(lines.kinds)
    for dst, src, is_template in f.items:
        current = Lines(df, kinds)
        expr = template_expr(current, src) if is_template else _col(current, src)
        df = df.with_columns(expr.alias(dst))
        kinds.setdefault(dst, PARSED)
        if not is_template and src != dst and src in df.columns:
            df = df.drop(src)
            kinds.pop(src, None)
    return Lines(df, kinds)


def _drop(lines: Lines, d: ast.Stage) -> Lines:
    assert isinstance(d, ast.Drop)
    df = lines.df
    labels = lines.labels
    if d.keep:
        kept = set(d.names)
        changes = [pl.lit(None, pl.String).alias(c) for c in labels if c not in kept and
                   c not in {m.name for m in d.matchers}]
        changes += [pl.when(string_match(pl.col(m.name).fill_null(""), m.op, m.value)).then(pl.col(m.name))
                    .otherwise(None).alias(m.name) for m in d.matchers if m.name in df.columns and m.name not in kept]
    else:
        changes = [pl.lit(None, pl.String).alias(n) for n in d.names if n in df.columns]
        changes += [pl.when(string_match(pl.col(m.name).fill_null(""), m.op, m.value)).then(None)
                    .otherwise(pl.col(m.name)).alias(m.name) for m in d.matchers if m.name in df.columns]
    return Lines(df.with_columns(changes) if changes else df, lines.kinds)


def _decolorize(lines: Lines, _: ast.Stage) -> Lines:
    return Lines(lines.df.with_columns(pl.col(LINE).str.replace_all(_ANSI, "")), lines.kinds)


def _unwrap(lines: Lines, u: ast.Stage) -> Lines:
    """Adds `@value` from the label; lines whose value does not convert are left out of the samples
    (Loki marks them SampleExtractionErr), and the label leaves the series' labels."""
    assert isinstance(u, ast.Unwrap)
    kind = {"": "number", "duration": "duration", "duration_seconds": "duration", "bytes": "bytes"}[u.conversion]
    df = lines.df.with_columns(_converted(lines, u.label, kind).alias(VALUE)).filter(pl.col(VALUE).is_not_null())
    kinds = dict(lines.kinds)
    if u.label in df.columns:
        df = df.drop(u.label)
        kinds.pop(u.label, None)
    return Lines(df, kinds)


_STAGES: dict[type, Callable[[Lines, Any], Lines]] = {
    ast.LineFilter: _line_filter,
    ast.Parser: _parser,
    ast.LabelFilter: _label_filter,
    ast.LineFormat: _line_format,
    ast.LabelFormat: _label_format,
    ast.Drop: _drop,
    ast.Decolorize: _decolorize,
    ast.Unwrap: _unwrap,
}


def drops_lines(stages: Iterable[ast.Stage]) -> bool:
    """Whether any stage can leave a fetched line out (so the store's LIMIT cannot be the answer's)."""
    return any(isinstance(s, ast.LineFilter | ast.LabelFilter | ast.Unwrap) for s in stages)


def series_key(lines: Lines, names: list[str]) -> pl.Expr:
    """One string per line identifying its label set over `names` (absent labels left out)."""
    if not names:
        return pl.lit("")
    parts = [pl.when(pl.col(n).is_not_null()).then(pl.lit(n + "\x1e") + pl.col(n) + pl.lit("\x1f"))
             for n in sorted(names)]
    return pl.concat_str(parts, ignore_nulls=True)


def key_labels(key: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in key.split("\x1f"):
        if part:
            k, _, v = part.partition("\x1e")
            out[k] = v
    return out
