"""The Loki push decoder: stream selectors with escapes, JSON and protobuf pushes to otel_logs rows,
a bad stream refused alone.
"""

from __future__ import annotations

import orjson
import pytest

from ferry.errors import BadRequest
from ferry.receivers.loki import proto
from ferry.receivers.loki.decode import LabelError, decode_push, parse_labels
from ferry.schema.tables import LOGS

NOW = 1_700_000_000_000_000_000


def test_selector_parser_reads_escapes_and_raw_strings() -> None:
    got = parse_labels(r'{ job = "a\"b" , path="C:\\x\n\t\x41\u00e9\101", raw=`no\escape`}')
    assert got == [("job", 'a"b'), ("path", "C:\\x\n\tAéA"), ("raw", "no\\escape")]
    assert parse_labels('{a=""}') == [("a", "")]


@pytest.mark.parametrize("bad", ['{a="b"', 'a="b"', '{a="b",a="c"}', "{}", '{a=~"b"}', '{a!="b"}', '{1a="b"}',
                                 r'{a="\q"}', '{a="b"} x', '{a="b" c="d"}', '{a=b}'])
def test_selector_parser_refuses(bad: str) -> None:
    with pytest.raises(LabelError):
        parse_labels(bad)


def test_json_push() -> None:
    body = orjson.dumps({"streams": [
        {"stream": {"job": "api", "level": "error", "env": "prod"},
         "values": [["1700000000000000001", "boom", {"trace_id": "t1", "span_id": "s1", "user": "u"}],
                    ["1700000000000000002", "again"]]},
        {"stream": {"service_name": "svc", "service": "x"}, "values": [["5", "x"]]},
        {"stream": {"a": "b"}, "values": [["not a number", "x"]]},
    ]})
    d = decode_push(body, "json", tenant="t", now_ns=NOW)
    t = d.tables["otel_logs"]
    assert t.schema == LOGS and d.accepted == 3 and d.reasons == {"invalid_value": 1}
    assert t["Body"].to_pylist() == ["boom", "again", "x"]
    assert [x.value for x in t["Timestamp"]] == [1700000000000000001, 1700000000000000002, 5]
    assert {x.value for x in t["ObservedTimestamp"]} == {NOW}
    assert t["ServiceName"].to_pylist() == ["api", "api", "svc"]
    assert t["SeverityText"].to_pylist() == ["error", "error", ""]
    assert t["ResourceAttributes"].to_pylist()[0] == [("job", "api"), ("level", "error"), ("env", "prod")]
    assert t["LogAttributes"].to_pylist() == [[("trace_id", "t1"), ("span_id", "s1"), ("user", "u")], [], []]
    assert t["TraceId"].to_pylist() == ["t1", "", ""] and t["SpanId"].to_pylist() == ["s1", "", ""]
    assert set(t["Source"].to_pylist()) == {"loki"}


def test_protobuf_push_and_a_bad_selector() -> None:
    req = proto.PushRequest()
    s = req.streams.add(labels='{app="pay", detected_level="warn"}')
    e = s.entries.add(line="slow")
    e.timestamp.seconds, e.timestamp.nanos = 1_700_000_000, 42
    e.structuredMetadata.add(name="trace_id", value="abc")
    req.streams.add(labels='{app="pay"').entries.add(line="lost")
    d = decode_push(req.SerializeToString(), "protobuf", tenant="t", now_ns=NOW)
    t = d.tables["otel_logs"]
    assert t["Body"].to_pylist() == ["slow"] and t["Timestamp"][0].value == 1_700_000_000_000_000_042
    assert t["ServiceName"].to_pylist() == ["unknown_service"] and t["SeverityText"].to_pylist() == ["warn"]
    assert t["LogAttributes"].to_pylist() == [[("trace_id", "abc")]] and t["TraceId"].to_pylist() == ["abc"]
    assert d.reasons == {"invalid_label": 1} and '{app="pay"' in d.message


def test_unreadable_bodies() -> None:
    with pytest.raises(BadRequest, match="JSON"):
        decode_push(b"{nope", "json", tenant="t", now_ns=NOW)
    with pytest.raises(BadRequest, match="PushRequest"):
        decode_push(b"\x0a\x50short", "protobuf", tenant="t", now_ns=NOW)
