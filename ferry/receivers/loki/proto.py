"""Loki's push messages (logproto.PushRequest, StreamAdapter, EntryAdapter, LabelPairAdapter), built at
import time from a FileDescriptorProto made here, on google.protobuf.Timestamp: no generated code.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2
from google.protobuf.message import Message

from ferry.receivers.prometheus.proto import message

_F = descriptor_pb2.FieldDescriptorProto
_OPT, _REP = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED


def _file() -> descriptor_pb2.FileDescriptorProto:
    p = descriptor_pb2.FileDescriptorProto(name="ferry/loki_push.proto", package="logproto", syntax="proto3",
                                           dependency=["google/protobuf/timestamp.proto"])
    message(p, "PushRequest", [("streams", 1, _REP, _F.TYPE_MESSAGE, ".logproto.StreamAdapter")])
    message(p, "StreamAdapter", [
        ("labels", 1, _OPT, _F.TYPE_STRING, ""),
        ("entries", 2, _REP, _F.TYPE_MESSAGE, ".logproto.EntryAdapter"),
        ("hash", 3, _OPT, _F.TYPE_UINT64, ""),
    ])
    message(p, "EntryAdapter", [
        ("timestamp", 1, _OPT, _F.TYPE_MESSAGE, ".google.protobuf.Timestamp"),
        ("line", 2, _OPT, _F.TYPE_STRING, ""),
        ("structuredMetadata", 3, _REP, _F.TYPE_MESSAGE, ".logproto.LabelPairAdapter"),
    ])
    message(p, "LabelPairAdapter", [("name", 1, _OPT, _F.TYPE_STRING, ""), ("value", 2, _OPT, _F.TYPE_STRING, "")])
    # The same wire format with streams and entries left as bytes: upb splits them at C speed and the
    # decoder scans the entries of a whole request in bulk.
    message(p, "RawPushRequest", [("streams", 1, _REP, _F.TYPE_BYTES, "")])
    message(p, "RawStream", [("labels", 1, _OPT, _F.TYPE_BYTES, ""), ("entries", 2, _REP, _F.TYPE_BYTES, "")])
    return p


_POOL = descriptor_pool.DescriptorPool()
_ts = descriptor_pb2.FileDescriptorProto()
timestamp_pb2.DESCRIPTOR.CopyToProto(_ts)
_POOL.Add(_ts)
_POOL.Add(_file())


def _cls(name: str) -> type[Message]:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"logproto.{name}"))


PushRequest = _cls("PushRequest")
StreamAdapter = _cls("StreamAdapter")
EntryAdapter = _cls("EntryAdapter")
LabelPairAdapter = _cls("LabelPairAdapter")
RawPushRequest = _cls("RawPushRequest")
RawStream = _cls("RawStream")
