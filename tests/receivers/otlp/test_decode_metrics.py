"""Decoding OTLP/protobuf metrics produced by the real OpenTelemetry SDK into the otel_metrics_* tables.
Covers every metric type, exemplars from sampled spans, and refusal of metrics with no data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.metrics import Observation
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.sdk.metrics import Counter, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from ferry.errors import BadRequest
from ferry.receivers.otlp.decode import Decoded, decode_metrics, metrics_from_message
from ferry.schema.tables import TABLES


def sdk_request(record: Callable[[Any], None], **reader: Any) -> ExportMetricsServiceRequest:
    """Run `record(meter)` against a real SDK MeterProvider and return the OTLP request it exports."""
    mr = InMemoryMetricReader(**reader)
    views = [View(instrument_name="exp.*", aggregation=ExponentialBucketHistogramAggregation())]
    provider = MeterProvider(
        resource=Resource.create({"service.name": "meter-svc"}), metric_readers=[mr], views=views
    )
    record(provider.get_meter("app.metrics", "1.4"))
    return encode_metrics(mr.get_metrics_data())


def decode(req: ExportMetricsServiceRequest) -> Decoded:
    decoded = decode_metrics(req.SerializeToString(), "protobuf")
    for name, table in decoded.tables.items():
        assert table.schema.equals(TABLES[name], check_metadata=True), name
        assert table.num_rows > 0
    return decoded


def by_name(decoded: Decoded, table: str) -> dict[str, dict[str, Any]]:
    return {r["MetricName"]: r for r in decoded.tables[table].to_pylist()}


def test_counters_and_gauges() -> None:
    """Counters and up-down counters go to otel_metrics_sum, observable gauges to otel_metrics_gauge."""

    def record(meter: Any) -> None:
        meter.create_counter("requests", unit="1", description="served").add(5, {"route": "/a"})
        meter.create_up_down_counter("inflight").add(-3)
        meter.create_observable_gauge("temp", callbacks=[lambda _o: [Observation(21.5, {"room": "b"})]])
        meter.create_gauge("int.gauge").set(7)

    decoded = decode(sdk_request(record))
    assert set(decoded.tables) == {"otel_metrics_sum", "otel_metrics_gauge"}
    assert (decoded.accepted, decoded.rejected) == (4, 0)
    sums = by_name(decoded, "otel_metrics_sum")
    req = sums["requests"]
    assert (req["Value"], req["IsMonotonic"], req["AggregationTemporality"]) == (5.0, True, 2)
    assert (req["MetricUnit"], req["MetricDescription"], dict(req["Attributes"])) == (
        "1",
        "served",
        {"route": "/a"},
    )
    assert (req["ServiceName"], req["ScopeName"], req["ScopeVersion"]) == ("meter-svc", "app.metrics", "1.4")
    assert req["StartTimeUnix"].value > 0 and req["TimeUnix"] >= req["StartTimeUnix"]
    assert (sums["inflight"]["Value"], sums["inflight"]["IsMonotonic"]) == (-3.0, False)
    gauges = by_name(decoded, "otel_metrics_gauge")
    assert gauges["temp"]["Value"] == 21.5 and dict(gauges["temp"]["Attributes"]) == {"room": "b"}
    assert gauges["int.gauge"]["Value"] == 7.0


def test_delta_temporality_is_kept() -> None:
    """A delta-temporality reader's sums carry AggregationTemporality 1."""

    req = sdk_request(
        lambda m: m.create_counter("c").add(1), preferred_temporality={Counter: AggregationTemporality.DELTA}
    )
    assert by_name(decode(req), "otel_metrics_sum")["c"]["AggregationTemporality"] == 1


def test_histogram_with_exemplars_from_a_sampled_span() -> None:
    """A histogram point keeps counts, bounds, min/max and the exemplar of the span it was recorded in."""
    tracer = TracerProvider().get_tracer("t")
    ctx = {}

    def record(meter: Any) -> None:
        hist = meter.create_histogram("latency", unit="ms")
        with tracer.start_as_current_span("handler") as span:
            ctx["span"] = span.get_span_context()
            hist.record(12.5, {"route": "/x"})
        hist.record(30, {"route": "/x"})

    row = by_name(decode(sdk_request(record)), "otel_metrics_histogram")["latency"]
    assert (row["Count"], row["Sum"], row["Min"], row["Max"]) == (2, 42.5, 12.5, 30.0)
    assert row["ExplicitBounds"][:4] == [0.0, 5.0, 10.0, 25.0]
    assert len(row["BucketCounts"]) == len(row["ExplicitBounds"]) + 1 and sum(row["BucketCounts"]) == 2
    assert row["BucketCounts"][3] == 1 and row["BucketCounts"][4] == 1
    assert row["Exemplars.TraceId"] == [f"{ctx['span'].trace_id:032x}"]
    assert row["Exemplars.SpanId"] == [f"{ctx['span'].span_id:016x}"]
    assert row["Exemplars.Value"] == [12.5]
    assert len(row["Exemplars.TimeUnix"]) == 1 and row["Exemplars.FilteredAttributes"] == [[]]
    assert row["AggregationTemporality"] == 2


def test_sum_exemplar_with_int_value() -> None:
    """An integer counter's exemplar value comes from as_int."""
    tracer = TracerProvider().get_tracer("t")

    def record(meter: Any) -> None:
        with tracer.start_as_current_span("s"):
            meter.create_counter("hits").add(9)

    row = by_name(decode(sdk_request(record)), "otel_metrics_sum")["hits"]
    assert row["Exemplars.Value"] == [9.0] and len(row["Exemplars.TraceId"][0]) == 32


def test_histogram_without_min_max_uses_zero() -> None:
    """Absent optional Sum/Min/Max land as 0."""
    req = sdk_request(lambda m: m.create_histogram("h").record(4))
    point = req.resource_metrics[0].scope_metrics[0].metrics[0].histogram.data_points[0]
    for name in ("min", "max", "sum"):
        point.ClearField(name)
    row = by_name(decode(req), "otel_metrics_histogram")["h"]
    assert (row["Sum"], row["Min"], row["Max"], row["Count"]) == (0.0, 0.0, 0.0, 1)


def test_exponential_histogram() -> None:
    """Exponential histograms keep scale, zero count, offsets and both bucket lists."""

    def record(meter: Any) -> None:
        h = meter.create_histogram("exp.size")
        for v in (0, 1.5, 3.3, 3.4, 1000):
            h.record(v)

    req = sdk_request(record)
    point = req.resource_metrics[0].scope_metrics[0].metrics[0].exponential_histogram.data_points[0]
    # SDK histograms refuse negative values; other senders fill the negative buckets.
    point.negative.offset = 2
    del point.negative.bucket_counts[:]
    point.negative.bucket_counts.extend([1, 0, 2])
    row = by_name(decode(req), "otel_metrics_exponential_histogram")["exp.size"]
    assert (row["Count"], row["ZeroCount"], row["Scale"]) == (5, 1, point.scale)
    assert math.isclose(row["Sum"], 1008.2) and (row["Min"], row["Max"]) == (0.0, 1000.0)
    assert row["PositiveOffset"] == point.positive.offset
    assert row["PositiveBucketCounts"] == list(point.positive.bucket_counts)
    assert sum(row["PositiveBucketCounts"]) == 4
    assert (row["NegativeOffset"], row["NegativeBucketCounts"]) == (2, [1, 0, 2])


def test_exponential_histogram_negative_scale_and_big_counts() -> None:
    """Negative scales and offsets (zigzag) and multi-byte bucket counts survive decoding."""
    req = sdk_request(lambda m: m.create_histogram("exp.x").record(5))
    point = req.resource_metrics[0].scope_metrics[0].metrics[0].exponential_histogram.data_points[0]
    point.scale = -3
    point.positive.offset = -70000
    del point.positive.bucket_counts[:]
    point.positive.bucket_counts.extend([0, 1, 300, 2**40, 2**63 + 5])
    row = by_name(decode(req), "otel_metrics_exponential_histogram")["exp.x"]
    assert (row["Scale"], row["PositiveOffset"]) == (-3, -70000)
    assert row["PositiveBucketCounts"] == [0, 1, 300, 2**40, 2**63 + 5]


def summary_metric() -> Metric:
    """A summary metric (the Python SDK does not produce summaries, other SDKs and Prometheus do)."""
    m = Metric(name="rpc.duration", unit="s")
    p = m.summary.data_points.add(start_time_unix_nano=10, time_unix_nano=20, count=4, sum=2.5, flags=1)
    p.attributes.add(key="method").value.string_value = "Get"
    for q, v in ((0.5, 0.4), (0.99, 1.2)):
        p.quantile_values.add(quantile=q, value=v)
    return m


def test_summary() -> None:
    """Summary points keep count, sum and their quantiles as parallel lists."""
    req = sdk_request(lambda m: m.create_counter("c").add(1))
    req.resource_metrics[0].scope_metrics[0].metrics.append(summary_metric())
    decoded = decode(req)
    row = by_name(decoded, "otel_metrics_summary")["rpc.duration"]
    assert (row["Count"], row["Sum"], row["Flags"]) == (4, 2.5, 1)
    assert row["ValueAtQuantiles.Quantile"] == [0.5, 0.99]
    assert row["ValueAtQuantiles.Value"] == [0.4, 1.2]
    assert dict(row["Attributes"]) == {"method": "Get"}
    assert (row["StartTimeUnix"].value, row["TimeUnix"].value) == (10, 20)
    assert decoded.accepted == 2


def test_metric_without_data_is_refused_and_the_rest_lands() -> None:
    """A metric with no data set counts as one empty_metric rejection; other metrics still land."""
    req = sdk_request(lambda m: [m.create_counter("a").add(1), m.create_counter("b").add(2)])
    req.resource_metrics[0].scope_metrics[0].metrics.add(name="nothing")
    decoded = decode(req)
    assert (decoded.accepted, decoded.rejected, decoded.reasons) == (2, 1, {"empty_metric": 1})
    assert set(by_name(decoded, "otel_metrics_sum")) == {"a", "b"}
    assert "empty_metric" in decoded.message


def test_bad_exemplar_id_refuses_its_point() -> None:
    """An exemplar with a wrong-length trace id refuses its data point only."""
    tracer = TracerProvider().get_tracer("t")

    def record(meter: Any) -> None:
        c = meter.create_counter("c")
        with tracer.start_as_current_span("s"):
            c.add(1, {"k": "bad"})
            c.add(1, {"k": "good"})

    req = sdk_request(record)
    points = req.resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points
    bad = next(p for p in points if p.attributes[0].value.string_value == "bad")
    bad.exemplars[0].trace_id = b"\x01\x02"
    decoded = decode(req)
    assert decoded.reasons == {"invalid_trace_id": 1}
    rows = decoded.tables["otel_metrics_sum"].to_pylist()
    assert [dict(r["Attributes"]) for r in rows] == [{"k": "good"}]


def test_points_keep_their_own_resource() -> None:
    """Points of metrics under different resources keep each resource's service name."""
    a = sdk_request(lambda m: m.create_counter("a").add(1))
    b = sdk_request(lambda m: m.create_counter("b").add(1))
    for attr in b.resource_metrics[0].resource.attributes:
        if attr.key == "service.name":
            attr.value.string_value = "other"
    a.resource_metrics.extend(b.resource_metrics)
    sums = by_name(decode(a), "otel_metrics_sum")
    assert (sums["a"]["ServiceName"], sums["b"]["ServiceName"]) == ("meter-svc", "other")


def test_garbage_raises_bad_request() -> None:
    """Undecodable bytes raise BadRequest naming ExportMetricsServiceRequest."""
    with pytest.raises(BadRequest, match="invalid OTLP/protobuf ExportMetricsServiceRequest"):
        decode_metrics(b"\x0a\x05\x12\x03abc", "protobuf")


def test_from_message_matches_bytes() -> None:
    """The gRPC entry point that takes a parsed message gives the same tables as the bytes one."""
    req = sdk_request(lambda m: m.create_histogram("h").record(3))
    a = metrics_from_message(req, now_ns=1).tables
    b = decode_metrics(req.SerializeToString(), "protobuf", now_ns=1).tables
    assert a.keys() == b.keys() and all(a[k].equals(b[k]) for k in a)
