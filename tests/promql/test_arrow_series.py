"""The store's Arrow sample read gives the same series as its row read, in every case _to_series handles.

Plain rows become views; unsorted rows, repeated timestamps, staleness markers, delta points and
label sets split over two rows take the row-by-row path. Both must agree exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from ferry.query.prom_store import _arrow_series, _to_series
from ferry.query.promql.source import is_stale

ROWS: list[dict[str, Any]] = [
    {"labels": {"__name__": "a", "i": "1"}, "delta": 0, "base": [], "ts": [1, 2, 3], "vs": [1.0, 2.0, 3.0], "stale": []},
    {"labels": {"__name__": "a", "i": "2"}, "delta": 0, "base": [], "ts": [3, 1, 2], "vs": [3.0, 1.0, 2.0], "stale": []},
    {"labels": {"__name__": "a", "i": "3"}, "delta": 0, "base": [], "ts": [1, 1, 2], "vs": [5.0, 6.0, 7.0], "stale": []},
    {"labels": {"__name__": "a", "i": "4"}, "delta": 0, "base": [], "ts": [1, 2, 3], "vs": [1.0, 0.0, 3.0], "stale": [2]},
    {"labels": {"__name__": "a", "i": "5"}, "delta": 1, "base": [10.0], "ts": [1, 2], "vs": [1.0, 2.0], "stale": []},
    {"labels": {"__name__": "a", "i": "6"}, "delta": 0, "base": [], "ts": [1, 3], "vs": [1.0, 3.0], "stale": []},
    {"labels": {"i": "6", "__name__": "a"}, "delta": 0, "base": [], "ts": [2], "vs": [float("nan")], "stale": []},
]


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.table({
        "labels": pa.array([list(r["labels"].items()) for r in rows], pa.map_(pa.string(), pa.string())),
        "delta": pa.array([r["delta"] for r in rows], pa.uint8()),
        "base": pa.array([r["base"] for r in rows], pa.list_(pa.float64())),
        "ts": pa.array([r["ts"] for r in rows], pa.list_(pa.int64())),
        "vs": pa.array([r["vs"] for r in rows], pa.list_(pa.float64())),
        "stale": pa.array([r["stale"] for r in rows], pa.list_(pa.int64())),
    })


def _by_labels(series: list[Any]) -> dict[tuple[tuple[str, str], ...], Any]:
    return {tuple(sorted(s.labels.items())): s for s in series}


def test_arrow_read_equals_row_read() -> None:
    want = _by_labels(_to_series(ROWS))
    got = _by_labels(_arrow_series(_table(ROWS)))
    assert got.keys() == want.keys()
    for k, w in want.items():
        g = got[k]
        assert g.t.tolist() == w.t.tolist(), k
        assert np.array_equal(g.v.view(np.uint64), w.v.view(np.uint64)), k  # bit for bit: NaN and stale NaN apart
    assert got[(("__name__", "a"), ("i", "2"))].t.tolist() == [1, 2, 3]
    assert is_stale(got[(("__name__", "a"), ("i", "4"))].v).tolist() == [False, True, False]
    assert got[(("__name__", "a"), ("i", "5"))].v.tolist() == [11.0, 13.0]
    assert got[(("__name__", "a"), ("i", "6"))].t.tolist() == [1, 2, 3]


def test_plain_rows_alone() -> None:
    plain = ROWS[:1] + [{**ROWS[5], "labels": {"__name__": "b"}}]
    got = _by_labels(_arrow_series(_table(plain)))
    assert got[(("__name__", "a"), ("i", "1"))].v.tolist() == [1.0, 2.0, 3.0]
    assert got[(("__name__", "b"),)].t.tolist() == [1, 3]
    assert _arrow_series(_table([])) == []
