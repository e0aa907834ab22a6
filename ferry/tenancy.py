"""Which tenant a request belongs to, one rule for every receiver and every read API.

`X-Scope-OrgID` as Loki, Mimir and Tempo read it, else ferry's own `X-Ferry-Tenant`, else the default.
"""

from __future__ import annotations

from collections.abc import Mapping

HEADERS = ("x-scope-orgid", "x-ferry-tenant")  # lower case: HTTP headers and gRPC metadata keys


def tenant_of_headers(headers: Mapping[str, str], default: str) -> str:
    for name in HEADERS:
        value = str(headers.get(name) or "").strip()
        if value:
            return value
    return default


def tenant_sql(tenant: str) -> str:
    """SQL condition keeping one tenant's rows (every stored row has a `Tenant` column)."""
    # Imported here, not at the top: receivers import this module and need not load the store package.
    from ferry.store.sql import literal

    return f"Tenant = {literal(tenant)}"


def tenant_conds(tenant: str | None) -> list[str]:
    """The tenant condition as a list to AND into a WHERE, empty when `tenant` is None (every
    tenant's rows: in-process callers such as the benches; every API read passes its tenant)."""
    return [] if tenant is None else [tenant_sql(tenant)]
