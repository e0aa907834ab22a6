"""Decoding OTLP/protobuf logs produced by the real OpenTelemetry SDK into otel_logs rows.
Covers attribute typing, resource/scope columns, trace context, severity, timestamps and rejections.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from ferry.errors import BadRequest
from ferry.receivers.otlp.decode import Decoded, decode_logs, logs_from_message
from ferry.schema.tables import TABLES

NOW = 1_700_000_000_000_000_000


def sdk_request(
    emit: Callable[[Any], None], resource: dict[str, Any] | None = None
) -> ExportLogsServiceRequest:
    """Run `emit(logger)` against a real SDK LoggerProvider and return the OTLP request it exports."""
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create(resource or {"service.name": "checkout"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    emit(provider.get_logger("shop.cart", "2.1", attributes={"scope.kind": "lib", "scope.n": 3}))
    return encode_logs(exporter.get_finished_logs())


def rows(decoded: Decoded) -> list[dict[str, Any]]:
    table = decoded.tables["otel_logs"]
    assert table.schema.equals(TABLES["otel_logs"], check_metadata=True)
    return table.to_pylist()


def decode(req: ExportLogsServiceRequest, **kw: Any) -> Decoded:
    return decode_logs(req.SerializeToString(), "protobuf", now_ns=NOW, **kw)


def test_attribute_values_of_every_type_become_strings() -> None:
    """Every AnyValue type in LogAttributes lands as its documented string form."""

    def emit(logger: Any) -> None:
        logger.emit(
            body="hello",
            attributes={
                "s": "text",
                "i": -42,
                "f": 0.1,
                "big": 1e300,
                "t": True,
                "b": b"\x00\xffbin",
                "arr": ["a", "b"],
                "nums": [1, 2],
                "map": {"k": 1, "nested": {"x": [True, None]}},
            },
        )

    (row,) = rows(decode(sdk_request(emit)))
    attrs = dict(row["LogAttributes"])
    assert attrs["s"] == "text"
    assert attrs["i"] == "-42"
    assert attrs["f"] == "0.1"
    assert attrs["big"] == "1e+300"
    assert attrs["t"] == "true"
    assert attrs["b"] == base64.b64encode(b"\x00\xffbin").decode()
    assert attrs["arr"] == '["a","b"]'
    assert attrs["nums"] == "[1,2]"
    assert attrs["map"] == '{"k":1,"nested":{"x":[true,null]}}'


def test_type_collision_across_records_lands_as_strings() -> None:
    """The same key as an int in one record and a string in another lands in both rows."""

    def emit(logger: Any) -> None:
        logger.emit(body="a", attributes={"code": 200})
        logger.emit(body="b", attributes={"code": "ok"})

    decoded = decode(sdk_request(emit))
    assert decoded.accepted == 2 and decoded.rejected == 0
    assert [dict(r["LogAttributes"])["code"] for r in rows(decoded)] == ["200", "ok"]


def test_resource_and_scope_columns() -> None:
    """Resource attributes, service.name and the instrumentation scope fill their own columns."""
    req = sdk_request(lambda lg: lg.emit(body="x"), {"service.name": "cart", "host.name": "h1", "pid": 7})
    (row,) = rows(decode(req, tenant="acme"))
    res = dict(row["ResourceAttributes"])
    assert res["service.name"] == "cart" and res["host.name"] == "h1" and res["pid"] == "7"
    assert row["ServiceName"] == "cart"
    assert row["ScopeName"] == "shop.cart"
    assert row["ScopeVersion"] == "2.1"
    assert dict(row["ScopeAttributes"]) == {"scope.kind": "lib", "scope.n": "3"}
    assert (row["Tenant"], row["Source"], row["BatchId"]) == ("acme", "otlp", "")
    assert row["IngestTime"].value == NOW


def test_missing_service_name_is_empty() -> None:
    """A resource without service.name gives an empty ServiceName, not an error."""
    req = sdk_request(lambda lg: lg.emit(body="x"))
    req.resource_logs[0].resource.ClearField("attributes")
    (row,) = rows(decode(req))
    assert row["ServiceName"] == "" and row["ResourceAttributes"] == []


def test_trace_context_from_a_real_span() -> None:
    """A record emitted inside a span carries that span's ids as lowercase hex and its flags."""
    tracer = TracerProvider().get_tracer("t")
    seen = {}

    def emit(logger: Any) -> None:
        with tracer.start_as_current_span("work") as span:
            seen["ctx"] = span.get_span_context()
            logger.emit(body="inside")
        logger.emit(body="outside")

    inside, outside = rows(decode(sdk_request(emit)))
    ctx = seen["ctx"]
    assert inside["TraceId"] == f"{ctx.trace_id:032x}"
    assert inside["SpanId"] == f"{ctx.span_id:016x}"
    assert inside["TraceFlags"] == int(ctx.trace_flags) and inside["TraceFlags"] & 1
    assert (outside["TraceId"], outside["SpanId"], outside["TraceFlags"]) == ("", "", 0)


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (SeverityNumber.TRACE2, "TRACE"),
        (SeverityNumber.DEBUG, "DEBUG"),
        (SeverityNumber.INFO4, "INFO"),
        (SeverityNumber.WARN, "WARN"),
        (SeverityNumber.ERROR3, "ERROR"),
        (SeverityNumber.FATAL4, "FATAL"),
        (SeverityNumber.UNSPECIFIED, ""),
    ],
)
def test_severity_text_is_derived_from_the_number(number: SeverityNumber, text: str) -> None:
    """An empty SeverityText is derived from SeverityNumber's range."""
    (row,) = rows(decode(sdk_request(lambda lg: lg.emit(body="x", severity_number=number))))
    assert (row["SeverityNumber"], row["SeverityText"]) == (number.value, text)


def test_given_severity_text_is_kept() -> None:
    """A sender's own SeverityText wins over the derived one."""
    req = sdk_request(
        lambda lg: lg.emit(body="x", severity_number=SeverityNumber.WARN, severity_text="careful")
    )
    assert rows(decode(req))[0]["SeverityText"] == "careful"


def test_timestamps_fall_back_to_observed_then_now() -> None:
    """Timestamp 0 uses ObservedTimestamp; both 0 use the ingest time."""

    def emit(logger: Any) -> None:
        logger.emit(body="both", timestamp=5, observed_timestamp=9)
        logger.emit(body="observed only", observed_timestamp=9)
        logger.emit(body="neither")

    req = sdk_request(emit)
    req.resource_logs[0].scope_logs[0].log_records[2].observed_time_unix_nano = 0
    both, observed, neither = rows(decode(req))
    assert (both["Timestamp"].value, both["ObservedTimestamp"].value) == (5, 9)
    assert (observed["Timestamp"].value, observed["ObservedTimestamp"].value) == (9, 9)
    assert (neither["Timestamp"].value, neither["ObservedTimestamp"].value) == (NOW, NOW)


def test_bodies_of_every_type() -> None:
    """String bodies stay as they are; other bodies become text or compact JSON; no body is ''."""
    bodies: list[Any] = ["plain", 7, 2.5, False, {"a": [1, "x"]}, ["p", 1], b"\x01", None, "é" * 300]
    decoded = decode(sdk_request(lambda lg: [lg.emit(body=b) for b in bodies]))
    got = [r["Body"] for r in rows(decoded)]
    assert got == ["plain", "7", "2.5", "false", '{"a":[1,"x"]}', '["p",1]', "AQ==", "", "é" * 300]


def test_event_name_is_kept_as_an_attribute() -> None:
    """LogRecord.event_name lands as LogAttributes["event.name"] next to the record's own attributes."""

    def emit(logger: Any) -> None:
        logger.emit(body="a", event_name="user.login", attributes={"user": "u1"})
        logger.emit(body="b", attributes={"user": "u2"})

    first, second = rows(decode(sdk_request(emit)))
    assert dict(first["LogAttributes"]) == {"user": "u1", "event.name": "user.login"}
    assert dict(second["LogAttributes"]) == {"user": "u2"}


def test_bad_trace_id_rejects_only_that_record() -> None:
    """A 5-byte trace id refuses its record, counts the reason, and the good records still land."""
    tracer = TracerProvider().get_tracer("t")

    def emit(logger: Any) -> None:
        with tracer.start_as_current_span("s"):
            for i in range(4):
                logger.emit(body=f"r{i}")

    req = sdk_request(emit)
    req.resource_logs[0].scope_logs[0].log_records[1].trace_id = b"12345"
    decoded = decode(req)
    assert (decoded.accepted, decoded.rejected) == (3, 1)
    assert decoded.reasons == {"invalid_trace_id": 1}
    assert "invalid_trace_id" in decoded.message and "1 of 4" in decoded.message
    assert [r["Body"] for r in rows(decoded)] == ["r0", "r2", "r3"]


def test_bad_span_id_is_counted_under_its_own_reason() -> None:
    """A span id that is not 8 bytes is refused as invalid_span_id."""
    req = sdk_request(lambda lg: [lg.emit(body="a"), lg.emit(body="b")])
    req.resource_logs[0].scope_logs[0].log_records[0].span_id = b"\x01" * 16
    decoded = decode(req)
    assert decoded.reasons == {"invalid_span_id": 1}
    assert [r["Body"] for r in rows(decoded)] == ["b"]


def test_all_records_rejected_gives_no_table() -> None:
    """When every record is refused the decoded result has no otel_logs table at all."""
    req = sdk_request(lambda lg: lg.emit(body="a"))
    req.resource_logs[0].scope_logs[0].log_records[0].trace_id = b"\x01"
    decoded = decode(req)
    assert decoded.tables == {} and decoded.rejected == 1 and decoded.accepted == 0


def test_empty_request_decodes_to_nothing() -> None:
    """An empty request is valid and yields no tables and no message."""
    decoded = decode_logs(b"", "protobuf")
    assert (decoded.tables, decoded.accepted, decoded.rejected, decoded.message) == ({}, 0, 0, "")


def test_garbage_bytes_raise_bad_request() -> None:
    """Bytes that are not an ExportLogsServiceRequest raise BadRequest naming the message type."""
    with pytest.raises(BadRequest, match="invalid OTLP/protobuf ExportLogsServiceRequest"):
        decode_logs(b"\x0a\xff\xff\xff\xff\x0fnot protobuf", "protobuf")


def test_truncated_record_raises_bad_request() -> None:
    """A log record whose field runs past its end is a malformed request, not a crash."""
    data = sdk_request(lambda lg: lg.emit(body="x" * 50)).SerializeToString()
    with pytest.raises(BadRequest, match="ExportLogsServiceRequest"):
        decode_logs(data[:-10], "protobuf")


def test_many_groups_and_from_message_agree() -> None:
    """Several resources and scopes keep each record with its own context; the message entry point agrees."""
    a = sdk_request(
        lambda lg: [lg.emit(body=f"a{i}", attributes={"i": i}) for i in range(3)], {"service.name": "a"}
    )
    b = sdk_request(lambda lg: [lg.emit(body=f"b{i}") for i in range(2)], {"service.name": "b"})
    a.resource_logs.extend(b.resource_logs)
    a.resource_logs[0].scope_logs.add().CopyFrom(b.resource_logs[0].scope_logs[0])
    got = rows(decode(a))
    assert [(r["ServiceName"], r["Body"]) for r in got] == [
        ("a", "a0"),
        ("a", "a1"),
        ("a", "a2"),
        ("a", "b0"),
        ("a", "b1"),
        ("b", "b0"),
        ("b", "b1"),
    ]
    assert [dict(r["LogAttributes"]).get("i") for r in got[:3]] == ["0", "1", "2"]
    assert logs_from_message(a, now_ns=NOW).tables["otel_logs"].equals(decode(a).tables["otel_logs"])


def test_long_and_unusual_values_take_the_slow_path_correctly() -> None:
    """Long strings, empty keys and empty values decode the same as short ones."""
    long = "v" * 20_000

    def emit(logger: Any) -> None:
        logger.emit(body="x", attributes={"long": long, "empty": "", "k" * 200: "long key"})

    req = sdk_request(emit)
    # The SDK drops empty keys, but other senders do send them.
    req.resource_logs[0].scope_logs[0].log_records[0].attributes.add(key="").value.string_value = "empty key"
    (row,) = rows(decode(req))
    assert dict(row["LogAttributes"]) == {"long": long, "": "empty key", "empty": "", "k" * 200: "long key"}


def test_field_order_and_repeated_fields_follow_protobuf_rules() -> None:
    """Fields in any order decode the same, and a repeated singular field keeps its last value."""
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

    # Concatenated messages merge: attributes first, then the rest, then a second severity_text.
    tail = LogRecord(
        time_unix_nano=5, body=AnyValue(string_value="late"), severity_text="A"
    ).SerializeToString()
    record = (
        LogRecord(attributes=[KeyValue(key="k", value=AnyValue(string_value="v"))]).SerializeToString()
        + tail
        + LogRecord(severity_text="B", severity_number=-3).SerializeToString()
    )
    req = sdk_request(lambda lg: lg.emit(body="placeholder"))
    req.resource_logs[0].scope_logs[0].log_records[0].ParseFromString(record)
    (row,) = rows(decode(req))
    assert (row["Body"], row["Timestamp"].value, dict(row["LogAttributes"])) == ("late", 5, {"k": "v"})
    assert (row["SeverityText"], row["SeverityNumber"]) == ("B", 0)


def test_corrupted_payloads_never_crash() -> None:
    """Randomly corrupted requests either decode or raise BadRequest, never another error."""
    import random

    tracer = TracerProvider().get_tracer("t")

    def emit(logger: Any) -> None:
        with tracer.start_as_current_span("s"):
            for i in range(5):
                logger.emit(
                    body={"i": i} if i % 2 else f"line {i}", attributes={"n": i, "s": "x" * i, "f": 0.5}
                )

    data = sdk_request(emit).SerializeToString()
    rng = random.Random(1)
    outcomes = set()
    for _ in range(300):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        try:
            decoded = decode_logs(bytes(mutated), "protobuf", now_ns=NOW)
            outcomes.add("ok")
            for table in decoded.tables.values():
                assert table.schema.equals(TABLES["otel_logs"])
        except BadRequest:
            outcomes.add("bad")
    assert outcomes == {"ok", "bad"}
