"""SQL string literals (ferry.store.sql.literal): every value reaches chDB as exactly itself.

Control characters, quotes, backslashes, non-ASCII and injection attempts, read back as bytes and
matched by equality after a round trip through a table. chDB runs in a child process.
"""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

from ferry.store.sql import literal

SAMPLES = [
    "",
    "'",
    "\\",
    "\\'",
    "''",
    "a'b\\c",
    "x' OR 1=1 --",
    "'; DROP TABLE t; --",
    "\x00\x01\x1f\x7f",
    "\n\r\t\b\f\v",
    "line1\nline2",
    "é😀中",
    "Ünïcödé\u2028\u00a0",
    "\\x41",
    "\\n",
    "{p:String}",
    "?",
    "%s",
    "\\\\'",
]


def _round_trip(path: str) -> dict[str, object]:
    from ferry.store.chdb_store import ChdbStore

    s = ChdbStore(Path(path))
    try:
        cols = ", ".join(f"hex({literal(v)}) AS c{i}" for i, v in enumerate(SAMPLES))
        row = s.query_rows(f"SELECT {cols}")[0]
        s.query_bytes("CREATE TABLE t (i UInt32, v String) ENGINE = MergeTree ORDER BY i", "TSV")
        values = ", ".join(f"({i}, {literal(v)})" for i, v in enumerate(SAMPLES))
        s.query_bytes(f"INSERT INTO t VALUES {values}", "TSV")
        # Each value finds exactly its own row by equality: the literal means the same in a WHERE.
        found = [[int(r["i"]) for r in s.query_rows(f"SELECT i FROM t WHERE v = {literal(v)}")]  # type: ignore[call-overload]
                 for v in SAMPLES]
        return {"hex": [row[f"c{i}"] for i in range(len(SAMPLES))], "found": found}
    finally:
        s.close()


def test_literal_round_trips_exactly(tmp_path: Path) -> None:
    """literal(v) evaluates to the exact UTF-8 bytes of v, and selects exactly the row holding v."""
    with mp.get_context("spawn").Pool(1) as pool:
        got = pool.apply(_round_trip, (str(tmp_path / "store"),))
    assert got["hex"] == [v.encode().hex().upper() for v in SAMPLES]
    assert got["found"] == [[i] for i in range(len(SAMPLES))]


def test_literal_is_one_line() -> None:
    """No raw control character survives into SQL text, so logged SQL stays one line per statement."""
    for v in SAMPLES:
        text = literal(v)
        assert not any(ord(c) < 0x20 or c == "\x7f" for c in text), text
        assert text.startswith("'") and text.endswith("'")
