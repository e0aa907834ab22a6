"""Column helpers shared by the OTLP decoders: attribute and AnyValue to strings, ids to hex, lists to Arrow.
Protobuf attributes and bodies arrive as raw KeyValue/AnyValue bytes and are split in bulk with numpy.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf.message import DecodeError
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from ferry.errors import BadRequest
from ferry.schema.tables import ATTRS, TS

_I64_MAX = np.uint64(2**63 - 1)
_TAG_1_LEN = 0x0A  # field 1, wire type LEN: KeyValue.key and AnyValue.string_value
_TAG_2_LEN = 0x12  # field 2, wire type LEN: KeyValue.value
Pairs = list[tuple[str, str]]


# ---- AnyValue messages (the rare path: non-string values, odd encodings) ----


def plain(v: AnyValue) -> Any:
    """The AnyValue as a plain Python value, for JSON rendering of arrays and kvlists."""
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return v.string_value
    if kind == "int_value":
        return v.int_value
    if kind == "double_value":
        return v.double_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode("ascii")
    if kind == "array_value":
        return [plain(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: plain(kv.value) for kv in v.kvlist_value.values}
    return None


def text(v: AnyValue) -> str:
    """The string stored for an AnyValue: scalars as text, arrays and kvlists as compact JSON."""
    return render(plain(v))


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


def _varint(data: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Value, width and validity of the (at most 3-byte) varint at each position."""
    top = len(data) - 1
    b0, b1, b2 = (data[np.minimum(pos + i, top)].astype(np.int64) for i in range(3))
    c0 = b0 >> 7
    c1 = c0 & (b1 >> 7)
    value = (b0 & 127) | (((b1 & 127) * c0) << 7) | (((b2 & 127) * c1) << 14)
    return value, 1 + c0 + c1, (c1 & (b2 >> 7)) == 0


def _layout(raws: list[bytes]) -> tuple[pa.Buffer, np.ndarray, np.ndarray, np.ndarray]:
    arr = pa.array(raws, pa.large_binary())
    bufs = arr.buffers()
    offs = np.frombuffer(bufs[1], dtype=np.int64, count=len(raws) + 1)
    data = bufs[2] if bufs[2] is not None else pa.py_buffer(b"")
    return data, np.frombuffer(data, dtype=np.uint8), offs[:-1], offs[1:]


def _slices(data: pa.Buffer, starts: np.ndarray, ends: np.ndarray) -> pa.Array:
    """Strings data[starts[i]:ends[i]]; the ranges must be ordered and disjoint."""
    n = len(starts)
    if n == 0:
        return pa.array([], pa.string())
    # Interleave starts and ends so the even elements are the wanted slices, then gather them.
    offs = np.empty(2 * n, dtype=np.int64)
    offs[0::2] = starts
    offs[1::2] = ends
    wide = pa.Array.from_buffers(pa.large_binary(), 2 * n - 1, [None, pa.py_buffer(offs), data])
    picked = wide.take(pa.array(np.arange(0, 2 * n - 1, 2)))
    try:
        return picked.cast(pa.large_string()).cast(pa.string())
    except pa.ArrowInvalid:
        # Invalid UTF-8 never fails a record: replace the bad bytes, like the JSON side does.
        return pa.array([b.decode("utf-8", "replace") for b in picked.to_pylist()], pa.string())


def _patch(arr: pa.Array, bad: np.ndarray, values: list[str]) -> pa.Array:
    if not values:
        return arr
    return pc.replace_with_mask(arr, pa.array(bad), pa.array(values, pa.string()))


def split_keyvalues(raws: list[bytes]) -> tuple[pa.Array, pa.Array]:
    """Keys and string values of serialized KeyValue messages, in order."""
    data, u8, start, end = _layout(raws)
    if len(u8) == 0:
        return pa.array([""] * len(raws), pa.string()), pa.array([""] * len(raws), pa.string())
    # Fast shape: key (field 1), then value (field 2) holding only string_value, all lengths exact.
    klen, kw, ok = _varint(u8, start + 1)
    kstart = start + 1 + kw
    kend = kstart + klen
    vlen, vw, ok2 = _varint(u8, kend + 1)
    av = kend + 1 + vw
    slen, sw, ok3 = _varint(u8, av + 1)
    sstart = av + 1 + sw
    top = len(u8) - 1
    good = (
        ok
        & ok2
        & ok3
        & (u8[np.minimum(start, top)] == _TAG_1_LEN)
        & (u8[np.minimum(kend, top)] == _TAG_2_LEN)
        & (u8[np.minimum(av, top)] == _TAG_1_LEN)
        & (av + vlen == end)
        & (sstart + slen == end)
        & (end > start)
    )
    bad = ~good
    keys = _slices(data, start, np.where(good, kend, start))
    vals = _slices(data, np.where(good, sstart, end), end)
    if not bad.any():
        return keys, vals
    slow_keys, slow_vals = [], []
    for i in np.flatnonzero(bad).tolist():
        try:
            kv = KeyValue.FromString(raws[i])
        except DecodeError as e:
            raise BadRequest(f"malformed attribute KeyValue: {e}") from None
        slow_keys.append(kv.key)
        slow_vals.append(text(kv.value))
    return _patch(keys, bad, slow_keys), _patch(vals, bad, slow_vals)


def anyvalues(raws: list[bytes]) -> pa.Array:
    """String form of serialized AnyValue messages (missing -> "")."""
    data, u8, start, end = _layout(raws)
    if len(u8) == 0:
        return pa.array([""] * len(raws), pa.string())
    slen, sw, ok = _varint(u8, start + 1)
    sstart = start + 1 + sw
    empty = end == start
    good = empty | (ok & (u8[np.minimum(start, len(u8) - 1)] == _TAG_1_LEN) & (sstart + slen == end))
    bad = ~good
    out = _slices(data, np.where(good & ~empty, sstart, end), end)
    if not bad.any():
        return out
    slow = []
    for i in np.flatnonzero(bad).tolist():
        try:
            slow.append(text(AnyValue.FromString(raws[i])))
        except DecodeError as e:
            raise BadRequest(f"malformed AnyValue: {e}") from None
    return _patch(out, bad, slow)


def pairs(raws: Sequence[bytes]) -> Pairs:
    """A few raw KeyValues (resource, scope) as (key, value) pairs."""
    keys, vals = split_keyvalues(list(raws))
    return list(zip(keys.to_pylist(), vals.to_pylist(), strict=True))


# ---- Arrow building blocks ----


def offsets(counts: Sequence[int] | np.ndarray) -> pa.Array:
    out = np.zeros(len(counts) + 1, dtype=np.int32)
    np.cumsum(counts, out=out[1:])
    return pa.array(out)


@dataclass
class Attrs:
    """Attribute maps of many rows, flattened: `counts[i]` entries per row."""

    counts: Sequence[int] | np.ndarray
    keys: pa.Array
    values: pa.Array

    @classmethod
    def from_raw(cls, containers: Sequence[Sequence[bytes]]) -> Attrs:
        keys, values = split_keyvalues(list(chain.from_iterable(containers)))
        return cls(list(map(len, containers)), keys, values)

    @classmethod
    def from_lists(cls, counts: list[int], keys: list[str], values: list[str]) -> Attrs:
        return cls(counts, pa.array(keys, pa.string()), pa.array(values, pa.string()))

    def to_map(self) -> pa.Array:
        return pa.MapArray.from_arrays(offsets(self.counts), self.keys, self.values, type=ATTRS)

    def with_entry(self, key: str, values: list[str]) -> Attrs:
        """These maps with (key, values[i]) appended to each row whose values[i] is not empty."""
        extra = np.array([v != "" for v in values], dtype=np.int64)
        if not extra.any():
            return self
        counts = np.asarray(self.counts, dtype=np.int64)
        total = counts + extra
        first = np.zeros(len(total), dtype=np.int64)
        np.cumsum(total[:-1], out=first[1:])
        row = np.repeat(np.arange(len(total)), total)
        local = np.arange(int(total.sum())) - first[row]
        own_first = np.zeros(len(counts), dtype=np.int64)
        np.cumsum(counts[:-1], out=own_first[1:])
        added = np.cumsum(extra) - 1
        # Each output slot reads a row's own entry, or (past the row's own count) its appended one.
        src = np.where(local < counts[row], own_first[row] + local, len(self.keys) + added[row])
        new_vals = [v for v in values if v]
        keys = pa.concat_arrays([self.keys, pa.array([key] * len(new_vals), pa.string())])
        vals = pa.concat_arrays([self.values, pa.array(new_vals, pa.string())])
        return Attrs(total, keys.take(pa.array(src)), vals.take(pa.array(src)))


@dataclass
class Nested:
    """A list column: `counts[i]` items of `flat` per row."""

    counts: Sequence[int] | np.ndarray
    flat: Any


def timestamps(nanos: Sequence[int] | np.ndarray) -> pa.Array:
    """Unix nanos (fixed64 on the wire) as timestamps; values past year 2262 saturate."""
    arr = np.minimum(np.asarray(nanos, dtype=np.uint64), _I64_MAX).astype(np.int64)
    return pa.array(arr).cast(TS)


def hex_ids(raws: list[bytes], size: int) -> tuple[pa.Array, np.ndarray]:
    """Lowercase hex of each id ("" for empty) and a mask of ids that are neither empty nor `size` bytes."""
    data, _, start, end = _layout(raws)
    lengths = end - start
    bad = (lengths != 0) & (lengths != size)
    hexed = pa.py_buffer(binascii.hexlify(memoryview(data)[: int(end[-1]) if len(end) else 0]))
    offs = np.concatenate(([0], end * 2)) if len(end) else np.zeros(1, np.int64)
    arr = pa.Array.from_buffers(pa.large_string(), len(raws), [None, pa.py_buffer(offs), hexed])
    return arr.cast(pa.string()), bad


def rollup(counts: Sequence[int] | np.ndarray, flat_bad: np.ndarray) -> np.ndarray:
    """Per-row mask: True where any of the row's `counts[i]` flat items is bad."""
    counts = np.asarray(counts, dtype=np.int64)
    out = np.zeros(len(counts), dtype=bool)
    if flat_bad.any():
        out[np.repeat(np.arange(len(counts)), counts)[flat_bad]] = True
    return out


def column(value: Any, typ: pa.DataType) -> pa.Array:
    """One Arrow column of type `typ` from a list, array, Attrs or Nested value."""
    if isinstance(value, pa.Array | pa.ChunkedArray):
        return value if value.type == typ else value.cast(typ)
    if isinstance(value, Attrs):
        return value.to_map()
    if isinstance(value, Nested):
        return pa.ListArray.from_arrays(offsets(value.counts), column(value.flat, typ.value_type), type=typ)
    if pa.types.is_timestamp(typ):
        return timestamps(value)
    return pa.array(value, typ)


@dataclass
class Context:
    """Resource and scope of each (resource, scope) group; rows point at a group."""

    res_attrs: list[Pairs] = field(default_factory=list)
    res_schema: list[str] = field(default_factory=list)
    scope_name: list[str] = field(default_factory=list)
    scope_version: list[str] = field(default_factory=list)
    scope_attrs: list[Pairs] = field(default_factory=list)
    scope_dropped: list[int] = field(default_factory=list)
    scope_schema: list[str] = field(default_factory=list)

    def add(self, res: tuple[Pairs, str], name: str, version: str, attrs: Pairs, dropped: int, schema: str) -> int:
        self.res_attrs.append(res[0])
        self.res_schema.append(res[1])
        self.scope_name.append(name)
        self.scope_version.append(version)
        self.scope_attrs.append(attrs)
        self.scope_dropped.append(dropped)
        self.scope_schema.append(schema)
        return len(self.scope_name) - 1

    def columns(self, group: np.ndarray) -> dict[str, pa.Array]:
        """Context columns for rows whose group indices are `group`."""
        service = [next((v for k, v in attrs if k == "service.name"), "") for attrs in self.res_attrs]
        small = {
            "ResourceAttributes": pa.array(self.res_attrs, ATTRS),
            "ResourceSchemaUrl": pa.array(self.res_schema, pa.string()),
            "ServiceName": pa.array(service, pa.string()),
            "ScopeName": pa.array(self.scope_name, pa.string()),
            "ScopeVersion": pa.array(self.scope_version, pa.string()),
            "ScopeAttributes": pa.array(self.scope_attrs, ATTRS),
            "ScopeDroppedAttrCount": pa.array(self.scope_dropped, pa.uint32()),
            "ScopeSchemaUrl": pa.array(self.scope_schema, pa.string()),
        }
        idx = pa.array(group, pa.int64())
        return {name: arr.take(idx) for name, arr in small.items()}


@dataclass
class Part:
    """Rows for one store table, before the ferry columns and rejected rows are dealt with."""

    table: str
    rows: int
    columns: dict[str, Any]
    bad: dict[str, np.ndarray] = field(default_factory=dict)  # reason -> row mask, in precedence order
    refused: dict[str, int] = field(default_factory=dict)  # rejections that have no row
