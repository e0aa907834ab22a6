"""A bus message is one Arrow IPC stream (LZ4-compressed) plus headers naming what it holds.

Headers: Nats-Msg-Id (batch id, deduped by the stream), Ferry-Tenant, Ferry-Signal, Ferry-Table,
Ferry-Source, Ferry-Schema, Ferry-Rows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from ferry.schema import SCHEMA_VERSION

_WRITE_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")
_PLAIN = pa.ipc.IpcWriteOptions()


def new_batch_id() -> str:
    return uuid.uuid4().hex


@dataclass
class Batch:
    """One batch of rows bound for one store table (or raw lines bound for a parser)."""

    table: pa.Table
    signal: str  # logs | traces | metrics
    target: str  # store table name, or "raw_lines"
    source: str  # otlp | syslog | ...
    tenant: str = "default"
    batch_id: str = field(default_factory=new_batch_id)
    # True when this batch may already have been processed once (a redelivery or a spool resubmit);
    # the writer then also checks the data table itself, not just the batch ledger.
    redelivered: bool = False

    def headers(self) -> dict[str, str]:
        return {
            "Nats-Msg-Id": self.batch_id,
            "Ferry-Tenant": self.tenant,
            "Ferry-Signal": self.signal,
            "Ferry-Table": self.target,
            "Ferry-Source": self.source,
            "Ferry-Schema": SCHEMA_VERSION,
            "Ferry-Rows": str(self.table.num_rows),
        }


def encode(table: pa.Table, compress: bool = True) -> bytes:
    """Compressed for the bus (disk and fsync volume); plain for a local hand-off such as a chDB
    insert, where compressing only to decompress again costs CPU (measured: -20% insert CPU)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=_WRITE_OPTIONS if compress else _PLAIN) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def decode(payload: bytes) -> pa.Table:
    with pa.ipc.open_stream(pa.py_buffer(payload)) as reader:
        return reader.read_all()


def from_message(data: bytes, headers: dict[str, Any] | None, redelivered: bool = False) -> Batch:
    h = headers or {}
    return Batch(
        redelivered=redelivered,
        table=decode(data),
        signal=h.get("Ferry-Signal", ""),
        target=h.get("Ferry-Table", ""),
        source=h.get("Ferry-Source", ""),
        tenant=h.get("Ferry-Tenant", "default"),
        batch_id=h.get("Nats-Msg-Id", ""),
    )
