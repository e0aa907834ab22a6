"""Builds the skip indexes that inserts leave to merges, for the parts no merge has reached yet.

Inserts skip ddl.DEFERRED_INDEXES and every merge builds them for the part it writes; a part that stays
unmerged for `after_s` seconds gets them from MATERIALIZE INDEX, which only builds what a part lacks.
"""

from __future__ import annotations

from collections import defaultdict

from ferry.host.periodic import repeat
from ferry.store import ddl
from ferry.store.protocol import Store
from ferry.store.sql import literal
from ferry.telemetry import metrics

# MATERIALIZE INDEX works on whole partitions and rebuilds the index of every part in one, indexed or not:
# a few fresh rows beside a merged part of millions cost a rewrite of all of it (seen: 45 s of a core
# for a 13.8 M-row part, after every start). A partition is caught up only while its indexed rows are at
# most this many times its unindexed ones; past that, its few unindexed rows are scanned (cheap, being
# few) until a merge takes them in.
REWRITE_RATIO = 4


def lacking(store: Store, after_s: float) -> dict[str, dict[str, int]]:
    """table -> partition id -> parts older than `after_s` that no merge or mutation has rewritten, in
    partitions where building their indexes rewrites no more than REWRITE_RATIO times their rows.

    Such a part (level 0, data version = its first block) is exactly as its insert wrote it, so it
    lacks the deferred indexes; a merge or MATERIALIZE INDEX rewrites it with them. Files cannot
    tell: small skip indexes share one packed file.
    """
    tables = ",".join(map(literal, ddl.DEFERRED_INDEXES))
    rows = store.query_rows(
        f"SELECT table, partition_id, countIf(bare AND modification_time <= now() - {int(after_s)}) AS parts, "
        "sumIf(rows, bare) AS bare_rows, sumIf(rows, NOT bare) AS indexed_rows FROM ("
        "SELECT table, partition_id, rows, modification_time, level = 0 AND data_version = min_block_number AS bare "
        f"FROM system.parts WHERE active AND database = currentDatabase() AND table IN ({tables})) "
        f"GROUP BY table, partition_id HAVING parts > 0 AND indexed_rows <= {REWRITE_RATIO} * bare_rows"
    )
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for r in rows:
        out[str(r["table"])][str(r["partition_id"])] = int(r["parts"])  # type: ignore[call-overload]
    return dict(out)


def catch_up(store: Store, after_s: float) -> int:
    """Start building the indexes that parts older than `after_s` lack; returns how many partitions.

    One mutation per table at a time: a table with a mutation still running is left for next round.
    """
    busy = {str(r["table"]) for r in store.query_rows(
        "SELECT DISTINCT table FROM system.mutations WHERE NOT is_done AND database = currentDatabase()"
    )}  # fmt: skip
    started = 0
    for table, partitions in lacking(store, after_s).items():
        if table in busy:
            continue
        commands = [
            f"MATERIALIZE INDEX {index} IN PARTITION ID {literal(partition)}"
            for partition in sorted(partitions)
            for index in ddl.DEFERRED_INDEXES[table]
        ]
        store.query_bytes(f"ALTER TABLE {table} {', '.join(commands)} SETTINGS mutations_sync = 0", "TSV")
        started += len(partitions)
        metrics.indexed_late.labels(table).inc(len(partitions))
    return started


async def keep_indexes(store: Store, after_s: float, every_s: float = 5.0) -> None:
    """Run catch_up every `every_s` seconds until cancelled (the store role's background task)."""
    await repeat(every_s, lambda: catch_up(store, after_s), "building deferred indexes")
