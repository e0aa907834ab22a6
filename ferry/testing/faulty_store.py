"""A Store wrapper that fails writes on demand, for reliability tests of a running ferry.

Enable with FERRY_STORE_WRAPPER=ferry.testing.faulty_store:FaultyStore; while the file named by
FERRY_FAULTS_FILE holds the word `store`, every insert fails as an unavailable store would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ferry.errors import RetryableError
from ferry.host.faults import injected
from ferry.store.protocol import QueryLimits, Store

if TYPE_CHECKING:
    import pyarrow as pa

    from ferry.bus import codec
    from ferry.config.model import RetentionConfig

# The env value that turns this wrapper on (ferry.store.WRAPPER_ENV).
SPEC = "ferry.testing.faulty_store:FaultyStore"


class FaultyStore:
    """Passes every call to `inner`; writes raise RetryableError while the faults file says `store`.

    Reads stay up: a store that refuses inserts (a full or broken disk) still answers queries.
    """

    def __init__(self, inner: Store) -> None:
        self.inner = inner

    @staticmethod
    def _check() -> None:
        if injected("store"):
            raise RetryableError("store unavailable (injected fault)")

    @property
    def max_memory_bytes(self) -> int:
        return self.inner.max_memory_bytes

    @property
    def defer_indexes(self) -> bool:
        return self.inner.defer_indexes

    def setup(self, retention: RetentionConfig) -> None:
        self.inner.setup(retention)

    def close(self) -> None:
        self.inner.close()

    def query_rows(self, sql: str) -> list[dict[str, object]]:
        return self.inner.query_rows(sql)

    def query_bytes(self, sql: str, fmt: str = "JSONEachRow") -> bytes:
        return self.inner.query_bytes(sql, fmt)

    def read_rows(self, sql: str, limits: QueryLimits) -> list[dict[str, object]]:
        return self.inner.read_rows(sql, limits)

    def read_arrow(self, sql: str, limits: QueryLimits) -> pa.Table:
        return self.inner.read_arrow(sql, limits)

    def insert(self, table: str, rows: pa.Table) -> None:
        self._check()
        self.inner.insert(table, rows)

    def write_batches(self, table: str, batches: Sequence[codec.Batch], *, verify: bool = False) -> tuple[int, int]:
        self._check()
        return self.inner.write_batches(table, batches, verify=verify)
