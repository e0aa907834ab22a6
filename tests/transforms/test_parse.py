"""The parse transforms over real batches: each test builds a LOGS table, runs the compiled chain and
reads the records back as the store would get them (attributes, fields, counts).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from pydantic import TypeAdapter, ValidationError

from ferry.schema.tables import LOGS, conform
from ferry.testing.datasets import loghub
from ferry.transforms.chain import Chain, CompileContext
from ferry.transforms.config import Transform
from ferry.transforms.grok_patterns import expand

ADAPTER = TypeAdapter(list[Transform])
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def logs(bodies: list[str | None], attrs: list[dict[str, str]] | None = None) -> pa.Table:
    n = len(bodies)
    return conform(
        pa.table(
            {
                "Timestamp": pa.array([T0] * n, pa.timestamp("ns", tz="UTC")),
                "ObservedTimestamp": pa.array([T0] * n, pa.timestamp("ns", tz="UTC")),
                "Body": pa.array(bodies, pa.string()),
                "LogAttributes": pa.array([list((attrs or [{}] * n)[i].items()) for i in range(n)], LOGS.field("LogAttributes").type),
            }
        ),
        LOGS,
    )


def chain(*models: dict[str, Any]) -> Chain:
    return Chain.compile(ADAPTER.validate_python(list(models)), CompileContext("test", ()))


def run(ch: Chain, table: pa.Table) -> tuple[list[dict[str, Any]], dict[str, int]]:
    frame = ch.run(table)
    rows = frame.to_table().to_pylist()
    for r in rows:
        for m in ("LogAttributes", "ResourceAttributes"):
            r[m] = dict(r[m])
    return rows, {outcome: n for (_, outcome), n in frame.counts.items()}


def attrs(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [r["LogAttributes"] for r in rows]


# -- json ----------------------------------------------------------------------------------------


def test_json_heterogeneous_rows_every_key_flattened_values_as_text() -> None:
    bodies = [
        json.dumps({"level": "info", "msg": "a", "http": {"method": "GET", "status": 200}, "dur": 1.5, "ok": True}),
        json.dumps({"level": "error", "err": {"code": 7, "stack": None}, "tags": ["x", "y"], "ids": [1, 2], "n": None}),
        json.dumps({"user": {"id": 12345678901234567890, "roles": [{"name": "admin"}, {"name": "dev", "x": 1}]}}),
        '  {"spaced" : "yes" }  ',
    ]
    rows, counts = run(chain({"type": "json"}), logs(bodies))
    assert attrs(rows) == [
        {"level": "info", "msg": "a", "http.method": "GET", "http.status": "200", "dur": "1.5", "ok": "true"},
        {"level": "error", "err.code": "7", "tags": '["x","y"]', "ids": "[1,2]"},
        {"user.id": "12345678901234567890", "user.roles": '[{"name":"admin"},{"name":"dev","x":1}]'},
        {"spaced": "yes"},
    ]
    # a key spelled like a record field is still an attribute: the severity and body are untouched
    assert [r["SeverityText"] for r in rows] == ["", "", "", ""]
    assert [r["Body"] for r in rows] == bodies
    assert counts == {}


def test_json_not_an_object_keeps_the_record_and_is_counted() -> None:
    bodies = ['{"a": 1}', "plain text", "[1, 2]", '{"a": 1, "b": ', '{"a": 1} trailing', "", None, "42"]
    given = [{"keep": "me"}] * len(bodies)
    rows, counts = run(chain({"type": "json"}), logs(bodies, given))
    assert attrs(rows)[0] == {"keep": "me", "a": "1"}
    assert attrs(rows)[1:] == [{"keep": "me"}] * (len(bodies) - 1)
    assert [r["Body"] for r in rows] == bodies
    assert counts == {"not_json": 5}  # the empty and the absent body had nothing to parse


def test_json_max_depth_separator_prefix_and_existing_attributes() -> None:
    body = json.dumps({"a": {"b": {"c": {"d": 1}}, "e": 2}, "kept": None})
    rows, _ = run(
        chain({"type": "json", "max_depth": 2, "separator": "_", "prefix": "j."}),
        logs([body, '{"other": "x"}'], [{"j.kept": "old"}, {"j.a_e": "old"}]),
    )
    assert attrs(rows) == [
        {"j.kept": "old", "j.a_b": '{"c":{"d":1}}', "j.a_e": "2"},  # null value: the old attribute stays
        {"j.a_e": "old", "j.other": "x"},  # a key the row lacks leaves its attribute alone
    ]
    rows, _ = run(chain({"type": "json", "prefix": "resource.k8s."}), logs(['{"pod": "p-1"}']))
    assert rows[0]["ResourceAttributes"] == {"k8s.pod": "p-1"} and rows[0]["LogAttributes"] == {}


def test_json_field_other_than_body() -> None:
    rows, counts = run(chain({"type": "json", "field": "payload"}), logs(["hello"], [{"payload": '{"k": "v"}'}]))
    assert attrs(rows) == [{"payload": '{"k": "v"}', "k": "v"}]
    assert rows[0]["Body"] == "hello" and counts == {}


def test_json_key_that_is_an_object_in_one_row_and_text_in_another() -> None:
    bodies = ['{"error": {"code": 5, "msg": "x"}}', '{"error": "plain"}', '{"error": [1]}', "{bad"]
    rows, counts = run(chain({"type": "json"}), logs(bodies))
    assert attrs(rows) == [{"error.code": "5", "error.msg": "x"}, {"error": "plain"}, {"error": "[1]"}, {}]
    assert counts == {"not_json": 1}


def test_json_keys_first_seen_in_a_later_batch_all_come_out() -> None:
    """The dtype is remembered between batches; a key it lacks must still be read (soundness of the
    cache), and a batch of known keys is decoded once."""
    ch = chain({"type": "json"})
    step = ch.steps[0][1]
    run(ch, logs(['{"a": 1, "o": {"x": 1}}'] * 3))
    rows, _ = run(ch, logs(['{"a": 2}', '{"a": 3, "new": "n", "o": {"y": {"z": true}}}', '{"s": "say \\"k\\": v"}']))
    assert attrs(rows) == [{"a": "2"}, {"a": "3", "new": "n", "o.y.z": "true"}, {"s": 'say "k": v'}]
    fast = step.fast  # type: ignore[attr-defined]
    rows, _ = run(ch, logs(['{"a": 4, "o": {"x": 2}}', '{"new": "m"}']))
    assert attrs(rows) == [{"a": "4", "o.x": "2"}, {"new": "m"}]
    assert step.fast == fast + 1  # type: ignore[attr-defined]


# -- logfmt, key_value ---------------------------------------------------------------------------


def test_logfmt_pairs_quoted_values_and_rows_without_pairs() -> None:
    bodies = [
        'at=info method=GET path=/x?a=b status=200 msg="hello \\"quoted\\" world" empty=',
        "level=warn free text here retry=3",
        "no pairs at all",
        "",
    ]
    rows, counts = run(chain({"type": "logfmt", "prefix": "lf."}), logs(bodies))
    assert attrs(rows) == [
        {"lf.at": "info", "lf.method": "GET", "lf.path": "/x?a=b", "lf.status": "200", "lf.msg": 'hello "quoted" world', "lf.empty": ""},
        {"lf.level": "warn", "lf.retry": "3"},
        {},
        {},
    ]
    assert counts == {"no_match": 1}


def test_key_value_custom_separators_and_quotes() -> None:
    model = {"type": "key_value", "pair_separator": ", ", "kv_separator": "=>", "quote": "'"}
    rows, counts = run(chain(model), logs(["user=>bob, note=>'a, b', n => 3", "nothing"]))
    assert attrs(rows) == [{"user": "bob", "note": "a, b", "n": "3"}, {}]
    assert counts == {"no_match": 1}
    rows, _ = run(chain({"type": "key_value", "pair_separator": ";", "kv_separator": ":", "quote": ""}), logs(["a: 1; b : two words ;c:x"]))
    assert attrs(rows) == [{"a": "1", "b": "two words", "c": "x"}]


def test_pairs_with_too_many_distinct_keys_keep_the_most_frequent(monkeypatch: pytest.MonkeyPatch) -> None:
    from ferry.transforms import parse

    monkeypatch.setattr(parse, "MAX_KEYS", 2)
    rows, counts = run(chain({"type": "logfmt"}), logs(["a=1 b=2 x1=9", "a=1 b=2", "a=1 b=2 x2=9"]))
    assert attrs(rows) == [{"a": "1", "b": "2"}] * 3
    assert counts == {"too_many_keys": 2}


# -- regex, grok ---------------------------------------------------------------------------------


def test_regex_named_groups_with_dots_optional_groups_and_no_match() -> None:
    model = {"type": "regex", "pattern": r"user (?P<user.name>\w+) from (?P<client.address>\S+)(?: port (?P<port>\d+))?"}
    bodies = ["Failed password for user bob from 10.0.0.1 port 22 ssh2", "user al from ::1", "nothing to see"]
    rows, counts = run(chain(model), logs(bodies, [{}, {"port": "kept"}, {}]))
    assert attrs(rows) == [
        {"user.name": "bob", "client.address": "10.0.0.1", "port": "22"},
        {"port": "kept", "user.name": "al", "client.address": "::1"},
        {},
    ]
    assert counts == {"no_match": 1}


def test_grok_combined_apache_log_and_own_patterns() -> None:
    line = (
        '192.168.1.20 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif?x=1 HTTP/1.0" 200 2326 '
        '"http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)"'
    )
    rows, counts = run(chain({"type": "grok", "pattern": "%{COMBINEDAPACHELOG}"}), logs([line, "junk"]))
    assert attrs(rows)[0] == {
        "client.address": "192.168.1.20",
        "user.name": "frank",
        "log.timestamp": "10/Oct/2000:13:55:36 -0700",
        "http.request.method": "GET",
        "url.original": "/apache_pb.gif?x=1",
        "network.protocol.version": "1.0",
        "http.response.status_code": "200",
        "http.response.body.size": "2326",
        "http.request.header.referer": "http://www.example.com/start.html",
        "user_agent.original": "Mozilla/4.08 [en] (Win98; I ;Nav)",
    }
    assert counts == {"no_match": 1}
    model = {
        "type": "grok",
        "pattern": r"%{TIMESTAMP_ISO8601:ts} %{LOGLEVEL:lvl} \[%{ID:req}\] took %{NUMBER:ms:float}ms %{GREEDYDATA}",
        "patterns": {"ID": r"req-%{UUID}"},
    }
    body = "2024-05-01T12:00:00.123Z WARN [req-38101a0b-2096-447d-96ea-a692162415ae] took 12.5ms for GET"
    rows, _ = run(chain(model), logs([body]))
    assert attrs(rows) == [{"ts": "2024-05-01T12:00:00.123Z", "lvl": "WARN", "req": "req-38101a0b-2096-447d-96ea-a692162415ae", "ms": "12.5"}]


def test_grok_apache_error_log_reads_every_loghub_line() -> None:
    lines = loghub("Apache/Apache_2k.log").read_text().splitlines()
    rows, counts = run(chain({"type": "grok", "pattern": "^%{HTTPD_ERRORLOG}"}), logs(lines))
    assert counts == {}
    assert attrs(rows)[0] == {
        "log.timestamp": "Sun Dec 04 04:47:44 2005",
        "log.level": "notice",
        "log.message": "workerEnv.init() ok /etc/httpd/conf/workers2.properties",
    }
    with_client = [a for a in attrs(rows) if "client.address" in a]
    assert with_client and all(a["log.level"] == "error" for a in with_client)


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("IPV4", "to 10.1.255.3:80", "10.1.255.3"),
        ("IPV4", "v 1.2.3.456", None),
        ("IPV6", "from 2001:db8::8a2e:370:7334 port", "2001:db8::8a2e:370:7334"),
        ("IPV6", "from 1:2:3::4:5 x", "1:2:3::4:5"),
        ("IPV6", "mapped ::ffff:192.0.2.1 ok", "::ffff:192.0.2.1"),
        ("IPV6", "fe80::1%eth0 up", "fe80::1%eth0"),
        ("IPV6", "at 12:30:45 ok", None),
        ("IP", "peer ::1", "::1"),
        ("HOSTNAME", "web-01.example.com.", "web-01.example.com"),
        ("UUID", "id 38101a0b-2096-447d-96ea-a692162415ae.", "38101a0b-2096-447d-96ea-a692162415ae"),
        ("MAC", "hw 00:1A:2b:3c:4D:5e up", "00:1A:2b:3c:4D:5e"),
        ("HTTPDATE", "[10/Oct/2000:13:55:36 -0700]", "10/Oct/2000:13:55:36 -0700"),
        ("SYSLOGTIMESTAMP", "Jun  9 06:06:20 combo", "Jun  9 06:06:20"),
        ("TIMESTAMP_ISO8601", "at 2024-05-01 12:00:00,123+02:00 x", "2024-05-01 12:00:00,123+02:00"),
        ("NUMBER", "took -1.5e3 s", "-1.5e3"),
        ("QUOTEDSTRING", 'say "a \\" b" now', '"a \\" b"'),
        ("PATH", "open /var/log/x.log failed", "/var/log/x.log"),
        ("URIPATHPARAM", "GET /a/b?c=d HTTP", "/a/b?c=d"),
        ("LOGLEVEL", "[Warning] disk", "Warning"),
    ],
)
def test_grok_builtin_patterns(name: str, text: str, match: str | None) -> None:
    regex = expand(f"%{{{name}:v}}").regex
    got = pl.Series([text]).str.extract_groups(regex).struct.field("g0").item()
    assert got == match


# -- syslog --------------------------------------------------------------------------------------


def test_syslog_line_in_the_body_becomes_the_record() -> None:
    bodies = [
        '<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su 77 ID47 [ex@32473 iut="3"] BOM\'su root\' failed',
        "<13>Oct 11 22:14:15 web-1 nginx[12]: started",
        "not syslog at all",
    ]
    rows, counts = run(chain({"type": "syslog"}), logs(bodies))
    first = rows[0]
    assert first["Timestamp"] == datetime(2003, 10, 11, 22, 14, 15, 3000, tzinfo=UTC)
    assert (first["SeverityText"], first["SeverityNumber"], first["ServiceName"]) == ("CRIT", 18, "su")
    assert first["ResourceAttributes"] == {"service.name": "su", "host.name": "mymachine.example.com"}
    assert first["Body"] == "BOM'su root' failed"
    assert first["LogAttributes"]["syslog.msgid"] == "ID47" and first["LogAttributes"]["sd.ex@32473.iut"] == "3"
    assert (rows[1]["ServiceName"], rows[1]["Body"], rows[1]["LogAttributes"]["syslog.procid"]) == ("nginx", "started", "12")
    assert rows[2]["Body"] == "not syslog at all" and rows[2]["Timestamp"] == T0 and rows[2]["LogAttributes"] == {}
    assert counts == {"no_match": 1}


def test_syslog_from_an_attribute_puts_the_message_in_an_attribute() -> None:
    rows, _ = run(chain({"type": "syslog", "field": "raw", "prefix": "s."}), logs(["kept body"], [{"raw": "<11>Oct 11 22:14:15 h app: boom"}]))
    assert rows[0]["Body"] == "kept body"
    assert rows[0]["LogAttributes"]["s.message"] == "boom" and rows[0]["SeverityText"] == "ERR"


# -- clf, combined -------------------------------------------------------------------------------

COMBINED = [
    '127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif?a=1&b=2 HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)"',
    '2001:db8::1 - - [04/Dec/2026:20:01:02 +0100] "post /api/v1/logs HTTP/2.0" 204 - "-" "curl/8.5.0" 0.003',
    '10.0.0.9 - - [04/Dec/2026:20:01:02 +0000] "\\x16\\x03\\x01\\x00" 400 226 "-" "-"',
    '10.0.0.9 - - [04/Dec/2026:20:01:03 +0000] "-" 408 - "-" "-"',
    "this is not an access log line",
]


def test_combined_access_log_to_http_attributes_and_timestamp() -> None:
    rows, counts = run(chain({"type": "combined"}), logs(COMBINED))
    assert attrs(rows) == [
        {
            "client.address": "127.0.0.1", "user.name": "frank", "http.request.method": "GET",
            "url.path": "/apache_pb.gif", "url.query": "a=1&b=2", "network.protocol.version": "1.0",
            "http.response.status_code": "200", "http.response.body.size": "2326",
            "http.request.header.referer": "http://www.example.com/start.html",
            "user_agent.original": "Mozilla/4.08 [en] (Win98; I ;Nav)",
        },
        {
            "client.address": "2001:db8::1", "http.request.method": "POST", "url.path": "/api/v1/logs",
            "network.protocol.version": "2.0", "http.response.status_code": "204", "user_agent.original": "curl/8.5.0",
        },
        {
            "client.address": "10.0.0.9", "http.request.line": "\\x16\\x03\\x01\\x00",
            "http.response.status_code": "400", "http.response.body.size": "226",
        },
        {"client.address": "10.0.0.9", "http.response.status_code": "408"},
        {},
    ]  # fmt: skip
    assert [r["Timestamp"] for r in rows] == [
        datetime(2000, 10, 10, 20, 55, 36, tzinfo=UTC),
        datetime(2026, 12, 4, 19, 1, 2, tzinfo=UTC),
        datetime(2026, 12, 4, 20, 1, 2, tzinfo=UTC),
        datetime(2026, 12, 4, 20, 1, 3, tzinfo=UTC),
        T0,
    ]
    assert counts == {"no_match": 1}


def test_clf_reads_common_and_combined_lines_without_referer() -> None:
    rows, counts = run(chain({"type": "clf", "prefix": "web."}), logs(COMBINED[:1] + ['h - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 304 0']))
    assert "web.user_agent.original" not in attrs(rows)[0] and attrs(rows)[0]["web.url.path"] == "/apache_pb.gif"
    assert attrs(rows)[1] == {
        "web.client.address": "h", "web.http.request.method": "GET", "web.url.path": "/",
        "web.network.protocol.version": "1.1", "web.http.response.status_code": "304", "web.http.response.body.size": "0",
    }  # fmt: skip
    assert counts == {}


# -- config --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"type": "regex", "pattern": r"(?P<a>x)(?=y)"}, "look-around"),
        ({"type": "regex", "pattern": r"(?P<a>x)\1"}, "backreferences"),
        ({"type": "regex", "pattern": r"(?P<a>x"}, "regular expression"),
        ({"type": "regex", "pattern": "plain"}, "no named group"),
        ({"type": "grok", "pattern": "%{NOPE:x}"}, "unknown grok pattern %{NOPE}"),
        ({"type": "grok", "pattern": "%{A:x}", "patterns": {"A": "%{B}", "B": "%{A}"}}, "refers to itself"),
        ({"type": "grok", "pattern": "%{INT:x:bool}"}, "type must be one of"),
        ({"type": "grok", "pattern": "%{INT}"}, "no capture"),
        ({"type": "json", "max_depth": 0}, "max_depth"),
        ({"type": "key_value", "pair_separator": ""}, "pair_separator"),
        ({"type": "logfmt", "separator": "."}, "separator"),
    ],
)
def test_bad_config_is_refused_naming_the_problem(model: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as e:
        ADAPTER.validate_python([model])
    assert message in str(e.value)
