"""TraceQL text to a small AST: spanset filters `{ ... }` joined by `&&`, `||` and the structural
operators `>>`, `>`, `<<`, `<`, `~`; conditions on intrinsics and span/resource attributes.

Errors are BadRequest naming what was wrong and where (column, 1-based), as Tempo's parser says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ferry.errors import BadRequest
from ferry.query.lexer import QUOTED, Lexer, QuerySyntaxError, Token, TokenStream, unescape

# ---- AST ------------------------------------------------------------------------------------------

INTRINSICS = ("name", "status", "kind", "duration", "statusMessage")
# Intrinsics Tempo also writes with a scope (`span:name`): the same fields.
_SCOPED_INTRINSICS = {f"span:{n}": n for n in INTRINSICS}
# Trace-level intrinsics and pipelines exist in Tempo's TraceQL but not here: said so, not misread.
_UNSUPPORTED = ("rootName", "rootServiceName", "traceDuration", "nestedSetParent", "nestedSetLeft",
                "nestedSetRight", "parent", "event:name", "link:traceID", "trace:duration", "trace:rootName",
                "trace:rootService", "instrumentation:name")
STATUS_VALUES = ("error", "ok", "unset")
KIND_VALUES = ("unspecified", "internal", "server", "client", "producer", "consumer")

COMPARISONS = ("=", "!=", ">", ">=", "<", "<=", "=~", "!~")
SPANSET_OPS = ("&&", "||", ">>", ">", "<<", "<", "~")


@dataclass(frozen=True)
class Attr:
    """`span.key`, `resource.key`, or unscoped `.key` (scope None: the span's, else the resource's)."""

    scope: str | None
    key: str

    def __str__(self) -> str:
        return f"{self.scope or ''}.{self.key}"


@dataclass(frozen=True)
class Intrinsic:
    name: str

    def __str__(self) -> str:
        return self.name


Field = Attr | Intrinsic


@dataclass(frozen=True)
class Duration:
    ns: int


@dataclass(frozen=True)
class Keyword:
    """status and kind values (`error`, `server`...)."""

    word: str


Value = str | int | float | bool | Duration | Keyword


@dataclass(frozen=True)
class Compare:
    field: Field
    op: str
    value: Value


@dataclass(frozen=True)
class BoolOp:
    """`&&` / `||` between conditions on one span."""

    op: str
    left: Cond
    right: Cond


@dataclass(frozen=True)
class Everything:
    """`{ }` or `{ true }`: every span."""


Cond = Compare | BoolOp | Everything


@dataclass(frozen=True)
class Filter:
    cond: Cond


@dataclass(frozen=True)
class SpansetOp:
    """An operator between spansets: `&&` `||` (same trace) or structural `>>` `>` `<<` `<` `~`."""

    op: str
    left: Spanset
    right: Spanset


Spanset = Filter | SpansetOp


# ---- lexer ----------------------------------------------------------------------------------------

_UNITS_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
# Attribute names: letters, digits and the punctuation OTel keys use (service.name, k8s.pod-name, a/b:c).
_NAME_CHAR = r"[A-Za-z0-9_.\-/:@]"
MAX_QUERY_CHARS = 20_000

_SYNTAX = "invalid TraceQL query: {message} at column {column}"
# A number or duration may not run into a name (`5mx` and `1abc` are errors, not two tokens); the
# atomic group keeps a shorter match (`1.5` of `1.5٣x`) from being tried instead. The leading `-`
# is a sign only at the start or after an operator, which tokenize() checks.
_LEXER = Lexer({
    "ws": r"\s+",
    "string": QUOTED + r"|`[^`]*`",
    "open_string": r'["`]',
    "duration": rf"-?(?>(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+)(?!{_NAME_CHAR})",
    "number": rf"-?(?>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)(?!{_NAME_CHAR})",
    "name": rf"[A-Za-z_.]{_NAME_CHAR}*",
    "op": r"&&|\|\||>>|<<|>=|<=|!=|=~|!~|=|>|<|~|!|\{|\}|\(|\)|\|",
}, _SYNTAX, skip=("ws",), fail={"open_string": "unterminated string"})
# Tempo's escapes; any other backslash just takes the next character as it is.
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}


def _error(pos: int, what: str) -> BadRequest:
    return QuerySyntaxError(_SYNTAX, pos, what)


def _ns(text: str) -> int:
    return sum(round(float(n) * _UNITS_NS[u]) for n, u in _DURATION_PART.findall(text))


def tokenize(q: str) -> list[Token]:
    """Tokens whose value is decoded: strings unescaped, numbers int or float, durations in ns, a
    name with a quoted key ("quoted", name); an operator's or plain name's value is None."""
    if len(q) > MAX_QUERY_CHARS:
        raise BadRequest(f"invalid TraceQL query: longer than {MAX_QUERY_CHARS} characters")
    out: list[Token] = []
    name_end = -1  # where the last name ended, for `span."key with spaces"`
    for t in _LEXER.scan(q):
        kind, text, pos = t.kind, t.text, t.pos
        if kind in ("number", "duration") and text[0] == "-" and out and out[-1].kind != "op":
            raise _error(pos, "unexpected character '-'")
        if kind == "string":
            raw = text[0] == "`"
            s = text[1:-1] if raw else unescape(text[1:-1], _ESCAPES, unknown="drop")
            if not raw and pos == name_end and out[-1].text.endswith("."):
                # A quoted key right after a scope is part of the name.
                name = out[-1].text + s
                out[-1] = Token("name", name, out[-1].pos, ("quoted", name))
                name_end = -1
                continue
            out.append(Token("string", s, pos, s))
        elif kind == "duration":
            ns = _ns(text)
            out.append(Token(kind, text, pos, -ns if text[0] == "-" else ns))
        elif kind == "number":
            num: int | float = float(text) if any(c in text for c in ".eE") else int(text)
            out.append(Token(kind, text, pos, num))
        else:
            out.append(t)
        name_end = pos + len(text) if kind == "name" else -1
    return out


# ---- parser ---------------------------------------------------------------------------------------


class _Parser(TokenStream):
    def __init__(self, q: str) -> None:
        super().__init__(q, tokenize(q), _SYNTAX)

    def expect(self, op: str) -> Token:
        t = self.tok
        if not (t.kind == "op" and t.text == op):
            raise _error(t.pos, f"expected {op!r}, found {_shown(t)}")
        return self.next()

    # spanset level: || lowest, then &&, then the structural operators
    def query(self) -> Spanset:
        if self.tok.kind == "end":
            raise _error(0, "empty query; a spanset filter looks like { status = error }")
        expr = self.spanset_or()
        t = self.tok
        if t.kind == "op" and t.text == "|":
            raise _error(t.pos, "pipelines (| count(), | select(...)) are not supported")
        if t.kind != "end":
            raise _error(t.pos, f"unexpected {_shown(t)} after a complete query")
        return expr

    def spanset_or(self) -> Spanset:
        left = self.spanset_and()
        while self.is_op("||"):
            self.next()
            left = SpansetOp("||", left, self.spanset_and())
        return left

    def spanset_and(self) -> Spanset:
        left = self.spanset_struct()
        while self.is_op("&&"):
            self.next()
            left = SpansetOp("&&", left, self.spanset_struct())
        return left

    def spanset_struct(self) -> Spanset:
        left = self.spanset_primary()
        while self.is_op(">>", ">", "<<", "<", "~"):
            op = self.next().text
            left = SpansetOp(op, left, self.spanset_primary())
        return left

    def spanset_primary(self) -> Spanset:
        t = self.tok
        if self.is_op("("):
            self.next()
            inner = self.spanset_or()
            self.expect(")")
            return inner
        if self.is_op("{"):
            self.next()
            if self.is_op("}"):
                self.next()
                return Filter(Everything())
            cond = self.cond_or()
            self.expect("}")
            return Filter(cond)
        raise _error(t.pos, f"expected a spanset filter {{ ... }}, found {_shown(t)}")

    # condition level, inside { }
    def cond_or(self) -> Cond:
        left = self.cond_and()
        while self.is_op("||"):
            self.next()
            left = BoolOp("||", left, self.cond_and())
        return left

    def cond_and(self) -> Cond:
        left = self.cond_primary()
        while self.is_op("&&"):
            self.next()
            left = BoolOp("&&", left, self.cond_primary())
        return left

    def cond_primary(self) -> Cond:
        t = self.tok
        if self.is_op("("):
            self.next()
            inner = self.cond_or()
            self.expect(")")
            return inner
        if t.kind == "name" and t.text == "true" and self.peek().kind == "op" and \
                self.peek().text in ("}", ")", "&&", "||"):
            self.next()
            return Everything()
        field = self.field()
        op_tok = self.tok
        if not (op_tok.kind == "op" and op_tok.text in COMPARISONS):
            raise _error(op_tok.pos, f"expected a comparison (= != > >= < <= =~ !~) after {field}, "
                                     f"found {_shown(op_tok)}")
        self.next()
        value = self.value(field, op_tok)
        return Compare(field, op_tok.text, value)

    def field(self) -> Field:
        t = self.next()
        if t.kind != "name":
            raise _error(t.pos, f"expected an attribute or intrinsic, found {_shown(t)}")
        name = t.text
        quoted = isinstance(t.value, tuple)
        if not quoted and name in INTRINSICS:
            return Intrinsic(name)
        if not quoted and name in _SCOPED_INTRINSICS:
            return Intrinsic(_SCOPED_INTRINSICS[name])
        if not quoted and name in _UNSUPPORTED:
            raise _error(t.pos, f"{name} is not supported")
        for scope in ("span", "resource"):
            if name.startswith(scope + ".") and len(name) > len(scope) + 1:
                return Attr(scope, name[len(scope) + 1:])
        if name.startswith(".") and len(name) > 1:
            return Attr(None, name[1:])
        if name.split(".")[0] in ("event", "link", "instrumentation", "trace"):
            raise _error(t.pos, f"the {name.split('.')[0]} scope is not supported")
        raise _error(t.pos, f"unknown field {name!r}: use an intrinsic ({', '.join(INTRINSICS)}), "
                            "span.<attr>, resource.<attr> or .<attr>")

    def value(self, field: Field, op_tok: Token) -> Value:
        t = self.next()
        op = op_tok.text
        if t.kind == "string":
            v: Value = str(t.value)
            if op in ("=~", "!~"):
                return v
            if op not in ("=", "!="):
                raise _error(op_tok.pos, f"{op} compares numbers or durations, not a string")
        elif t.kind in ("number", "duration"):
            if op in ("=~", "!~"):
                raise _error(op_tok.pos, f"{op} takes a string (a regular expression)")
            v = Duration(int(t.value)) if t.kind == "duration" else t.value  # type: ignore[assignment]
        elif t.kind == "name" and t.text in ("true", "false"):
            if op not in ("=", "!="):
                raise _error(op_tok.pos, f"{op} cannot compare a boolean")
            v = t.text == "true"
        elif t.kind == "name" and t.text in STATUS_VALUES + KIND_VALUES:
            if op not in ("=", "!="):
                raise _error(op_tok.pos, f"{op} cannot compare {t.text}")
            v = Keyword(t.text)
        elif isinstance(field, Intrinsic) and field.name in ("status", "kind") and t.kind == "name":
            allowed = STATUS_VALUES if field.name == "status" else KIND_VALUES
            raise _error(t.pos, f"{field.name} takes one of {', '.join(allowed)}, not {t.text}")
        else:
            raise _error(t.pos, f"expected a value after {op}, found {_shown(t)}")
        _check_types(field, v, t)
        return v


def _check_types(field: Field, v: Value, t: Token) -> None:
    if isinstance(field, Attr):
        if isinstance(v, Keyword | Duration):
            raise _error(t.pos, f"{field} cannot be compared with {t.text}")
        return
    name = field.name
    if name == "status" and not (isinstance(v, Keyword) and v.word in STATUS_VALUES):
        raise _error(t.pos, f"status takes one of {', '.join(STATUS_VALUES)}, not {t.text or 'nothing'}")
    if name == "kind" and not (isinstance(v, Keyword) and v.word in KIND_VALUES):
        raise _error(t.pos, f"kind takes one of {', '.join(KIND_VALUES)}, not {t.text or 'nothing'}")
    if name == "duration" and not isinstance(v, Duration):
        raise _error(t.pos, f"duration takes a duration such as 500ms or 1.5s, not {t.text or 'nothing'}")
    if name in ("name", "statusMessage") and not isinstance(v, str):
        raise _error(t.pos, f"{name} takes a string, not {t.text or 'nothing'}")


def _shown(t: Token) -> str:
    if t.kind == "end":
        return "the end of the query"
    text = t.text if len(t.text) <= 30 else t.text[:30] + "…"
    return repr(text)


def parse(q: str) -> Spanset:
    """The AST of TraceQL query `q`; BadRequest naming the problem and its column otherwise."""
    return _Parser(q).query()


def filters(expr: Spanset) -> list[Filter]:
    """The spanset filters of `expr`, left to right (the leaves the compiler gives SQL conditions)."""
    if isinstance(expr, Filter):
        return [expr]
    return filters(expr.left) + filters(expr.right)


def fields(cond: Cond) -> list[Field]:
    if isinstance(cond, Compare):
        return [cond.field]
    if isinstance(cond, BoolOp):
        return fields(cond.left) + fields(cond.right)
    return []


def parse_field(text: str) -> Field:
    """A field named alone, as the tag-values API takes it (`resource.service.name`, `name`, `.k`)."""
    p = _Parser(text)
    f = p.field()
    if p.tok.kind != "end":
        raise _error(p.tok.pos, f"unexpected {_shown(p.tok)} after the field {f}")
    return f


def parse_duration(text: str) -> int:
    """Nanoseconds in a duration such as 500ms, 1.5s, 1h30m or 250us; BadRequest otherwise."""
    m = _DURATION.fullmatch(text.strip())
    if not m:
        raise BadRequest(f"must be a duration such as 100ms, 1.5s or 1m, got {text[:40]!r}")
    return _ns(m.group())
