"""OTLP metrics to otel_metrics_* rows: one row per data point, in the table of its metric's type.
A metric that carries no data is refused (empty_metric); an exemplar id of the wrong length refuses its point.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ferry.receivers.otlp._attributes import Nested, Part, rollup

if TYPE_CHECKING:
    from ferry.receivers.otlp._logs import Fields

# Metric.data field number -> (store table, data message, data point message).
_KINDS = {
    5: ("otel_metrics_gauge", "Gauge", "NumberDataPoint"),
    7: ("otel_metrics_sum", "Sum", "NumberDataPoint"),
    9: ("otel_metrics_histogram", "Histogram", "HistogramDataPoint"),
    10: ("otel_metrics_exponential_histogram", "ExponentialHistogram", "ExponentialHistogramDataPoint"),
    11: ("otel_metrics_summary", "Summary", "SummaryDataPoint"),
}
# Data point field numbers: attributes, start time, time, exemplars, flags (-1: the type has none).
_POINT = {
    "NumberDataPoint": (7, 2, 3, 5, 8),
    "HistogramDataPoint": (9, 2, 3, 8, 10),
    "ExponentialHistogramDataPoint": (1, 2, 3, 11, 10),
    "SummaryDataPoint": (7, 2, 3, -1, 8),
}


def _number(f: Fields, as_double: int, as_int: int) -> np.ndarray:
    """The value oneof of a NumberDataPoint or Exemplar, as float64."""
    return np.where(f.has(as_int), f.fixed(as_int, "<i8").astype(np.float64), f.fixed(as_double, "<f8"))


def _exemplars(points: Fields, num: int) -> tuple[dict[str, Nested], np.ndarray, np.ndarray]:
    counts, ex = points.messages(num, "Exemplar")
    span_id, bad_span = ex.id(4, 8)
    trace_id, bad_trace = ex.id(5, 16)
    cols = {
        "Exemplars.FilteredAttributes": Nested(counts, ex.attributes(7)),
        "Exemplars.TimeUnix": Nested(counts, ex.fixed(2, "<u8")),
        "Exemplars.Value": Nested(counts, _number(ex, 3, 6)),
        "Exemplars.SpanId": Nested(counts, span_id),
        "Exemplars.TraceId": Nested(counts, trace_id),
    }
    return cols, rollup(counts, bad_trace), rollup(counts, bad_span)


def _histogram(p: Fields) -> dict[str, Any]:
    counts, buckets = p.numbers(6, "<u8")
    n_bounds, bounds = p.numbers(7, "<f8")
    return {
        "Count": p.fixed(4, "<u8"),
        "Sum": p.fixed(5, "<f8"),
        "BucketCounts": Nested(counts, buckets),
        "ExplicitBounds": Nested(n_bounds, bounds),
        "Min": p.fixed(11, "<f8"),
        "Max": p.fixed(12, "<f8"),
    }


def _exponential(p: Fields) -> dict[str, Any]:
    cols: dict[str, Any] = {
        "Count": p.fixed(4, "<u8"),
        "Sum": p.fixed(5, "<f8"),
        "Scale": p.zigzag(6).astype(np.int32),
        "ZeroCount": p.fixed(7, "<u8"),
        "Min": p.fixed(12, "<f8"),
        "Max": p.fixed(13, "<f8"),
    }
    for num, side in ((8, "Positive"), (9, "Negative")):
        buckets = p.message(num, "ExponentialHistogramDataPoint.Buckets")
        cols[f"{side}Offset"] = buckets.zigzag(1).astype(np.int32)
        cols[f"{side}BucketCounts"] = Nested(*buckets.varints(2))
    return cols


def _summary(p: Fields) -> dict[str, Any]:
    counts, quantiles = p.messages(6, "SummaryDataPoint.ValueAtQuantile")
    return {
        "Count": p.fixed(4, "<u8"),
        "Sum": p.fixed(5, "<f8"),
        "ValueAtQuantiles.Quantile": Nested(counts, quantiles.fixed(1, "<f8")),
        "ValueAtQuantiles.Value": Nested(counts, quantiles.fixed(2, "<f8")),
    }


def build(f: Fields, group: np.ndarray) -> list[Part]:
    """One part per metric type present among the scanned Metrics."""
    has_data = np.zeros(f.n, dtype=bool)
    parts = []
    for num, (table, data_type, point_type) in _KINDS.items():
        present = f.has(num)
        has_data |= present
        if not present.any():
            continue
        data = f.message(num, data_type)
        per_metric, points = data.messages(1, point_type)
        # Metric-level values repeat on each of the metric's points.
        owner = pa.array(np.repeat(np.arange(f.n), per_metric))
        attrs_num, start_num, time_num, exemplars_num, flags_num = _POINT[point_type]
        cols: dict[str, Any] = {
            "MetricName": f.string(1).take(owner),
            "MetricDescription": f.string(2).take(owner),
            "MetricUnit": f.string(3).take(owner),
            "Attributes": points.attributes(attrs_num),
            "StartTimeUnix": points.fixed(start_num, "<u8"),
            "TimeUnix": points.fixed(time_num, "<u8"),
            "Flags": points.varint(flags_num).astype(np.uint32),
            "AggregationTemporality": pa.array(data.varint(2).astype(np.int32)).take(owner),
            "IsMonotonic": pa.array(data.varint(3) != 0).take(owner),
        }
        bad: dict[str, np.ndarray] = {}
        if exemplars_num > 0:
            ex_cols, bad["invalid_trace_id"], bad["invalid_span_id"] = _exemplars(points, exemplars_num)
            cols.update(ex_cols)
        if point_type == "NumberDataPoint":
            cols["Value"] = _number(points, 4, 6)
        elif point_type == "HistogramDataPoint":
            cols.update(_histogram(points))
        elif point_type == "ExponentialHistogramDataPoint":
            cols.update(_exponential(points))
        else:
            cols.update(_summary(points))
        point_group = group[np.repeat(np.arange(f.n), per_metric)]
        parts.append(Part(table, point_group, cols, bad, spans=(points.blob.start, points.blob.end)))
    empty = int((~has_data).sum())
    if empty:
        parts.append(Part("otel_metrics_gauge", np.zeros(0, np.int64), {}, refused={"empty_metric": empty}))
    return parts
