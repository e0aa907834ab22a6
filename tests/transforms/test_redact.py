"""redact over real batches: what each shipped rule replaces and leaves, the counts, and the cheap path's cost."""

from __future__ import annotations

import time
from typing import Any

import pyarrow as pa
import pytest
from pydantic import TypeAdapter, ValidationError

from ferry.errors import ConfigError
from ferry.schema.samples import raw_lines
from ferry.schema.tables import LOGS, conform
from ferry.stages.parser.syslog import parse_syslog
from ferry.testing.datasets import loghub
from ferry.transforms.chain import Chain, CompileContext
from ferry.transforms.config import Transform
from ferry.transforms.frame import Frame


def logs(*records: tuple[str, dict[str, str]]) -> pa.Table:
    rows = [{"Body": body, "LogAttributes": list(attrs.items())} for body, attrs in records]
    return conform(pa.Table.from_pylist(rows, schema=pa.schema([LOGS.field(k) for k in rows[0]])), LOGS)


def run(model: dict[str, Any], table: pa.Table) -> tuple[list[tuple[str, dict[str, str]]], Frame]:
    chain = Chain.compile(TypeAdapter(list[Transform]).validate_python([model]), CompileContext("t", ("logging",)))
    frame = chain.run(table)
    return [(r["Body"], dict(r["LogAttributes"])) for r in frame.to_table().to_pylist()], frame


def counts(frame: Frame) -> dict[str, int]:
    return {outcome: n for (_, outcome), n in frame.counts.items()}


def body(text: str, **model: Any) -> str:
    return run({"type": "redact", **model}, logs((text, {})))[0][0][0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail bob.smith+x@mail.example.co.uk now", "mail [REDACTED:email] now"),
        ("from 10.0.0.1:514 and 255.255.255.255", "from [REDACTED:ipv4]:514 and [REDACTED:ipv4]"),
        ("version 1.2.3 and 300.1.1.1", "version 1.2.3 and 300.1.1.1"),
        ("v6 2001:db8::8a2e:370:7334 fe80::1 ::1", "v6 [REDACTED:ipv6] [REDACTED:ipv6] [REDACTED:ipv6]"),
        ("mapped ::ffff:192.0.2.1 full 2001:0db8:0000:0000:0000:ff00:0042:8329", "mapped [REDACTED:ipv6] full [REDACTED:ipv6]"),
        ("std::vector at 12:34:56 mac 00:1a:2b:3c:4d:5e", "std::vector at 12:34:56 mac 00:1a:2b:3c:4d:5e"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc", "Authorization: Bearer [REDACTED:bearer]"),
        ('{"authorization": "Basic dXNlcjpwYXNzd29yZA=="}', '{"authorization": "Basic [REDACTED:bearer]"}'),
        ("bearer realm", "bearer realm"),
        ("dsn postgres://app:s3cr%40t@db:5432/x", "dsn postgres://app:[REDACTED:url_password]@db:5432/x"),
        ("see https://example.com/a@b", "see https://example.com/a@b"),
        ("paid 4111 1111 1111 1111 ok", "paid [REDACTED:card] ok"),
        ("paid 4111-1111-1111-1111 and amex 3782 822463 10005", "paid [REDACTED:card] and amex [REDACTED:card]"),
        ("visa 4012888888881881 mc 5555555555554444", "visa [REDACTED:card] mc [REDACTED:card]"),
        # Fails the Luhn check, epoch milliseconds, a 12-digit id: all left as they are.
        ("not 4111111111111112 ts 1700000000000 id 411111111111", "not 4111111111111112 ts 1700000000000 id 411111111111"),
    ],
)
def test_shipped_rules(text: str, expected: str) -> None:
    assert body(text) == expected


def test_only_valid_cards_of_a_line_are_replaced() -> None:
    text = "a 4111111111111111 b 4111111111111112 c 5555555555554444 d"
    assert body(text, rules=["card"]) == "a [REDACTED:card] b 4111111111111112 c [REDACTED:card] d"


def test_text_with_newlines_and_nuls_survives() -> None:
    text = "line1 bob@x.io\nline2 \x00\x02 4111 1111 1111 1111\x00\nend"
    assert body(text) == "line1 [REDACTED:email]\nline2 \x00\x02 [REDACTED:card]\x00\nend"


def test_attributes_and_counts_per_rule() -> None:
    table = logs(
        ("login bob@example.com from 10.1.2.3", {"peer": "10.1.2.3", "user": "bob@example.com", "n": "1"}),
        ("nothing", {"card": "4111111111111111", "n": "2"}),
        ("nothing", {}),
    )
    out, frame = run({"type": "redact"}, table)
    assert out[0] == (
        "login [REDACTED:email] from [REDACTED:ipv4]",
        {"peer": "[REDACTED:ipv4]", "user": "[REDACTED:email]", "n": "1"},
    )
    assert out[1] == ("nothing", {"card": "[REDACTED:card]", "n": "2"})
    assert out[2] == ("nothing", {})
    # Records changed, not matches: record 0 has two emails and two IPs.
    assert counts(frame) == {"redacted_email": 1, "redacted_ipv4": 1, "redacted_card": 1}


def test_named_fields_custom_rules_and_replacement() -> None:
    table = logs(("user bob@x.io key=AKIA1234567890ABCDEF", {"note": "bob@x.io", "other": "bob@x.io"}))
    out, frame = run(
        {
            "type": "redact",
            "rules": ["email"],
            "fields": ["body", "note"],
            "custom": [{"name": "aws_key", "pattern": r"AKIA[0-9A-Z]{16}", "replacement": "<aws $1>"}],
            "replacement": "***",
        },
        table,
    )
    assert out[0] == ("user *** key=<aws $1>", {"note": "***", "other": "bob@x.io"})
    assert counts(frame) == {"redacted_email": 1, "redacted_aws_key": 1}


def test_a_set_attribute_is_redacted_too() -> None:
    chain = Chain.compile(
        TypeAdapter(list[Transform]).validate_python(
            [{"type": "set", "field": "contact", "from": "body"}, {"type": "redact", "rules": ["email"]}]
        ),
        CompileContext("t", ("logging",)),
    )
    rows = chain.run(logs(("mail ann@x.org", {}))).to_table().to_pylist()
    assert dict(rows[0]["LogAttributes"]) == {"contact": "mail [REDACTED:email]"}


def test_bad_config() -> None:
    with pytest.raises(ValidationError, match="rules.0"):
        TypeAdapter(list[Transform]).validate_python([{"type": "redact", "rules": ["phone"]}])
    with pytest.raises(ValidationError, match="not a valid regular expression"):
        TypeAdapter(list[Transform]).validate_python([{"type": "redact", "custom": [{"name": "x", "pattern": "("}]}])
    with pytest.raises(ConfigError, match="custom x"):  # Python's re takes it, polars' engine does not
        run({"type": "redact", "custom": [{"name": "x", "pattern": r"(?<=a)b"}]}, logs(("", {})))
    with pytest.raises(ConfigError, match="timestamp: only text"):
        run({"type": "redact", "fields": ["timestamp"]}, logs(("", {})))


def test_the_cheap_path_is_cheap() -> None:
    """64 k loghub Linux lines parsed as syslog with nothing to redact in their bodies: a few scans."""
    lines = [f"<38>{line.rstrip()}" for line in loghub("Linux/Linux_2k.log").open()]
    table = parse_syslog(raw_lines((lines * 33)[:65_536]))
    chain = Chain.compile(
        TypeAdapter(list[Transform]).validate_python([{"type": "redact", "rules": ["email", "card", "bearer", "url_password"], "fields": ["body"]}]),
        CompileContext("t", ("logging",)),
    )
    empty = Chain([])
    chain.run(table)

    def timed(c: Chain) -> float:
        t0 = time.perf_counter()
        c.run(table)
        return time.perf_counter() - t0

    cost = min(timed(chain) for _ in range(3)) - min(timed(empty) for _ in range(3))
    assert cost < 0.15, cost  # ~0.02 s measured (0.3 us a record); generous for a loaded machine


# -- the byte conditions: the fast path gives the answers of every rule run over every value ------

# Pieces that build near-misses of every rule: digit runs, dots, colons, hex, separators, keywords in
# mixed case, `@`, URL parts, newlines, NUL, non-ASCII letters (some fold onto ASCII ones).
_PIECES = [
    "0", "1", "4", "7", "9", "25", "255", "256", "300", "012", "4111", "1111", "3782", "822463", "10005",
    "4012888888881881", "5555555555554444", "1700000000000", ".", "..", ":", "::", " ", "-", "  ", "\t",
    "a", "f", "F", "e", "db8", "ffff", "FFFF", "g", "x", "@", "a@b.io", "bob.smith@ex.co", "://", "https://",
    "u:p@", "BeArEr ", "bearer", "Authorization: ", "authorizatio", "basic ", "tok3n_ABC.def", "=", "\"",
    "'", "/", "?", "#", "_", "\n", "\x00", "é", "ſ", "K", "İ", "ı", "字", "[", "]",
]


def _texts(seed: int, n: int) -> list[str | None]:
    import random

    rnd = random.Random(seed)

    def group() -> str:  # digits or hex groups joined by dots, colons, spaces or dashes: IPs, cards and near ones
        sep = rnd.choice([".", ":", " ", "-", "::", ".:"])
        digits = rnd.choice(["0123456789", "0123456789abcdefABCDEF", "0125"])
        size = rnd.choice([1, 2, 3, 4, 6])
        return sep.join("".join(rnd.choice(digits) for _ in range(rnd.randint(1, size))) for _ in range(rnd.randint(2, 9)))

    out: list[str | None] = []
    for _ in range(n):
        k = rnd.choice([0, 1, 3, 8, 20, 40])
        text = "".join(group() if rnd.random() < 0.15 else rnd.choice(_PIECES) for _ in range(k))
        out.append(None if rnd.random() < 0.03 else text)
    return out


def _reference(values: Any, rules: Any) -> tuple[Any, dict[str, list[int]]]:
    """Every rule's rewrite over every value, in order: what redact meant before any shortcut."""
    import polars as pl

    current = values.fill_null("")
    present = values.is_not_null()
    changed: dict[str, list[int]] = {}
    for rule in rules:
        after = rule.rewrite(current)
        diff = (after != current).fill_null(False) & present
        if diff.any():
            changed[rule.name] = diff.arg_true().to_list()
            current = pl.select(pl.when(pl.lit(diff)).then(pl.lit(after)).otherwise(pl.lit(current))).to_series()
    out = pl.select(pl.when(pl.lit(values).is_null()).then(None).otherwise(pl.lit(current))).to_series()
    return out, changed


@pytest.mark.parametrize(
    "replacement",
    ["[REDACTED:{rule}]", "", "X", "1234567890123", "::", ".", "@", "bearer", "a:b:c:d:e:f:g:h", "7", "- 4111"],
)
def test_fast_path_matches_every_rule_over_every_value(replacement: str) -> None:
    import polars as pl

    from ferry.transforms import redact
    from ferry.transforms.config import Redact

    model = Redact.model_validate(
        {"type": "redact", "replacement": replacement, "custom": [{"name": "hexword", "pattern": r"(?i)\bdb8\b|^$"}]}
    )
    rules = redact._rules(model)
    for seed in range(4):
        values = pl.Series("v", _texts(seed, 3000), dtype=pl.String)
        got, changed = redact.redact_series(values, rules)
        want, want_changed = _reference(values, rules)
        assert got.to_list() == want.to_list()
        assert {k: sorted(v.tolist()) for k, v in changed.items()} == want_changed


def test_every_match_meets_its_byte_condition() -> None:
    """The shortcut's soundness, rule by rule: a value any shipped pattern matches passes its condition."""
    import polars as pl

    from ferry.transforms import redact

    values = pl.Series("v", [t or "" for seed in range(6) for t in _texts(100 + seed, 3000)], dtype=pl.String)
    b = redact._Bytes.of(values)
    for name, (pattern, _, _) in redact.SHIPPED.items():
        matches = values.str.contains(pattern).to_numpy()
        maybe = redact._MAYBE[name](b)
        assert not (matches & ~maybe).any(), (name, values.filter(pl.Series(matches & ~maybe)).head(3).to_list())
        assert matches.any(), name  # the generator does reach each rule


def test_no_other_letter_folds_onto_the_bearer_keywords() -> None:
    """The bearer condition compares ASCII letters case-blind: sound only if no other code point matches
    one of them under the pattern's (?i) (the Kelvin sign matches k, the long s matches s: neither is used)."""
    import polars as pl

    letters = sorted(set("bearerauthorization"))
    chars = pl.Series([chr(c) for c in range(0x80, 0x110000) if not 0xD800 <= c < 0xE000])
    hits = chars.filter(chars.str.contains(f"(?i)^[{''.join(letters)}]$"))
    assert hits.to_list() == []


@pytest.mark.parametrize("text", ["[REDACTED:email]", "[REDACTED:ipv4]", "[REDACTED:ipv6]", "[REDACTED:card]", "[REDACTED:bearer]", "***", "<x>"])
def test_a_kept_condition_stays_kept_after_a_rewrite(text: str) -> None:
    """What _KEEPS promises, tried: writing `text` over any span of a value never makes a condition hold
    that did not (when _KEEPS says so for that text)."""
    import random

    import polars as pl

    from ferry.transforms import redact

    rnd = random.Random(5)
    before = [t or "" for t in _texts(200, 4000)]
    after = []
    for t in before:
        i = rnd.randrange(len(t) + 1)
        j = rnd.randrange(i, len(t) + 1)
        after.append(t[:i] + text + t[j:])
    old, new = redact._Bytes.of(pl.Series(before)), redact._Bytes.of(pl.Series(after))
    kept = 0
    for maybe, keeps in redact._KEEPS.items():
        if keeps(text):
            kept += 1
            assert not (maybe(new) & ~maybe(old)).any(), maybe.__name__
    assert kept >= 3



def test_the_ipv4_pattern_written_out_matches_as_the_repeated_one() -> None:
    """_V4 spells its four octets out (a speed-up); the shorter `(?:octet\\.){3}octet` it replaced is
    the same regex: same replacements on dense dotted numbers and on real log lines."""
    import random

    import polars as pl

    from ferry.transforms import redact

    octet = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
    before = rf"(?-u:\b)(?:{octet}\.){{3}}{octet}(?-u:\b)"
    rnd = random.Random(2)
    numbers = ["0", "7", "00", "01", "10", "99", "100", "199", "249", "250", "255", "256", "300", "0255", "1234"]
    around = ["", " ", ".", "a", "_", "-", ":", "é", "x1"]
    texts = [
        rnd.choice(around).join(
            rnd.choice(around) + ".".join(rnd.choice(numbers) for _ in range(rnd.choice([3, 4, 4, 5, 8]))) + rnd.choice(around)
            for _ in range(rnd.randint(0, 3))
        )
        for _ in range(20000)
    ]
    texts += [line.rstrip("\n") for name in ("OpenSSH/OpenSSH_2k.log", "Linux/Linux_2k.log") for line in loghub(name).open()]
    series = pl.Series(texts, dtype=pl.String)
    want = series.str.replace_all(before, "<ip>")
    assert (want != series).sum() > 3000
    assert series.str.replace_all(redact.SHIPPED["ipv4"][0], "<ip>").to_list() == want.to_list()


def test_attributes_only_on_records_without_any() -> None:
    out, frame = run({"type": "redact", "fields": ["attributes"]}, logs(("mail a@b.io", {}), ("x", {})))
    assert out == [("mail a@b.io", {}), ("x", {})]
    assert counts(frame) == {}
    out, frame = run({"type": "redact", "fields": ["attributes"]}, logs(("mail a@b.io", {"to": "a@b.io", "n": "1"}), ("x", {})))
    assert out == [("mail a@b.io", {"to": "[REDACTED:email]", "n": "1"}), ("x", {})]
    assert counts(frame) == {"redacted_email": 1}
