"""Window search over many series: the shared-grid shortcut gives exactly the per-series searchsorted,
including when series only look alike (same length, ends and sum of times) but differ inside."""

from __future__ import annotations

import numpy as np

from ferry.query.promql.values import concat_series, search_rows_many


def _expected(ts: list[np.ndarray], q: np.ndarray, side: str) -> np.ndarray:
    starts = np.concatenate([[0], np.cumsum([len(t) for t in ts])])
    return np.stack([np.searchsorted(t, q, side=side) + starts[i] for i, t in enumerate(ts)])  # type: ignore[call-overload]


def _check(ts: list[np.ndarray]) -> None:
    tt, _, starts = concat_series(ts, [np.zeros(len(t)) for t in ts])
    q = np.arange(0, 200_000, 7_000, dtype=np.int64)
    got = search_rows_many(tt, starts, [(q - 30_000, "left"), (q, "right")])
    assert (got[0] == _expected(ts, q - 30_000, "left")).all()
    assert (got[1] == _expected(ts, q, "right")).all()


def test_series_on_shared_grids_in_runs_and_interleaved() -> None:
    a = np.arange(0, 180_000, 15_000, dtype=np.int64)
    b = a + 1_000
    _check([a] * 20 + [b] * 20)  # two runs of one grid each
    _check([a, b] * 20)  # grids alternating row by row


def test_lookalike_series_are_not_taken_for_one_grid() -> None:
    a = np.arange(0, 180_000, 15_000, dtype=np.int64)
    c = a.copy()
    c[3] += 500  # same length, first, last and sum of times as `a`
    c[4] -= 500
    _check([a] * 20 + [c] + [a] * 20)
    _check([a, c] * 20)
