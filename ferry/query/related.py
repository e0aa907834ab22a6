"""Related ids: a walk of the links graph (id A is related to id B) from one id, both ways, and the
log lines that carry any id it reached. GET /api/v1/related and `ferry related` answer with it.

The links table (store/ddl.py) is filled by a link transform, which also keeps each id it extracts
in the record's LogAttributes (under the rule's key, e.g. `msgid`): so the lines of a related id are
those with that id among their LogAttributes values, whatever the key.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import orjson

from ferry.errors import BadRequest
from ferry.query.timerange import shown
from ferry.store.sql import literal
from ferry.tenancy import tenant_conds

Rows = Callable[[str], Awaitable[list[dict[str, Any]]]]

DEFAULT_DEPTH, MAX_DEPTH = 3, 6
DEFAULT_FANOUT, MAX_FANOUT = 100, 1000
# Ids one answer may reach in all: depth 6 at fan-out 1000 could otherwise ask for 10^18.
MAX_NODES = 10_000
# Longer than any message, queue, session or transaction id seen in logs; a longer `id` is a 400.
MAX_ID_CHARS = 512
# The store parses at most 256 KiB of query text (ClickHouse's max_query_size): a level whose ids
# do not fit in one statement is asked in several. Every other level is one statement.
_SQL_BUDGET = 200_000


def check_id(raw: str) -> str:
    """The `id` parameter, or BadRequest (missing, too long, or holding control characters)."""
    if raw == "":
        raise BadRequest("id is required: the id whose related ids and log lines to find")
    if len(raw) > MAX_ID_CHARS:
        raise BadRequest(f"id: at most {MAX_ID_CHARS} characters, got {len(raw)}")
    if any(ord(c) < 32 or ord(c) == 127 for c in raw):
        raise BadRequest(f"id: control characters are not allowed, got {shown(raw)}")
    return raw


def _window(start_ns: int | None, end_ns: int | None, tenant: str | None = None) -> str:
    out = "".join(f" AND {c}" for c in tenant_conds(tenant))
    if start_ns is not None:
        out += f" AND Timestamp >= fromUnixTimestamp64Nano({int(start_ns)})"
    if end_ns is not None:
        out += f" AND Timestamp < fromUnixTimestamp64Nano({int(end_ns)})"
    return out


def _chunks(ids: list[str]) -> Iterator[list[str]]:
    """`ids` cut into lists whose literals fit one statement (one list unless ids are huge)."""
    chunk: list[str] = []
    size = 0
    for i in ids:
        n = len(literal(i)) + 2
        if chunk and size + n > _SQL_BUDGET:
            yield chunk
            chunk, size = [], 0
        chunk.append(i)
        size += n
    if chunk:
        yield chunk


def neighbours_sql(ids: list[str], fanout: int, start_ns: int | None = None, end_ns: int | None = None,
                   tenant: str | None = None) -> str:
    """For each of `ids` (node), the ids linked to it either way (other) with the kind of one such
    link; at most fanout + 1 per node, so that the caller can tell a node had more than `fanout`.
    FromId is the sort key and ToId has a bloom filter: both halves read only matching granules."""
    where = f"IN ({', '.join(map(literal, ids))}){_window(start_ns, end_ns, tenant)}"
    return (
        "SELECT node, other, min(Kind) AS kind FROM ("
        f"SELECT FromId AS node, ToId AS other, Kind FROM links WHERE FromId {where} "
        "UNION ALL "
        f"SELECT ToId AS node, FromId AS other, Kind FROM links WHERE ToId {where}"
        ") WHERE other != node AND other != '' "
        f"GROUP BY node, other ORDER BY node, other LIMIT {int(fanout) + 1} BY node"
    )


def logs_sql(ids: list[str], columns: str, limit: int, start_ns: int | None = None, end_ns: int | None = None,
             tenant: str | None = None) -> str:
    """Log lines with any of `ids` among their LogAttributes values, oldest first (a transaction
    reads in order); limit + 1 rows, so that the caller can tell there were more. The values'
    bloom filter (idx_log_attr_value) skips the granules holding none of them."""
    return (
        f"SELECT {columns} FROM otel_logs "
        f"WHERE hasAny(mapValues(LogAttributes), [{', '.join(map(literal, ids))}]){_window(start_ns, end_ns, tenant)} "
        f"ORDER BY Timestamp ASC LIMIT {int(limit) + 1}"
    )


async def walk(
    rows: Rows, root: str, *, depth: int, fanout: int, start_ns: int | None = None, end_ns: int | None = None,
    tenant: str | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """Breadth-first from `root` over links both ways, `depth` levels at most, following `fanout`
    links of each id at most; each id is listed once, at the depth it was first reached, with the
    kind of link (`via`) and the id (`from`) it was reached by. Returns (related, truncated), where
    truncated says an id had more links than `fanout` or the walk reached MAX_NODES."""
    seen = {root}
    related: list[dict[str, Any]] = []
    frontier = [root]
    truncated = False
    for level in range(1, depth + 1):
        if not frontier:
            break
        by_node: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for chunk in _chunks(frontier):
            for r in await rows(neighbours_sql(chunk, fanout, start_ns, end_ns, tenant)):
                by_node[str(r["node"])].append(r)
        nxt: list[str] = []
        for node in frontier:
            links = by_node.get(node, [])
            if len(links) > fanout:
                truncated, links = True, links[:fanout]
            for link in links:
                other = str(link["other"])
                if other in seen:
                    continue
                if len(related) >= MAX_NODES:
                    return related, True
                seen.add(other)
                related.append({"id": other, "depth": level, "via": str(link["kind"]), "from": node})
                nxt.append(other)
        frontier = nxt
    return related, truncated


async def lines(
    rows: Rows, ids: list[str], *, columns: str, limit: int, start_ns: int | None = None, end_ns: int | None = None,
    tenant: str | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """The first `limit` log lines (by Timestamp) carrying any of `ids`; (lines, there were more)."""
    found: list[dict[str, Any]] = []
    parts = list(_chunks(ids))
    for chunk in parts:
        found += await rows(logs_sql(chunk, columns, limit, start_ns, end_ns, tenant))
    if len(parts) > 1:  # a line carrying ids of two chunks came twice
        found = list({orjson.dumps(r, option=orjson.OPT_SORT_KEYS): r for r in found}.values())
    found.sort(key=lambda r: int(r["time_ns"]))
    return found[:limit], len(found) > limit
