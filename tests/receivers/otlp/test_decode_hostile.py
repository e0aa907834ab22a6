"""Values no exporter should send cost their own record, never the request: over-deep kvlists,
malformed nested values, invalid UTF-8 anywhere."""

from __future__ import annotations

import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList

from ferry.receivers.otlp import decode
from ferry.receivers.otlp._attributes import MAX_DEPTH
from ferry.testing.otlp import logs_request


def _deep(levels: int, array: bool = False) -> AnyValue:
    v = AnyValue(string_value="bottom")
    for _ in range(levels):
        if array:
            v = AnyValue(array_value=ArrayValue(values=[v]))
        else:
            v = AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key="k", value=v)]))
    return v


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 127:
        out.append(n & 127 | 128)
        n >>= 7
    return bytes(out + bytes([n]))


def _deep_raw(levels: int) -> bytes:
    """A serialized AnyValue nesting `levels` arrays: deeper than protobuf itself will build or parse."""
    b = AnyValue(string_value="bottom").SerializeToString()
    for _ in range(levels):
        arr = b"\x0a" + _varint(len(b)) + b  # ArrayValue.values
        b = b"\x2a" + _varint(len(arr)) + arr  # AnyValue.array_value
    return b


def _bodies(d: decode.Decoded) -> list[str]:
    return d.tables["otel_logs"].column("Body").to_pylist() if "otel_logs" in d.tables else []


def test_over_deep_body_rejects_its_record_only() -> None:
    req = ExportLogsServiceRequest.FromString(logs_request(["a", "b", "c"]))
    recs = req.resource_logs[0].scope_logs[0].log_records
    recs[1].body.CopyFrom(_deep(MAX_DEPTH + 1))
    recs[2].body.CopyFrom(_deep(MAX_DEPTH))  # at the limit: kept, rendered as JSON
    d = decode.decode_logs(req.SerializeToString(), "protobuf")
    assert (d.accepted, d.rejected, d.reasons) == (2, 1, {"invalid_value": 1})
    assert _bodies(d)[0] == "a" and _bodies(d)[1].count('{"k":') == MAX_DEPTH
    assert "invalid_value" in d.message and str(MAX_DEPTH) in d.message


def test_far_too_deep_or_malformed_attribute_rejects_its_record_only() -> None:
    """Past protobuf's own nesting limit, and bytes that are no AnyValue at all, in the attributes
    (many of them, so the deduplicating path is taken too)."""
    req = ExportLogsServiceRequest.FromString(logs_request([f"r{i}" for i in range(100)], attrs={"k": "v"}))
    req.resource_logs[0].scope_logs[0].log_records[20].attributes.append(
        KeyValue(key="bad", value=AnyValue(string_value="PLACEHOLDER"))
    )
    raw = req.SerializeToString().replace(b"\x0a\x0bPLACEHOLDER", b"\x0a\x7fPLACEHOLDER")  # length overruns
    # Records are kept as bytes in the decoder's own view of the request, so one can carry anything.
    shadow = decode._LOGS.shadow.FromString(raw)
    recs = shadow.resource_logs[0].scope_logs[0].log_records
    kv = b"\x0a\x04deep\x12" + _varint(len(v := _deep_raw(200))) + v
    recs[10] = recs[10] + b"\x32" + _varint(len(kv)) + kv  # LogRecord.attributes
    d = decode.decode_logs(shadow.SerializeToString(), "protobuf")
    assert d.rejected == 2 and d.reasons == {"invalid_value": 2}
    assert set(_bodies(d)) == {f"r{i}" for i in range(100)} - {"r10", "r20"}


def test_invalid_utf8_is_replaced_wherever_it_is() -> None:
    """In the scope name, a resource attribute, a kvlist string and a body: stored with U+FFFD."""
    req = ExportLogsServiceRequest.FromString(logs_request(["BODY-A", "b"], service="SVC-A"))
    rec = req.resource_logs[0].scope_logs[0].log_records[1]
    rec.attributes.append(KeyValue(key="kv", value=AnyValue(kvlist_value=KeyValueList(
        values=[KeyValue(key="x", value=AnyValue(string_value="KV-A"))]))))
    raw = (req.SerializeToString().replace(b"ferry.testing", b"ferry.te\xffting").replace(b"SVC-A", b"SVC\xff\xfe")
           .replace(b"KV-A", b"KV\xc3(").replace(b"BODY-A", b"BODY\xe2\x82"))
    d = decode.decode_logs(raw, "protobuf")
    assert d.rejected == 0
    t = d.tables["otel_logs"]
    assert t.column("ScopeName").to_pylist() == ["ferry.te\ufffdting"] * 2
    assert t.column("ServiceName").to_pylist() == ["SVC\ufffd\ufffd"] * 2
    assert t.column("Body").to_pylist()[0] == "BODY\ufffd"
    assert orjson.loads(dict(t.column("LogAttributes").to_pylist()[1])["kv"]) == {"x": "KV\ufffd("}


def test_unreadable_resource_attribute_rejects_that_resources_records() -> None:
    req = ExportLogsServiceRequest.FromString(logs_request(["keep"]))
    other = ExportLogsServiceRequest.FromString(logs_request(["drop-1", "drop-2"]))
    other.resource_logs[0].resource.attributes.append(KeyValue(key="deep", value=_deep(MAX_DEPTH + 5, array=True)))
    req.resource_logs.extend(other.resource_logs)
    d = decode.decode_logs(req.SerializeToString(), "protobuf")
    assert (d.accepted, d.rejected, d.reasons) == (1, 2, {"invalid_value": 2})
    assert _bodies(d) == ["keep"]


def test_deep_values_in_spans_and_points_reject_those_only() -> None:
    tr = ExportTraceServiceRequest()
    spans = tr.resource_spans.add().scope_spans.add().spans
    for i in range(3):
        s = spans.add(name=f"s{i}", trace_id=bytes(16), span_id=bytes(8))
        s.attributes.append(KeyValue(key="a", value=AnyValue(string_value="v")))
    spans[1].events.add(name="e").attributes.append(KeyValue(key="deep", value=_deep(MAX_DEPTH + 1)))
    d = decode.decode_traces(tr.SerializeToString(), "protobuf")
    assert d.reasons == {"invalid_value": 1}
    assert d.tables["otel_traces"].column("SpanName").to_pylist() == ["s0", "s2"]

    mr = ExportMetricsServiceRequest()
    m = mr.resource_metrics.add().scope_metrics.add().metrics.add(name="m")
    for i in range(3):
        p = m.gauge.data_points.add(as_int=i)
        p.attributes.append(KeyValue(key="deep" if i == 2 else "ok", value=_deep(MAX_DEPTH + 1 if i == 2 else 1)))
    d = decode.decode_metrics(mr.SerializeToString(), "protobuf")
    assert d.reasons == {"invalid_value": 1}
    assert d.tables["otel_metrics_gauge"].column("Value").to_pylist() == [0.0, 1.0]


def test_json_over_deep_value_rejects_its_record_only() -> None:
    deep: dict[str, object] = {"stringValue": "x"}
    for _ in range(MAX_DEPTH + 3):
        deep = {"kvlistValue": {"values": [{"key": "k", "value": deep}]}}
    doc = {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": "fine"}}, {"body": deep}]}]}]}
    d = decode.decode_logs(orjson.dumps(doc), "json")
    assert (d.accepted, d.rejected, d.reasons) == (1, 1, {"invalid_value": 1})
