"""The log search language an operator types, e.g. `PaymentService level:error -"health check"`.

parse() turns a query string into a small AST of frozen dataclasses; logs_sql compiles that to SQL.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from ferry.errors import BadRequest
from ferry.query.lexer import QUOTED, Cursor, QuerySyntaxError, Token, TokenStream, unescape

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

# The search language is scanned by hand on a Cursor: whether `-` negates, where a word ends and
# whether `key:` takes the quoted string after it depend on the characters around them, which a
# table of token kinds cannot say.

# Keys may carry the dots, dashes and slashes OTel attribute names use, but must start with a
# letter, `_` or `@` so clock times (12:30:01) and the like stay free words.
KEY_RE = re.compile(r"[A-Za-z_@][A-Za-z0-9_.\-/@]*")
_WORD_RE = re.compile(r'[^\s()"]+')
_PHRASE_RE = re.compile(QUOTED)
# Only \" and \\ are escapes, so C:\temp stays as typed.
_ESCAPES = {'"': '"', "\\": "\\"}
_KEYWORDS = frozenset({"NOT", "AND", "OR"})
_NUMBER_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_SYNTAX = "query syntax error at position {pos}: {message}"


def _describe(tok: Token) -> str:
    if tok.kind == "end":
        return "end of query"
    if tok.kind in ("WORD", "PHRASE", "FIELD"):
        return repr(tok.text)
    return f"'{tok.kind}'"


def _error(pos: int, message: str) -> BadRequest:
    return QuerySyntaxError(_SYNTAX, pos, message)


def _tokens(query: str) -> list[Token]:
    """Kinds: ( ) - NOT AND OR, and WORD, PHRASE and FIELD whose value is their Node; then end."""
    cur = Cursor(query, _SYNTAX)
    out: list[Token] = []
    while True:
        cur.skip_space()
        start, ch = cur.pos, cur.char
        if not ch:
            out.append(Token("end", "", start))
            return out
        if ch in "()":
            cur.pos += 1
            out.append(Token(ch, ch, start))
        elif ch == '"':
            text = _quoted(cur)
            if text == "":
                raise cur.error('empty phrase ""; put text between the quotes', start)
            out.append(Token("PHRASE", query[start : cur.pos], start, Phrase(text)))
        elif ch == "-" and start + 1 < len(query) and _negatable(query[start + 1]):
            cur.pos += 1
            out.append(Token("-", "-", start))
        else:
            out.append(_word(cur, start))


def _word(cur: Cursor, start: int) -> Token:
    m = cur.match(_WORD_RE)
    assert m is not None  # the caller saw a character that is not space, a paren or a quote
    word = m.group()
    if word in _KEYWORDS:
        return Token(word, word, start)
    if word == "*":
        return Token("WORD", word, start, And(()))
    key_m = KEY_RE.match(word)
    if key_m and key_m.end() < len(word) and word[key_m.end()] == ":":
        return _field(cur, start, key_m.group(), word[key_m.end() + 1 :])
    if word.endswith("*") and len(word) > 1:
        return Token("WORD", word, start, Word(word[:-1], prefix=True))
    return Token("WORD", word, start, Word(word))


def _quoted(cur: Cursor) -> str:
    """The text of the "..." string at the cursor, which moves past it."""
    start = cur.pos
    m = cur.match(_PHRASE_RE)
    if m is None:
        raise cur.error("unterminated quoted string: expected a closing '\"'", start)
    return unescape(m.group()[1:-1], _ESCAPES, unknown="keep")


def _field(cur: Cursor, start: int, key: str, rest: str) -> Token:
    """Finish a `key:...` token; `rest` is what followed the colon up to a stop character."""
    q = cur.text
    value_pos = start + len(key) + 1
    op: FieldOp = "="
    for cmp in COMPARISONS:
        if rest.startswith(cmp):
            op, rest, value_pos = cmp, rest[len(cmp) :], value_pos + len(cmp)
            break
    quoted = False
    if rest == "" and cur.char == '"':
        rest = _quoted(cur)
        quoted = True
    elif rest == "":
        what = "a number" if op != "=" else "a value"
        raise _error(value_pos, f"expected {what} after '{q[start:value_pos]}'")
    if op == "=" and not quoted and rest == "*":
        op, rest = "exists", ""
    elif op == "=" and not quoted and rest.endswith("*"):
        op, rest = "prefix", rest[:-1]
    elif op == "=" and quoted and cur.char == "*":
        cur.pos += 1
        op = "prefix"
    if op in COMPARISONS:
        _check_comparable(key, rest, value_pos)
    text = q[start : cur.pos]
    if key.lower() == "body":
        return Token("FIELD", text, start, _body_node(op, rest, quoted))
    return Token("FIELD", text, start, Field(key, op, rest))


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


class _Parser(TokenStream):
    def __init__(self, query: str) -> None:
        super().__init__(query, _tokens(query), _SYNTAX)
        self.depth = 0
        self.terms = 0

    def parse(self) -> Node:
        if self.tok.kind == "end":
            return And(())
        node = self._and()
        if self.tok.kind != "end":
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
                self.next()
                items.append(self._or())
            elif self.tok.kind in _TERM_START:
                items.append(self._or())
            else:
                break
        return items[0] if len(items) == 1 else And(tuple(items))

    def _or(self) -> Node:
        items = [self._unary()]
        while self.tok.kind == "OR":
            self.next()
            items.append(self._unary())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def _unary(self) -> Node:
        tok = self.tok
        if tok.kind in ("NOT", "-"):
            self.next()
            self._enter(tok.pos)
            operand = self._unary()
            self.depth -= 1
            return Not(operand)
        return self._primary()

    def _primary(self) -> Node:
        tok = self.tok
        if tok.kind == "(":
            self.next()
            self._enter(tok.pos)
            if self.tok.kind == ")":
                raise _error(self.tok.pos, "expected a term inside '(' ... ')', found ')'")
            node = self._and()
            if self.tok.kind != ")":
                raise _error(
                    self.tok.pos,
                    f"expected ')' to close '(' at position {tok.pos}, found {_describe(self.tok)}",
                )
            self.next()
            self.depth -= 1
            return node
        if tok.kind in ("WORD", "PHRASE", "FIELD"):
            self.next()
            self.terms += 1
            if self.terms > MAX_TERMS:
                raise _error(tok.pos, f"too many terms (at most {MAX_TERMS})")
            assert isinstance(tok.value, Node)
            return tok.value
        after = {"NOT": "after NOT", "-": "after '-'", "OR": "after OR", "AND": "after AND"}
        prev = self.toks[self.i - 1].kind if self.i > 0 else ""
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
    return _Parser(query).parse()
