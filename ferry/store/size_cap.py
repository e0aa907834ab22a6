"""Keeps the store under `store.max_bytes`: once its parts outgrow it, the oldest time partitions
are dropped, across all signals, until it is back under 90 % of the limit.

Retention by age (TTL) says how long data is kept; this says how much disk it may take, so a
single machine never fills its disk with telemetry (where receivers would then refuse everything
new, host/disk.py). Every dropped row is counted: ferry_dropped_records_total{component="store",
reason="size_limit"}.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ferry.host.disk import mib
from ferry.host.periodic import repeat
from ferry.schema.tables import CATALOGUE, IMMUTABLE_TABLES
from ferry.store.protocol import Store
from ferry.store.sql import literal
from ferry.telemetry import events

log = logging.getLogger("ferry.store.size_cap")

SIGNAL_OF_TABLE = {t.name: t.signal for t in CATALOGUE}

# Count toward the size, are never dropped: the exactly-once ledger (small, holds no telemetry) and
# the immutable tables (kept for their retention whatever the size).
_KEEP = ("ferry_batches", *IMMUTABLE_TABLES)
# Dropping stops this far under the limit, so the next inserts do not trigger it again at once.
_TARGET = 0.9


@dataclass(frozen=True)
class Partition:
    table: str
    partition_id: str
    start: str  # the partition key's value: 'YYYY-MM-DD' (daily tables) or 'YYYY-MM-DD hh:mm:ss' (hourly)
    rows: int
    bytes: int


def partitions(store: Store) -> list[Partition]:
    """Every table's active partitions, oldest first."""
    rows = store.query_rows(
        "SELECT table, partition_id, partition, sum(rows) AS rows, sum(bytes_on_disk) AS bytes FROM system.parts "
        "WHERE active AND database = currentDatabase() GROUP BY table, partition_id, partition"
    )
    out = [Partition(str(r["table"]), str(r["partition_id"]), str(r["partition"]).strip("'"), int(r["rows"]),  # type: ignore[call-overload]
                     int(r["bytes"])) for r in rows]  # type: ignore[call-overload]
    # Dates sort before the hours of the same day, which start no earlier: oldest first either way.
    return sorted(out, key=lambda p: (p.start, p.table))


def to_drop(parts: list[Partition], max_bytes: int) -> list[Partition]:
    """The oldest partitions whose dropping brings the total to under _TARGET of `max_bytes`. A
    table's newest partition (where its inserts go now) is never among them, nor any partition of
    the ledger or an immutable table (siem_events), though their bytes count in the total."""
    total = sum(p.bytes for p in parts)
    if total <= max_bytes:
        return []
    newest = {p.table: p.start for p in parts}  # sorted oldest first: the last one seen is the newest
    out = []
    for p in parts:
        if total <= max_bytes * _TARGET:
            break
        if p.table in _KEEP or newest[p.table] == p.start:
            continue
        out.append(p)
        total -= p.bytes
    return out


def enforce(store: Store, max_bytes: int) -> int:
    """Drop what to_drop() names; returns the rows dropped."""
    parts = partitions(store)
    dropped = 0
    for p in to_drop(parts, max_bytes):
        store.query_bytes(f"ALTER TABLE {p.table} DROP PARTITION ID {literal(p.partition_id)}", "TSV")
        dropped += p.rows
        events.dropped("store", SIGNAL_OF_TABLE.get(p.table, "logs"), "size_limit", p.rows,
                       detail=f"over store.max_bytes ({mib(max_bytes)}): {p.table} partition {p.start}, {mib(p.bytes)}")
    left = sum(p.bytes for p in partitions(store)) if dropped else sum(p.bytes for p in parts)
    if left > max_bytes:
        log.error("store holds %s, over store.max_bytes (%s), in partitions still being written or never "
                  "dropped (%s): raise store.max_bytes", mib(left), mib(max_bytes), ", ".join(_KEEP))
    return dropped


async def keep_under(store: Store, max_bytes: int, every_s: float) -> None:
    """Run enforce() every `every_s` seconds until cancelled (the store role's background task)."""
    await repeat(every_s, lambda: enforce(store, max_bytes), "size check")
