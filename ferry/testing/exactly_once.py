"""The reliability tests' verdict: every acknowledged record is stored, and none twice.

Records are told apart by their body, which each test makes unique and tags for its own search.
"""

from __future__ import annotations

import collections
import time

from ferry.testing.process import FerryProcess


def stored_bodies(ferry: FerryProcess, tag: str) -> collections.Counter[str]:
    """How many times each body matching `tag` is stored (up to 10,000 rows)."""
    rows = ferry.get("/api/v1/logs", q=tag, since="1d", limit=10000)["logs"]
    return collections.Counter(r["body"] for r in rows)


def assert_exactly_once(ferry: FerryProcess, tag: str, acked: list[str], timeout: float = 90) -> None:
    """Wait until every acknowledged body is stored, then check that none was lost or doubled."""
    want = set(acked)
    ferry.wait_for(lambda: want <= set(stored_bodies(ferry, tag)), timeout=timeout, interval=1)
    time.sleep(2)  # any redelivery that would double a row has had time to land
    got = stored_bodies(ferry, tag)
    missing = want - set(got)
    doubled = {k: n for k, n in got.items() if n > 1}
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {sorted(missing)[:3]}"
    assert not doubled, f"{len(doubled)} records stored more than once, e.g. {list(doubled.items())[:3]}"
