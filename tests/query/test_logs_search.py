"""End-to-end log search: queries compiled by ferry.query.logs_sql run against a real chDB store.

Every search runs twice, with and without skip indexes, so an unsound index prefilter shows up.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from typing import Any

import chdb
import pyarrow as pa
import pytest
from chdb.state.sqlitelike import Connection

from ferry.errors import BadRequest
from ferry.query.language import Field
from ferry.query.logs_sql import compile_logs, compile_logs_count, compile_where
from ferry.schema.tables import LOGS, conform
from ferry.store.ddl import logs

S = 10**9
BASE_NS = (time.time_ns() // S - 3 * 3600) * S  # inside the table's 7-day TTL
FILLER = 300
FILLER_START = BASE_NS + 1000 * S

# rid -> row fields; bodies are chosen so each query below has one exact answer.
SPECIAL: dict[str, dict[str, Any]] = {
    "pay1": {
        "Body": "com.acme.PaymentService.charge failed: card declined",
        "ServiceName": "checkout",
        "SeverityText": "ERROR",
    },
    "pay2": {"Body": "payment failed for service x", "ServiceName": "billing", "SeverityText": "error"},
    "pay3": {"Body": "PAYMENT-SERVICE unreachable", "ServiceName": "checkout-v2", "SeverityText": "err"},
    "pay4": {"Body": "PaymentServiceImpl started", "ServiceName": "checkout"},
    "pay5": {"Body": "service payment mixup", "ServiceName": "billing"},
    "pay6": {"Body": "payments queued: 12", "ServiceName": "billing"},
    "wifi": {"Body": "Wi-Fi link down on ap-3", "SeverityText": "WARN"},
    "power": {"Body": "Canon PowerShot SD500 attached", "SeverityText": "WARNING"},
    "power2": {"Body": "power cycling rack 7", "SeverityText": "Warn"},
    "http500": {"Body": "upstream returned HTTP 500", "SeverityNumber": 17},
    "items": {"Body": "5000 items exported"},
    "crit": {"Body": "disk failure imminent", "SeverityText": "ERROR", "SeverityNumber": 18},  # syslog crit
    "login": {"Body": 'user "alice" logged in from 10.0.0.1', "Source": "syslog", "Tenant": "globex"},
    "login2": {"Body": "user bob logged into console", "Source": "syslog"},
    "cafe": {"Body": "Éclair naïve café crème-brûlée", "ScopeAttributes": [("lib", "net")]},
    "http1": {
        "Body": "request done",
        "LogAttributes": [("http.status_code", "503"), ("duration_ms", "1200")],
        "ResourceAttributes": [("host.name", "web-1"), ("region", "eu-west")],
    },
    "http2": {
        "Body": "request done",
        "LogAttributes": [("http.status_code", "200"), ("duration_ms", "12.5")],
        "ResourceAttributes": [("host.name", "web-2")],
    },
    "http3": {
        "Body": "request done",
        "LogAttributes": [("http.status_code", "404"), ("duration_ms", "abc")],
        "ResourceAttributes": [("host.name", "db-1")],
    },
    "trace": {
        "Body": "span ended",
        "TraceId": "4bf92f3577b34da6a3ce929d0e0e4736",
        "SpanId": "00f067aa0ba902b7",
    },
    "inject": {"Body": "x' OR 1=1 --", "LogAttributes": [("note", "it's")]},
    "slash": {"Body": "path C:\\temp\\new and back\\slash"},
    "arrow": {"Body": "a -> b"},
}
SPECIAL_IDS = list(SPECIAL)
FILLER_IDS = [f"f{i:03d}" for i in range(FILLER)]


def _rows() -> pa.Table:
    cols: dict[str, list[Any]] = {
        k: []
        for k in (
            "Timestamp",
            "Body",
            "ServiceName",
            "SeverityText",
            "SeverityNumber",
            "Source",
            "Tenant",
            "TraceId",
            "SpanId",
            "LogAttributes",
            "ResourceAttributes",
            "ScopeAttributes",
        )
    }
    defaults: dict[str, Any] = {
        "ServiceName": "misc",
        "SeverityText": "",
        "SeverityNumber": 0,
        "Source": "otlp",
        "Tenant": "acme",
        "TraceId": "",
        "SpanId": "",
        "ResourceAttributes": [],
        "ScopeAttributes": [],
    }
    for k, (rid, row) in enumerate(SPECIAL.items()):
        full = {**defaults, **row, "Timestamp": BASE_NS + k * S}
        full["LogAttributes"] = [("rid", rid), *row.get("LogAttributes", [])]
        for c in cols:
            cols[c].append(full[c])
    for i, rid in enumerate(FILLER_IDS):
        # Three rows share each second so that paging has ties to break.
        full = {
            **defaults,
            "Timestamp": FILLER_START + (i // 3) * S,
            "ServiceName": "api",
            "Body": f"GET /api/items/{i} 200 in {i % 50} ms",
            "SeverityText": "INFO",
            "SeverityNumber": 9,
            "LogAttributes": [("rid", rid)],
        }
        for c in cols:
            cols[c].append(full[c])
    arrays: dict[str, Any] = dict(cols)
    arrays["Timestamp"] = pa.array(cols["Timestamp"], LOGS.field("Timestamp").type)
    for c in ("LogAttributes", "ResourceAttributes", "ScopeAttributes"):
        arrays[c] = pa.array(cols[c], LOGS.field(c).type)
    return conform(pa.table(arrays), LOGS)


@pytest.fixture(scope="module")
def conn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Connection]:
    """A chDB store with the real otel_logs DDL holding the rows above, closed afterwards."""
    table = _rows()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    c = chdb.connect(str(tmp_path_factory.mktemp("logs_search")))
    try:
        c.query(logs(7))
        with c.send_insert("INSERT INTO otel_logs", "ArrowStream") as ins:
            ins.append(sink.getvalue().to_pybytes())
            assert ins.finish().rows_written == len(SPECIAL) + FILLER
        yield c
    finally:
        c.close()


def _json(conn: Connection, sql: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in str(conn.query(sql, "JSONEachRow").data()).splitlines()]


def run(conn: Connection, query: str, **kw: Any) -> list[str]:
    """Row ids `query` returns, in result order, after checking the unindexed plan agrees."""
    kw.setdefault("start_ns", None)
    kw.setdefault("end_ns", None)
    kw.setdefault("limit", 10_000)
    sql = compile_logs(query, columns="LogAttributes['rid'] AS rid", **kw)
    got = [r["rid"] for r in _json(conn, sql)]
    exact = _json(conn, sql + "\nSETTINGS use_skip_indexes = 0, query_plan_direct_read_from_text_index = 0")
    assert got == [r["rid"] for r in exact], query
    return got


def ids(conn: Connection, query: str, **kw: Any) -> set[str]:
    """Row ids `query` returns, as a set."""
    return set(run(conn, query, **kw))


def test_word_delimiter_examples(conn: Connection) -> None:
    """Fi finds Wi-Fi, Power finds PowerShot, 500 finds SD500, PaymentService finds the dotted name."""
    assert ids(conn, "Fi") == {"wifi"}
    assert ids(conn, "Power") == {"power", "power2"}
    assert ids(conn, "500") == {"power", "http500"}
    assert ids(conn, "PaymentService") == {"pay1", "pay3", "pay4"}


def test_multi_token_words_need_adjacent_tokens_in_order(conn: Connection) -> None:
    """A word of several tokens must not match them scattered or reversed."""
    assert "pay2" not in ids(conn, "PaymentService")  # payment ... service
    assert "pay5" not in ids(conn, "PaymentService")  # service payment
    assert ids(conn, "Wi-Fi") == {"wifi"}
    assert ids(conn, "WiFi") == {"wifi"}
    assert ids(conn, "crème-brûlée") == {"cafe"}
    assert ids(conn, "brûlée-crème") == set()
    assert ids(conn, "payment") == {"pay1", "pay2", "pay3", "pay4", "pay5"}  # not "payments"


def test_case_insensitive_words(conn: Connection) -> None:
    """Free words ignore ASCII case."""
    assert ids(conn, "paymentservice") == ids(conn, "PAYMENTSERVICE") == set()  # one token, not two
    assert ids(conn, "PAYMENT-service") == {"pay1", "pay3", "pay4"}
    assert ids(conn, "POWERSHOT") == set()  # upper-case does not split, so one token "powershot"
    assert ids(conn, "powerShot") == {"power"}
    assert ids(conn, "café NAÏVE") == set()  # non-ASCII letters keep their case, as in the index
    assert ids(conn, "café naïve") == {"cafe"}


def test_punctuation_only_word_is_a_substring(conn: Connection) -> None:
    """A word with no tokens, like `->`, is looked for literally."""
    assert ids(conn, "->") == {"arrow"}
    assert ids(conn, ">") == {"arrow"}
    assert ids(conn, "--") == {"inject"}


def test_prefix_words(conn: Connection) -> None:
    """A trailing `*` leaves the last token open."""
    assert ids(conn, "payment*") == {"pay1", "pay2", "pay3", "pay4", "pay5", "pay6"}
    assert ids(conn, "PaymentServ*") == {"pay1", "pay3", "pay4"}
    assert ids(conn, "Wi-*") == {"wifi"}


def test_phrases_are_case_sensitive_substrings(conn: Connection) -> None:
    """Quoted phrases match exact substrings of Body, partial words at their ends included."""
    assert ids(conn, '"logged in from"') == {"login"}
    assert ids(conn, '"Logged in"') == set()
    assert ids(conn, '"logged in"') == {"login", "login2"}  # "logged into" holds it too
    assert ids(conn, '"ged in fr"') == {"login"}  # ends are partial words: no index on them
    assert ids(conn, '"ged into con"') == {"login2"}
    assert ids(conn, r'"\"alice\""') == {"login"}
    assert ids(conn, '"PaymentService.ch"') == {"pay1"}
    assert ids(conn, '"C:\\temp\\new"') == {"slash"}


def test_level_filter(conn: Connection) -> None:
    """level:/severity: match SeverityText case-insensitively or SeverityNumber, with aliases and ranges."""
    errors = {"pay1", "pay2", "pay3", "http500", "crit"}
    warns = {"wifi", "power", "power2"}
    assert ids(conn, "level:error") == errors
    assert ids(conn, "level:ERR") == errors
    assert ids(conn, "severity:Error") == errors
    assert ids(conn, "level:crit") == {"crit"}
    assert ids(conn, "level:warn") == warns
    assert ids(conn, "level:warning") == warns
    assert ids(conn, "level:info") == set(FILLER_IDS)
    assert ids(conn, "level:>=warn") == errors | warns
    assert ids(conn, "level:>warn") == errors
    assert ids(conn, "level:>=crit") == {"crit"}
    assert ids(conn, "level:>=17") == errors  # rows without a number rank by name: error is 17
    assert ids(conn, "level:>=18") == {"crit"}
    assert ids(conn, "level:<warn") == set(FILLER_IDS)
    assert ids(conn, "level:warn*") == warns
    assert ids(conn, "level:verbose") == set()


def test_column_filters(conn: Connection) -> None:
    """service:, host:, trace_id:, span_id:, source: and tenant: each hit their column."""
    assert ids(conn, "service:checkout") == {"pay1", "pay4"}
    assert ids(conn, "service:checkout*") == {"pay1", "pay3", "pay4"}
    assert ids(conn, "service:Checkout") == set()
    assert ids(conn, "host:web-1") == {"http1"}
    assert ids(conn, "host:web-*") == {"http1", "http2"}
    assert ids(conn, "host:*") == {"http1", "http2", "http3"}
    assert ids(conn, "trace_id:4BF92F3577B34DA6A3CE929D0E0E4736") == {"trace"}
    assert ids(conn, "trace:4bf92f35*") == {"trace"}
    assert ids(conn, "span_id:00F067AA0BA902B7") == {"trace"}
    assert ids(conn, "source:syslog") == {"login", "login2"}
    assert ids(conn, "tenant:globex") == {"login"}
    assert ids(conn, 'body:"logged in from"') == {"login"}
    assert ids(conn, "body:WiFi") == {"wifi"}


def test_attribute_filters(conn: Connection) -> None:
    """Other keys look in log, resource and scope attributes."""
    assert ids(conn, "http.status_code:503") == {"http1"}
    assert ids(conn, "region:eu-west") == {"http1"}
    assert ids(conn, "lib:net") == {"cafe"}
    assert ids(conn, 'lib:"net"') == {"cafe"}
    assert ids(conn, "http.status_code:5*") == {"http1"}
    assert ids(conn, "duration_ms:*") == {"http1", "http2", "http3"}
    assert ids(conn, "region:nowhere") == set()


def test_numeric_comparisons(conn: Connection) -> None:
    """key:>n and friends compare attribute values as numbers; non-numbers never match."""
    assert ids(conn, "duration_ms:>100") == {"http1"}
    assert ids(conn, "duration_ms:>=12.5") == {"http1", "http2"}
    assert ids(conn, "duration_ms:<12.5") == set()
    assert ids(conn, "duration_ms:<=12.5") == {"http2"}
    assert ids(conn, "http.status_code:>=400") == {"http1", "http3"}
    assert ids(conn, "http.status_code:<1e3") == {"http1", "http2", "http3"}


def test_negation(conn: Connection) -> None:
    """-x, NOT x and -key:value exclude; rows lacking a compared attribute count as not matching it."""
    everything = set(SPECIAL_IDS) | set(FILLER_IDS)
    assert ids(conn, "-service:api") == set(SPECIAL_IDS)
    assert ids(conn, "NOT service:api") == set(SPECIAL_IDS)
    assert ids(conn, "payment -service:billing") == {"pay1", "pay3", "pay4"}
    assert ids(conn, "PaymentService NOT Impl") == {"pay1", "pay3"}
    assert ids(conn, "-duration_ms:>100") == everything - {"http1"}
    assert ids(conn, 'source:syslog -"alice"') == {"login2"}


def test_or_and_parentheses(conn: Connection) -> None:
    """OR joins neighbouring terms before AND does, and parentheses group."""
    assert ids(conn, "Wi-Fi OR PowerShot") == {"wifi", "power"}
    assert ids(conn, "level:warn power OR Wi-Fi") == {"wifi", "power", "power2"}
    assert ids(conn, "level:warn power OR wifi") == {"power", "power2"}  # "wifi" is one token
    assert ids(conn, "service:billing payment OR payments") == {"pay2", "pay5", "pay6"}
    assert ids(conn, "(service:checkout OR service:billing) -payment") == {"pay6"}
    assert ids(conn, "(level:error service:checkout) OR source:syslog") == {"pay1", "login", "login2"}


def test_empty_query_and_time_range(conn: Connection) -> None:
    """An empty query returns every row in [start_ns, end_ns)."""
    assert len(run(conn, "")) == len(SPECIAL) + FILLER
    got = ids(conn, "", start_ns=FILLER_START + 10 * S, end_ns=FILLER_START + 12 * S)
    assert got == {"f030", "f031", "f032", "f033", "f034", "f035"}
    assert ids(conn, "service:api", start_ns=FILLER_START + 99 * S) == {"f297", "f298", "f299"}
    assert ids(conn, "service:api", end_ns=FILLER_START + S) == {"f000", "f001", "f002"}


def test_order_limit_and_paging(conn: Connection) -> None:
    """Results are newest first (or oldest first), cut at limit, and page without gaps or repeats."""
    newest = run(conn, "service:api", limit=6)
    assert set(newest[:3]) == {"f297", "f298", "f299"} and set(newest[3:]) == {"f294", "f295", "f296"}
    oldest = run(conn, "service:api", limit=4, order="asc")
    assert set(oldest[:3]) == {"f000", "f001", "f002"} and oldest[3] in {"f003", "f004", "f005"}
    assert run(conn, "level:error", limit=3) == ["crit", "http500", "pay3"]
    for order in ("desc", "asc"):
        full = run(conn, "service:api", order=order)
        pages: list[str] = []
        after = None
        while True:
            sql = compile_logs(
                "service:api",
                start_ns=None,
                end_ns=None,
                limit=7,
                order=order,  # type: ignore[arg-type]
                columns="LogAttributes['rid'] AS rid",
                after=after,
            )
            rows = _json(conn, sql)
            if not rows:
                break
            pages += [r["rid"] for r in rows]
            after = (int(rows[-1]["_cursor_ts"]), rows[-1]["_cursor_key"])
        assert pages == full


def test_counts(conn: Connection) -> None:
    """compile_logs_count totals, groups and buckets agree with the rows themselves."""
    total = _json(conn, compile_logs_count("", start_ns=None, end_ns=None))
    assert [int(r["count"]) for r in total] == [len(SPECIAL) + FILLER]
    by_service = _json(conn, compile_logs_count("payment*", start_ns=None, end_ns=None, group_by="service"))
    assert [(r["key"], int(r["count"])) for r in by_service] == [
        ("billing", 3),
        ("checkout", 2),
        ("checkout-v2", 1),
    ]
    buckets = _json(
        conn,
        compile_logs_count("service:api", start_ns=FILLER_START, end_ns=FILLER_START + 60 * S, step_s=30),
    )
    assert [(int(r["bucket"]), int(r["count"])) for r in buckets] == [
        (t, sum(1 for i in range(FILLER) if i // 3 < 60 and t <= FILLER_START // S + i // 3 < t + 30))
        for t in sorted({(FILLER_START // S + s) // 30 * 30 for s in range(60)})
    ]
    by_level = _json(
        conn, compile_logs_count("level:warn", start_ns=None, end_ns=None, group_by="level", step_s=3600)
    )
    assert sorted((r["key"], int(r["count"])) for r in by_level) == [("WARN", 1), ("WARNING", 1), ("Warn", 1)]
    with pytest.raises(BadRequest):
        compile_logs_count("", start_ns=None, end_ns=None, group_by="Body")
    with pytest.raises(BadRequest):
        compile_logs_count("", start_ns=None, end_ns=None, step_s=0)


def test_free_word_query_uses_body_index(conn: Connection) -> None:
    """EXPLAIN shows idx_body in the plan for free words and for phrases with whole inner words."""

    def plan(query: str) -> str:
        sql = compile_logs(query, start_ns=None, end_ns=None)
        return str(conn.query(f"EXPLAIN indexes = 1 {sql}", "TSVRaw").data())

    assert "Name: idx_body" in plan("PaymentService")
    assert 'tokens: ["payment", "service"]' in plan("PaymentService")
    assert 'tokens: ["timeout"]' in plan("timeout")
    assert 'tokens: ["in"]' in plan('"logged in from"')
    assert "idx_body" not in plan("->")  # nothing to look up, so the index is rightly absent


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("x' OR 1=1 --", {"inject"}),
        ('"x\' OR 1=1 --"', {"inject"}),
        ("service:x'OR'1'='1", set()),
        ("service:\\'", set()),
        ("note:it's", {"inject"}),
        ("note:it\\'s", set()),
        ('note:"it\'s"', {"inject"}),
        ("'", {"inject"}),
        ("') OR ('1'='1", BadRequest),
        ("')", BadRequest),
        ("'; DROP TABLE otel_logs; --", set()),
        ("back\\slash", {"slash"}),
        ('"\\\\temp"', {"slash"}),
        ('"\\temp"', {"slash"}),
        ('"\\\\\\\\temp"', set()),
        ("k:{x:String}", set()),
        ("a\x00b", {"arrow"}),  # NUL is a delimiter: tokens a, b are adjacent in "a -> b"
        ("a\x00\x00b", {"arrow"}),
        ('"a\x00b"', set()),
        ("line\nbreak", set()),
    ],
)
def test_injection_attempts_are_plain_text(conn: Connection, query: str, expected: set[str] | type) -> None:
    """Quotes, backslashes, comments and placeholders in a query are searched for, never executed."""
    if expected is BadRequest:
        with pytest.raises(BadRequest):
            compile_logs(query, start_ns=None, end_ns=None)
    else:
        assert ids(conn, query) == expected
    assert ids(conn, "service:api") == set(FILLER_IDS)  # and the table is still there


def test_hostile_attribute_key_is_quoted(conn: Connection) -> None:
    """A key the lexer would never produce still compiles to a harmless literal."""
    node = Field("x'] = '' OR 1=1 OR LogAttributes['y", "=", "v")
    rows = _json(conn, f"SELECT count() AS n FROM otel_logs WHERE {compile_where(node)}")
    assert int(rows[0]["n"]) == 0


def test_bad_arguments(conn: Connection) -> None:
    """Syntax errors and bad arguments raise BadRequest before any SQL is produced."""
    with pytest.raises(BadRequest, match=r"position 9: expected '\)'"):
        compile_logs("(a OR b c", start_ns=None, end_ns=None)
    with pytest.raises(BadRequest):
        compile_logs("a", start_ns=None, end_ns=None, limit=0)
    with pytest.raises(BadRequest):
        compile_logs("a", start_ns=None, end_ns=None, order="sideways")  # type: ignore[arg-type]
    with pytest.raises(BadRequest):
        compile_logs("a", start_ns="1; DROP", end_ns=None)  # type: ignore[arg-type]
    with pytest.raises(BadRequest):
        compile_logs("a", start_ns=None, end_ns=None, after=(1, 2))  # type: ignore[arg-type]


def test_random_queries_compile_to_valid_sql(conn: Connection) -> None:
    """Random fragments of the syntax either raise BadRequest or run, with the same rows either way."""
    rng = random.Random(1)
    pieces = ["a", "Pay", "ment", "Service", "-", '"', "'", "\\", "(", ")", " ", " OR ", " AND ", "NOT ", ":",
              "*", ">", ">=", "<", "5", "1.5", "level", "service", "host", "x.y", "é", "\x00", "{", "}", ";",
              "--", "body", "trace_id", "e3", "\n"]  # fmt: skip
    ran = 0
    for _ in range(300):
        query = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 12)))
        try:
            run(conn, query, limit=5)
            ran += 1
        except BadRequest:
            pass
    assert ran > 100
