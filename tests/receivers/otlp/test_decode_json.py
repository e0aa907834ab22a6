"""Decoding OTLP/JSON: the same rows as protobuf, hex ids, string or number int64s, and useful errors.
JSON payloads come from real SDK output rendered with the OTLP/JSON rules, or are written by hand.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import orjson
import pytest
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind

from ferry.errors import BadRequest
from ferry.receivers.otlp.decode import decode_logs, decode_metrics, decode_traces
from ferry.schema.tables import TABLES

NOW = 1_750_000_000_000_000_000
TRACE = "5B8EFFF798038103D269B633813FC60C"
SPAN = "EEE19B7EC3C1B174"


def otlp_json(req: Message) -> bytes:
    """The OTLP/JSON form of a request: protobuf JSON mapping with integer enums and hex ids."""

    def hexify(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: base64.b64decode(v).hex() if k in ("traceId", "spanId", "parentSpanId") else hexify(v)
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [hexify(v) for v in node]
        return node

    return orjson.dumps(hexify(MessageToDict(req, use_integers_for_enums=True)))


def assert_same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys() and a
    for name in a:
        assert a[name].schema.equals(TABLES[name], check_metadata=True)
        assert a[name].equals(b[name]), name


def tracer_and_spans() -> tuple[Any, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "web"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("web.tracer", "1"), exporter


def test_sdk_logs_as_json_match_protobuf() -> None:
    """SDK logs sent as OTLP/JSON decode to exactly the protobuf rows, hex ids included."""
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create({"service.name": "json-svc"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("j", "1", attributes={"s": 1})
    tracer, _ = tracer_and_spans()
    with tracer.start_as_current_span("s"):
        logger.emit(
            body={"msg": "hi", "n": [1, 2.5]}, attributes={"i": 1, "f": 1.5, "b": b"\x01", "l": ["x"]}
        )
    logger.emit(body="plain", severity_number=17, event_name="evt")
    req = encode_logs(exporter.get_finished_logs())
    via_json = decode_logs(otlp_json(req), "json", now_ns=NOW)
    via_proto = decode_logs(req.SerializeToString(), "protobuf", now_ns=NOW)
    assert_same(via_json.tables, via_proto.tables)
    assert via_json.tables["otel_logs"].column("TraceId")[0].as_py() != ""


def test_sdk_spans_as_json_match_protobuf() -> None:
    """SDK spans with events, links and status decode the same from OTLP/JSON as from protobuf."""
    tracer, exporter = tracer_and_spans()
    with tracer.start_as_current_span("a", kind=SpanKind.CLIENT, attributes={"x": [1, 2]}) as a:
        a.add_event("e", {"k": True})
    with tracer.start_as_current_span("b", links=[Link(a.get_span_context(), {"l": 1})]):
        pass
    req = encode_spans(exporter.get_finished_spans())
    assert_same(
        decode_traces(otlp_json(req), "json", now_ns=NOW).tables,
        decode_traces(req.SerializeToString(), "protobuf", now_ns=NOW).tables,
    )


def test_sdk_metrics_as_json_match_protobuf() -> None:
    """Every SDK metric type, exemplars included, decodes the same from OTLP/JSON as from protobuf."""
    reader = InMemoryMetricReader()
    views = [View(instrument_name="exp", aggregation=ExponentialBucketHistogramAggregation())]
    meter = MeterProvider(metric_readers=[reader], views=views).get_meter("m")
    tracer, _ = tracer_and_spans()
    with tracer.start_as_current_span("s"):
        meter.create_counter("c").add(3, {"a": "b"})
        meter.create_histogram("h").record(7.5)
        meter.create_histogram("exp").record(2.0)
        meter.create_gauge("g").set(-1.25)
    req = encode_metrics(reader.get_metrics_data())
    json_tables = decode_metrics(otlp_json(req), "json", now_ns=NOW).tables
    assert_same(json_tables, decode_metrics(req.SerializeToString(), "protobuf", now_ns=NOW).tables)
    assert len(json_tables) == 4


def hand_log(**record: Any) -> dict[str, Any]:
    base = {"timeUnixNano": "1544712660300000000", "body": {"stringValue": "hello"}}
    return {**base, **record}


def hand_request(*records: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {
            "resourceLogs": [
                {
                    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "hand"}}]},
                    "scopeLogs": [{"scope": {"name": "s", "version": "2"}, "logRecords": list(records)}],
                    "someFutureField": {"ignored": True},
                }
            ]
        }
    )


def test_hand_written_json_with_hex_ids_and_mixed_int64s() -> None:
    """Upper-case hex ids become lowercase; int64s as strings or numbers and integer enums all work."""
    payload = hand_request(
        hand_log(traceId=TRACE, spanId=SPAN, severityNumber=10, flags=1, unknownField=[1, 2]),
        hand_log(
            timeUnixNano=1544712660300000001, observedTimeUnixNano="1544712660300000009", severityText="Info"
        ),
    )
    first, second = decode_logs(payload, "json", now_ns=NOW).tables["otel_logs"].to_pylist()
    assert (first["TraceId"], first["SpanId"], first["TraceFlags"]) == (TRACE.lower(), SPAN.lower(), 1)
    assert (first["SeverityNumber"], first["SeverityText"], first["Body"]) == (10, "INFO", "hello")
    assert first["Timestamp"].value == 1544712660300000000 and first["ObservedTimestamp"].value == NOW
    assert second["Timestamp"].value == 1544712660300000001
    assert second["ObservedTimestamp"].value == 1544712660300000009
    assert (second["SeverityText"], second["ServiceName"], second["ScopeVersion"]) == ("Info", "hand", "2")


def test_json_attribute_values_of_every_type() -> None:
    """JSON AnyValues (string int64, double, bool, base64 bytes, array, kvlist) follow the string rules."""
    attrs = [
        {"key": "i", "value": {"intValue": "-9007199254740993"}},
        {"key": "n", "value": {"intValue": 5}},
        {"key": "d", "value": {"doubleValue": 2.5}},
        {"key": "nan", "value": {"doubleValue": "NaN"}},
        {"key": "t", "value": {"boolValue": False}},
        {"key": "b", "value": {"bytesValue": base64.b64encode(b"\xfa\xfb").decode()}},
        {"key": "a", "value": {"arrayValue": {"values": [{"stringValue": "x"}, {"intValue": "1"}]}}},
        {"key": "m", "value": {"kvlistValue": {"values": [{"key": "k", "value": {"boolValue": True}}]}}},
        {"key": "e", "value": {}},
    ]
    (row,) = decode_logs(hand_request(hand_log(attributes=attrs)), "json").tables["otel_logs"].to_pylist()
    assert dict(row["LogAttributes"]) == {
        "i": "-9007199254740993",
        "n": "5",
        "d": "2.5",
        "nan": "nan",
        "t": "false",
        "b": "+vs=",
        "a": '["x",1]',
        "m": '{"k":true}',
        "e": "",
    }


def test_invalid_hex_id_refuses_the_record_not_the_request() -> None:
    """A trace id that is not hex is a bad record; the other records of the request land."""
    payload = hand_request(
        hand_log(traceId="not-hex-at-all"), hand_log(traceId=TRACE), hand_log(spanId="abc")
    )
    decoded = decode_logs(payload, "json")
    assert (decoded.accepted, decoded.rejected) == (1, 2)
    assert decoded.reasons == {"invalid_trace_id": 1, "invalid_span_id": 1}
    assert decoded.tables["otel_logs"].column("TraceId").to_pylist() == [TRACE.lower()]


def test_span_json_with_parent_link_and_enum_ints() -> None:
    """Hand-written span JSON: hex parent/link ids, kind and status code as integers, int64 numbers."""
    span = {
        "traceId": TRACE,
        "spanId": SPAN,
        "parentSpanId": "0102030405060708",
        "name": "op",
        "kind": 3,
        "startTimeUnixNano": 100,
        "endTimeUnixNano": "250",
        "status": {"code": 2, "message": "x"},
        "links": [{"traceId": TRACE, "spanId": "1112131415161718", "attributes": []}],
        "events": [{"timeUnixNano": "120", "name": "ev"}],
    }
    payload = orjson.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]})
    (row,) = decode_traces(payload, "json").tables["otel_traces"].to_pylist()
    assert (row["ParentSpanId"], row["SpanKind"], row["Duration"]) == (
        "0102030405060708",
        "SPAN_KIND_CLIENT",
        150,
    )
    assert (row["StatusCode"], row["StatusMessage"]) == ("STATUS_CODE_ERROR", "x")
    assert (row["Links.SpanId"], row["Events.Name"]) == (["1112131415161718"], ["ev"])


def test_metric_json_with_string_counts_and_special_doubles() -> None:
    """Histogram counts as strings and "Infinity" doubles decode; a data-less metric is refused."""
    hist = {
        "dataPoints": [
            {
                "count": "3",
                "sum": 1.5,
                "bucketCounts": ["1", "2"],
                "explicitBounds": [1.0],
                "timeUnixNano": "5",
                "max": "Infinity",
            }
        ],
        "aggregationTemporality": 1,
    }
    metrics = [
        {"name": "h", "histogram": hist},
        {"name": "empty"},
        {"name": "g", "gauge": {"dataPoints": [{"asInt": "-7"}, {"asDouble": "-Infinity"}]}},
    ]
    payload = orjson.dumps({"resourceMetrics": [{"scopeMetrics": [{"metrics": metrics}]}]})
    decoded = decode_metrics(payload, "json")
    assert (decoded.accepted, decoded.rejected, decoded.reasons) == (3, 1, {"empty_metric": 1})
    (h,) = decoded.tables["otel_metrics_histogram"].to_pylist()
    assert (h["Count"], h["BucketCounts"], h["ExplicitBounds"], h["AggregationTemporality"]) == (
        3,
        [1, 2],
        [1.0],
        1,
    )
    assert h["Max"] == math.inf
    assert decoded.tables["otel_metrics_gauge"].column("Value").to_pylist() == [-7.0, -math.inf]


def test_not_json_raises_bad_request() -> None:
    """A body that is not JSON raises BadRequest saying so."""
    with pytest.raises(BadRequest, match="invalid OTLP/JSON ExportLogsServiceRequest: not valid JSON"):
        decode_logs(b"{nope", "json")


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        (
            hand_request(hand_log(), hand_log(timeUnixNano="soon")),
            "resourceLogs[0].scopeLogs[0].logRecords[1].timeUnixNano",
        ),
        (
            hand_request(hand_log(attributes={"k": "v"})),
            "resourceLogs[0].scopeLogs[0].logRecords[0].attributes",
        ),
        (hand_request(hand_log(severityText=3)), "resourceLogs[0].scopeLogs[0].logRecords[0].severityText"),
        (b"[1, 2]", "(top level)"),
        (orjson.dumps({"resourceLogs": {"not": "a list"}}), "resourceLogs"),
    ],
)
def test_wrong_types_name_the_field_path(payload: bytes, path: str) -> None:
    """A value of the wrong type fails the request with the JSON path of the field at fault."""
    with pytest.raises(BadRequest) as err:
        decode_logs(payload, "json")
    assert f"invalid OTLP/JSON ExportLogsServiceRequest: {path}:" in str(err.value)


def test_empty_json_object_is_an_empty_request() -> None:
    """`{}` is a valid request with nothing in it."""
    decoded = decode_traces(b"{}", "json")
    assert (decoded.tables, decoded.accepted, decoded.rejected) == ({}, 0, 0)


def test_base64_ids_from_protobuf_json_mapping_are_understood() -> None:
    """Ids sent as base64 (the plain protobuf JSON mapping) land as hex when they are exactly id-sized."""
    trace = bytes.fromhex(TRACE)
    payload = hand_request(
        hand_log(traceId=base64.b64encode(trace).decode(), spanId=base64.b64encode(b"\x01" * 8).decode()),
        hand_log(traceId=base64.b64encode(b"\x01" * 5).decode()),
    )
    decoded = decode_logs(payload, "json")
    assert decoded.reasons == {"invalid_trace_id": 1}
    (row,) = decoded.tables["otel_logs"].to_pylist()
    assert (row["TraceId"], row["SpanId"]) == (TRACE.lower(), "01" * 8)
