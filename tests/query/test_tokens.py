"""ferry.query.tokens must split text exactly as ClickHouse builds the otel_logs body index.

Each case is checked against ClickHouse itself, evaluating ferry.store.ddl.normalised() on a literal.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

import chdb
import pytest
from chdb.state.sqlitelike import Connection

from ferry.query.tokens import interior_tokens, normalise, tokens
from ferry.store.ddl import normalised
from ferry.store.sql import literal

TRICKY = [
    "",
    " ",
    "plain words here",
    "com.acme.PaymentService.charge",
    "Wi-Fi",
    "PowerShot SD500",
    "SD500",
    "HTTPServer",
    "getHTTPResponseCode2xx",
    "a1b",
    "a1b2c3",
    "1a1a1",
    "aB1c",
    "ABC123def456GHI",
    "x86_64-linux-gnu",
    "IPv6 fe80::1%eth0",
    "10.0.0.1:8080",
    "user@example.com",
    "--flag=value",
    "snake_case_name",
    "CamelCase",
    "camelCaseWord",
    "lowerUPPER",
    "UPPERlower",
    "ÉCLAIR éclair Éclair",
    "naïve café crème-brûlée",
    "İstanbul straße ǅemal",
    "emoji😀inside",
    "中文日志 message",
    "a\u00a0b",
    "tab\tsep\nnewline\rcr",
    "nul\x00byte\x7fdel",
    'quote\'s "double" back\\slash',
    "x' OR 1=1 --",
    "12:30:01.123Z",
    "2024-05-01T12:00:00Z",
    "v1.2.3-rc4+build5",
    "0xDEADbeef",
    "ÀB aÀ é1 1é",
    "...---...",
    "a",
    "Z9",
]


@pytest.fixture(scope="module")
def conn() -> Iterator[Connection]:
    """An in-memory chDB session, closed afterwards so other modules may open their own path."""
    c = chdb.connect(":memory:")
    yield c
    c.close()


def _clickhouse(conn: Connection, texts: list[str]) -> list[tuple[str, list[str]]]:
    """(normalised value, tokens) ClickHouse computes for each text, in order."""
    pairs = ", ".join(f"({i}, {literal(t)})" for i, t in enumerate(texts))
    expr = normalised("tupleElement(p, 2)")
    sql = (
        f"SELECT tupleElement(p, 1) AS i, {expr} AS n, tokens({expr}, 'splitByNonAlpha') AS t "
        f"FROM (SELECT arrayJoin([{pairs}]) AS p) ORDER BY i"
    )
    rows = [json.loads(line) for line in str(conn.query(sql, "JSONEachRow").data()).splitlines()]
    assert [r["i"] for r in rows] == list(range(len(texts)))
    return [(r["n"], r["t"]) for r in rows]


def test_tokens_match_clickhouse_on_tricky_strings(conn: Connection) -> None:
    """tokens() and normalise() agree with ClickHouse on hand-picked hard cases."""
    for text, (ch_norm, ch_tokens) in zip(TRICKY, _clickhouse(conn, TRICKY), strict=True):
        assert normalise(text) == ch_norm, text
        assert tokens(text) == ch_tokens, text


def test_tokens_match_clickhouse_on_random_strings(conn: Connection) -> None:
    """tokens() agrees with ClickHouse on random mixes of case, digits, punctuation and non-ASCII."""
    rng = random.Random(20240501)
    alphabet = list("aAbBzZ09 5-_.:/'\\\"\t\n\x00") + ["é", "É", "😀", "\u00a0", "ß"]
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24))) for _ in range(400)]
    for text, (ch_norm, ch_tokens) in zip(texts, _clickhouse(conn, texts), strict=True):
        assert normalise(text) == ch_norm, text
        assert tokens(text) == ch_tokens, text


def test_word_delimiter_examples() -> None:
    """The examples the search language promises split as documented."""
    assert tokens("Wi-Fi") == ["wi", "fi"]
    assert tokens("PowerShot") == ["power", "shot"]
    assert tokens("SD500") == ["sd", "500"]
    assert tokens("com.acme.PaymentService.charge") == ["com", "acme", "payment", "service", "charge"]
    assert tokens("HTTPServer") == ["httpserver"]
    assert tokens("ÉCLAIR") == ["Éclair"]  # ClickHouse's lower() folds ASCII only


def test_interior_tokens_drop_tokens_touching_either_end() -> None:
    """Only tokens bounded by a delimiter inside the phrase count, since the ends may be partial words."""
    assert interior_tokens("logged in from") == ["in"]
    assert interior_tokens(" logged in from ") == ["logged", "in", "from"]
    assert interior_tokens("ment failed for serv") == ["failed", "for"]
    assert interior_tokens("PaymentService") == []
    assert interior_tokens("xPaymentService.") == ["payment", "service"]
    assert interior_tokens("Payment.Service") == []
    assert interior_tokens("abc") == []


def test_interior_tokens_are_tokens_of_every_containing_text() -> None:
    """Every interior token of a substring is a token of the text it was cut from."""
    rng = random.Random(7)
    alphabet = list("aAbB09 -.") + ["é"]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 20)))
        i = rng.randint(0, len(text) - 1)
        j = rng.randint(i + 1, len(text))
        whole = set(tokens(text))
        assert set(interior_tokens(text[i:j])) <= whole, (text, text[i:j])
