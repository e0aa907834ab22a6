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
