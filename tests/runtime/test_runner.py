"""The stage runtime against a real nats-server: a backlog of large batches drains in fetches of
about the stage's row budget, each batch delivered once, with no slow-consumer stall; a short burst
reaches the stage once the topic is drained, without waiting out max_wait_s."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pyarrow as pa
import pytest
from prometheus_client import REGISTRY

from ferry.bus import codec
from ferry.bus.publish import publish
from ferry.bus.topics import LOG_PARSER, LOGGING, inputs_of, subject_of
from ferry.config.model import FerryConfig
from ferry.runtime.runner import StageRunner
from ferry.stages.contract import FetchPolicy, Output
from ferry.testing.bus import private_bus

ROWS = 2_000
BATCHES = 48  # x ~2.6 MB each: more than the 64 MB a nats-server lets a client leave unread


class Recorder:
    group = LOG_PARSER
    kind = "parser"

    def __init__(self) -> None:
        self.fetch = FetchPolicy(max_msgs=2000, max_rows=20_000, max_wait_s=0.2)
        self.calls: list[list[codec.Batch]] = []

    async def process(self, topic: str, batches: list[codec.Batch]) -> list[Output]:
        self.calls.append(batches)
        await asyncio.sleep(0.05)  # the stage works while the next input is fetched
        return []

    async def close(self) -> None:
        return None


def _batch(i: int) -> codec.Batch:
    # Random hex does not compress much, so each message stays ~2.6 MB on the bus.
    body = pa.array([os.urandom(650).hex() for _ in range(ROWS)], pa.string())
    return codec.Batch(pa.table({"Body": body}), "logs", "otel_logs", "test", batch_id=f"b{i}")


async def _scenario(tmp: Path) -> tuple[Recorder, float]:
    async with private_bus(tmp) as (_, js):
        for i in range(BATCHES):
            await publish(js, LOGGING, _batch(i))
        stage = Recorder()
        runner = StageRunner(stage, js, tmp, inputs_of(FerryConfig(), stage.group))
        t0 = time.monotonic()
        await runner.start()
        while sum(len(c) for c in stage.calls) < BATCHES and time.monotonic() - t0 < 50:
            await asyncio.sleep(0.1)
        took = time.monotonic() - t0
        await runner.stop()
        return stage, took


def test_backlog_of_large_batches_drains_without_stall(tmp_path: Path) -> None:
    stage, took = asyncio.run(_scenario(tmp_path))
    ids = [b.batch_id for call in stage.calls for b in call]
    assert sorted(ids) == sorted(f"b{i}" for i in range(BATCHES)), "every batch processed exactly once"
    assert not any(b.redelivered for call in stage.calls for b in call), "no batch was lost and redelivered"
    # A dropped fetch is only redelivered after ack_wait: draining must not wait for that.
    assert took < 45, f"draining {BATCHES} batches took {took:.0f}s"
    # Each call gets about the row budget: never more than one batch past it.
    assert max(sum(b.table.num_rows for b in call) for call in stage.calls) <= stage.fetch.max_rows + ROWS
    log = (tmp_path / "bus" / "nats.log").read_text()
    assert "Slow Consumer" not in log


class Patient(Recorder):
    """A stage that would wait max_wait_s to fill its row budget, but not once the topic is empty
    and drained_min_rows are in hand."""

    def __init__(self, max_wait_s: float = 20.0, drained_min_rows: int = 25) -> None:
        super().__init__()
        self.fetch = FetchPolicy(
            max_msgs=2000, max_rows=1_000_000, max_wait_s=max_wait_s, drained_wait_s=0.3, drained_min_rows=drained_min_rows
        )
        self.seen_at: list[float] = []

    async def process(self, topic: str, batches: list[codec.Batch]) -> list[Output]:
        self.seen_at.append(time.monotonic())
        return await super().process(topic, batches)


async def _burst(tmp: Path, stage: Patient) -> tuple[Patient, float, float]:
    async with private_bus(tmp) as (_, js):
        runner = StageRunner(stage, js, tmp, inputs_of(FerryConfig(), stage.group))
        await runner.start()
        await asyncio.sleep(0.5)
        t0 = time.monotonic()
        for i in range(3):  # a short burst, far below the row budget
            await publish(js, LOGGING, codec.Batch(pa.table({"Body": ["x"] * 10}), "logs", "otel_logs", "t", batch_id=f"s{i}"))
            await asyncio.sleep(0.05)
        while sum(len(c) for c in stage.calls) < 3 and time.monotonic() - t0 < 30:
            await asyncio.sleep(0.05)
        last = time.monotonic() - t0
        await runner.stop()
        return stage, t0, last


def test_the_end_of_a_burst_goes_out_once_the_topic_is_drained(tmp_path: Path) -> None:
    """With a row budget the burst never fills, the stage gets the burst as soon as the topic has
    nothing more waiting (drained_wait_s), not after max_wait_s (what a lull used to cost)."""
    stage, _, last = asyncio.run(_burst(tmp_path, Patient()))
    assert sorted(b.batch_id for call in stage.calls for b in call) == ["s0", "s1", "s2"]
    assert last < 5.0, f"the burst reached the stage after {last:.1f}s (max_wait_s is 20 s)"


def test_a_trickle_is_still_gathered_for_max_wait_s(tmp_path: Path) -> None:
    """Below drained_min_rows the drained topic does not cut the wait short: a trickle becomes one
    call per max_wait_s (one store insert), not one per message."""
    stage, _, last = asyncio.run(_burst(tmp_path, Patient(max_wait_s=2.0, drained_min_rows=1000)))
    assert [sorted(b.batch_id for b in call) for call in stage.calls] == [["s0", "s1", "s2"]]
    assert last >= 1.5, f"the trickle went out after {last:.1f}s, before max_wait_s (2 s)"


async def _burst_with_a_remainder(tmp: Path, stage: Patient) -> float:
    """A burst's full-size part (30 rows, drained_min_rows is 25), then its 10-row remainder:
    seconds from the remainder's publish until the stage has it."""
    async with private_bus(tmp) as (_, js):
        runner = StageRunner(stage, js, tmp, inputs_of(FerryConfig(), stage.group))
        await runner.start()
        await asyncio.sleep(0.5)
        await publish(js, LOGGING, codec.Batch(pa.table({"Body": ["x"] * 30}), "logs", "otel_logs", "t", batch_id="big"))
        t0 = time.monotonic()
        while not stage.calls and time.monotonic() - t0 < 10:
            await asyncio.sleep(0.02)
        await publish(js, LOGGING, codec.Batch(pa.table({"Body": ["x"] * 10}), "logs", "otel_logs", "t", batch_id="rest"))
        t1 = time.monotonic()
        while len(stage.calls) < 2 and time.monotonic() - t1 < 30:
            await asyncio.sleep(0.02)
        took = time.monotonic() - t1
        await runner.stop()
        assert [sorted(b.batch_id for b in call) for call in stage.calls] == [["big"], ["rest"]]
        return took


def test_the_small_remainder_of_a_burst_goes_out_once_the_topic_is_drained(tmp_path: Path) -> None:
    """After a gather that held drained_min_rows, a smaller one is the end of that burst: it goes
    out drained_wait_s after it began (0.3 s), not after max_wait_s (20 s) like a trickle."""
    took = asyncio.run(_burst_with_a_remainder(tmp_path, Patient()))
    assert took < 3.0, f"the burst's remainder reached the stage after {took:.1f}s (max_wait_s is 20 s)"


async def _with_a_malformed_message(tmp: Path) -> Recorder:
    async with private_bus(tmp) as (_, js):
        good = [codec.Batch(pa.table({"Body": ["x"] * 5}), "logs", "otel_logs", "t", batch_id=f"g{i}") for i in range(2)]
        await publish(js, LOGGING, good[0])
        headers = {**good[0].headers(), "Nats-Msg-Id": "bad", "Ferry-Rows": "5"}
        await js.publish(subject_of(LOGGING), b"\xff\xff\xff\xff not arrow at all", headers=headers)
        await publish(js, LOGGING, good[1])
        stage = Recorder()
        runner = StageRunner(stage, js, tmp, inputs_of(FerryConfig(), stage.group))
        await runner.start()
        t0 = time.monotonic()
        while sum(len(c) for c in stage.calls) < 2 and time.monotonic() - t0 < 20:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        await runner.stop()
        return stage


def test_a_malformed_message_is_quarantined_and_the_rest_flow(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    labels = {"component": "parser", "signal": "logs", "reason": "undecodable"}
    before = REGISTRY.get_sample_value("ferry_quarantined_records_total", labels) or 0.0
    stage = asyncio.run(_with_a_malformed_message(tmp_path))
    assert REGISTRY.get_sample_value("ferry_quarantined_records_total", labels) - before == 5
    assert any(r.getMessage().startswith("quarantined 5 logs records at parser: undecodable (batch bad from logging")
               for r in caplog.records), [r.getMessage() for r in caplog.records]
    assert sorted(b.batch_id for call in stage.calls for b in call) == ["g0", "g1"]
    kept = tmp_path / "quarantine" / LOGGING
    assert (kept / "bad.arrows").read_bytes().endswith(b"not arrow at all")
    assert "not an Arrow IPC stream" in (kept / "bad.why").read_text()
