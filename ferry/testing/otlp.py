"""Builds OTLP export requests for tests and benchmarks without an SDK in the loop.

Bodies carry caller-chosen ids so a test can count exactly which records landed.
"""

from __future__ import annotations

import time

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord


def logs_request(bodies: list[str], service: str = "loadgen", attrs: dict[str, str] | None = None,
                 time_ns: int | None = None) -> bytes:
    """One request of `bodies`, stamped `time_ns` (default now) plus their index in nanoseconds."""
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value=service)))
    rl.resource.attributes.append(KeyValue(key="host.name", value=AnyValue(string_value="bench-host")))
    sl = rl.scope_logs.add()
    sl.scope.name = "ferry.testing"
    now = time.time_ns() if time_ns is None else time_ns
    kv = [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in (attrs or {}).items()]
    recs = sl.log_records
    for i, body in enumerate(bodies):
        recs.append(
            LogRecord(
                time_unix_nano=now + i,
                severity_number=9,
                severity_text="INFO",
                body=AnyValue(string_value=body),
                attributes=kv,
            )
        )
    return req.SerializeToString()
