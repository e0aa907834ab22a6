"""The search language's parser (ferry.query.language) and the time-bound parsers (timerange).

Pure Python: these never touch ClickHouse; tests/query/test_logs_search.py runs the compiled SQL.
"""

from __future__ import annotations

import pytest

from ferry.errors import BadRequest
from ferry.query.language import MAX_DEPTH, MAX_TERMS, And, Field, Not, Or, Phrase, Word, parse
from ferry.query.timerange import parse_since, parse_time


def test_empty_query_matches_everything() -> None:
    """An empty or blank query, or a lone `*`, is the empty conjunction."""
    assert parse("") == And(())
    assert parse("   ") == And(())
    assert parse("*") == And(())


def test_free_words_and_implicit_and() -> None:
    """Juxtaposed terms are ANDed and words keep their text as typed."""
    assert parse("PaymentService") == Word("PaymentService")
    assert parse("PaymentService timeout") == And((Word("PaymentService"), Word("timeout")))
    assert parse("a AND b") == And((Word("a"), Word("b")))


def test_or_binds_tighter_than_and() -> None:
    """`a level:error OR level:warn` means a AND (error OR warn), as an operator means it."""
    got = parse("a level:error OR level:warn")
    assert got == And((Word("a"), Or((Field("level", "=", "error"), Field("level", "=", "warn")))))
    assert parse("a OR b c OR d") == And((Or((Word("a"), Word("b"))), Or((Word("c"), Word("d")))))
    assert parse("a OR b OR c") == Or((Word("a"), Word("b"), Word("c")))


def test_parentheses_group() -> None:
    """Parentheses override precedence and may nest."""
    assert parse("(a b) OR c") == Or((And((Word("a"), Word("b"))), Word("c")))
    assert parse("((a))") == Word("a")


def test_negation_forms() -> None:
    """`-x`, `NOT x` and `-key:value` all negate; a dash inside a word does not."""
    assert parse("-timeout") == Not(Word("timeout"))
    assert parse("NOT timeout") == Not(Word("timeout"))
    assert parse("-service:api") == Not(Field("service", "=", "api"))
    assert parse('-"health check"') == Not(Phrase("health check"))
    assert parse("-(a OR b)") == Not(Or((Word("a"), Word("b"))))
    assert parse("Wi-Fi") == Word("Wi-Fi")
    assert parse("NOT -x") == Not(Not(Word("x")))
    assert parse("-5") == Not(Word("5"))
    assert parse("--verbose") == Word("--verbose")
    assert parse("a -> b") == And((Word("a"), Word("->"), Word("b")))
    assert parse("a - b") == And((Word("a"), Word("-"), Word("b")))


def test_lowercase_keywords_are_words() -> None:
    """Only upper-case OR/AND/NOT are operators; lower-case ones are searched for."""
    assert parse("a or b") == And((Word("a"), Word("or"), Word("b")))
    assert parse("not") == Word("not")


def test_phrases_and_escapes() -> None:
    """Quoted text is one phrase; backslash escapes only a quote or a backslash."""
    assert parse('"connection reset by peer"') == Phrase("connection reset by peer")
    assert parse(r'"say \"hi\""') == Phrase('say "hi"')
    assert parse(r'"C:\temp\\x"') == Phrase("C:\\temp\\x")
    assert parse('foo"bar"') == And((Word("foo"), Phrase("bar")))


def test_field_filters() -> None:
    """key:value, quoted values, prefixes, presence and comparisons parse into Field nodes."""
    assert parse("service:checkout") == Field("service", "=", "checkout")
    assert parse('service:"my svc"') == Field("service", "=", "my svc")
    assert parse("host:web-*") == Field("host", "prefix", "web-")
    assert parse('service:"my s"*') == Field("service", "prefix", "my s")
    assert parse("user.id:*") == Field("user.id", "exists", "")
    assert parse('k:"*"') == Field("k", "=", "*")
    assert parse("duration_ms:>=5") == Field("duration_ms", ">=", "5")
    assert parse("duration_ms:>1.5e3") == Field("duration_ms", ">", "1.5e3")
    assert parse("x:<-2") == Field("x", "<", "-2")
    assert parse('x:<="7"') == Field("x", "<=", "7")
    assert parse("url:http://a/b") == Field("url", "=", "http://a/b")
    assert parse("level:>=warn") == Field("level", ">=", "warn")
    assert parse('k:""') == Field("k", "=", "")


def test_colon_words_that_are_not_fields() -> None:
    """Text whose part before the colon cannot be a key stays a free word."""
    assert parse("12:30:01") == Word("12:30:01")
    assert parse("::1") == Word("::1")


def test_body_field_becomes_word_or_phrase() -> None:
    """body: searches the body like a free word, or like a phrase when quoted."""
    assert parse("body:PaymentService") == Word("PaymentService")
    assert parse('body:"a b"') == Phrase("a b")
    assert parse("body:Pay*") == Word("Pay", prefix=True)


def test_prefix_word() -> None:
    """A trailing `*` on a free word makes its last token a prefix."""
    assert parse("Paym*") == Word("Paym", prefix=True)


@pytest.mark.parametrize(
    ("query", "position", "expected"),
    [
        ("(a OR b", 7, "expected ')' to close '(' at position 0, found end of query"),
        ("a)", 1, "unexpected ')'"),
        ("a OR", 4, "expected a term after OR, found end of query"),
        ("OR a", 0, "expected a term, found 'OR'"),
        ("NOT", 3, "expected a term after NOT"),
        ("-OR a", 1, "expected a term after '-', found 'OR'"),
        ('say "hello', 4, "unterminated quoted string"),
        ("()", 1, "expected a term inside"),
        ("service: x", 8, "expected a value after 'service:'"),
        ("n:>= 5", 4, "expected a number after 'n:>='"),
        ("n:>five", 3, "expected a number, found 'five'"),
        ("level:>=loud", 8, "expected a number or a level name"),
        ("body:>5", 6, "body: cannot be compared"),
        ('""', 0, "empty phrase"),
        ("a AND AND b", 6, "expected a term after AND"),
    ],
)
def test_syntax_errors_name_position_and_expectation(query: str, position: int, expected: str) -> None:
    """A malformed query raises BadRequest saying where it broke and what was expected."""
    with pytest.raises(BadRequest) as err:
        parse(query)
    assert f"position {position}:" in str(err.value)
    assert expected in str(err.value)


def test_limits_are_enforced() -> None:
    """Over-long, over-deep or over-wide queries are refused rather than compiled."""
    with pytest.raises(BadRequest, match="nesting"):
        parse("(" * (MAX_DEPTH + 1) + "a" + ")" * (MAX_DEPTH + 1))
    with pytest.raises(BadRequest, match="too many terms"):
        parse(" ".join(["w"] * (MAX_TERMS + 1)))
    with pytest.raises(BadRequest, match="characters long"):
        parse("a" * 100_000)
    with pytest.raises(BadRequest, match="not valid text"):
        parse("bad \ud800 surrogate")
    assert parse(" ".join(["w"] * MAX_TERMS)) == And(tuple([Word("w")] * MAX_TERMS))


def test_parse_since() -> None:
    """Durations with s/m/h/d/w units, alone or combined, become seconds."""
    assert parse_since("30s") == 30
    assert parse_since("15m") == 900
    assert parse_since("1h") == 3600
    assert parse_since("2d") == 172_800
    assert parse_since("1w") == 604_800
    assert parse_since("1h30m") == 5400


@pytest.mark.parametrize("bad", ["", "1", "h", "1y", "-1h", "1.5h", "0m", "1 h", "1H", "1h-", "9999999999w"])
def test_parse_since_rejects(bad: str) -> None:
    """Anything but a positive whole number of units is a BadRequest."""
    with pytest.raises(BadRequest):
        parse_since(bad)


def test_parse_time() -> None:
    """RFC 3339 (any offset, up to ns precision), dates and unix s/ms/us/ns all become ns."""
    t = 1_714_564_800  # 2024-05-01T12:00:00Z
    ns = t * 10**9
    assert parse_time("2024-05-01T12:00:00Z") == ns
    assert parse_time("2024-05-01t12:00:00z") == ns
    assert parse_time("2024-05-01 14:00:00+02:00") == ns
    assert parse_time("2024-05-01T07:30:00-04:30") == ns
    assert parse_time("2024-05-01T12:00:00.123456789Z") == ns + 123_456_789
    assert parse_time("2024-05-01T12:00:00.5Z") == ns + 500_000_000
    assert parse_time("2024-05-01") == ns - 12 * 3600 * 10**9
    assert parse_time(str(t)) == ns
    assert parse_time(f"{t}.25") == ns + 250_000_000
    assert parse_time(str(t * 1000)) == ns
    assert parse_time(str(t * 1_000_000)) == ns
    assert parse_time(str(ns)) == ns
    assert parse_time(" 0 ") == 0


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "yesterday",
        "2024-13-01T00:00:00Z",
        "2024-02-30",
        "2024-05-01T25:00:00Z",
        "2024-05-01T12:00:00",
        "1969-12-31T23:59:59Z",
        "-5",
        "2024-05-01T12:00:00+24:00",
        "99999999999999999999",
    ],
)
def test_parse_time_rejects(bad: str) -> None:
    """Malformed, impossible, zone-less or out-of-range times are a BadRequest."""
    with pytest.raises(BadRequest):
        parse_time(bad)
