"""Deferred skip indexes: inserts leave the full-text index to merges, and the index keeper builds it
for parts no merge reached. Search finds the same rows before and after, and uses the index after.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.store.test_chdb_store import _in_child, _logs


def _scenario(path: str) -> dict[str, Any]:
    from ferry.config.model import RetentionConfig
    from ferry.store import ddl, indexes
    from ferry.store.chdb_store import ChdbStore

    s = ChdbStore(Path(path), defer_indexes=True)
    s.setup(RetentionConfig())
    now = time.time_ns()
    s.insert("otel_logs", _logs(["payment refused for Wi-Fi user", "all good"], now))
    s.insert("otel_logs", _logs(["another payment went through"], now - 2 * 3600 * 10**9))
    search = f"SELECT Body FROM otel_logs WHERE hasAllTokens({ddl.BODY_TOKENS}, ['payment']) ORDER BY Body"
    forced = search + " SETTINGS force_data_skipping_indices = 'idx_body'"
    out: dict[str, Any] = {
        "lacking_fresh_with_delay": dict(indexes.lacking(s, 3600)),
        "lacking": indexes.lacking(s, 0),
        "found_before": [r["Body"] for r in s.query_rows(search)],
        "started_with_delay": indexes.catch_up(s, 3600),
        "started": indexes.catch_up(s, 0),
    }
    deadline = time.monotonic() + 30
    while indexes.lacking(s, 0) and time.monotonic() < deadline:
        time.sleep(0.2)
    out["lacking_after"] = dict(indexes.lacking(s, 0))
    out["found_after"] = [r["Body"] for r in s.query_rows(forced)]
    out["has_text_index"] = all(
        (Path(str(r["path"])) / "skp_idx_idx_body.idx").exists()
        for r in s.query_rows("SELECT path FROM system.parts WHERE active AND table = 'otel_logs'")
    )
    s.close()
    return out


def test_index_keeper_builds_what_inserts_deferred(tmp_path: Path) -> None:
    out = _in_child(_scenario, str(tmp_path / "store"))
    # Parts younger than the delay are left to merges.
    assert out["lacking_fresh_with_delay"] == {}
    assert out["started_with_delay"] == 0
    # Both hourly partitions of otel_logs hold one unindexed part, and no other table has any.
    assert list(out["lacking"]) == ["otel_logs"]
    assert sorted(out["lacking"]["otel_logs"].values()) == [1, 1]
    # Unindexed parts are still searched (by scanning): same answer as with the index.
    assert out["found_before"] == ["another payment went through", "payment refused for Wi-Fi user"]
    assert out["started"] == 2
    assert out["lacking_after"] == {}
    assert out["found_after"] == out["found_before"]
    assert out["has_text_index"]


def _big_beside_small(path: str) -> dict[str, Any]:
    from ferry.config.model import RetentionConfig
    from ferry.store import indexes
    from ferry.store.chdb_store import ChdbStore

    s = ChdbStore(Path(path), defer_indexes=True)
    s.setup(RetentionConfig())
    now = time.time_ns()
    for i in range(3):
        s.insert("otel_logs", _logs([f"line {i}-{k} of a busy hour" for k in range(2_000)], now))
    s.query_bytes("OPTIMIZE TABLE otel_logs FINAL", "TSV")  # one merged part: indexed
    s.insert("otel_logs", _logs(["one late line"], now))
    out = {"lacking": indexes.lacking(s, 0), "started": indexes.catch_up(s, 0),
           "found": [r["Body"] for r in s.query_rows("SELECT Body FROM otel_logs WHERE Body LIKE '%late%'")]}
    s.close()
    return out


def test_a_few_fresh_rows_do_not_rewrite_a_merged_partition(tmp_path: Path) -> None:
    """MATERIALIZE INDEX rebuilds every part of a partition: one late row beside 6,000 merged ones is left
    to the next merge (and scanned meanwhile) rather than rewriting the 6,000."""
    out = _in_child(_big_beside_small, str(tmp_path / "store"))
    assert out["lacking"] == {} and out["started"] == 0
    assert out["found"] == ["one late line"]
