"""The scanning the query languages share: a table of token kinds, a cursor that keeps the position,
one syntax error carrying it, and string-literal unescaping; each language keeps its own token set.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from ferry.errors import BadRequest

# A double-quoted literal whose backslash takes the next character, newline included; the escapes
# themselves are the language's (unescape()).
QUOTED = r'"(?:[^"\\]|\\[\s\S])*"'


class QuerySyntaxError(BadRequest):
    """A query that does not scan or parse; `pos` is the 0-based offset the message points at."""

    def __init__(self, template: str, pos: int, message: str, text: str = "") -> None:
        """`template` words it, from {message}, {pos} (0-based), {column} (1-based offset) and
        {line} and {col} (1-based, which need the query `text`)."""
        # Each language words its errors its own way, and its tests and clients read them.
        line = text.count("\n", 0, pos) + 1
        col = pos - (text.rfind("\n", 0, pos) + 1) + 1
        super().__init__(template.format(pos=pos, column=pos + 1, line=line, col=col, message=message))
        self.pos = pos


@dataclass(frozen=True)
class Token:
    """`text` as typed (or as the language decodes it), `pos` its 0-based offset, `value` the language's."""

    kind: str
    text: str
    pos: int
    value: object = None


class Cursor:
    """A position in a query being scanned by hand, for grammars a token table cannot say."""

    def __init__(self, text: str, template: str) -> None:
        self.text = text
        self.pos = 0
        self.template = template

    def error(self, message: str, pos: int | None = None) -> QuerySyntaxError:
        return QuerySyntaxError(self.template, self.pos if pos is None else pos, message, self.text)

    @property
    def char(self) -> str:
        """The character at the cursor, "" at the end."""
        return self.text[self.pos : self.pos + 1]

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def match(self, pattern: re.Pattern[str]) -> re.Match[str] | None:
        """`pattern` matched at the cursor, which moves past it; None (cursor kept) otherwise."""
        m = pattern.match(self.text, self.pos)
        if m:
            self.pos = m.end()
        return m


class Lexer:
    """Token kinds tried in table order at each position, the first that matches winning."""

    def __init__(self, rules: Mapping[str, str], template: str, *, skip: Collection[str] = (),
                 fail: Mapping[str, str] | None = None) -> None:
        """`skip` kinds are dropped (space, comments); a `fail` kind raises its message where it matched."""
        self._re = re.compile("|".join(f"(?P<{kind}>{pattern})" for kind, pattern in rules.items()))
        self.template = template
        self._skip = frozenset(skip)
        self._fail = dict(fail or {})

    def tokens(self, text: str) -> list[Token]:
        """The tokens of `text`, ending with an "end" token at len(text)."""
        return list(self.scan(text))

    def scan(self, text: str) -> Iterator[Token]:
        """tokens() one at a time, so a caller's own checks fail in text order with the scanner's."""
        pos, match = 0, self._re.match
        while pos < len(text):
            m = match(text, pos)
            if m is None:
                raise QuerySyntaxError(self.template, pos, f"unexpected character {text[pos]!r}", text)
            kind = m.lastgroup or ""
            if kind in self._fail:
                raise QuerySyntaxError(self.template, pos, self._fail[kind], text)
            if kind not in self._skip:
                yield Token(kind, m.group(), pos)
            pos = m.end()
        yield Token("end", "", len(text))


_ESCAPE_RE = re.compile(r"\\([\s\S])")
_NUMERIC_ESCAPE_RE = re.compile(r"\\(u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|x[0-9a-fA-F]{2}|[0-7]{3}|[\s\S])")


def unescape(body: str, escapes: Mapping[str, str], *, numeric: bool = False,
             unknown: Literal["keep", "drop", "error"] = "keep") -> str:
    """The text of a literal's `body` (quotes removed): `\\c` is escapes[c]; with `numeric`, Go's
    \\uXXXX, \\UXXXXXXXX, \\xXX and \\ooo too; any other `\\c` stays as typed ("keep"), is `c`
    ("drop") or raises ValueError ("error")."""

    def one(m: re.Match[str]) -> str:
        e = m.group(1)
        if numeric and (e[0] in "uUx" or e[0].isdigit()):
            # A short form (`\u12`, `\9`) raises ValueError from int(), as a bad escape should.
            return chr(int(e[1:], 16) if e[0] in "uUx" else int(e, 8))
        if e in escapes:
            return escapes[e]
        if unknown == "error":
            raise ValueError(f"unknown escape sequence \\{e}")
        return e if unknown == "drop" else m.group()

    return (_NUMERIC_ESCAPE_RE if numeric else _ESCAPE_RE).sub(one, body)


class TokenStream:
    """A parser's place in a token list that ends with an "end" token, which it never moves past."""

    def __init__(self, text: str, toks: list[Token], template: str) -> None:
        self.text = text
        self.toks = toks
        self.i = 0
        self.template = template

    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def peek(self, n: int = 1) -> Token:
        return self.toks[min(self.i + n, len(self.toks) - 1)]

    def next(self) -> Token:
        t = self.toks[self.i]
        if t.kind != "end":
            self.i += 1
        return t

    def is_op(self, *ops: str) -> bool:
        return self.tok.kind == "op" and self.tok.text in ops

    def fail(self, message: str, tok: Token | None = None) -> QuerySyntaxError:
        return QuerySyntaxError(self.template, (tok or self.tok).pos, message, self.text)
