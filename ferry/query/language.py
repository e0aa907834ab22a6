"""The log search language an operator types, e.g. `PaymentService level:error -"health check"`.

parse() turns a query string into a small AST of frozen dataclasses; logs_sql compiles that to SQL.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from ferry.errors import BadRequest

# Grammar (keywords are upper-case; juxtaposition is AND; `-x` is `NOT x` when x starts with a
# letter, digit, `"`, `(`, `_` or `@`, so `->` or `--` are searched for instead):
#
#     query    := [and_expr] END
#     and_expr := or_expr { ["AND"] or_expr }
#     or_expr  := unary { "OR" unary }
#     unary    := ("NOT" | "-") unary | primary
#     primary  := "(" and_expr ")" | PHRASE | FIELD | WORD
#
# OR binds tighter than AND, so `svc level:error OR level:warn` means svc AND (error OR warn).
# A FIELD is `key:value`, `key:"quoted value"`, `key:prefix*`, `key:*` (present) or
# `key:>=n` / `key:>n` / `key:<=n` / `key:<n`; `body:` turns its value into a WORD or PHRASE.
# A WORD ending in `*` leaves its last token open; a lone `*` matches everything.

FieldOp = Literal["=", "prefix", "exists", ">", ">=", "<", "<="]
COMPARISONS: tuple[FieldOp, ...] = (">=", "<=", ">", "<")

# Bounds that keep both the parser's recursion and the generated SQL (each body term expands to a
# few hundred characters) far inside Python's and ClickHouse's limits.
MAX_QUERY_CHARS = 4096
MAX_TERMS = 64
MAX_DEPTH = 32

LEVEL_KEYS = frozenset({"level", "severity"})

# Severity names an operator may type -> (alias group, SeverityNumber range). The syslog names
# carry the single number ferry's syslog parser gives them (crit is ERROR2, 18), so `level:crit`
# finds syslog lines by number whatever their SeverityText, and `level:error` (17..20) finds
# syslog's ERR, CRIT and ALERT as well as OTel's ERROR.
LEVELS: dict[str, tuple[str, int, int]] = {
    "trace": ("trace", 1, 4),
    "debug": ("debug", 5, 8),
    "dbg": ("debug", 5, 8),
    "info": ("info", 9, 12),
    "information": ("info", 9, 12),
    "informational": ("info", 9, 12),
    "notice": ("notice", 10, 10),
    "warn": ("warn", 13, 16),
    "warning": ("warn", 13, 16),
    "error": ("error", 17, 20),
    "err": ("error", 17, 20),
    "crit": ("critical", 18, 18),
    "critical": ("critical", 18, 18),
    "alert": ("alert", 19, 19),
    "emerg": ("emergency", 21, 21),
    "emergency": ("emergency", 21, 21),
    "fatal": ("fatal", 21, 24),
    "panic": ("fatal", 21, 24),
}


@dataclass(frozen=True)
class Word:
    """A free word: its tokens must appear adjacent and in order; `prefix` leaves the last one open."""

    text: str
    prefix: bool = False


@dataclass(frozen=True)
class Phrase:
    """A quoted phrase: a case-sensitive substring of Body."""

    text: str


@dataclass(frozen=True)
class Field:
    """A `key:value` filter; `key` is as typed (lower-case aliases are resolved when compiling)."""

    key: str
    op: FieldOp
    value: str


@dataclass(frozen=True)
class Not:
    """The operand does not hold."""

    operand: Node


@dataclass(frozen=True)
class And:
    """All operands hold; `And(())` is the empty query and matches everything."""

    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    """At least one operand holds."""

    operands: tuple[Node, ...]


Node = Word | Phrase | Field | Not | And | Or


# ---------------------------------------------------------------------------------------------
# Lexer

_Kind = Literal["(", ")", "-", "NOT", "AND", "OR", "WORD", "PHRASE", "FIELD", "END"]

# Keys may carry the dots, dashes and slashes OTel attribute names use, but must start with a
# letter, `_` or `@` so clock times (12:30:01) and the like stay free words.
KEY_RE = re.compile(r"[A-Za-z_@][A-Za-z0-9_.\-/@]*")
_STOP = frozenset('()"')
_KEYWORDS: dict[str, _Kind] = {"NOT": "NOT", "AND": "AND", "OR": "OR"}
_NUMBER_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


@dataclass(frozen=True)
class _Tok:
    kind: _Kind
    pos: int
    text: str = ""
    node: Node | None = None


def _describe(tok: _Tok) -> str:
    if tok.kind == "END":
        return "end of query"
    if tok.kind in ("WORD", "PHRASE", "FIELD"):
        return repr(tok.text)
    return f"'{tok.kind}'"


def _error(pos: int, message: str) -> BadRequest:
    return BadRequest(f"query syntax error at position {pos}: {message}")


class _Lexer:
    def __init__(self, query: str) -> None:
        self.q = query
        self.i = 0

    def tokens(self) -> list[_Tok]:
        out: list[_Tok] = []
        while True:
            tok = self._next()
            out.append(tok)
            if tok.kind == "END":
                return out

    def _next(self) -> _Tok:
        q = self.q
        while self.i < len(q) and q[self.i].isspace():
            self.i += 1
        start = self.i
        if start >= len(q):
            return _Tok("END", start)
        ch = q[start]
        if ch in "()":
            self.i += 1
            return _Tok("(" if ch == "(" else ")", start, ch)
        if ch == '"':
            text = self._quoted()
            if text == "":
                raise _error(start, 'empty phrase ""; put text between the quotes')
            return _Tok("PHRASE", start, q[start : self.i], Phrase(text))
        if ch == "-" and start + 1 < len(q) and _negatable(q[start + 1]):
            self.i += 1
            return _Tok("-", start, "-")
        while self.i < len(q) and not q[self.i].isspace() and q[self.i] not in _STOP:
            self.i += 1
        word = q[start : self.i]
        if word in _KEYWORDS:
            return _Tok(_KEYWORDS[word], start, word)
        if word == "*":
            return _Tok("WORD", start, word, And(()))
        key_m = KEY_RE.match(word)
        if key_m and key_m.end() < len(word) and word[key_m.end()] == ":":
            return self._field(start, key_m.group(), word[key_m.end() + 1 :])
        if word.endswith("*") and len(word) > 1:
            return _Tok("WORD", start, word, Word(word[:-1], prefix=True))
        return _Tok("WORD", start, word, Word(word))

    def _quoted(self) -> str:
        """Read a "..." string at self.i; only \\" and \\\\ are escapes, so C:\\temp stays as typed."""
        q, start = self.q, self.i
        self.i += 1
        parts: list[str] = []
        while self.i < len(q):
            ch = q[self.i]
            if ch == "\\" and self.i + 1 < len(q) and q[self.i + 1] in '"\\':
                parts.append(q[self.i + 1])
                self.i += 2
            elif ch == '"':
                self.i += 1
                return "".join(parts)
            else:
                parts.append(ch)
                self.i += 1
        raise _error(start, "unterminated quoted string: expected a closing '\"'")

    def _field(self, start: int, key: str, rest: str) -> _Tok:
        """Finish a `key:...` token; `rest` is what followed the colon up to a stop character."""
        q = self.q
        value_pos = start + len(key) + 1
        op: FieldOp = "="
        for cmp in COMPARISONS:
            if rest.startswith(cmp):
                op, rest, value_pos = cmp, rest[len(cmp) :], value_pos + len(cmp)
                break
        quoted = False
        if rest == "" and self.i < len(q) and q[self.i] == '"':
            rest = self._quoted()
            quoted = True
        elif rest == "":
            what = "a number" if op != "=" else "a value"
            raise _error(value_pos, f"expected {what} after '{q[start:value_pos]}'")
        if op == "=" and not quoted and rest == "*":
            op, rest = "exists", ""
        elif op == "=" and not quoted and rest.endswith("*"):
            op, rest = "prefix", rest[:-1]
        elif op == "=" and quoted and self.i < len(q) and q[self.i] == "*":
            self.i += 1
            op = "prefix"
        if op in COMPARISONS:
            _check_comparable(key, rest, value_pos)
        text = q[start : self.i]
        if key.lower() == "body":
            return _Tok("FIELD", start, text, _body_node(op, rest, quoted))
        return _Tok("FIELD", start, text, Field(key, op, rest))


def _negatable(ch: str) -> bool:
    """Whether `-` followed by `ch` negates; otherwise (`->`, `--`, a lone `-`) it is searched for."""
    return ch in '"(_@' or ch.isalnum() or not (ch.isascii() or ch.isspace())


def _check_comparable(key: str, value: str, pos: int) -> None:
    if key.lower() in LEVEL_KEYS and value.lower() in LEVELS:
        return
    if key.lower() == "body":
        raise _error(pos, "body: cannot be compared as a number")
    if not _NUMBER_RE.fullmatch(value) or not math.isfinite(float(value)):
        want = "a number or a level name" if key.lower() in LEVEL_KEYS else "a number"
        raise _error(pos, f"expected {want}, found {value!r}")


def _body_node(op: FieldOp, value: str, quoted: bool) -> Node:
    if op == "exists":
        return Field("body", "exists", "")
    if value == "":
        return Field("body", "=", "")
    if quoted and op == "=":
        return Phrase(value)
    if op == "prefix":
        return Word(value, prefix=True)
    return Word(value)


# ---------------------------------------------------------------------------------------------
# Parser

_TERM_START = frozenset({"(", "-", "NOT", "WORD", "PHRASE", "FIELD"})


class _Parser:
    def __init__(self, toks: list[_Tok]) -> None:
        self.toks = toks
        self.k = 0
        self.depth = 0
        self.terms = 0

    @property
    def tok(self) -> _Tok:
        return self.toks[self.k]

    def parse(self) -> Node:
        if self.tok.kind == "END":
            return And(())
        node = self._and()
        if self.tok.kind != "END":
            if self.tok.kind == ")":
                raise _error(self.tok.pos, "unexpected ')' with no matching '('")
            raise _error(
                self.tok.pos, f"expected a term, AND, OR or end of query, found {_describe(self.tok)}"
            )
        return node

    def _and(self) -> Node:
        items = [self._or()]
        while True:
            if self.tok.kind == "AND":
                self.k += 1
                items.append(self._or())
            elif self.tok.kind in _TERM_START:
                items.append(self._or())
            else:
                break
        return items[0] if len(items) == 1 else And(tuple(items))

    def _or(self) -> Node:
        items = [self._unary()]
        while self.tok.kind == "OR":
            self.k += 1
            items.append(self._unary())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def _unary(self) -> Node:
        tok = self.tok
        if tok.kind in ("NOT", "-"):
            self.k += 1
            self._enter(tok.pos)
            operand = self._unary()
            self.depth -= 1
            return Not(operand)
        return self._primary()

    def _primary(self) -> Node:
        tok = self.tok
        if tok.kind == "(":
            self.k += 1
            self._enter(tok.pos)
            if self.tok.kind == ")":
                raise _error(self.tok.pos, "expected a term inside '(' ... ')', found ')'")
            node = self._and()
            if self.tok.kind != ")":
                raise _error(
                    self.tok.pos,
                    f"expected ')' to close '(' at position {tok.pos}, found {_describe(self.tok)}",
                )
            self.k += 1
            self.depth -= 1
            return node
        if tok.kind in ("WORD", "PHRASE", "FIELD"):
            self.k += 1
            self.terms += 1
            if self.terms > MAX_TERMS:
                raise _error(tok.pos, f"too many terms (at most {MAX_TERMS})")
            assert tok.node is not None
            return tok.node
        after = {"NOT": "after NOT", "-": "after '-'", "OR": "after OR", "AND": "after AND"}
        prev = self.toks[self.k - 1].kind if self.k > 0 else ""
        where = f" {after[prev]}" if prev in after else ""
        raise _error(tok.pos, f"expected a term{where}, found {_describe(tok)}")

    def _enter(self, pos: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _error(pos, f"nesting deeper than {MAX_DEPTH} levels")


def parse(query: str) -> Node:
    """Parse a search query; raise BadRequest naming the position and what was expected."""
    if len(query) > MAX_QUERY_CHARS:
        raise BadRequest(f"query is {len(query)} characters long; the limit is {MAX_QUERY_CHARS}")
    try:
        query.encode("utf-8")
    except UnicodeEncodeError as e:
        raise BadRequest(f"query is not valid text at position {e.start}") from None
    return _Parser(_Lexer(query).tokens()).parse()
