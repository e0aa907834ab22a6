"""Decode OTLP export requests (logs, traces, metrics; protobuf or JSON) into Arrow tables for the store.
Bad records are refused and counted; a payload that cannot be decoded at all raises BadRequest.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from ferry.errors import BadRequest
from ferry.receivers.otlp import _json, _logs, _metrics, _traces
from ferry.receivers.otlp._attributes import Part, column
from ferry.schema.tables import TABLES, TS

Format = Literal["protobuf", "json"]
SOURCE = "otlp"

_EXPLAIN = {
    "invalid_trace_id": "trace ids must be 16 bytes (32 hex characters) or empty",
    "invalid_span_id": "span ids must be 8 bytes (16 hex characters) or empty",
    "empty_metric": "a metric must carry gauge, sum, histogram, exponential_histogram or summary data",
}


@dataclass
class Decoded:
    """What one export request decoded to, and what it refused."""

    tables: dict[str, pa.Table]  # store table name -> table with exactly that TABLES schema; no empty tables
    accepted: int  # records (log records / spans / metric data points) decoded
    rejected: int  # records refused
    reasons: dict[str, int]  # bounded reason label -> count
    message: str  # summary of rejections for OTLP partial_success.error_message ("" if none)


# ---- the shadow schema ----
# The same wire format as OTLP, except that every KeyValue and AnyValue field is declared `bytes`.
# Parsing then makes one bytes object per attribute instead of three message wrappers, and
# _attributes splits those bytes for a whole request at once: most of the decode cost is gone.

_RAW = {".opentelemetry.proto.common.v1.KeyValue", ".opentelemetry.proto.common.v1.AnyValue"}


def _rawify(msg: descriptor_pb2.DescriptorProto) -> None:
    for nested in msg.nested_type:
        _rawify(nested)
    for f in msg.field:
        if f.type_name in _RAW:
            f.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
            f.ClearField("type_name")


def _shadow_pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    for mod in (
        common_pb2,
        resource_pb2,
        logs_pb2,
        trace_pb2,
        metrics_pb2,
        logs_service_pb2,
        trace_service_pb2,
        metrics_service_pb2,
    ):
        proto = descriptor_pb2.FileDescriptorProto()
        mod.DESCRIPTOR.CopyToProto(proto)
        proto.ClearField("service")
        for msg in proto.message_type:
            _rawify(msg)
        pool.Add(proto)
    return pool


_POOL = _shadow_pool()


def _shadow(real: type[Message]) -> type[Message]:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(real.DESCRIPTOR.full_name))


_SHADOW_LOGS = _shadow(ExportLogsServiceRequest)
_SHADOW_TRACES = _shadow(ExportTraceServiceRequest)
_SHADOW_METRICS = _shadow(ExportMetricsServiceRequest)


# ---- entry points ----


def decode_logs(
    payload: bytes, fmt: Format, *, tenant: str = "default", now_ns: int | None = None
) -> Decoded:
    """Decode an OTLP ExportLogsServiceRequest body into otel_logs rows."""
    now = time.time_ns() if now_ns is None else now_ns
    return _run(
        "ExportLogsServiceRequest",
        fmt,
        lambda: _logs.build(_logs_rows(payload, fmt), now),
        "log records",
        tenant,
        now,
    )


def decode_traces(
    payload: bytes, fmt: Format, *, tenant: str = "default", now_ns: int | None = None
) -> Decoded:
    """Decode an OTLP ExportTraceServiceRequest body into otel_traces rows."""
    now = time.time_ns() if now_ns is None else now_ns
    return _run(
        "ExportTraceServiceRequest",
        fmt,
        lambda: _traces.build(_traces_rows(payload, fmt)),
        "spans",
        tenant,
        now,
    )


def decode_metrics(
    payload: bytes, fmt: Format, *, tenant: str = "default", now_ns: int | None = None
) -> Decoded:
    """Decode an OTLP ExportMetricsServiceRequest body into otel_metrics_* rows."""
    now = time.time_ns() if now_ns is None else now_ns
    return _run(
        "ExportMetricsServiceRequest",
        fmt,
        lambda: _metrics.build(_metrics_rows(payload, fmt)),
        "metric data points",
        tenant,
        now,
    )


def logs_from_message(
    req: ExportLogsServiceRequest, *, tenant: str = "default", now_ns: int | None = None
) -> Decoded:
    """Decode an already parsed request (gRPC); passing raw bytes to decode_logs is cheaper."""
    return decode_logs(req.SerializeToString(), "protobuf", tenant=tenant, now_ns=now_ns)


def traces_from_message(
    req: ExportTraceServiceRequest, *, tenant: str = "default", now_ns: int | None = None
) -> Decoded:
    """Decode an already parsed request (gRPC); passing raw bytes to decode_traces is cheaper."""
    return decode_traces(req.SerializeToString(), "protobuf", tenant=tenant, now_ns=now_ns)


def metrics_from_message(
    req: ExportMetricsServiceRequest, *, tenant: str = "default", now_ns: int | None = None
) -> Decoded:
    """Decode an already parsed request (gRPC); passing raw bytes to decode_metrics is cheaper."""
    return decode_metrics(req.SerializeToString(), "protobuf", tenant=tenant, now_ns=now_ns)


# ---- plumbing ----


def _parse(cls: type[Message], payload: bytes) -> Any:
    try:
        return cls.FromString(payload)
    except DecodeError as e:
        raise BadRequest(str(e) or "malformed protobuf") from None


def _logs_rows(payload: bytes, fmt: Format) -> _logs.LogRows:
    return _json.logs(payload) if fmt == "json" else _logs.from_proto(_parse(_SHADOW_LOGS, payload))


def _traces_rows(payload: bytes, fmt: Format) -> _traces.SpanRows:
    return _json.traces(payload) if fmt == "json" else _traces.from_proto(_parse(_SHADOW_TRACES, payload))


def _metrics_rows(payload: bytes, fmt: Format) -> _metrics.MetricRows:
    if fmt == "json":
        return _json.metrics(payload)
    return _metrics.from_proto(_parse(_SHADOW_METRICS, payload))


def _run(
    request: str, fmt: Format, parts: Callable[[], Part | list[Part]], unit: str, tenant: str, now: int
) -> Decoded:
    if fmt not in ("protobuf", "json"):
        raise ValueError(f"unknown OTLP format {fmt!r}")
    wire = "OTLP/JSON" if fmt == "json" else "OTLP/protobuf"
    try:
        made = parts()
        return _finish(made if isinstance(made, list) else [made], unit, tenant, now)
    except BadRequest as e:
        raise BadRequest(f"invalid {wire} {request}: {e}") from None


def _assemble(part: Part, tenant: str, now: int) -> pa.Table:
    schema = TABLES[part.table]
    n = part.rows
    ferry = {
        "Tenant": pa.repeat(pa.scalar(tenant, pa.string()), n),
        "Source": pa.repeat(pa.scalar(SOURCE, pa.string()), n),
        "IngestTime": pa.repeat(pa.scalar(now, TS), n),
        "BatchId": pa.repeat(pa.scalar("", pa.string()), n),
    }
    arrays = []
    for f in schema:
        if f.name in ferry:
            arrays.append(ferry[f.name])
            continue
        try:
            arrays.append(column(part.columns[f.name], f.type))
        except (pa.ArrowException, OverflowError, TypeError, ValueError) as e:
            raise BadRequest(f"bad value for {f.name}: {e}") from None
    return pa.Table.from_arrays(arrays, schema=schema)


def _finish(parts: list[Part], unit: str, tenant: str, now: int) -> Decoded:
    pieces: dict[str, list[pa.Table]] = {}
    reasons: Counter[str] = Counter()
    accepted = rejected = 0
    for part in parts:
        for reason, count in part.refused.items():
            reasons[reason] += count
            rejected += count
        if part.rows == 0:
            continue
        refused = np.zeros(part.rows, dtype=bool)
        for reason, mask in part.bad.items():
            # A record is counted once, under the first reason that applies to it.
            count = int((mask & ~refused).sum())
            if count:
                reasons[reason] += count
            refused |= mask
        n_bad = int(refused.sum())
        rejected += n_bad
        accepted += part.rows - n_bad
        if n_bad == part.rows:
            continue
        table = _assemble(part, tenant, now)
        if n_bad:
            table = table.filter(pa.array(~refused))
        pieces.setdefault(part.table, []).append(table)
    tables = {name: ts[0] if len(ts) == 1 else pa.concat_tables(ts) for name, ts in pieces.items()}
    message = ""
    if rejected:
        detail = "; ".join(f"{count} {reason}: {_EXPLAIN.get(reason, reason)}" for reason, count in reasons.items())
        message = f"rejected {rejected} of {accepted + rejected} {unit} ({detail})"
    return Decoded(tables, accepted, rejected, dict(reasons), message)
