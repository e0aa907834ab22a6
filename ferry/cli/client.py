"""A thin client of ferry's HTTP API; every CLI read command goes through it.

The API address comes from --api, then FERRY_API, then http://127.0.0.1:8686.
"""

from __future__ import annotations

import os
from typing import Any

import httpx

from ferry.errors import FerryError


class ApiError(FerryError):
    """The API answered with an error, or could not be reached."""


def base_url(flag: str | None) -> str:
    return (flag or os.environ.get("FERRY_API") or "http://127.0.0.1:8686").rstrip("/")


def get(api: str, path: str, params: Any = None, timeout: float = 30.0) -> Any:
    try:
        r = httpx.get(f"{api}{path}", params=params, timeout=timeout)
    except httpx.HTTPError as e:
        raise ApiError(f"cannot reach ferry at {api}: {e}. Is `ferry run` running?") from e
    if r.status_code >= 400:
        try:
            msg = r.json().get("error", r.text)
        except ValueError:
            msg = r.text
        raise ApiError(f"{msg} (HTTP {r.status_code})")
    return r.json()
