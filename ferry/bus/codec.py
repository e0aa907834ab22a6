"""A bus message is one Arrow IPC stream (LZ4-compressed) plus headers naming what it holds.

Headers: Nats-Msg-Id (batch id, deduped by the stream), Ferry-Tenant, Ferry-Signal, Ferry-Table,
Ferry-Source, Ferry-Schema, Ferry-Rows. Rows bound for the store carry the batch id in BatchId.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from ferry.schema import REMOTE_WRITE_TARGET, SCHEMA_VERSION

_WRITE_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")
_PLAIN = pa.ipc.IpcWriteOptions()
# Targets whose rows are compressed already (remote_write's snappy bodies): LZ4 over them costs
# ~10 % of the receiver's CPU and saves no bytes.
PRECOMPRESSED = frozenset({REMOTE_WRITE_TARGET})


def new_batch_id() -> str:
    return uuid.uuid4().hex


class Batch:
    """One batch of rows bound for one store table (or raw lines bound for a parser).

    Built from a table, or from a bus message whose payload is decoded only when `table` is first
    read: the writer passes payloads to the store undecoded (see splice), which saves the store a
    decode and re-encode of every row.
    """

    __slots__ = (
        "_table", "_payload", "_rows", "signal", "target", "source", "tenant", "batch_id", "redelivered", "published",
    )  # fmt: skip

    def __init__(
        self,
        table: pa.Table | None,
        signal: str,  # logs | traces | metrics
        target: str,  # store table name, or "raw_lines"
        source: str,  # otlp | syslog | ...
        tenant: str = "default",
        batch_id: str | None = None,
        # True when this batch may already have been processed once (a redelivery or a spool
        # resubmit); the writer then also checks the data table itself, not just the batch ledger.
        redelivered: bool = False,
        *,
        payload: bytes | None = None,
        rows: int | None = None,
        published: float | None = None,  # when the bus stored it (epoch seconds), if it came from one
    ) -> None:
        if table is None and payload is None:
            raise ValueError("a Batch needs a table or a payload")
        self._table = table
        self._payload = payload
        self._rows = table.num_rows if table is not None else rows
        self.signal = signal
        self.target = target
        self.source = source
        self.tenant = tenant
        self.batch_id = batch_id or new_batch_id()
        self.redelivered = redelivered
        self.published = published

    @property
    def table(self) -> pa.Table:
        if self._table is None:
            assert self._payload is not None
            self._table = decode(self._payload)
            self._rows = self._table.num_rows
        return self._table

    @property
    def num_rows(self) -> int:
        return self._rows if self._rows is not None else self.table.num_rows

    def payload(self) -> bytes:
        """The batch as one LZ4 Arrow IPC stream, its BatchId column (if the table has one) holding
        the batch id, so that whoever stores the rows can do so without decoding them."""
        if self._payload is None:
            self._payload = encode(stamp(self.table, self.batch_id), compress=self.target not in PRECOMPRESSED)
        return self._payload

    def headers(self) -> dict[str, str]:
        return {
            "Nats-Msg-Id": self.batch_id,
            "Ferry-Tenant": self.tenant,
            "Ferry-Signal": self.signal,
            "Ferry-Table": self.target,
            "Ferry-Source": self.source,
            "Ferry-Schema": SCHEMA_VERSION,
            "Ferry-Rows": str(self.num_rows),
        }


def stamp(table: pa.Table, batch_id: str) -> pa.Table:
    """`table` with every row's BatchId set to `batch_id` (unchanged if it has no such column)."""
    idx = table.schema.get_field_index("BatchId")
    if idx < 0:
        return table
    return table.set_column(idx, table.schema.field(idx), pa.repeat(pa.scalar(batch_id, pa.string()), table.num_rows))


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


_EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"


def _frames(payload: bytes) -> tuple[bytes, int, list[tuple[int, int]]]:
    """Walk an IPC stream's framing without decompressing anything: (schema metadata, end of the
    schema message, [(start, end) of each record batch message]). Raises ValueError if malformed."""
    source = pa.BufferReader(pa.py_buffer(payload))
    try:
        schema = pa.ipc.read_message(source)
        if schema.type != "schema":
            raise ValueError(f"an IPC stream starts with a schema message, not {schema.type}")
        schema_end = source.tell()
        batches = []
        while source.tell() < len(payload):
            at = source.tell()
            try:
                message = pa.ipc.read_message(source)
            except EOFError:  # the end-of-stream marker
                break
            if message.type != "record batch":
                raise ValueError(f"unexpected {message.type} message in a batch")
            batches.append((at, source.tell()))
    except (pa.ArrowInvalid, OSError, EOFError) as e:
        raise ValueError(f"not an Arrow IPC stream: {e}") from e
    return schema.metadata.to_pybytes(), schema_end, batches


def schema_key(payload: bytes) -> bytes:
    """The serialized schema of an IPC stream: equal keys, identical schemas (names, types, order)."""
    return _frames(payload)[0]


def schema_key_of(schema: pa.Schema) -> bytes:
    return schema_key(encode(schema.empty_table()))


def splice(payloads: Sequence[bytes]) -> list[bytes]:
    """Join IPC streams into as few as possible without decoding a row: one stream per distinct
    schema, holding the schema once and every record batch message (still LZ4) of its inputs."""
    streams: dict[bytes, list[memoryview]] = {}
    for p in payloads:
        view = memoryview(p)
        schema, schema_end, batches = _frames(p)
        pieces = streams.setdefault(schema, [view[:schema_end]])
        pieces.extend(view[start:end] for start, end in batches)
    return [b"".join([*pieces, _EOS]) for pieces in streams.values()]


def from_message(
    data: bytes, headers: dict[str, Any] | None, redelivered: bool = False, published: float | None = None
) -> Batch:
    """A Batch over a bus message, decoded lazily. Messages of an older schema version were
    published without stamped batch ids, so they are decoded and stamped again when sent on."""
    h = headers or {}
    current = h.get("Ferry-Schema") == SCHEMA_VERSION
    if current:
        _frames(data)  # a malformed message fails here, where it can be set aside on its own
    rows = h.get("Ferry-Rows")
    return Batch(
        None if current else decode(data),
        redelivered=redelivered,
        signal=h.get("Ferry-Signal", ""),
        target=h.get("Ferry-Table", ""),
        source=h.get("Ferry-Source", ""),
        tenant=h.get("Ferry-Tenant", "default"),
        batch_id=h.get("Nats-Msg-Id", ""),
        payload=data if current else None,
        rows=int(rows) if current and rows and rows.isdigit() else None,
        published=published,
    )
