"""What the API's compatibility modules (Prometheus, Loki, Tempo, Jaeger) get from the API app.

One reader under the API's caps, the default tenant, and how a request names its tenant.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa
from starlette.requests import Request

from ferry.store import QueryLimits, Store
from ferry.tenancy import tenant_of_headers, tenant_sql

__all__ = ["ApiContext", "Arrow", "Rows", "tenant_of_headers"]

# An API read: waits its turn, runs under the caps; QueryTimeout / QueryTooBig / StoreQueryFailed /
# Backpressure (ferry/errors.py) when it fails.
Rows = Callable[[str], Awaitable[list[dict[str, Any]]]]


class Arrow(Protocol):
    """The same read answering one Arrow table (the PromQL engine's sample reads: no per-row
    parsing); `max_result_bytes` replaces the answer cap for that read."""

    def __call__(self, sql: str, max_result_bytes: int | None = None) -> Awaitable[pa.Table]: ...


@dataclass(frozen=True)
class ApiContext:
    rows: Rows
    limits: QueryLimits
    store: Store
    tenant: str = "default"  # config `tenant`: the tenant of a request that names none
    arrow: Arrow | None = None  # None: a store without read_arrow; readers use `rows`

    def tenant_of(self, request: Request) -> str:
        """The tenant a request reads or writes: `X-Scope-OrgID` (as Loki, Mimir and Tempo read it),
        else ferry's own `X-Ferry-Tenant`, else the configured default."""
        return tenant_of_headers(request.headers, self.tenant)

    def tenant_where(self, request: Request) -> str:
        """SQL condition keeping the request's tenant only."""
        return tenant_sql(self.tenant_of(request))

