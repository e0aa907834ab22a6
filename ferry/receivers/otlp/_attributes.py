"""OTLP values to Arrow in bulk: KeyValue/AnyValue bytes to strings, ids to hex, attribute maps.
Every attribute value becomes a string, so services that disagree on a value's type never break ingest.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.common.v1 import common_pb2

from ferry.schema.tables import ATTRS

# Tag bytes: KeyValue.key and AnyValue.string_value (field 1, LEN), KeyValue.value (field 2, LEN),
# AnyValue.bool_value (2, varint), int_value (3, varint), double_value (4, fixed64).
_TAG_1_LEN, _TAG_2_LEN = 0x0A, 0x12
_BOOLS = pa.array(["false", "true"], pa.string())
Pairs = list[tuple[str, str]]
# Arrays and kvlists nest; deeper than this a value is refused (its record, reason invalid_value).
# OTLP sets no limit; 32 levels is far past any real attribute, and bounds the recursion below.
MAX_DEPTH = 32


class InvalidValue(Exception):
    """A KeyValue or AnyValue that cannot be read (malformed bytes, or nested over MAX_DEPTH)."""


def _bytes_strings(real: type[Message]) -> type[Message]:
    """`real` (a message of common.proto) with every string field read as bytes: protobuf's parser
    refuses invalid UTF-8 in a string field, and one bad byte must not cost more than its replacement."""
    proto = descriptor_pb2.FileDescriptorProto()
    common_pb2.DESCRIPTOR.CopyToProto(proto)
    for msg in proto.message_type:
        for f in msg.field:
            if f.type == descriptor_pb2.FieldDescriptorProto.TYPE_STRING:
                f.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(real.DESCRIPTOR.full_name))


AnyValue = _bytes_strings(common_pb2.AnyValue)
KeyValue = _bytes_strings(common_pb2.KeyValue)


def _str(b: bytes) -> str:
    return b.decode("utf-8", "replace")


# ---- AnyValue messages (the rare path: non-string values, odd encodings) ----


def plain(v: Any, depth: int = 0) -> Any:
    """The AnyValue (strings read as bytes, see AnyValue above) as a plain Python value, for JSON
    rendering of arrays and kvlists."""
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return _str(v.string_value)
    if kind == "int_value":
        return v.int_value
    if kind == "double_value":
        return v.double_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode("ascii")
    if kind in ("array_value", "kvlist_value") and depth >= MAX_DEPTH:
        raise InvalidValue(f"value nested deeper than {MAX_DEPTH} levels")
    if kind == "array_value":
        return [plain(x, depth + 1) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {_str(kv.key): plain(kv.value, depth + 1) for kv in v.kvlist_value.values}
    return None


def text(v: Any) -> str:
    """The string stored for an AnyValue: scalars as text, arrays and kvlists as compact JSON."""
    return render(plain(v))


def _parse(kind: type[Message], raw: bytes) -> Any:
    try:
        return kind.FromString(raw)
    except DecodeError as e:
        # protobuf's parser also stops at its own nesting limit (about 100 messages deep).
        raise InvalidValue(f"malformed {kind.DESCRIPTOR.name}: {e}") from None


def render(value: Any) -> str:
    """String form of a plain value (see `plain`): the one rule both wire formats share."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if value is None:
        return ""
    return orjson.dumps(value).decode("utf-8")


# ---- raw KeyValue / AnyValue bytes, split in bulk ----


def varint(u8: np.ndarray, pos: np.ndarray, longest: int = 4) -> tuple[np.ndarray, Any, Any]:
    """Value (int64, two's complement), width and validity of the varint at each position, reading at
    most `longest` bytes (10 covers any). Width and validity are plain 1 and True when all are 1 byte."""
    top = len(u8) - 1
    value = u8[np.minimum(pos, top)].astype(np.int64)
    more = np.flatnonzero(value >= 128)
    if not len(more):
        return value, 1, True
    # Almost every length and tag fits one byte; only the rest pay for the general case.
    p = pos[more]
    acc = value[more].astype(np.uint64) & np.uint64(127)
    w = np.ones(len(more), dtype=np.int64)
    live = np.ones(len(more), dtype=bool)
    for k in range(1, longest):
        b = u8[np.minimum(p + k, top)].astype(np.uint64)
        acc |= np.where(live, (b & np.uint64(127)) << np.uint64(7 * k), np.uint64(0))
        w += live
        live &= b >= 128
    value[more] = acc.view(np.int64)
    width = np.ones(len(pos), dtype=np.int64)
    width[more] = w
    ok = np.ones(len(pos), dtype=bool)
    ok[more] = ~live
    return value, width, ok


@dataclass
class Blob:
    """Byte ranges [start[i], end[i]) of one buffer, ordered and disjoint."""

    data: pa.Buffer
    u8: np.ndarray
    start: np.ndarray
    end: np.ndarray
    # Where values that could not be read start, shared by every range of the same buffer, so the
    # decoder can refuse the records holding them (see `report`).
    invalid: list[np.ndarray] = field(default_factory=list)

    @classmethod
    def of(cls, raws: list[bytes]) -> Blob:
        return cls.of_array(pa.array(raws, pa.large_binary()))

    @classmethod
    def of_array(cls, arr: pa.Array) -> Blob:
        """The values of a large_binary array (with no offset) as ranges of its data buffer."""
        bufs = arr.buffers()
        offs = np.frombuffer(bufs[1], dtype=np.int64, count=len(arr) + 1)
        data = bufs[2] if bufs[2] is not None and bufs[2].size else pa.py_buffer(b"\0")
        return cls(data, np.frombuffer(data, dtype=np.uint8), offs[:-1], offs[1:])

    def sub(self, start: np.ndarray, end: np.ndarray) -> Blob:
        return Blob(self.data, self.u8, start, end, self.invalid)

    def report(self, bad: np.ndarray) -> None:
        """Note the ranges under mask `bad` as values that could not be read."""
        if bad.any():
            self.invalid.append(np.asarray(self.start)[bad])

    def invalid_positions(self) -> np.ndarray:
        return np.concatenate(self.invalid) if self.invalid else np.zeros(0, np.int64)

    def byte(self, pos: np.ndarray) -> np.ndarray:
        return self.u8[np.minimum(pos, len(self.u8) - 1)]

    def raw(self, i: int) -> bytes:
        return self.data[int(self.start[i]) : int(self.end[i])].to_pybytes()

    def binary(self) -> pa.Array:
        n = len(self.start)
        if n == 0:
            return pa.array([], pa.large_binary())
        # Interleave starts and ends so the even elements are the wanted ranges, then gather them.
        offs = np.empty(2 * n, dtype=np.int64)
        offs[0::2] = self.start
        offs[1::2] = self.end
        wide = pa.Array.from_buffers(pa.large_binary(), 2 * n - 1, [None, pa.py_buffer(offs), self.data])
        return wide.take(pa.array(np.arange(0, 2 * n - 1, 2)))

    def strings(self) -> pa.Array:
        picked = self.binary()
        try:
            return picked.cast(pa.string())
        except pa.ArrowInvalid:
            # Invalid UTF-8 never fails a record: replace the bad bytes, as the JSON side does.
            return pa.array([b.decode("utf-8", "replace") for b in picked.to_pylist()], pa.string())


def _merge(base: pa.Array, patches: list[tuple[np.ndarray, pa.Array]]) -> pa.Array:
    """`base` with the positions of each patch's mask replaced by its values (masks are disjoint)."""
    patches = [(m, v) for m, v in patches if len(v)]
    if not patches:
        return base
    src = np.arange(len(base))
    done = len(base)
    for m, v in patches:
        src[m] = done + np.arange(len(v))
        done += len(v)
    return pa.concat_arrays([base, *(v.cast(pa.string()) for _, v in patches)]).take(pa.array(src))


def _values(blob: Blob, start: np.ndarray, end: np.ndarray, ok: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """String form of the AnyValues at [start, end) where `ok`, and a mask of those left to the slow path.

    Strings, ints, doubles, bools and empty values are done in bulk; arrays, kvlists, bytes and odd
    encodings are not."""
    tag = blob.byte(start)
    empty = ok & (start == end)
    ok = ok & ~empty
    slen, sw, sok = varint(blob.u8, start + 1)
    sstart = start + 1 + sw
    is_str = ok & (tag == _TAG_1_LEN) & sok & (sstart + slen == end)
    out = blob.sub(np.where(is_str, sstart, end), end).strings()
    patches = []
    is_bool = ok & (tag == 0x10) & (start + 2 == end)
    if is_bool.any():
        truth = (blob.byte(start[is_bool] + 1) != 0).astype(np.int8)
        patches.append((is_bool, _BOOLS.take(pa.array(truth))))
    is_double = ok & (tag == 0x21) & (start + 9 == end)
    if is_double.any():
        pos = start[is_double] + 1
        doubles = np.ascontiguousarray(blob.u8[pos[:, None] + np.arange(8)]).view("<f8").ravel()
        # Python's repr is the rule (shortest round-trip form); Arrow's float formatting differs.
        patches.append((is_double, pa.array([repr(d) for d in doubles.tolist()], pa.string())))
    is_int = ok & (tag == 0x18)
    if is_int.any():
        ints, width, _ = varint(blob.u8, start[is_int] + 1, longest=10)
        exact = start[is_int] + 1 + width == end[is_int]
        is_int[is_int] = exact
        patches.append((is_int, pa.array(ints[exact])))
    return _merge(out, patches), ~(empty | is_str | is_bool | is_double | is_int)


def split_keyvalues(kvs: Blob) -> tuple[pa.Array, pa.Array]:
    """Keys and string values of serialized KeyValue messages, in order; those that cannot be read
    become ("", "") and are reported on `kvs` (see Blob.report)."""
    if len(kvs.start) < 64:
        keys, vals, bad = _split(kvs)
        kvs.report(bad)
        return keys, vals
    # Attributes repeat a lot (the same keys, few distinct values), so split each distinct one once.
    encoded = pc.dictionary_encode(kvs.binary())
    keys, vals, bad = _split(Blob.of_array(encoded.dictionary))
    if bad.any():
        kvs.report(bad[np.asarray(encoded.indices)])
    return keys.take(encoded.indices), vals.take(encoded.indices)


def _split(kvs: Blob) -> tuple[pa.Array, pa.Array, np.ndarray]:
    start, end = kvs.start, kvs.end
    # Fast shape: key (field 1), then value (field 2) up to the end; everything else takes the slow path.
    klen, kw, ok = varint(kvs.u8, start + 1)
    kstart = start + 1 + kw
    kend = kstart + klen
    vlen, vw, ok2 = varint(kvs.u8, kend + 1)
    av = kend + 1 + vw
    good = ok & ok2 & (kvs.byte(start) == _TAG_1_LEN) & (kvs.byte(kend) == _TAG_2_LEN) & (av + vlen == end)
    keys = kvs.sub(np.where(good, kstart, start), np.where(good, kend, start)).strings()
    vals, slow = _values(kvs, np.where(good, av, end), end, good)
    bad = np.zeros(len(start), dtype=bool)
    if not slow.any():
        return keys, vals, bad
    slow_keys, slow_vals = [], []
    for i in np.flatnonzero(slow).tolist():
        try:
            kv = _parse(KeyValue, kvs.raw(i))
            key, val = _str(kv.key), text(kv.value)
        except InvalidValue:
            bad[i] = True
            key = val = ""
        slow_keys.append(key)
        slow_vals.append(val)
    return (
        _merge(keys, [(slow, pa.array(slow_keys, pa.string()))]),
        _merge(vals, [(slow, pa.array(slow_vals, pa.string()))]),
        bad,
    )


def anyvalues(values: Blob) -> pa.Array:
    """String form of serialized AnyValue messages (missing -> ""); those that cannot be read become
    "" and are reported on `values` (see Blob.report)."""
    out, slow = _values(values, values.start, values.end, np.ones(len(values.start), dtype=bool))
    if not slow.any():
        return out
    texts = []
    bad = np.zeros(len(values.start), dtype=bool)
    for i in np.flatnonzero(slow).tolist():
        try:
            texts.append(text(_parse(AnyValue, values.raw(i))))
        except InvalidValue:
            bad[i] = True
            texts.append("")
    values.report(bad)
    return _merge(out, [(slow, pa.array(texts, pa.string()))])


def hex_ids(ids: Blob, size: int) -> tuple[pa.Array, np.ndarray]:
    """Lowercase hex of each id ("" for empty) and a mask of ids that are neither empty nor `size` bytes."""
    lengths = ids.end - ids.start
    bad = (lengths != 0) & (lengths != size)
    picked = ids.binary()
    bufs = picked.buffers()
    offs = (
        np.frombuffer(bufs[1], dtype=np.int64, count=len(picked) + 1)
        if len(picked)
        else np.zeros(1, np.int64)
    )
    used = int(offs[-1])
    hexed = binascii.hexlify(memoryview(bufs[2])[:used]) if used else b""
    arr = pa.Array.from_buffers(
        pa.large_string(), len(picked), [None, pa.py_buffer(offs * 2), pa.py_buffer(hexed)]
    )
    return arr.cast(pa.string()), bad


def pairs(raws: Sequence[bytes]) -> Pairs:
    """A few raw KeyValues (resource, scope) as (key, value) pairs; raises InvalidValue."""
    if len(raws) > 32:
        blob = Blob.of(list(raws))
        keys, vals = split_keyvalues(blob)
        if blob.invalid:
            raise InvalidValue("an attribute value cannot be read")
        return list(zip(keys.to_pylist(), vals.to_pylist(), strict=True))
    out = []
    for raw in raws:
        kv = _parse(KeyValue, raw)
        out.append((_str(kv.key), text(kv.value)))
    return out


# ---- rows ----


@dataclass
class Attrs:
    """Attribute maps of many rows, flattened: `counts[i]` entries per row."""

    counts: np.ndarray
    keys: pa.Array
    values: pa.Array

    def to_map(self) -> pa.Array:
        offsets = np.zeros(len(self.counts) + 1, dtype=np.int32)
        np.cumsum(self.counts, out=offsets[1:])
        return pa.MapArray.from_arrays(pa.array(offsets), self.keys, self.values, type=ATTRS)

    def with_entry(self, key: str, values: list[str]) -> Attrs:
        """These maps with (key, values[i]) appended to each row whose values[i] is not empty."""
        extra = np.array([v != "" for v in values], dtype=np.int64)
        if not extra.any():
            return self
        counts = np.asarray(self.counts, dtype=np.int64)
        total = counts + extra
        first = np.cumsum(total) - total
        own_first = np.cumsum(counts) - counts
        row = np.repeat(np.arange(len(total)), total)
        local = np.arange(int(total.sum())) - first[row]
        added = np.cumsum(extra) - 1
        # Each output slot reads one of the row's own entries or, past those, the row's new entry.
        src = pa.array(np.where(local < counts[row], own_first[row] + local, len(self.keys) + added[row]))
        new = [v for v in values if v]
        keys = pa.concat_arrays([self.keys, pa.array([key] * len(new), pa.string())])
        vals = pa.concat_arrays([self.values, pa.array(new, pa.string())])
        return Attrs(total, keys.take(src), vals.take(src))


@dataclass
class Nested:
    """A list column: `counts[i]` items of `flat` per row."""

    counts: np.ndarray
    flat: Any


@dataclass
class Part:
    """Rows for one store table, before the resource/scope and ferry columns and rejections are applied."""

    table: str
    group: np.ndarray  # each row's (resource, scope) group
    columns: dict[str, Any]
    bad: dict[str, np.ndarray] = field(default_factory=dict)  # reason -> row mask, in precedence order
    refused: dict[str, int] = field(default_factory=dict)  # rejections that have no row
    # Each row's byte range [start, end) in the request's record buffer, so that a value that could
    # not be read (Blob.report) refuses the row holding it.
    spans: tuple[np.ndarray, np.ndarray] | None = None


def rollup(counts: np.ndarray, flat_bad: np.ndarray) -> np.ndarray:
    """Per-row mask: True where any of the row's `counts[i]` flat items is bad."""
    out = np.zeros(len(counts), dtype=bool)
    if flat_bad.any():
        out[np.repeat(np.arange(len(counts)), counts)[flat_bad]] = True
    return out
