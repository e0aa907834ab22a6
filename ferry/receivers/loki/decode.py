"""Decode a Loki push (logproto.PushRequest protobuf, or its JSON form) into otel_logs Arrow rows.
A stream whose labels cannot be read is refused alone; the others land.

Rows: Body = the line, Timestamp = the entry's time, ObservedTimestamp = arrival, ResourceAttributes =
the stream's labels verbatim, ServiceName = label service_name, else service, else job, else
unknown_service, SeverityText = label level / detected_level / severity, LogAttributes = structured
metadata (trace_id and span_id from it also in TraceId / SpanId), Source = loki.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf.message import DecodeError

from ferry.errors import BadRequest
from ferry.receivers.otlp._attributes import Blob
from ferry.receivers.otlp._logs import Fields
from ferry.receivers.otlp.decode import Decoded
from ferry.schema.tables import ATTRS, LOGS, TS, conform

SOURCE = "loki"
_SERVICE_LABELS = ("service_name", "service", "job")
_LEVEL_LABELS = ("level", "detected_level", "severity")
# OTel severity numbers of the level words Loki senders use, so ferry's own level search finds them.
_SEVERITY_NUMBER = {
    "trace": 1, "debug": 5, "dbg": 5, "info": 9, "information": 9, "notice": 10, "warn": 13, "warning": 13,
    "error": 17, "err": 17, "critical": 21, "crit": 21, "fatal": 21, "alert": 22, "emergency": 23, "emerg": 23,
}
EXPLAIN = {
    "invalid_label": "streams whose labels are not a valid selector {name=\"value\", ...}",
    "invalid_value": "streams with an entry whose timestamp or line is not valid",
}


class LabelError(ValueError):
    """A stream selector that cannot be read; the message says where."""


_NAME_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_NAME_CHARS = _NAME_START | frozenset("0123456789")
_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
                   "\\": "\\", '"': '"', "'": "'"}


def parse_labels(text: str) -> list[tuple[str, str]]:
    """`{a="b", c="d"}` as [(a, b), (c, d)] in the order written. Values are double-quoted with Go's
    escapes (\\" \\\\ \\n \\t \\xHH \\uHHHH \\UHHHHHHHH \\NNN ...) or back-quoted raw; names must be
    unique and Prometheus-style; at least one label."""
    s, i, n = text, 0, len(text)

    def fail(why: str) -> LabelError:
        return LabelError(f"{why} at offset {i} of {text!r}")

    def skip() -> None:
        nonlocal i
        while i < n and s[i] in " \t\r\n":
            i += 1

    skip()
    if i >= n or s[i] != "{":
        raise fail("expected '{'")
    i += 1
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    skip()
    if i < n and s[i] == "}":
        i += 1
    else:
        while True:
            skip()
            start = i
            if i >= n or s[i] not in _NAME_START:
                raise fail("expected a label name")
            while i < n and s[i] in _NAME_CHARS:
                i += 1
            name = s[start:i]
            skip()
            if i >= n or s[i] != "=" or (i + 1 < n and s[i + 1] in "~="):
                raise fail(f"expected '=' after label {name!r} (a pushed stream has only = matchers)")
            i += 1
            skip()
            value, i = _string(s, i, fail)
            if name in seen:
                raise fail(f"duplicate label name {name!r}")
            seen.add(name)
            out.append((name, value))
            skip()
            if i < n and s[i] == ",":
                i += 1
                continue
            if i < n and s[i] == "}":
                i += 1
                break
            raise fail("expected ',' or '}'")
    skip()
    if i != n:
        raise fail("unexpected text after '}'")
    if not out:
        raise LabelError(f"a stream needs at least one label: {text!r}")
    return out


def _string(s: str, i: int, fail: Any) -> tuple[str, int]:
    n = len(s)
    if i < n and s[i] == "`":
        end = s.find("`", i + 1)
        if end < 0:
            raise fail("unterminated `string`")
        return s[i + 1 : end], end + 1
    if i >= n or s[i] != '"':
        raise fail('expected a "quoted" value')
    i += 1
    out: list[str] = []
    while True:
        j = i
        while j < n and s[j] not in '"\\\n':
            j += 1
        out.append(s[i:j])
        if j >= n or s[j] == "\n":
            raise fail("unterminated quoted value")
        if s[j] == '"':
            return "".join(out), j + 1
        # a backslash escape
        if j + 1 >= n:
            raise fail("unterminated escape")
        c = s[j + 1]
        if c in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[c])
            i = j + 2
            continue
        width = {"x": 2, "u": 4, "U": 8}.get(c)
        if width is not None:
            digits = s[j + 2 : j + 2 + width]
            if len(digits) != width or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise fail(f"bad \\{c} escape")
            code = int(digits, 16)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise fail(f"bad \\{c} escape")
            out.append(chr(code))
            i = j + 2 + width
            continue
        if c in "01234567":
            digits = s[j + 1 : j + 4]
            if len(digits) != 3 or any(d not in "01234567" for d in digits) or int(digits, 8) > 255:
                raise fail("bad octal escape")
            out.append(chr(int(digits, 8)))
            i = j + 4
            continue
        raise fail(f"unknown escape \\{c}")


@dataclass
class _Streams:
    """The good streams' labels and their entries, column by column."""

    labels: list[list[tuple[str, str]]] = field(default_factory=list)
    entry_counts: list[int] = field(default_factory=list)
    ts: list[np.ndarray] = field(default_factory=list)
    lines: list[pa.Array] = field(default_factory=list)
    meta_counts: list[np.ndarray] = field(default_factory=list)
    meta_keys: list[pa.Array] = field(default_factory=list)
    meta_values: list[pa.Array] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)
    first_problem: dict[str, str] = field(default_factory=dict)
    refused_streams: dict[str, int] = field(default_factory=dict)

    def refuse(self, reason: str, entries: int, what: str) -> None:
        self.reasons[reason] = self.reasons.get(reason, 0) + max(entries, 1)
        self.refused_streams[reason] = self.refused_streams.get(reason, 0) + 1
        self.first_problem.setdefault(reason, what)


def decode_push(body: bytes, fmt: str, *, tenant: str, now_ns: int) -> Decoded:
    """`fmt` is "protobuf" (already un-snappied) or "json" (already un-gzipped)."""
    streams = _Streams()
    if fmt == "protobuf":
        try:
            _from_protobuf(body, streams)
        except BadRequest as e:
            raise BadRequest(f"invalid protobuf logproto.PushRequest: {e}") from None
    else:
        _from_json(body, streams)
    return _rows(streams, tenant, now_ns)


def _from_protobuf(body: bytes, out: _Streams) -> None:
    from ferry.receivers.loki.proto import RawPushRequest, RawStream

    try:
        streams = [RawStream.FromString(b) for b in RawPushRequest.FromString(body).streams]
    except DecodeError as e:
        raise BadRequest(str(e) or "malformed protobuf") from None
    counts = np.array([len(st.entries) for st in streams], np.int64)
    entries = Fields(Blob.of([e for st in streams for e in st.entries]), "EntryAdapter")
    stamp = entries.message(1, "Timestamp")
    ts = stamp.varint(1) * 1_000_000_000 + stamp.varint(2)
    lines = entries.string(2)
    mcounts, meta = entries.messages(3, "LabelPairAdapter")
    mkeys, mvalues = meta.string(1), meta.string(2)
    ends = np.cumsum(counts)
    mends = np.concatenate([[0], np.cumsum(mcounts)])
    for k, st in enumerate(streams):
        lo, hi = int(ends[k] - counts[k]), int(ends[k])
        try:
            labels = parse_labels(st.labels.decode("utf-8", "replace"))
        except LabelError as e:
            out.refuse("invalid_label", hi - lo, str(e))
            continue
        out.labels.append(labels)
        out.entry_counts.append(hi - lo)
        out.ts.append(ts[lo:hi])
        out.lines.append(lines.slice(lo, hi - lo))
        out.meta_counts.append(mcounts[lo:hi])
        a, b = int(mends[lo]), int(mends[hi])
        out.meta_keys.append(mkeys.slice(a, b - a))
        out.meta_values.append(mvalues.slice(a, b - a))


def _from_json(body: bytes, out: _Streams) -> None:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"invalid JSON push body: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("streams"), list):
        raise BadRequest('invalid JSON push body: expected {"streams": [...]}')
    for k, st in enumerate(doc["streams"]):
        if not isinstance(st, dict):
            raise BadRequest(f"invalid JSON push body: streams[{k}] is not an object")
        values = st.get("values")
        if not isinstance(values, list):
            raise BadRequest(f'invalid JSON push body: streams[{k}] has no "values" list')
        stream = st.get("stream")
        if not isinstance(stream, dict) or not stream or not all(isinstance(v, str) for v in stream.values()):
            out.refuse("invalid_label", len(values), f'streams[{k}]: "stream" must be a non-empty object of strings')
            continue
        bad = [n for n in stream if not n or n[0] not in _NAME_START or any(c not in _NAME_CHARS for c in n)]
        if bad:
            out.refuse("invalid_label", len(values), f"streams[{k}]: invalid label name {bad[0]!r}")
            continue
        try:
            ts = np.array([int(v[0]) for v in values], np.int64) if values else np.zeros(0, np.int64)
            lines = pa.array([v[1] for v in values], pa.string())
            metas = [v[2] if len(v) > 2 else {} for v in values]
            if any(len(v) not in (2, 3) or not isinstance(m, dict) for v, m in zip(values, metas, strict=True)):
                raise ValueError("an entry is not [timestamp, line] or [timestamp, line, {metadata}]")
            keys = [str(key) for m in metas for key in m]
            vals = [str(val) for m in metas for val in m.values()]
        except (ValueError, TypeError, IndexError, OverflowError, pa.ArrowException) as e:
            out.refuse("invalid_value", len(values), f"streams[{k}]: {e}")
            continue
        out.labels.append(list(stream.items()))
        out.entry_counts.append(len(values))
        out.ts.append(ts)
        out.lines.append(lines)
        out.meta_counts.append(np.array([len(m) for m in metas], np.int64))
        out.meta_keys.append(pa.array(keys, pa.string()))
        out.meta_values.append(pa.array(vals, pa.string()))


def _first(labels: list[tuple[str, str]], names: tuple[str, ...], default: str) -> str:
    d = dict(labels)
    for n in names:
        if d.get(n):
            return d[n]
    return default


def _maps(counts: np.ndarray, keys: pa.Array, items: pa.Array) -> pa.Array:
    offsets = np.zeros(len(counts) + 1, np.int32)
    np.cumsum(counts, out=offsets[1:])
    return pa.MapArray.from_arrays(pa.array(offsets), keys, items, type=ATTRS)


def _pick(keys: pa.Array, values: pa.Array, counts: np.ndarray, name: str) -> pa.Array:
    """Per entry: the metadata value named `name`, else ""."""
    hit = np.asarray(pc.equal(keys, name)).astype(bool) if len(keys) else np.zeros(0, bool)
    owner = np.repeat(np.arange(len(counts)), counts)
    idx = np.full(len(counts), len(values), np.int64)
    idx[owner[hit]] = np.flatnonzero(hit)
    return pa.concat_arrays([values, pa.array([""], pa.string())]).take(pa.array(idx))


def _rows(s: _Streams, tenant: str, now_ns: int) -> Decoded:
    counts = np.array(s.entry_counts, np.int64)
    total = int(counts.sum()) if len(counts) else 0
    tables: dict[str, pa.Table] = {}
    if total:
        owner = pa.array(np.repeat(np.arange(len(counts)), counts))
        per_stream_maps = _maps(np.array([len(lb) for lb in s.labels], np.int64),
                                pa.array([k for lb in s.labels for k, _ in lb], pa.string()),
                                pa.array([v for lb in s.labels for _, v in lb], pa.string()))
        service = pa.array([_first(lb, _SERVICE_LABELS, "unknown_service") for lb in s.labels], pa.string())
        levels = [_first(lb, _LEVEL_LABELS, "") for lb in s.labels]
        numbers = pa.array([_SEVERITY_NUMBER.get(lv.lower(), 0) for lv in levels], pa.uint8())
        mcounts = np.concatenate(s.meta_counts)
        mkeys = pa.concat_arrays(s.meta_keys) if s.meta_keys else pa.array([], pa.string())
        mvalues = pa.concat_arrays(s.meta_values) if s.meta_values else pa.array([], pa.string())
        tables["otel_logs"] = conform(pa.table({
            "Timestamp": pa.array(np.concatenate(s.ts), pa.int64()).cast(TS),
            "ObservedTimestamp": pa.array(np.full(total, now_ns, np.int64), pa.int64()).cast(TS),
            "TraceId": _pick(mkeys, mvalues, mcounts, "trace_id"),
            "SpanId": _pick(mkeys, mvalues, mcounts, "span_id"),
            "SeverityText": pa.array(levels, pa.string()).take(owner),
            "SeverityNumber": numbers.take(owner),
            "ServiceName": service.take(owner),
            "Body": pa.concat_arrays(s.lines),
            "ResourceAttributes": per_stream_maps.take(owner),
            "LogAttributes": _maps(mcounts, mkeys, mvalues),
            "Tenant": pa.array([tenant] * total, pa.string()),
            "Source": pa.array([SOURCE] * total, pa.string()),
            "IngestTime": pa.array(np.full(total, now_ns, np.int64), pa.int64()).cast(TS),
        }), LOGS)
    message = "; ".join(f"{s.refused_streams[r]} {EXPLAIN[r]} refused; first: {s.first_problem[r]}" for r in s.reasons)
    return Decoded(tables, total, sum(s.reasons.values()), dict(s.reasons), message)
