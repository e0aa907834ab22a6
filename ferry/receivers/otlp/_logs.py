"""OTLP logs to otel_logs rows: protobuf extraction, and the column rules both wire formats share.
The JSON side fills the same LogRows in _json.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from operator import attrgetter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ferry.receivers.otlp._attributes import Attrs, Context, Part, anyvalues, hex_ids, pairs, timestamps

_SEVERITY = pa.array(
    [""] + [name for name in ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL") for _ in range(4)],
    pa.string(),
)


@dataclass
class LogRows:
    """Log records of one request, column by column; `per_group[g]` records belong to context group g."""

    ctx: Context
    per_group: list[int]
    time: list[int]
    observed: list[int]
    severity: list[int]
    severity_text: list[str]
    body: pa.Array
    flags: list[int]
    trace_id: list[bytes]
    span_id: list[bytes]
    event_name: list[str]
    attrs: Attrs


def _column(records: list[Any], name: str) -> list[Any]:
    return list(map(attrgetter(name), records))


def from_proto(req: Any) -> LogRows:
    """Columns of a (shadow-schema) ExportLogsServiceRequest."""
    ctx = Context()
    per_group: list[int] = []
    chunks = []
    for rl in req.resource_logs:
        res = (pairs(rl.resource.attributes), rl.schema_url)
        for sl in rl.scope_logs:
            s = sl.scope
            ctx.add(res, s.name, s.version, pairs(s.attributes), s.dropped_attributes_count, sl.schema_url)
            per_group.append(len(sl.log_records))
            chunks.append(sl.log_records)
    # Bind every record wrapper once; each column is then one C-level pass over the same objects.
    recs = list(chain.from_iterable(chunks))
    return LogRows(
        ctx=ctx,
        per_group=per_group,
        time=_column(recs, "time_unix_nano"),
        observed=_column(recs, "observed_time_unix_nano"),
        severity=_column(recs, "severity_number"),
        severity_text=_column(recs, "severity_text"),
        body=anyvalues(_column(recs, "body")),
        flags=_column(recs, "flags"),
        trace_id=_column(recs, "trace_id"),
        span_id=_column(recs, "span_id"),
        event_name=_column(recs, "event_name"),
        attrs=Attrs.from_raw(_column(recs, "attributes")),
    )


def _severity_text(text: list[str], number: np.ndarray) -> pa.Array:
    arr = pa.array(text, pa.string())
    if "" not in text:
        return arr
    derived = _SEVERITY.take(pa.array(np.where((number >= 1) & (number <= 24), number, 0)))
    return pc.if_else(pc.equal(arr, ""), derived, arr)


def build(rows: LogRows, now_ns: int) -> Part:
    """The otel_logs part for these records; ids of the wrong length mark their record bad."""
    n = len(rows.time)
    group = np.repeat(np.arange(len(rows.per_group)), rows.per_group)
    cols: dict[str, Any] = rows.ctx.columns(group)
    now = np.uint64(now_ns)
    observed = np.asarray(rows.observed, dtype=np.uint64)
    observed = np.where(observed == 0, now, observed)
    time = np.asarray(rows.time, dtype=np.uint64)
    number = np.asarray(rows.severity, dtype=np.int64)
    trace_id, bad_trace = hex_ids(rows.trace_id, 16)
    span_id, bad_span = hex_ids(rows.span_id, 8)
    cols.update(
        {
            "Timestamp": timestamps(np.where(time == 0, observed, time)),
            "ObservedTimestamp": timestamps(observed),
            "TraceId": trace_id,
            "SpanId": span_id,
            # The low byte of LogRecord.flags is the W3C trace flags; the rest is reserved.
            "TraceFlags": pa.array((np.asarray(rows.flags, dtype=np.uint32) & 0xFF).astype(np.uint8)),
            "SeverityText": _severity_text(rows.severity_text, number),
            "SeverityNumber": pa.array(np.where((number >= 0) & (number <= 255), number, 0).astype(np.uint8)),
            "Body": rows.body,
            "LogAttributes": rows.attrs.with_entry("event.name", rows.event_name),
        }
    )
    return Part("otel_logs", n, cols, {"invalid_trace_id": bad_trace, "invalid_span_id": bad_span})
