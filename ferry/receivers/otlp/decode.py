"""Decode OTLP export requests (logs, traces, metrics; protobuf or JSON) into Arrow tables for the store.
Bad records are refused and counted; a payload that cannot be decoded at all raises BadRequest.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

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
from ferry.receivers.otlp._attributes import MAX_DEPTH, Attrs, Blob, InvalidValue, Nested, Part, pairs
from ferry.receivers.otlp._logs import Fields
from ferry.schema.tables import ATTRS, TABLES, TS

Format = Literal["protobuf", "json"]
SOURCE = "otlp"

_EXPLAIN = {
    "invalid_trace_id": "trace ids must be 16 bytes (32 hex characters) or empty",
    "invalid_span_id": "span ids must be 8 bytes (16 hex characters) or empty",
    "empty_metric": "a metric must carry gauge, sum, histogram, exponential_histogram or summary data",
    "invalid_value": f"an attribute or body value is malformed or nests arrays/kvlists over {MAX_DEPTH} deep",
}


@dataclass
class Decoded:
    """What one export request decoded to, and what it refused."""

    # store table name -> table with exactly that TABLES schema, or a raw target a parser decodes
    # (remote_write requests); no empty tables
    tables: dict[str, pa.Table]
    accepted: int  # records (log records / spans / metric data points) decoded
    rejected: int  # records refused
    reasons: dict[str, int]  # bounded reason label -> count
    message: str  # summary of rejections for OTLP partial_success.error_message ("" if none)


# ---- the shadow schema ----
# OTLP's wire format with the records (log records, spans, metrics) and every KeyValue/AnyValue
# declared `bytes`. upb then only finds where each record is, and _logs.Fields scans the records of
# a request together: numpy passes instead of one Python object per field, which is what made
# message-by-message decoding slow. Resources and scopes are few and are read from the message.
# Its string fields are bytes too: protobuf's parser refuses a whole message for one invalid UTF-8
# byte in any string; ferry replaces such bytes (U+FFFD), in records and scopes alike, as the JSON side does.

_RAW_TYPES = {".opentelemetry.proto.common.v1.KeyValue", ".opentelemetry.proto.common.v1.AnyValue"}
_RAW_FIELDS = {
    "opentelemetry.proto.logs.v1.ScopeLogs.log_records",
    "opentelemetry.proto.trace.v1.ScopeSpans.spans",
    "opentelemetry.proto.metrics.v1.ScopeMetrics.metrics",
}


def _rawify(msg: descriptor_pb2.DescriptorProto, scope: str) -> None:
    name = f"{scope}.{msg.name}"
    for nested in msg.nested_type:
        _rawify(nested, name)
    for f in msg.field:
        if f.type_name in _RAW_TYPES or f"{name}.{f.name}" in _RAW_FIELDS:
            f.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
            f.ClearField("type_name")
        elif f.type == descriptor_pb2.FieldDescriptorProto.TYPE_STRING:
            f.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES


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
            _rawify(msg, proto.package)
        pool.Add(proto)
    return pool


_POOL = _shadow_pool()


def _shadow(real: type[Message]) -> type[Message]:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(real.DESCRIPTOR.full_name))


@dataclass(frozen=True)
class _Signal:
    request: type[Message]  # the real OTLP request type
    shadow: type[Message]
    path: tuple[str, str, str]  # resource -> scope -> record field names
    record: str  # record message name, for errors
    unit: str  # what accepted/rejected count


_LOGS = _Signal(
    ExportLogsServiceRequest,
    _shadow(ExportLogsServiceRequest),
    ("resource_logs", "scope_logs", "log_records"),
    "LogRecord",
    "log records",
)
_TRACES = _Signal(
    ExportTraceServiceRequest,
    _shadow(ExportTraceServiceRequest),
    ("resource_spans", "scope_spans", "spans"),
    "Span",
    "spans",
)
_METRICS = _Signal(
    ExportMetricsServiceRequest,
    _shadow(ExportMetricsServiceRequest),
    ("resource_metrics", "scope_metrics", "metrics"),
    "Metric",
    "metric data points",
)


# ---- entry points ----


def decode_logs(
    payload: bytes, fmt: Format, *, tenant: str = "default", now_ns: int | None = None
) -> Decoded:
    """Decode an OTLP ExportLogsServiceRequest body into otel_logs rows."""
    now = time.time_ns() if now_ns is None else now_ns
    return _decode(_LOGS, payload, fmt, tenant, now, lambda f, group: [_logs.build(f, group, now)])


def decode_traces(
    payload: bytes, fmt: Format, *, tenant: str = "default", now_ns: int | None = None
) -> Decoded:
    """Decode an OTLP ExportTraceServiceRequest body into otel_traces rows."""
    now = time.time_ns() if now_ns is None else now_ns
    return _decode(_TRACES, payload, fmt, tenant, now, lambda f, group: [_traces.build(f, group)])


def decode_metrics(
    payload: bytes, fmt: Format, *, tenant: str = "default", now_ns: int | None = None
) -> Decoded:
    """Decode an OTLP ExportMetricsServiceRequest body into otel_metrics_* rows."""
    now = time.time_ns() if now_ns is None else now_ns
    return _decode(_METRICS, payload, fmt, tenant, now, _metrics.build)


def logs_from_message(
    req: ExportLogsServiceRequest, *, tenant: str = "default", now_ns: int | None = None
) -> Decoded:
    """Decode an already parsed request (gRPC); handing raw bytes to decode_logs saves a round trip."""
    return decode_logs(req.SerializeToString(), "protobuf", tenant=tenant, now_ns=now_ns)


def traces_from_message(
    req: ExportTraceServiceRequest, *, tenant: str = "default", now_ns: int | None = None
) -> Decoded:
    """Decode an already parsed request (gRPC); handing raw bytes to decode_traces saves a round trip."""
    return decode_traces(req.SerializeToString(), "protobuf", tenant=tenant, now_ns=now_ns)


def metrics_from_message(
    req: ExportMetricsServiceRequest, *, tenant: str = "default", now_ns: int | None = None
) -> Decoded:
    """Decode an already parsed request (gRPC); handing raw bytes to decode_metrics saves a round trip."""
    return decode_metrics(req.SerializeToString(), "protobuf", tenant=tenant, now_ns=now_ns)


# ---- plumbing ----


class _Group(NamedTuple):
    res_attrs: list[tuple[str, str]]
    res_schema: str
    scope_name: str
    scope_version: str
    scope_attrs: list[tuple[str, str]]
    scope_dropped: int
    scope_schema: str


def _decode(
    signal: _Signal,
    payload: bytes,
    fmt: Format,
    tenant: str,
    now: int,
    build: Callable[[Fields, np.ndarray], list[Part]],
) -> Decoded:
    if fmt not in ("protobuf", "json"):
        raise ValueError(f"unknown OTLP format {fmt!r}")
    wire = "OTLP/JSON" if fmt == "json" else "OTLP/protobuf"
    try:
        if fmt == "json":
            payload = _json.to_protobuf(payload, signal.request.DESCRIPTOR)
        try:
            req = signal.shadow.FromString(payload)
        except DecodeError as e:
            raise BadRequest(str(e) or "malformed protobuf") from None
        groups, group, records, invalid_groups = _walk(req, signal.path)
        root = Blob.of(records)
        parts = build(Fields(root, signal.record), group)
        _refuse_invalid(parts, root.invalid_positions(), invalid_groups)
        return _finish(parts, groups, signal.unit, tenant, now)
    except BadRequest as e:
        raise BadRequest(f"invalid {wire} {signal.request.DESCRIPTOR.name}: {e}") from None


def _str(b: bytes) -> str:
    return b.decode("utf-8", "replace")


def _pairs_or_none(raws: Any) -> list[tuple[str, str]] | None:
    try:
        return pairs(raws)
    except InvalidValue:
        return None


def _walk(req: Any, path: tuple[str, str, str]) -> tuple[list[_Group], np.ndarray, list[bytes], np.ndarray]:
    """Resource/scope groups, each record's group, the records' raw bytes, and a mask of the groups
    whose resource or scope attributes cannot be read (their records are refused, not the request)."""
    outer, inner, items = path
    groups: list[_Group] = []
    invalid: list[bool] = []
    per_group: list[int] = []
    records: list[bytes] = []
    for r in getattr(req, outer):
        res_attrs = _pairs_or_none(r.resource.attributes)
        for s in getattr(r, inner):
            sc = s.scope
            scope_attrs = _pairs_or_none(sc.attributes)
            groups.append(
                _Group(
                    res_attrs or [], _str(r.schema_url), _str(sc.name), _str(sc.version), scope_attrs or [],
                    sc.dropped_attributes_count, _str(s.schema_url),
                )
            )
            invalid.append(res_attrs is None or scope_attrs is None)
            raws = getattr(s, items)
            per_group.append(len(raws))
            records.extend(raws)
    return groups, np.repeat(np.arange(len(groups)), per_group), records, np.array(invalid, dtype=bool)


def _refuse_invalid(parts: list[Part], positions: np.ndarray, invalid_groups: np.ndarray) -> None:
    """Mark the rows that hold a value that could not be read, or belong to such a group, invalid_value."""
    if not len(positions) and not invalid_groups.any():
        return
    for part in parts:
        bad = invalid_groups[part.group] if len(part.group) else np.zeros(0, dtype=bool)
        if len(positions) and part.spans is not None:
            start, end = part.spans
            order = np.argsort(start, kind="stable")
            k = np.searchsorted(start[order], positions, side="right") - 1
            hit = k >= 0
            rows = order[k[hit]]
            inside = positions[hit] < end[rows]
            bad = bad.copy()
            bad[rows[inside]] = True
        if bad.any():
            part.bad["invalid_value"] = bad


def _context(groups: list[_Group], group: np.ndarray) -> dict[str, pa.Array]:
    """Resource and scope columns for rows whose groups are `group`."""
    service = [next((v for k, v in g.res_attrs if k == "service.name"), "") for g in groups]
    small = {
        "ResourceAttributes": pa.array([g.res_attrs for g in groups], ATTRS),
        "ResourceSchemaUrl": pa.array([g.res_schema for g in groups], pa.string()),
        "ServiceName": pa.array(service, pa.string()),
        "ScopeName": pa.array([g.scope_name for g in groups], pa.string()),
        "ScopeVersion": pa.array([g.scope_version for g in groups], pa.string()),
        "ScopeAttributes": pa.array([g.scope_attrs for g in groups], ATTRS),
        "ScopeDroppedAttrCount": pa.array([g.scope_dropped for g in groups], pa.uint32()),
        "ScopeSchemaUrl": pa.array([g.scope_schema for g in groups], pa.string()),
    }
    idx = pa.array(group, pa.int64())
    return {name: arr.take(idx) for name, arr in small.items()}


def _column(value: Any, typ: pa.DataType) -> pa.Array:
    """One Arrow column of type `typ` from an array, numpy array, Attrs or Nested value."""
    if isinstance(value, pa.Array):
        return value if value.type == typ else value.cast(typ)
    if isinstance(value, Attrs):
        return value.to_map()
    if isinstance(value, Nested):
        offsets = np.zeros(len(value.counts) + 1, dtype=np.int32)
        np.cumsum(value.counts, out=offsets[1:])
        return pa.ListArray.from_arrays(pa.array(offsets), _column(value.flat, typ.value_type), type=typ)
    arr = np.asarray(value)
    if pa.types.is_timestamp(typ):
        # fixed64 nanos past year 2262 do not fit the store's int64; they saturate.
        if arr.dtype == np.uint64:
            arr = np.minimum(arr, np.uint64(2**63 - 1))
        return pa.array(arr.astype(np.int64)).cast(typ)
    return pa.array(arr, typ)


def _assemble(part: Part, groups: list[_Group], tenant: str, now: int) -> pa.Table:
    n = len(part.group)
    columns = {**_context(groups, part.group), **part.columns}
    columns["Tenant"] = pa.repeat(pa.scalar(tenant, pa.string()), n)
    columns["Source"] = pa.repeat(pa.scalar(SOURCE, pa.string()), n)
    columns["IngestTime"] = pa.repeat(pa.scalar(now, TS), n)
    columns["BatchId"] = pa.repeat(pa.scalar("", pa.string()), n)
    schema = TABLES[part.table]
    return pa.Table.from_arrays([_column(columns[f.name], f.type) for f in schema], schema=schema)


def _finish(parts: list[Part], groups: list[_Group], unit: str, tenant: str, now: int) -> Decoded:
    pieces: dict[str, list[pa.Table]] = {}
    reasons: Counter[str] = Counter()
    accepted = rejected = 0
    for part in parts:
        for reason, count in part.refused.items():
            reasons[reason] += count
            rejected += count
        rows = len(part.group)
        refused = np.zeros(rows, dtype=bool)
        for reason, mask in part.bad.items():
            # A record is counted once, under the first reason that applies to it.
            count = int((mask & ~refused).sum())
            if count:
                reasons[reason] += count
            refused |= mask
        n_bad = int(refused.sum())
        rejected += n_bad
        accepted += rows - n_bad
        if n_bad == rows:
            continue
        table = _assemble(part, groups, tenant, now)
        if n_bad:
            table = table.filter(pa.array(~refused))
        pieces.setdefault(part.table, []).append(table)
    tables = {name: ts[0] if len(ts) == 1 else pa.concat_tables(ts) for name, ts in pieces.items()}
    message = ""
    if rejected:
        detail = "; ".join(
            f"{count} {reason}: {_EXPLAIN.get(reason, reason)}" for reason, count in reasons.items()
        )
        message = f"rejected {rejected} of {accepted + rejected} {unit} ({detail})"
    return Decoded(tables, accepted, rejected, dict(reasons), message)
