"""OTLP log records to otel_logs rows, and Fields: the bulk protobuf scanner every signal decodes with.
Scanning all records of a request together costs numpy passes, not one Python object per field.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ferry.errors import BadRequest
from ferry.receivers.otlp._attributes import (
    Attrs,
    Blob,
    Part,
    anyvalues,
    hex_ids,
    split_keyvalues,
    varint,
)

VARINT, I64, LEN, I32 = 0, 1, 2, 5
# Bytes a value of each wire type takes besides its varint; groups (3, 4) and 6, 7 are invalid and
# get a size that overruns any message.
_FIXED_SIZE = np.array([0, 8, 0, 1 << 40, 1 << 40, 4, 1 << 40, 1 << 40], dtype=np.int64)
_SEVERITY = pa.array(
    [""] + [name for name in ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL") for _ in range(4)],
    pa.string(),
)


class Fields:
    """Every top-level field of many messages of one type (`what`, for errors), in wire order.

    Accessors return one value per message: the last occurrence for singular fields, the
    protobuf default where a field is absent."""

    def __init__(self, blob: Blob, what: str) -> None:
        self.blob, self.what, self.n = blob, what, len(blob.start)
        u8 = blob.u8
        top = len(u8) - 1
        msg = np.arange(self.n)
        cur, end = blob.start.astype(np.int64), blob.end.astype(np.int64)
        live = cur < end
        msg, cur, end = msg[live], cur[live], end[live]
        steps = []
        # Step k finds the k-th field of every message that still has one. numpy calls cost more
        # than the few thousand elements they touch, so each step makes as few as it can; varint
        # values are not kept (accessors decode the few they need), only their widths.
        while len(msg):
            tag = u8[cur]
            tag_w: Any = 1
            if tag.max() >= 128:
                tag, tag_w, ok = varint(u8, cur)
                if not np.all(ok):
                    raise BadRequest(f"malformed {what}: field number too large")
            wire = tag & 7
            head = cur + tag_w
            is_len = wire == LEN
            has_varint = is_len | (wire == VARINT)
            val: Any = u8[np.minimum(head, top)]
            val_w: Any = 1
            long = has_varint & (val >= 128)
            if long.any():
                val, val_w = self._widths(head, val, np.flatnonzero(long))
            nxt = head + _FIXED_SIZE.take(wire) + has_varint * val_w + is_len * val
            if (nxt > end).any():
                raise BadRequest(f"malformed {what}: a field runs past the end of its message")
            steps.append((msg, tag, head + is_len * val_w, nxt))
            more = nxt < end
            if more.all():
                cur = nxt
            else:
                msg, cur, end = msg[more], nxt[more], end[more]
        if steps:
            msg, tag, a, b = (np.concatenate(c) for c in zip(*steps, strict=True))
        else:
            msg = tag = a = b = np.zeros(0, np.int64)
        # a: where a LEN field's payload, a varint or a fixed-width value starts; b: the field's end.
        self.msg, self.wire, self.a, self.b = msg, tag & 7, a.astype(np.int64), b
        # Field indices grouped by field number, keeping wire order within a number; small integer
        # keys make numpy use a radix sort. Numbers past 255 are unknown to OTLP anyway.
        num = np.minimum(tag >> 3, 255).astype(np.uint8)
        self._order = np.argsort(num, kind="stable")
        self._sorted = num[self._order]

    def _widths(self, head: np.ndarray, val: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Values and widths of the multi-byte varints at head[idx] (lengths, and varint fields)."""
        v, w, ok = varint(self.blob.u8, head[idx], longest=10)
        if not np.all(ok):
            raise BadRequest(f"malformed {self.what}: a varint runs past 10 bytes")
        val = val.astype(np.int64)
        width = np.ones(len(head), dtype=np.int64)
        val[idx] = v
        width[idx] = w
        return val, width

    def _idx(self, num: int) -> np.ndarray:
        """Indices of the fields numbered `num`, in wire order."""
        if num > 254:
            raise ValueError(f"field {num} is not in any OTLP message")
        lo, hi = np.searchsorted(self._sorted, (num, num + 1))
        return self._order[lo:hi]

    def _select(self, num: int, *wires: int) -> np.ndarray:
        idx = self._idx(num)
        wire = self.wire[idx]
        if not ((wire == wires[0]) | (wire == wires[-1])).all():
            raise BadRequest(f"malformed {self.what}: field {num} has the wrong wire type")
        return idx

    def has(self, num: int) -> np.ndarray:
        out = np.zeros(self.n, dtype=bool)
        out[self.msg[self._idx(num)]] = True
        return out

    def varint(self, num: int) -> np.ndarray:
        sel = self._select(num, VARINT)
        out = np.zeros(self.n, dtype=np.int64)
        out[self.msg[sel]] = varint(self.blob.u8, self.a[sel], longest=10)[0]
        return out

    def zigzag(self, num: int) -> np.ndarray:
        v = self.varint(num)
        return (v >> 1) ^ -(v & 1)

    def fixed(self, num: int, dtype: str) -> np.ndarray:
        """A fixed-width field as `dtype` ("<u8", "<i8", "<f8", "<u4")."""
        width = np.dtype(dtype).itemsize
        sel = self._select(num, I64 if width == 8 else I32)
        out = np.zeros(self.n, dtype=dtype)
        pos = self.a[sel]
        if len(pos):
            raw = self.blob.u8[pos[:, None] + np.arange(width)]
            out[self.msg[sel]] = np.ascontiguousarray(raw).view(dtype).ravel()
        return out

    def bytes(self, num: int) -> Blob:
        sel = self._select(num, LEN)
        start = self.blob.start.astype(np.int64)
        end = start.copy()
        start[self.msg[sel]] = self.a[sel]
        end[self.msg[sel]] = self.b[sel]
        return self.blob.sub(start, end)

    def _all(self, sel: np.ndarray) -> tuple[np.ndarray, Blob]:
        msg = self.msg[sel]
        order = np.argsort(msg, kind="stable")
        return np.bincount(msg, minlength=self.n), self.blob.sub(self.a[sel][order], self.b[sel][order])

    def string(self, num: int) -> pa.Array:
        return self.bytes(num).strings()

    def anyvalue(self, num: int) -> pa.Array:
        return anyvalues(self.bytes(num))

    def id(self, num: int, size: int) -> tuple[pa.Array, np.ndarray]:
        return hex_ids(self.bytes(num), size)

    def message(self, num: int, what: str) -> Fields:
        return Fields(self.bytes(num), what)

    def ranges(self, num: int) -> tuple[np.ndarray, Blob]:
        """A repeated LEN field as byte ranges, unparsed: (count per message, every value in order)."""
        return self._all(self._select(num, LEN))

    def messages(self, num: int, what: str) -> tuple[np.ndarray, Fields]:
        counts, blob = self.ranges(num)
        return counts, Fields(blob, what)

    def attributes(self, num: int) -> Attrs:
        counts, blob = self._all(self._select(num, LEN))
        return Attrs(counts, *split_keyvalues(blob))

    def numbers(self, num: int, dtype: str) -> tuple[np.ndarray, np.ndarray]:
        """A repeated fixed-width field, packed or not: (count per message, all values)."""
        width = np.dtype(dtype).itemsize
        counts, blob = self._all(self._select(num, LEN, I64 if width == 8 else I32))
        per_range = (blob.end - blob.start) // width
        if ((blob.end - blob.start) % width).any():
            raise BadRequest(f"malformed {self.what}: packed field {num} is not a whole number of values")
        total = int(per_range.sum())
        flat = (
            np.frombuffer(blob.binary().buffers()[2], dtype=dtype, count=total)
            if total
            else np.zeros(0, dtype)
        )
        return _regroup(counts, per_range), flat

    def varints(self, num: int) -> tuple[np.ndarray, np.ndarray]:
        """A repeated varint field, packed or not: (count per message, all values as uint64)."""
        idx = self._select(num, LEN, VARINT)
        counts, blob = self._all(idx[self.wire[idx] == LEN])
        single = idx[self.wire[idx] == VARINT]
        if len(single):
            # Unpacked encoding: each value is its own field (rare; proto3 encoders pack).
            msg = self.msg[single]
            order = np.argsort(msg, kind="stable")
            values = varint(self.blob.u8, self.a[single][order], longest=10)[0]
            return np.bincount(msg, minlength=self.n), values.view(np.uint64)
        total = int((blob.end - blob.start).sum())
        raw = (
            np.frombuffer(blob.binary().buffers()[2], dtype=np.uint8, count=total)
            if total
            else np.zeros(0, np.uint8)
        )
        last = raw < 128
        ends = np.flatnonzero(last)
        if len(raw) and not last[-1]:
            raise BadRequest(f"malformed {self.what}: packed field {num} ends inside a varint")
        starts = np.concatenate(([0], ends[:-1] + 1)) if len(ends) else np.zeros(0, np.int64)
        shift = (np.arange(len(raw)) - np.repeat(starts, ends - starts + 1)) * 7
        parts = (raw & 127).astype(np.uint64) << shift.astype(np.uint64)
        values = np.add.reduceat(parts, starts) if len(starts) else np.zeros(0, np.uint64)
        # Values per message: count the terminal bytes inside each message's ranges.
        in_range = np.concatenate(([0], np.cumsum(last)))
        byte_offs = np.concatenate(([0], np.cumsum(blob.end - blob.start)))
        per_range = in_range[byte_offs[1:]] - in_range[byte_offs[:-1]]
        return _regroup(counts, per_range), values.astype(np.uint64)


def _regroup(counts: np.ndarray, per_range: np.ndarray) -> np.ndarray:
    """Sum per-range item counts into per-message counts (`counts[i]` ranges per message)."""
    totals = np.concatenate(([0], np.cumsum(per_range)))
    last = np.cumsum(counts)
    return totals[last] - totals[last - counts]


def _severity_text(text: pa.Array, number: np.ndarray) -> pa.Array:
    empty = pc.equal(text, "")
    if not pc.any(empty).as_py():
        return text
    derived = _SEVERITY.take(pa.array(np.where((number >= 1) & (number <= 24), number, 0)))
    return pc.if_else(empty, derived, text)


def build(f: Fields, group: np.ndarray, now_ns: int) -> Part:
    """The otel_logs part for scanned LogRecords; ids of the wrong length mark their record bad."""
    now = np.uint64(now_ns)
    observed = f.fixed(11, "<u8")
    observed = np.where(observed == 0, now, observed)
    time = f.fixed(1, "<u8")
    number = f.varint(2)
    trace_id, bad_trace = f.id(9, 16)
    span_id, bad_span = f.id(10, 8)
    attrs = f.attributes(6)
    event_name = f.string(12)
    if pc.any(pc.not_equal(event_name, "")).as_py():
        attrs = attrs.with_entry("event.name", event_name.to_pylist())
    cols: dict[str, Any] = {
        "Timestamp": np.where(time == 0, observed, time),
        "ObservedTimestamp": observed,
        "TraceId": trace_id,
        "SpanId": span_id,
        # The low byte of LogRecord.flags is the W3C trace flags; the rest is reserved.
        "TraceFlags": (f.fixed(8, "<u4") & 0xFF).astype(np.uint8),
        "SeverityText": _severity_text(f.string(3), number),
        "SeverityNumber": np.where((number >= 0) & (number <= 255), number, 0).astype(np.uint8),
        "Body": f.anyvalue(5),
        "LogAttributes": attrs,
    }
    bad = {"invalid_trace_id": bad_trace, "invalid_span_id": bad_span}
    return Part("otel_logs", group, cols, bad, spans=(f.blob.start, f.blob.end))
