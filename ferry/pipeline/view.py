"""The pipeline as it runs, for `ferry pipeline` and GET /api/v1/pipeline: the graph from config with each
topic's depth and bytes and each consumer group's workers, lag and rates, from the bus probe.

Rates are in batches per second (the bus counts batches), over the time between two probes.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ferry import registry
from ferry.bus.probe import TopicState

if TYPE_CHECKING:
    from ferry.config.model import FerryConfig


class PipelineView:
    def __init__(self, cfg: FerryConfig) -> None:
        self.cfg = cfg
        self._last: tuple[float, dict[str, TopicState]] | None = None
        self._now: tuple[float, dict[str, TopicState]] | None = None

    def observe(self, states: list[TopicState]) -> None:
        """One probe of every topic (the store role probes about once a second)."""
        self._last, self._now = self._now, (time.monotonic(), {s.topic: s for s in states})

    def _rate(self, pick: Any) -> float | None:
        if self._last is None or self._now is None:
            return None
        (t0, a), (t1, b) = self._last, self._now
        if t1 <= t0:
            return None
        try:
            return max(0.0, (pick(b) - pick(a)) / (t1 - t0))
        except KeyError:
            return None

    def snapshot(self) -> dict[str, Any]:
        p = self.cfg.pipeline
        states = self._now[1] if self._now else {}
        writers: dict[str, list[str]] = {}
        for c in registry.COMPONENTS:
            for t in c.outputs:
                writers.setdefault(t, []).append(f"receivers.{c.kind}")
        for name, inst in p.stages.items():
            for t in inst.outputs:
                writers.setdefault(t, []).append(name)
        topics = []
        for name, t in p.topics.items():
            s = states.get(name)
            topics.append({
                "name": name, "signal": t.signal, "about": t.about,
                "batches": s.messages if s else None, "bytes": s.bytes if s else None,
                "rate_in": self._rate(lambda st, n=name: st[n].last_seq),
                "writers": writers.get(name, []),
                "readers": [g for g, inst in p.stages.items() if name in inst.inputs],
            })
        stages = []
        for name, inst in p.stages.items():
            lag = {t: states[t].lag.get(name) for t in inst.inputs if t in states}
            rate_out = self._rate(lambda st, n=name, ins=inst.inputs: sum(st[t].acked.get(n, 0) for t in ins if t in st))
            stages.append({
                "name": name, "kind": inst.kind, "inputs": list(inst.inputs), "outputs": list(inst.outputs),
                "workers": registry.instance_workers(self.cfg, name), "role": registry.kind(inst.kind).role,
                "lag": lag, "rate_out": rate_out,
                "routes": [r.name for r in getattr(inst, "routes", [])],
                "table": getattr(inst, "table", None),
                "transforms": [f"{i}:{tr.type}" for i, tr in enumerate(getattr(inst, "transforms", []))],
            })
        return {"topics": topics, "stages": stages, "rate_unit": "batches/s", "probed": self._now is not None}
