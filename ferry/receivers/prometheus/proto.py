"""The remote_write protobuf messages (prometheus.WriteRequest and what it holds), built at import time.
No generated code: a FileDescriptorProto made here, in a private pool, then message classes from it.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

_F = descriptor_pb2.FieldDescriptorProto
_OPT, _REP = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
Field = tuple[str, int, int, int, str]  # name, number, label, type, message/enum type name


def message(proto: descriptor_pb2.FileDescriptorProto, name: str, fields: list[Field],
            oneofs: dict[str, tuple[str, ...]] | None = None) -> descriptor_pb2.DescriptorProto:
    """Add message `name` with `fields` to `proto`; `oneofs` groups some fields (oneof name -> field names)."""
    msg = proto.message_type.add(name=name)
    groups = list(oneofs or {})
    for g in groups:
        msg.oneof_decl.add(name=g)
    for fname, number, label, typ, type_name in fields:
        f = msg.field.add(name=fname, number=number, label=label, type=typ)
        if type_name:
            f.type_name = type_name
        for i, g in enumerate(groups):
            if fname in (oneofs or {})[g]:
                f.oneof_index = i
    return msg


def _file() -> descriptor_pb2.FileDescriptorProto:
    p = descriptor_pb2.FileDescriptorProto(name="ferry/prometheus_remote.proto", package="prometheus", syntax="proto3")
    mm = message(p, "MetricMetadata", [
        ("type", 1, _OPT, _F.TYPE_ENUM, ".prometheus.MetricMetadata.MetricType"),
        ("metric_family_name", 2, _OPT, _F.TYPE_STRING, ""),
        ("help", 4, _OPT, _F.TYPE_STRING, ""),
        ("unit", 5, _OPT, _F.TYPE_STRING, ""),
    ])
    kinds = mm.enum_type.add(name="MetricType")
    for i, k in enumerate(METRIC_TYPES):
        kinds.value.add(name=k.upper(), number=i)
    message(p, "WriteRequest", [
        ("timeseries", 1, _REP, _F.TYPE_MESSAGE, ".prometheus.TimeSeries"),
        ("metadata", 3, _REP, _F.TYPE_MESSAGE, ".prometheus.MetricMetadata"),
    ])
    message(p, "Sample", [("value", 1, _OPT, _F.TYPE_DOUBLE, ""), ("timestamp", 2, _OPT, _F.TYPE_INT64, "")])
    message(p, "Exemplar", [
        ("labels", 1, _REP, _F.TYPE_MESSAGE, ".prometheus.Label"),
        ("value", 2, _OPT, _F.TYPE_DOUBLE, ""),
        ("timestamp", 3, _OPT, _F.TYPE_INT64, ""),
    ])
    message(p, "BucketSpan", [("offset", 1, _OPT, _F.TYPE_SINT32, ""), ("length", 2, _OPT, _F.TYPE_UINT32, "")])
    h = message(p, "Histogram", [
        ("count_int", 1, _OPT, _F.TYPE_UINT64, ""),
        ("count_float", 2, _OPT, _F.TYPE_DOUBLE, ""),
        ("sum", 3, _OPT, _F.TYPE_DOUBLE, ""),
        ("schema", 4, _OPT, _F.TYPE_SINT32, ""),
        ("zero_threshold", 5, _OPT, _F.TYPE_DOUBLE, ""),
        ("zero_count_int", 6, _OPT, _F.TYPE_UINT64, ""),
        ("zero_count_float", 7, _OPT, _F.TYPE_DOUBLE, ""),
        ("negative_spans", 8, _REP, _F.TYPE_MESSAGE, ".prometheus.BucketSpan"),
        ("negative_deltas", 9, _REP, _F.TYPE_SINT64, ""),
        ("negative_counts", 10, _REP, _F.TYPE_DOUBLE, ""),
        ("positive_spans", 11, _REP, _F.TYPE_MESSAGE, ".prometheus.BucketSpan"),
        ("positive_deltas", 12, _REP, _F.TYPE_SINT64, ""),
        ("positive_counts", 13, _REP, _F.TYPE_DOUBLE, ""),
        ("reset_hint", 14, _OPT, _F.TYPE_ENUM, ".prometheus.Histogram.ResetHint"),
        ("timestamp", 15, _OPT, _F.TYPE_INT64, ""),
    ], oneofs={"count": ("count_int", "count_float"), "zero_count": ("zero_count_int", "zero_count_float")})
    hint = h.enum_type.add(name="ResetHint")
    for i, k in enumerate(("UNKNOWN", "YES", "NO", "GAUGE")):
        hint.value.add(name=k, number=i)
    message(p, "TimeSeries", [
        ("labels", 1, _REP, _F.TYPE_MESSAGE, ".prometheus.Label"),
        ("samples", 2, _REP, _F.TYPE_MESSAGE, ".prometheus.Sample"),
        ("exemplars", 3, _REP, _F.TYPE_MESSAGE, ".prometheus.Exemplar"),
        ("histograms", 4, _REP, _F.TYPE_MESSAGE, ".prometheus.Histogram"),
    ])
    message(p, "Label", [("name", 1, _OPT, _F.TYPE_STRING, ""), ("value", 2, _OPT, _F.TYPE_STRING, "")])
    # WriteRequest's wire format with its series and metadata left as bytes: upb splits a request into
    # them at C speed, and the decoder scans them in bulk (ferry's decoder, not this module, reads them).
    message(p, "RawWriteRequest", [("timeseries", 1, _REP, _F.TYPE_BYTES, ""), ("metadata", 3, _REP, _F.TYPE_BYTES, "")])
    return p


# MetricMetadata.MetricType by number, lower-case as prom_metadata stores it.
METRIC_TYPES = ("unknown", "counter", "gauge", "histogram", "gaugehistogram", "summary", "info", "stateset")

_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())


def _cls(name: str) -> type[Message]:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"prometheus.{name}"))


WriteRequest = _cls("WriteRequest")
TimeSeries = _cls("TimeSeries")
Label = _cls("Label")
Sample = _cls("Sample")
Exemplar = _cls("Exemplar")
Histogram = _cls("Histogram")
MetricMetadata = _cls("MetricMetadata")
RawWriteRequest = _cls("RawWriteRequest")
