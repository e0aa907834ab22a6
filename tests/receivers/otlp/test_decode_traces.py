"""Decoding OTLP/protobuf spans produced by the real OpenTelemetry SDK into otel_traces rows.
Covers ids, kinds, status, duration, events, links, attributes and rejection of bad ids.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from ferry.errors import BadRequest
from ferry.receivers.otlp.decode import Decoded, decode_traces, traces_from_message
from ferry.schema.tables import TABLES


def sdk_request(work: Callable[[Any], None]) -> ExportTraceServiceRequest:
    """Run `work(tracer)` against a real SDK TracerProvider and return the OTLP request it exports."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "api", "region": "eu"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    work(provider.get_tracer("api.http", "3.0"))
    return encode_spans(exporter.get_finished_spans())


def rows(decoded: Decoded) -> dict[str, dict[str, Any]]:
    """Rows keyed by span name."""
    table = decoded.tables["otel_traces"]
    assert table.schema.equals(TABLES["otel_traces"], check_metadata=True)
    return {r["SpanName"]: r for r in table.to_pylist()}


def decode(req: ExportTraceServiceRequest) -> Decoded:
    return decode_traces(req.SerializeToString(), "protobuf")


def test_parent_and_child_spans() -> None:
    """Ids, parent id, kind, scope, service and duration come from the real spans."""
    ctx = {}

    def work(tracer: Any) -> None:
        with tracer.start_as_current_span("GET /cart", kind=SpanKind.SERVER) as parent:
            ctx["parent"] = parent.get_span_context()
            with tracer.start_as_current_span("db", kind=SpanKind.CLIENT) as child:
                ctx["child"] = child.get_span_context()

    req = sdk_request(work)
    got = rows(decode(req))
    parent, child = got["GET /cart"], got["db"]
    assert parent["TraceId"] == child["TraceId"] == f"{ctx['parent'].trace_id:032x}"
    assert parent["SpanId"] == f"{ctx['parent'].span_id:016x}"
    assert child["SpanId"] == f"{ctx['child'].span_id:016x}"
    assert child["ParentSpanId"] == parent["SpanId"] and parent["ParentSpanId"] == ""
    assert (parent["SpanKind"], child["SpanKind"]) == ("SPAN_KIND_SERVER", "SPAN_KIND_CLIENT")
    assert (parent["ScopeName"], parent["ScopeVersion"], parent["ServiceName"]) == ("api.http", "3.0", "api")
    assert dict(parent["ResourceAttributes"])["region"] == "eu"
    span = req.resource_spans[0].scope_spans[0].spans[1]
    assert parent["Duration"] == span.end_time_unix_nano - span.start_time_unix_nano > 0
    assert parent["Timestamp"].value == span.start_time_unix_nano


def test_status_and_all_kinds() -> None:
    """Every span kind and status code maps to its enum name."""

    def work(tracer: Any) -> None:
        for kind in SpanKind:
            with tracer.start_as_current_span(kind.name, kind=kind) as span:
                if kind is SpanKind.PRODUCER:
                    span.set_status(Status(StatusCode.ERROR, "queue full"))
                elif kind is SpanKind.CONSUMER:
                    span.set_status(Status(StatusCode.OK))

    got = rows(decode(sdk_request(work)))
    assert {name: r["SpanKind"] for name, r in got.items()} == {
        k.name: f"SPAN_KIND_{k.name}" for k in SpanKind
    }
    assert (got["PRODUCER"]["StatusCode"], got["PRODUCER"]["StatusMessage"]) == (
        "STATUS_CODE_ERROR",
        "queue full",
    )
    assert got["CONSUMER"]["StatusCode"] == "STATUS_CODE_OK"
    assert got["SERVER"]["StatusCode"] == "STATUS_CODE_UNSET"


def test_unspecified_kind_and_negative_duration() -> None:
    """Kind 0 is SPAN_KIND_UNSPECIFIED and an end before the start gives Duration 0."""
    req = sdk_request(lambda t: t.start_span("s").end())
    span = req.resource_spans[0].scope_spans[0].spans[0]
    span.kind = 0
    span.end_time_unix_nano = span.start_time_unix_nano - 5
    (row,) = rows(decode(req)).values()
    assert (row["SpanKind"], row["Duration"]) == ("SPAN_KIND_UNSPECIFIED", 0)


def test_attributes_events_and_links() -> None:
    """Span attributes, events (with attributes) and links (with ids and attributes) land as lists."""
    ctx = {}

    def work(tracer: Any) -> None:
        with tracer.start_as_current_span("first") as first:
            ctx["first"] = first.get_span_context()
        link = Link(ctx["first"], {"link.reason": "retry", "n": 2})
        with tracer.start_as_current_span("second", links=[link], attributes={"ok": True, "n": 3}) as span:
            span.add_event("cache.miss", {"key": "k1"}, timestamp=111)
            span.add_event("cache.fill", timestamp=222)

    got = rows(decode(sdk_request(work)))
    second = got["second"]
    assert dict(second["SpanAttributes"]) == {"ok": "true", "n": "3"}
    assert second["Events.Name"] == ["cache.miss", "cache.fill"]
    assert [t.value for t in second["Events.Timestamp"]] == [111, 222]
    assert [dict(a) for a in second["Events.Attributes"]] == [{"key": "k1"}, {}]
    assert second["Links.TraceId"] == [f"{ctx['first'].trace_id:032x}"]
    assert second["Links.SpanId"] == [f"{ctx['first'].span_id:016x}"]
    assert second["Links.TraceState"] == [""]
    assert [dict(a) for a in second["Links.Attributes"]] == [{"link.reason": "retry", "n": "2"}]
    first = got["first"]
    assert first["Events.Name"] == [] and first["Links.TraceId"] == [] and first["SpanAttributes"] == []


def test_bad_ids_reject_only_their_span() -> None:
    """Wrong-length span, parent or link ids refuse just those spans, each under its reason."""

    def work(tracer: Any) -> None:
        for i in range(5):
            with tracer.start_as_current_span(
                f"s{i}", links=[Link(tracer.start_span("l").get_span_context())]
            ):
                pass

    req = sdk_request(work)
    spans = {s.name: s for s in req.resource_spans[0].scope_spans[0].spans}
    spans["s0"].trace_id = b"12345"
    spans["s1"].parent_span_id = b"123"
    spans["s2"].links[0].trace_id = b"\x01" * 15
    spans["s3"].links[0].span_id = b"\x01" * 9
    decoded = decode(req)
    assert decoded.reasons == {"invalid_trace_id": 2, "invalid_span_id": 2}
    assert decoded.rejected == 4 and decoded.accepted == 1
    assert list(rows(decoded)) == ["s4"]
    assert "4 of 5 spans" in decoded.message


def test_garbage_raises_bad_request() -> None:
    """Undecodable bytes raise BadRequest naming ExportTraceServiceRequest."""
    with pytest.raises(BadRequest, match="invalid OTLP/protobuf ExportTraceServiceRequest"):
        decode_traces(b"\xff\xff\xff", "protobuf")


def test_from_message_matches_bytes() -> None:
    """The gRPC entry point that takes a parsed message gives the same table as the bytes one."""
    req = sdk_request(lambda t: t.start_span("s", attributes={"a": "b"}).end())
    a = traces_from_message(req, now_ns=1).tables["otel_traces"]
    b = decode_traces(req.SerializeToString(), "protobuf", now_ns=1).tables["otel_traces"]
    assert a.equals(b)
