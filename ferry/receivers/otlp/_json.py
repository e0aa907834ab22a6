"""OTLP/JSON to OTLP protobuf bytes, so JSON requests go through the same bulk decoder as protobuf.
Follows the OTLP/JSON rules: lowerCamelCase keys, hex trace/span ids, integer enums, 64-bit ints as strings.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
import threading
from collections.abc import Callable
from typing import Any

import orjson
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from ferry.errors import BadRequest

Encoder = Callable[[Any], bytes]

# Bytes fields that OTLP/JSON carries as hex rather than base64.
_HEX_FIELDS = {"trace_id", "span_id", "parent_span_id"}
# An id whose hex does not parse still lands as a record, one with an id of impossible length,
# so the decoder refuses just that record (invalid_*_id) instead of the whole request.
_BAD_ID = b"\0"
_T = FieldDescriptor
_VARINT = {_T.TYPE_INT64, _T.TYPE_UINT64, _T.TYPE_INT32, _T.TYPE_UINT32, _T.TYPE_ENUM}
_ZIGZAG = {_T.TYPE_SINT32, _T.TYPE_SINT64}
_FIXED = {
    _T.TYPE_DOUBLE: (1, "<d"),
    _T.TYPE_FLOAT: (5, "<f"),
    _T.TYPE_FIXED64: (1, "<Q"),
    _T.TYPE_SFIXED64: (1, "<q"),
    _T.TYPE_FIXED32: (5, "<I"),
    _T.TYPE_SFIXED32: (5, "<i"),
}
_FLOATS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_SMALL = [bytes((i,)) for i in range(128)]


class _Bad(Exception):
    """A JSON value that cannot become its protobuf field; `path` is filled in on the way out."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.path: list[str] = []


def _varint(v: int) -> bytes:
    if 0 <= v < 128:
        return _SMALL[v]
    if v < 0:
        v += 1 << 64  # negative int32/int64 go on the wire as 10-byte two's complement
    out = bytearray()
    while v > 127:
        out.append(v & 127 | 128)
        v >>= 7
    out.append(v)
    return bytes(out)


def _len(tag: bytes, data: bytes) -> bytes:
    n = len(data)
    return tag + (_SMALL[n] if n < 128 else _varint(n)) + data


def _int(v: Any) -> int:
    if type(v) is int:
        return v
    if type(v) is str:
        try:
            return int(v)
        except ValueError:
            pass
    elif type(v) is float and v.is_integer():
        return int(v)
    raise _Bad(f"expected an integer, got {orjson.dumps(v).decode()[:40]}")


def _float(v: Any) -> float:
    if type(v) is float or type(v) is int:
        return v
    if type(v) is str:
        if v in _FLOATS:
            return _FLOATS[v]
        try:
            return float(v)
        except ValueError:
            pass
    raise _Bad(f"expected a number, got {orjson.dumps(v).decode()[:40]}")


def _text(v: Any) -> bytes:
    if type(v) is not str:
        raise _Bad("expected a string")
    return v.encode()


def _scalar(f: FieldDescriptor, tag: bytes) -> Encoder:
    """The encoder of one value of a non-message field, tag included."""
    t = f.type
    if t == _T.TYPE_STRING:
        return lambda v: _len(tag, _text(v))
    if t == _T.TYPE_BYTES and f.name in _HEX_FIELDS:
        size = 16 if f.name == "trace_id" else 8

        def hex_id(v: Any) -> bytes:
            if type(v) is not str:
                raise _Bad("expected a hex string")
            try:
                return _len(tag, bytes.fromhex(v))
            except ValueError:
                pass
            # Some exporters send the protobuf JSON mapping's base64 instead; a string that is not
            # hex but is base64 of exactly an id's size can only mean that.
            try:
                raw = base64.b64decode(v, validate=True)
            except binascii.Error:
                raw = _BAD_ID
            return _len(tag, raw if len(raw) == size else _BAD_ID)

        return hex_id
    if t == _T.TYPE_BYTES:

        def b64(v: Any) -> bytes:
            s = _text(v).replace(b"-", b"+").replace(b"_", b"/")  # the URL-safe alphabet is allowed too
            try:
                return _len(tag, base64.b64decode(s + b"=" * (-len(s) % 4)))
            except binascii.Error:
                raise _Bad("expected base64") from None

        return b64
    if t in (_T.TYPE_DOUBLE, _T.TYPE_FLOAT):
        fmt = _FIXED[t][1]
        return lambda v: tag + struct.pack(fmt, _float(v))
    if t in _FIXED:
        fmt = _FIXED[t][1]

        def fixed(v: Any) -> bytes:
            try:
                return tag + struct.pack(fmt, _int(v))
            except struct.error:
                raise _Bad("integer out of range") from None

        return fixed
    if t == _T.TYPE_BOOL:

        def boolean(v: Any) -> bytes:
            if type(v) is not bool:
                raise _Bad("expected true or false")
            return tag + (b"\1" if v else b"\0")

        return boolean
    names = {v.name: v.number for v in f.enum_type.values} if f.enum_type else {}
    zigzag = t in _ZIGZAG

    def integer(v: Any) -> bytes:
        if type(v) is str and v in names:
            return tag + _varint(names[v])  # OTLP wants integers; accepting names costs nothing
        n = _int(v)
        if not -(1 << 63) <= n < 1 << 64:
            raise _Bad("integer out of range")
        return tag + _varint((n << 1) ^ (n >> 63) if zigzag else n)

    return integer


def _string_kv(obj: Any, generic: Encoder) -> bytes:
    """A KeyValue; the common {"key": str, "value": {"stringValue": str}} skips the generic walk."""
    if type(obj) is dict and len(obj) == 2:
        key = obj.get("key")
        value = obj.get("value")
        if type(key) is str and type(value) is dict and len(value) == 1:
            s = value.get("stringValue")
            if type(s) is str:
                return _len(b"\n", key.encode()) + _len(b"\x12", _len(b"\n", s.encode()))
    return generic(obj)


def _repeated(one: Encoder) -> Encoder:
    def encode(values: Any) -> bytes:
        if type(values) is not list:
            raise _Bad("expected an array")
        out = []
        for i, item in enumerate(values):
            try:
                out.append(one(item))
            except _Bad as e:
                e.path.append(f"[{i}]")
                raise
        return b"".join(out)

    return encode


def _message(desc: Descriptor, memo: dict[str, Encoder]) -> Encoder:
    """The encoder of a message body; JSON keys are lowerCamelCase (original names accepted too)."""
    if desc.full_name in memo:
        return memo[desc.full_name]
    fields: dict[str, Encoder] = {}

    def encode(obj: Any) -> bytes:
        if type(obj) is not dict:
            raise _Bad("expected an object")
        out = []
        for key, value in obj.items():
            enc = fields.get(key)
            if enc is None or value is None:
                continue  # unknown fields are ignored, as OTLP/JSON requires
            try:
                out.append(enc(value))
            except _Bad as e:
                e.path.append(f".{key}")
                raise
        return b"".join(out)

    memo[desc.full_name] = encode  # before the fields: AnyValue contains itself
    for f in desc.fields:
        if f.message_type is None:
            wire = 2 if f.type in (_T.TYPE_STRING, _T.TYPE_BYTES) else _FIXED.get(f.type, (0,))[0]
            one = _scalar(f, _varint(f.number << 3 | wire))
        else:
            tag = _varint(f.number << 3 | 2)
            sub = _message(f.message_type, memo)
            if f.message_type.name == "KeyValue":
                one = lambda v, tag=tag, sub=sub: _len(tag, _string_kv(v, sub))  # noqa: E731
            else:
                one = lambda v, tag=tag, sub=sub: _len(tag, sub(v))  # noqa: E731
        # protobuf 6 added is_repeated; later releases dropped label.
        repeated = f.is_repeated if hasattr(f, "is_repeated") else f.label == _T.LABEL_REPEATED
        fields[f.json_name] = fields[f.name] = _repeated(one) if repeated else one
    return encode


_ENCODERS: dict[str, Encoder] = {}
_ROOTS: dict[str, Encoder] = {}
_BUILDING = threading.Lock()


def _root(desc: Descriptor) -> Encoder:
    """The encoder of a request type, built once; receivers decode on several threads."""
    encoder = _ROOTS.get(desc.full_name)
    if encoder is None:
        with _BUILDING:
            encoder = _ROOTS.get(desc.full_name) or _message(desc, _ENCODERS)
            _ROOTS[desc.full_name] = encoder
    return encoder


def to_protobuf(payload: bytes, desc: Descriptor) -> bytes:
    """The protobuf encoding of an OTLP/JSON request whose message type is `desc`."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"not valid JSON: {e}") from None
    try:
        return _root(desc)(doc)
    except _Bad as e:
        where = "".join(reversed(e.path)).lstrip(".") or "(top level)"
        raise BadRequest(f"{where}: {e}") from None
    except (RecursionError, UnicodeEncodeError) as e:
        raise BadRequest(str(e)) from None
