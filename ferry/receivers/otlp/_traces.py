"""OTLP spans to otel_traces rows, with their events and links as parallel list columns.
Ids of the wrong length (on the span or any of its links) mark the span bad.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ferry.receivers.otlp._attributes import Nested, Part, rollup

if TYPE_CHECKING:
    from ferry.receivers.otlp._logs import Fields

_KINDS = pa.array(
    [f"SPAN_KIND_{k}" for k in ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")],
    pa.string(),
)
_STATUS = pa.array(["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"], pa.string())
_I64_MAX = np.uint64(2**63 - 1)


def _enum(names: pa.Array, values: np.ndarray) -> pa.Array:
    """Enum names; values this version of OTLP does not know map to the first (unspecified) name."""
    return names.take(pa.array(np.where((values >= 0) & (values < len(names)), values, 0)))


def build(f: Fields, group: np.ndarray) -> Part:
    """The otel_traces part for scanned Spans."""
    start = np.minimum(f.fixed(7, "<u8"), _I64_MAX).astype(np.int64)
    end = np.minimum(f.fixed(8, "<u8"), _I64_MAX).astype(np.int64)
    trace_id, bad_trace = f.id(1, 16)
    span_id, bad_span = f.id(2, 8)
    parent_id, bad_parent = f.id(4, 8)
    status = f.message(15, "Status")
    n_events, events = f.messages(11, "Span.Event")
    n_links, links = f.messages(13, "Span.Link")
    link_trace, bad_link_trace = links.id(1, 16)
    link_span, bad_link_span = links.id(2, 8)
    cols: dict[str, Any] = {
        "Timestamp": start,
        "TraceId": trace_id,
        "SpanId": span_id,
        "ParentSpanId": parent_id,
        "TraceState": f.string(3),
        "SpanName": f.string(5),
        "SpanKind": _enum(_KINDS, f.varint(6)),
        "SpanAttributes": f.attributes(9),
        "Duration": np.maximum(end - start, 0).astype(np.uint64),
        "StatusCode": _enum(_STATUS, status.varint(3)),
        "StatusMessage": status.string(2),
        "Events.Timestamp": Nested(n_events, events.fixed(1, "<u8")),
        "Events.Name": Nested(n_events, events.string(2)),
        "Events.Attributes": Nested(n_events, events.attributes(3)),
        "Links.TraceId": Nested(n_links, link_trace),
        "Links.SpanId": Nested(n_links, link_span),
        "Links.TraceState": Nested(n_links, links.string(3)),
        "Links.Attributes": Nested(n_links, links.attributes(4)),
    }
    bad = {
        "invalid_trace_id": bad_trace | rollup(n_links, bad_link_trace),
        "invalid_span_id": bad_span | bad_parent | rollup(n_links, bad_link_span),
    }
    return Part("otel_traces", group, cols, bad, spans=(f.blob.start, f.blob.end))
