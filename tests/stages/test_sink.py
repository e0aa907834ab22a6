"""The sink helper every stage that writes outside the bus uses: retries with a capped backoff, spools
what the destination keeps refusing, resubmits the spool only while the stage is idle, and counts each."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pyarrow as pa
from prometheus_client import REGISTRY

from ferry.bus import codec
from ferry.errors import RetryableError
from ferry.stages.sink import Sink, SinkPolicy, Spool


class Peer:
    """A destination that refuses while down, and remembers when each attempt came."""

    def __init__(self) -> None:
        self.down = True
        self.attempts: list[float] = []
        self.stored: list[str] = []

    async def write(self, key: str, batches: list[codec.Batch]) -> None:
        self.attempts.append(time.monotonic())
        if self.down:
            raise RetryableError("peer unavailable")
        self.stored += [b.batch_id for b in batches]


def _count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _batch(bid: str) -> codec.Batch:
    return codec.Batch(pa.table({"Body": ["x"] * 3}), "logs", "otel_logs", "t", batch_id=bid)


async def _scenario(tmp: Path) -> tuple[Peer, Sink]:
    peer = Peer()
    policy = SinkPolicy(retries=6, backoff_s=0.05, backoff_max_s=0.1, spool_retry_s=0.05)
    sink = Sink("exporter", peer.write, Spool(tmp / "spool"), policy, reason="peer_unavailable")
    retried0 = _count("ferry_retried_batches_total", component="exporter", signal="logs", reason="peer_unavailable")
    await sink.submit("peer_a", [_batch("s0"), _batch("s1")])
    gaps = [b - a for a, b in zip(peer.attempts, peer.attempts[1:], strict=False)]
    # Uncapped, the 5th gap would be 0.05 * 2**4 = 0.8 s.
    assert len(gaps) == 5 and max(gaps) < 0.3, gaps
    assert _count("ferry_retried_batches_total", component="exporter", signal="logs", reason="peer_unavailable") - retried0 == 6
    assert _count("ferry_spooled_batches_total", component="exporter", table="peer_a") == 2
    assert sink.spool.pending() == 2

    peer.down = False
    busy = True
    resubmitting = asyncio.create_task(sink.resubmit_forever(lambda: not busy))
    await asyncio.sleep(0.5)
    assert peer.stored == [], "fresh traffic keeps priority: nothing resubmitted while the stage is busy"
    busy = False
    deadline = time.monotonic() + 5
    while sink.spool.pending() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    resubmitting.cancel()
    assert sorted(peer.stored) == ["s0", "s1"]
    assert _count("ferry_spool_resubmitted_batches_total", table="peer_a") == 2
    return peer, sink


def test_retries_are_capped_then_spooled_then_resubmitted_when_idle(tmp_path: Path) -> None:
    asyncio.run(_scenario(tmp_path))
