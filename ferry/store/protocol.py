"""What the rest of ferry needs from a store: the Store protocol and the caps of an API read.

ChdbStore (embedded chDB) implements it; a ClickHouse-server store can, since the SQL is the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pyarrow as pa

    from ferry.bus import codec
    from ferry.config.model import RetentionConfig


@dataclass(frozen=True)
class QueryLimits:
    """Caps on one API read. They are settings of the reading thread's own connection, so the
    writer's inserts and the maintenance jobs, which read and write on other connections, are
    never cut by them."""

    max_seconds: float
    max_memory_bytes: int
    max_result_bytes: int

    def describe(self, reason: str) -> str:
        if reason == "timeout":
            return f"the query took longer than {self.max_seconds:g} s; narrow the time range or the query"
        if reason == "memory":
            return f"the query needed more than {_size(self.max_memory_bytes)} of memory; narrow the time range or the query"
        if reason == "result":
            return f"the answer is larger than {_size(self.max_result_bytes)}; lower the limit or narrow the query"
        return "the query failed in the store; retry later"


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


@runtime_checkable
class Store(Protocol):
    """The calls the store role makes on its store: the writer and spool (write_batches), the API
    (read_rows), the upkeep jobs (query_rows, query_bytes: store/indexes.py, store/size_cap.py) and
    the role itself (setup, close). Every method may be called from any thread."""

    @property
    def max_memory_bytes(self) -> int:
        """The store's memory cap; the API caps one read at a share of it unless configured."""
        ...

    @property
    def defer_indexes(self) -> bool:
        """Whether inserts leave ddl.DEFERRED_INDEXES to merges (the role then runs store/indexes.py)."""
        ...

    def setup(self, retention: RetentionConfig) -> None:
        """Create the tables of ddl.all_statements, or bring an older store's up to date."""
        ...

    def close(self) -> None: ...

    def query_rows(self, sql: str) -> list[dict[str, object]]:
        """Run an internal read; any failure is RetryableError."""
        ...

    def query_bytes(self, sql: str, fmt: str = "JSONEachRow") -> bytes:
        """Run an internal statement and return its answer in format `fmt`; any failure is RetryableError."""
        ...

    def read_rows(self, sql: str, limits: QueryLimits) -> list[dict[str, object]]:
        """An API read under `limits`: QueryTimeout, QueryTooBig or StoreQueryFailed, with a
        message fit for a client, when it fails."""
        ...

    def read_arrow(self, sql: str, limits: QueryLimits) -> pa.Table:
        """read_rows as one Arrow table (the PromQL engine's sample reads), same caps and errors."""
        ...

    def insert(self, table: str, rows: pa.Table) -> None:
        """Insert decoded rows as they are (no exactly-once check); RetryableError when it fails."""
        ...

    def write_batches(self, table: str, batches: Sequence[codec.Batch], *, verify: bool = False) -> tuple[int, int]:
        """Insert bus batches into `table` exactly once by batch id: (rows written, batches skipped
        as already stored). RetryableError when the store cannot take them now."""
        ...
