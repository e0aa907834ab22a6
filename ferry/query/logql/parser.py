"""Parses LogQL text (Grafana Loki's query language) into ferry.query.logql.ast nodes.

A ferry.query.lexer token table and a recursive-descent parser; BadRequest names line, column and problem.
"""

from __future__ import annotations

import re

from ferry.errors import BadRequest
from ferry.query.lexer import Lexer, Token, TokenStream, unescape
from ferry.query.logql import ast

MAX_QUERY_CHARS = 16_384
MAX_DEPTH = 64

# Go's time.ParseDuration units plus Prometheus' d, w and y (LogQL ranges use the latter).
_DURATION_UNITS_NS = {
    "ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9,
    "d": 86400 * 10**9, "w": 7 * 86400 * 10**9, "y": 365 * 86400 * 10**9,
}
_DURATION_RE = re.compile(r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h|d|w|y))+")
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d|w|y)")
# go-humanize's ParseBytes units: SI (kB = 1000) and IEC (KiB = 1024), any case.
_BYTE_UNITS = {
    "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4, "pb": 1000**5, "eb": 1000**6,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4, "pib": 1024**5, "eib": 1024**6,
    "ki": 1024, "mi": 1024**2, "gi": 1024**3, "ti": 1024**4, "pi": 1024**5, "ei": 1024**6,
}
_BYTES_RE = re.compile(r"(\d+(?:\.\d+)?)([a-zA-Z]+)")

_SYNTAX = "parse error at line {line}, col {col}: {message}"
_LEXER = Lexer({
    "ws": r"\s+",
    "comment": r"\#[^\n]*",
    "string": r'"(?:[^"\\]|\\.)*"|`[^`]*`',
    "num": r"\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?:[a-zA-Zµ]+(?:\d+(?:\.\d+)?[a-zA-Zµ]+)*)?",
    "ident": r"[a-zA-Z_][a-zA-Z0-9_]*",
    "op": r"\|=|\|~|!=|!~|=~|==|>=|<=|=|>|<|\||\{|\}|\(|\)|\[|\]|,|\+|-|\*|/|%|\^",
}, _SYNTAX, skip=("ws", "comment"))

_GO_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "'": "'", "a": "\a", "b": "\b",
               "f": "\f", "v": "\v"}

_PRECEDENCE = {"or": 1, "and": 2, "unless": 2, "==": 3, "!=": 3, ">": 3, ">=": 3, "<": 3, "<=": 3,
               "+": 4, "-": 4, "*": 5, "/": 5, "%": 5, "^": 6}
_COMPARISONS = frozenset({"==", "!=", ">", ">=", "<", "<="})
_PARSERS = frozenset({"json", "logfmt", "regexp", "pattern", "unpack"})


def parse_duration_ns(text: str) -> int:
    """Whole nanoseconds of a Go/Prometheus duration (`5m`, `1h30m`, `250ms`, `1.5s`); ValueError otherwise."""
    if not _DURATION_RE.fullmatch(text):
        raise ValueError(f"not a duration: {text!r}")
    total = 0.0
    for num, unit in _DURATION_PART_RE.findall(text):
        total += float(num) * _DURATION_UNITS_NS[unit]
    return int(round(total))


def parse_bytes(text: str) -> float:
    """Bytes of a humanized size (`20MB`, `1.5KiB`, `42b`); ValueError otherwise."""
    m = _BYTES_RE.fullmatch(text.strip().replace(" ", ""))
    if not m or m.group(2).lower() not in _BYTE_UNITS:
        raise ValueError(f"not a byte size: {text!r}")
    return float(m.group(1)) * _BYTE_UNITS[m.group(2).lower()]


def tokenize(text: str) -> list[Token]:
    return _LEXER.tokens(text)


class _Parser(TokenStream):
    def __init__(self, text: str) -> None:
        super().__init__(text, tokenize(text), _SYNTAX)
        self.depth = 0

    # -- token helpers ------------------------------------------------------------------------
    def unexpected(self, wanted: str) -> BadRequest:
        t = self.tok
        got = "end of query" if t.kind == "end" else repr(t.text)
        return self.fail(f"syntax error: unexpected {got}, expecting {wanted}")

    def is_word(self, *words: str) -> bool:
        return self.tok.kind == "ident" and self.tok.text in words

    def expect_op(self, op: str) -> Token:
        if not self.is_op(op):
            raise self.unexpected(repr(op))
        return self.next()

    def ident(self, what: str = "a label name") -> str:
        if self.tok.kind != "ident":
            raise self.unexpected(what)
        return self.next().text

    def string(self, what: str = "a string") -> str:
        t = self.tok
        if t.kind != "string":
            raise self.unexpected(what)
        self.next()
        if t.text.startswith("`"):
            return t.text[1:-1]
        try:
            return unescape(t.text[1:-1], _GO_ESCAPES, numeric=True, unknown="error")
        except ValueError as e:
            raise self.fail(str(e), t) from None

    def duration(self) -> int:
        t = self.tok
        if t.kind != "num":
            raise self.unexpected("a duration such as 5m")
        try:
            ns = parse_duration_ns(t.text)
        except ValueError:
            raise self.fail(f"not a duration: {t.text!r} (use units ms, s, m, h, d, w, y)", t) from None
        self.next()
        return ns

    def number(self) -> float:
        neg = False
        if self.is_op("-"):
            self.next()
            neg = True
        t = self.tok
        if t.kind != "num":
            raise self.unexpected("a number")
        try:
            v = float(t.text)
        except ValueError:
            raise self.fail(f"not a number: {t.text!r}", t) from None
        self.next()
        return -v if neg else v

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"query nested deeper than {MAX_DEPTH} levels")

    # -- expressions --------------------------------------------------------------------------
    def parse(self) -> ast.Expr:
        if len(self.text) > MAX_QUERY_CHARS:
            raise BadRequest(f"query is longer than {MAX_QUERY_CHARS} characters")
        if self.tok.kind == "end":
            raise BadRequest("parse error: the query is empty")
        expr = self.expr(0)
        if self.tok.kind != "end":
            raise self.unexpected("end of query")
        return expr

    def expr(self, min_prec: int) -> ast.Expr:
        self.enter()
        left = self.unary()
        while True:
            t = self.tok
            op = t.text if t.kind in ("op", "ident") else ""
            prec = _PRECEDENCE.get(op, 0)
            if not prec or prec <= min_prec:
                break
            self.next()
            bool_mod = False
            if op in _COMPARISONS and self.is_word("bool"):
                self.next()
                bool_mod = True
            matching = None
            if self.is_word("on", "ignoring"):
                on = self.next().text == "on"
                matching = ast.VectorMatching(on, self.label_list())
            # ^ is right-associative: its right side may hold another ^.
            right = self.expr(prec - 1 if op == "^" else prec)
            if isinstance(left, ast.LogQuery) or isinstance(right, ast.LogQuery):
                raise self.fail(f"binary operator {op!r} needs metric queries or numbers on both sides, "
                                "not a log query", t)
            left = ast.BinOp(op, left, right, bool_mod, matching)
        self.depth -= 1
        return left

    def unary(self) -> ast.Expr:
        if self.is_op("-"):
            t = self.next()
            inner = self.unary()
            if isinstance(inner, ast.Number):
                return ast.Number(-inner.value)
            if isinstance(inner, ast.LogQuery):
                raise self.fail("cannot negate a log query", t)
            return ast.BinOp("*", ast.Number(-1.0), inner)
        if self.is_op("+"):
            self.next()
            return self.unary()
        return self.primary()

    def primary(self) -> ast.Expr:
        t = self.tok
        if t.kind == "op" and t.text == "(":
            self.next()
            inner = self.expr(0)
            self.expect_op(")")
            return inner
        if t.kind == "num":
            return ast.Number(self.number())
        if t.kind == "op" and t.text == "{":
            return self.log_query()
        if t.kind == "ident":
            name = t.text
            if name in ast.RANGE_FUNCS:
                return self.range_agg()
            if name in ast.VECTOR_OPS:
                return self.vector_agg()
            if name == "vector":
                self.next()
                self.expect_op("(")
                v = self.number()
                self.expect_op(")")
                return ast.VectorOf(v)
            if name == "label_replace":
                return self.label_replace()
            raise self.fail(f"unknown function or keyword {name!r}")
        raise self.unexpected("a stream selector {...}, a metric query or a number")

    def label_list(self) -> tuple[str, ...]:
        self.expect_op("(")
        names: list[str] = []
        while not self.is_op(")"):
            names.append(self.ident())
            if not self.is_op(")"):
                self.expect_op(",")
        self.next()
        return tuple(names)

    def grouping(self) -> ast.Grouping | None:
        if self.is_word("by", "without"):
            without = self.next().text == "without"
            return ast.Grouping(without, self.label_list())
        return None

    def vector_agg(self) -> ast.VectorAgg:
        op = self.next().text
        grouping = self.grouping()
        self.expect_op("(")
        param = None
        if op in ("topk", "bottomk"):
            param = self.number()
            if param < 1 or param != int(param):
                raise self.fail(f"{op}: k must be a whole number of at least 1, got {param:g}")
            self.expect_op(",")
        inner = self.expr(0)
        self.expect_op(")")
        if grouping is None:
            grouping = self.grouping()
        if isinstance(inner, ast.LogQuery):
            raise self.fail(f"{op} aggregates metric queries (e.g. {op}(count_over_time({{...}}[5m]))), "
                            "not a log query")
        return ast.VectorAgg(op, inner, grouping, param)

    def label_replace(self) -> ast.LabelReplace:
        self.next()
        self.expect_op("(")
        inner = self.expr(0)
        if isinstance(inner, ast.LogQuery):
            raise self.fail("label_replace needs a metric query")
        parts = []
        for _ in range(4):
            self.expect_op(",")
            parts.append(self.string())
        self.expect_op(")")
        return ast.LabelReplace(inner, *parts)

    def range_agg(self) -> ast.RangeAgg:
        start = self.tok
        func = self.next().text
        self.expect_op("(")
        param = None
        if func == "quantile_over_time":
            param = self.number()
            self.expect_op(",")
        if self.is_op("("):
            self.next()
            query = self.log_query()
            self.expect_op(")")
            if not self.is_op("["):
                raise self.unexpected("a range such as [5m]")
            range_ns = self.range()
        else:
            selector = self.selector()
            stages = self.pipeline()
            if not self.is_op("["):
                raise self.unexpected("a range such as [5m]")
            range_ns = self.range()
            stages += self.pipeline()
            query = ast.LogQuery(selector, stages)
        offset = 0
        if self.is_word("offset"):
            self.next()
            offset = self.duration()
        self.expect_op(")")
        grouping = self.grouping()
        unwrap = query.unwrap
        if func in ast.UNWRAPPED_FUNCS and unwrap is None:
            raise self.fail(f"{func} needs an unwrapped value: add `| unwrap <label>` to its log query", start)
        if func not in ast.UNWRAPPED_FUNCS and func != "rate" and unwrap is not None:
            raise self.fail(f"{func} counts lines and takes no `| unwrap`", start)
        if grouping is not None and unwrap is None:
            raise self.fail(f"grouping (by/without) on {func} is only allowed with `| unwrap`; "
                            f"aggregate it instead, e.g. sum by (...) ({func}(...))", start)
        return ast.RangeAgg(func, query, range_ns, offset, param, grouping)

    def range(self) -> int:
        self.expect_op("[")
        ns = self.duration()
        self.expect_op("]")
        if ns <= 0:
            raise self.fail("a range must be longer than zero")
        return ns

    # -- log queries --------------------------------------------------------------------------
    def log_query(self) -> ast.LogQuery:
        selector = self.selector()
        return ast.LogQuery(selector, self.pipeline())

    def selector(self) -> tuple[ast.Matcher, ...]:
        open_tok = self.expect_op("{")
        out: list[ast.Matcher] = []
        while not self.is_op("}"):
            name = self.ident()
            if not self.is_op("=", "!=", "=~", "!~"):
                raise self.unexpected("=, !=, =~ or !~")
            op = self.next().text
            value = self.string()
            if op in ("=~", "!~"):
                _check_regex(self, value)
            out.append(ast.Matcher(name, op, value))  # type: ignore[arg-type]
            if not self.is_op("}"):
                self.expect_op(",")
        self.next()
        if not any(_not_empty_compatible(m) for m in out):
            raise self.fail("queries require at least one regexp or equality matcher that does not have an "
                            'empty-compatible value. For instance, app=~".*" does not meet this requirement, '
                            'but app=~".+" will', open_tok)
        return tuple(out)

    def pipeline(self) -> tuple[ast.Stage, ...]:
        stages: list[ast.Stage] = []
        while True:
            if self.is_op("|=", "|~", "!=", "!~"):
                stages.append(self.line_filter())
            elif self.is_op("|"):
                self.next()
                stages.append(self.stage())
            else:
                return tuple(stages)

    def line_filter(self) -> ast.LineFilter:
        op = self.next().text
        values = [self.string("a quoted string after the line filter")]
        while self.is_word("or") and self.peek().kind == "string":
            self.next()
            values.append(self.string())
        if op in ("|~", "!~"):
            for v in values:
                _check_regex(self, v)
        return ast.LineFilter(op, tuple(values))  # type: ignore[arg-type]

    def stage(self) -> ast.Stage:
        t = self.tok
        nxt = self.peek()
        is_filter_start = nxt.kind == "op" and nxt.text in ("=", "!=", "=~", "!~", "==", ">", ">=", "<", "<=")
        if t.kind == "ident" and not is_filter_start:
            name = t.text
            if name in _PARSERS:
                return self.parser_stage()
            if name == "line_format":
                self.next()
                return ast.LineFormat(self.string("a template string"))
            if name == "label_format":
                self.next()
                return self.label_format()
            if name in ("drop", "keep"):
                self.next()
                return self.drop(name == "keep")
            if name == "decolorize":
                self.next()
                return ast.Decolorize()
            if name == "unwrap":
                self.next()
                return self.unwrap()
        if t.kind == "ident" or self.is_op("("):
            return ast.LabelFilter(self.label_or())
        raise self.unexpected("a parser, a formatter or a label filter after |")

    def parser_stage(self) -> ast.Parser:
        kind = self.next().text
        if kind in ("regexp", "pattern"):
            expr = self.string(f"the {kind} expression in quotes")
            if kind == "regexp":
                _check_regex(self, expr)
                if not re.search(r"\(\?P?<[A-Za-z_][A-Za-z0-9_]*>", expr):
                    raise self.fail("regexp: the expression needs at least one named capture group such as "
                                    "(?P<name>...)")
            elif not re.search(r"<[A-Za-z_][A-Za-z0-9_]*>", expr):
                raise self.fail("pattern: the expression needs at least one named capture such as <name>")
            return ast.Parser(kind, expr)  # type: ignore[arg-type]
        flags: list[str] = []
        params: list[tuple[str, str]] = []
        if kind in ("json", "logfmt"):
            while self.is_op("-") and self.peek().text == "-":
                self.next()
                self.next()
                flags.append(self.ident("a flag name"))
            while self.tok.kind == "ident":
                name = self.next().text
                source = name
                if self.is_op("="):
                    self.next()
                    source = self.string()
                params.append((name, source))
                if self.is_op(","):
                    self.next()
                    if self.tok.kind != "ident":
                        raise self.unexpected("a label name")
        return ast.Parser(kind, "", tuple(params), tuple(flags))  # type: ignore[arg-type]

    def label_format(self) -> ast.LabelFormat:
        items: list[tuple[str, str, bool]] = []
        while True:
            dst = self.ident()
            self.expect_op("=")
            if self.tok.kind == "string":
                items.append((dst, self.string(), True))
            else:
                items.append((dst, self.ident("a label name or a template string"), False))
            if not self.is_op(","):
                return ast.LabelFormat(tuple(items))
            self.next()

    def drop(self, keep: bool) -> ast.Drop:
        names: list[str] = []
        matchers: list[ast.Matcher] = []
        while True:
            name = self.ident()
            if self.is_op("=", "!=", "=~", "!~"):
                op = self.next().text
                matchers.append(ast.Matcher(name, op, self.string()))  # type: ignore[arg-type]
            else:
                names.append(name)
            if not self.is_op(","):
                return ast.Drop(keep, tuple(names), tuple(matchers))
            self.next()

    def unwrap(self) -> ast.Unwrap:
        name = self.ident()
        if self.is_op("("):
            if name not in ("duration", "duration_seconds", "bytes"):
                raise self.fail(f"unwrap: unknown conversion {name}(); use duration(), duration_seconds() or bytes()")
            self.next()
            label = self.ident()
            self.expect_op(")")
            return ast.Unwrap(label, name)  # type: ignore[arg-type]
        return ast.Unwrap(name)

    def label_or(self) -> ast.LabelExpr:
        left = self.label_and()
        while self.is_word("or"):
            self.next()
            left = ast.LabelOr(left, self.label_and())
        return left

    def label_and(self) -> ast.LabelExpr:
        left = self.label_atom()
        while True:
            if self.is_word("and") or self.is_op(","):
                self.next()
            elif not ((self.tok.kind == "ident" and self.tok.text != "or") or self.is_op("(")):
                return left
            left = ast.LabelAnd(left, self.label_atom())

    def label_atom(self) -> ast.LabelExpr:
        if self.is_op("("):
            self.next()
            self.enter()
            inner = self.label_or()
            self.depth -= 1
            self.expect_op(")")
            return inner
        name = self.ident()
        if not self.is_op("=", "!=", "=~", "!~", "==", ">", ">=", "<", "<="):
            raise self.unexpected("a comparison (=, !=, =~, !~, ==, >, >=, <, <=)")
        op_tok = self.next()
        op = op_tok.text
        t = self.tok
        if t.kind == "string":
            if op not in ("=", "!=", "=~", "!~"):
                raise self.fail(f"{op} compares numbers, durations or byte sizes, not a string", op_tok)
            value = self.string()
            if op in ("=~", "!~"):
                _check_regex(self, value)
            return ast.LabelCmp(name, op, "string", text=value)
        if op in ("=~", "!~"):
            raise self.unexpected("a quoted regular expression")
        neg = False
        if self.is_op("-"):
            self.next()
            neg = True
            t = self.tok
        if t.kind != "num":
            raise self.unexpected("a string, number, duration or byte size")
        self.next()
        sign = -1.0 if neg else 1.0
        op = "==" if op == "=" else op
        try:
            return ast.LabelCmp(name, op, "number", text=t.text, number=sign * float(t.text))
        except ValueError:
            pass
        try:
            return ast.LabelCmp(name, op, "duration", text=t.text, number=sign * parse_duration_ns(t.text) / 1e9)
        except ValueError:
            pass
        try:
            return ast.LabelCmp(name, op, "bytes", text=t.text, number=sign * parse_bytes(t.text))
        except ValueError:
            raise self.fail(f"{t.text!r} is not a number, duration (10s, 1ms) or byte size (20MB)", t) from None


def _check_regex(p: _Parser, value: str) -> None:
    try:
        re.compile(value)
    except re.error as e:
        raise p.fail(f"invalid regular expression {value!r}: {e}") from None


def _not_empty_compatible(m: ast.Matcher) -> bool:
    if m.op == "=":
        return m.value != ""
    if m.op == "=~":
        try:
            return re.fullmatch(m.value, "") is None
        except re.error:
            return True
    return False


def parse(text: str) -> ast.Expr:
    """The syntax tree of a LogQL query; BadRequest naming the position and problem otherwise."""
    return _Parser(text).parse()
