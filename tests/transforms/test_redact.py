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
