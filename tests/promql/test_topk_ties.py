"""topk/bottomk among equal values keep the series Prometheus 2.42's heap keeps, not simply the first ones.

The expected sets follow its heap step by step (k-th value tied; a full heap pops its root and pushes).
"""

from __future__ import annotations

import asyncio

from ferry.query.promql import instant_query, range_query
from tests.promql.memsource import MemorySource

T = 1_700_000_000_000


def _src(values: list[float]) -> MemorySource:
    return MemorySource([({"__name__": "m", "s": name}, [(T - 1000, v)]) for name, v in zip("abcdefgh", values, strict=False)])


def _kept(q: str, values: list[float]) -> set[str]:
    return {x["metric"]["s"] for x in asyncio.run(instant_query(q, T, _src(values))).to_json()["result"]}


def test_topk_tie_at_the_cut_keeps_what_the_heap_keeps() -> None:
    # Heap of 3: [a3] → [b1 a3] → [b1 a3 c1]; d2 beats the root b1: b1 popped, d2 pushed; e1 does not beat c1.
    assert _kept("topk(3, m)", [3, 1, 1, 2, 1]) == {"a", "c", "d"}
    # Ties above the cut are always kept; the order of arrival alone decides nothing more.
    assert _kept("topk(2, m)", [1, 2, 1, 1]) == {"a", "b"}


def test_bottomk_mirrors_it() -> None:
    assert _kept("bottomk(3, m)", [-3, -1, -1, -2, -1]) == {"a", "c", "d"}


def test_nan_root_is_always_replaced() -> None:
    nan = float("nan")
    # [aNaN] → push b; c: the root (NaN) is replaced whatever c is, by pop and push.
    assert _kept("topk(2, m)", [nan, 5, nan]) == {"b", "c"}
    assert _kept("topk(1, m)", [nan, nan, nan]) == {"c"}


def test_range_query_resolves_each_step_on_its_own() -> None:
    src = MemorySource([({"__name__": "m", "s": name}, [(T + i * 60_000, float(v)) for i, v in enumerate(vals)])
                        for name, vals in zip("abcde", [(3, 0), (1, 0), (1, 5), (2, 0), (1, 0)], strict=True)])
    res = asyncio.run(range_query("topk(3, m)", T, T + 60_000, 60_000, src)).to_json()["result"]
    at = {x["metric"]["s"]: [int(t) for t, _ in x["values"]] for x in res}
    first, second = T // 1000, T // 1000 + 60
    assert {s for s, ts in at.items() if first in ts} == {"a", "c", "d"}
    assert {s for s, ts in at.items() if second in ts} == {"c", "a", "b"}
