"""The status page's store figures: each table's rows, bytes on disk, oldest and newest partition, and
its retention as the table's own TTL states it (the API has no config; the TTL is what the store applies).

SQL over system.parts and system.tables of the store's database; ferry/store/ddl.py wrote the TTLs it reads back.
"""

from __future__ import annotations

import re
from typing import Any

from ferry.schema.tables import CATALOGUE
from ferry.store.ddl import ttl_days
from ferry.store.sql import literal

_TTL = re.compile(r"\bTTL\s+(.*?)(?:\s+SETTINGS\s|$)", re.S)


def parts_sql() -> str:
    """One row per table with active parts: rows, bytes on disk, parts, oldest and newest partition."""
    return ("SELECT table, sum(rows) AS rows, sum(bytes_on_disk) AS bytes, count() AS parts, "
            "min(partition) AS oldest, max(partition) AS newest FROM system.parts "
            "WHERE active AND database = currentDatabase() GROUP BY table")


def tables_sql() -> str:
    """Every MergeTree table of the store with its full engine clause (where the TTL is written)."""
    return ("SELECT name, engine_full FROM system.tables WHERE database = currentDatabase() "
            f"AND engine LIKE {literal('%MergeTree')}")


def ttl_of(engine_full: str) -> tuple[str | None, int | None]:
    """(TTL expression, days kept) of a table's engine clause; (None, None) when it keeps rows forever,
    days -1 for a TTL ferry did not write."""
    m = _TTL.search(engine_full or "")
    if not m:
        return None, None
    expr = m.group(1).strip()
    return expr, ttl_days(expr)


def tables(parts: list[dict[str, Any]], defs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The catalogue's tables first (in its order, even empty ones), then any other table with rows."""
    by_part = {r["table"]: r for r in parts}
    by_def = {r["name"]: r for r in defs}
    signal = {t.name: t.counted_as for t in CATALOGUE}
    names = [t.name for t in CATALOGUE if t.name in by_def or t.name in by_part]
    names += sorted(n for n in by_part if n not in signal and not n.startswith(".inner"))
    out = []
    for name in names:
        p = by_part.get(name, {})
        expr, days = ttl_of(by_def.get(name, {}).get("engine_full", ""))
        out.append({
            "table": name, "counted_as": signal.get(name), "rows": int(p.get("rows") or 0),
            "bytes_on_disk": int(p.get("bytes") or 0), "parts": int(p.get("parts") or 0),
            "oldest_partition": p.get("oldest"), "newest_partition": p.get("newest"),
            "retention_days": days, "ttl": expr,
        })
    return out
