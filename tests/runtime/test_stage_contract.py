"""What the stage contract lets the next stages do, against real nats-servers: hold inputs past the
bus's ack_wait (a tail sampler's decision window) with at-least-once on a crash, and publish outputs
to another bus (an exporter to another region), acknowledging input only once that bus has them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from ferry.bus import Bus, codec
from ferry.bus.client import ACK_WAIT_S
from ferry.bus.publish import publish
from ferry.bus.topics import LOG_COMMIT, LOG_PARSER, LOGGING, inputs_of, stream_of
from ferry.config.model import FerryConfig
from ferry.runtime.runner import StageRunner
from ferry.stages.contract import FetchPolicy, Output, Result, StageContext
from ferry.testing.bus import private_bus

HOLD_S = 12.0  # more than twice the bus's ack_wait
assert HOLD_S > 2 * ACK_WAIT_S


def _batch(bid: str) -> codec.Batch:
    return codec.Batch(pa.table({"Body": [f"{bid} line"] * 5}), "logs", "otel_logs", "t", batch_id=bid)


async def _until(cond: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await _value(cond):
        assert time.monotonic() < deadline, f"not within {timeout:.0f}s: {what}"
        await asyncio.sleep(0.1)


async def _value(cond: Callable[[], object]) -> object:
    v = cond()
    return await v if asyncio.iscoroutine(v) else v


async def _unacked(js: Bus, topic: str, group: str = LOG_PARSER) -> int:
    ci = await js.consumer_info(stream_of(topic), group)
    return (ci.num_pending or 0) + (ci.num_ack_pending or 0)


async def _all_acked(js: Bus, topic: str) -> bool:
    return await _unacked(js, topic) == 0


class Holder:
    """Keeps every input in its own state until told to decide (a tail sampler's window)."""

    group = LOG_PARSER
    kind = "parser"

    def __init__(self) -> None:
        self.fetch = FetchPolicy(max_msgs=100, max_rows=100_000, max_wait_s=0.1)
        self.seen: list[tuple[str, bool]] = []
        self.ctx: StageContext | None = None

    def bind(self, ctx: StageContext) -> None:
        self.ctx = ctx

    async def process(self, topic: str, batches: list[codec.Batch]) -> Result:
        self.seen += [(b.batch_id, b.redelivered) for b in batches]
        return Result([], frozenset(b.batch_id for b in batches))

    async def close(self) -> None:
        return None


async def _hold_then_release(tmp: Path) -> None:
    async with private_bus(tmp) as (_, js):
        for i in range(3):
            await publish(js, LOGGING, _batch(f"h{i}"))
        stage = Holder()
        runner = StageRunner(stage, js, tmp, inputs_of(FerryConfig(), stage.group))
        await runner.start()
        try:
            await _until(lambda: len(stage.seen) == 3, 20, "the stage got its three batches")
            t0 = time.monotonic()
            while time.monotonic() - t0 < HOLD_S:  # the decision window
                assert len(stage.seen) == 3, f"a held batch was redelivered: {stage.seen}"
                await asyncio.sleep(0.2)
            ci = await js.consumer_info(stream_of(LOGGING), LOG_PARSER)
            assert ci.num_ack_pending == 3, "still held, not acknowledged"
            assert ci.num_redelivered == 0, "kept alive past ack_wait without a redelivery"
            assert stage.seen == [("h0", False), ("h1", False), ("h2", False)]
            # The decision: one kept batch goes on, then all three inputs are done.
            assert stage.ctx is not None
            await stage.ctx.release(["h0", "h1", "h2"], [Output(LOG_COMMIT, _batch("h1"))])
            await _until(lambda: _all_acked(js, LOGGING), 10, "the released inputs were acknowledged")
            assert (await js.stream_info(stream_of(LOG_COMMIT))).state.messages == 1, "the output is on the bus"
            await asyncio.sleep(ACK_WAIT_S + 1)
            assert len(stage.seen) == 3, "an acknowledged batch never comes back"
        finally:
            await runner.stop()


def test_held_inputs_outlive_ack_wait_and_are_acked_once_released(tmp_path: Path) -> None:
    asyncio.run(_hold_then_release(tmp_path))


# A runner in its own process, holding what it gets; it says so on stdout, then waits to be killed.
_HOLDING_RUNNER = """
import asyncio, sys
sys.path.insert(0, sys.argv[2])
from test_stage_contract import Holder
from ferry.bus.client import connect
from ferry.bus.topics import inputs_of
from ferry.config.model import FerryConfig
from ferry.runtime.runner import StageRunner

async def main():
    nc = await connect(sys.argv[1], "doomed")
    stage = Holder()
    await StageRunner(stage, nc.jetstream(), __import__("pathlib").Path(sys.argv[3]), inputs_of(FerryConfig(), stage.group)).start()
    while len(stage.seen) < 2:
        await asyncio.sleep(0.05)
    print("holding", flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


async def _held_by_a_killed_runner(tmp: Path) -> None:
    async with private_bus(tmp / "bus") as (server, js):
        for i in range(2):
            await publish(js, LOGGING, _batch(f"k{i}"))
        doomed = subprocess.Popen(
            [sys.executable, "-c", _HOLDING_RUNNER, server.url, str(Path(__file__).parent), str(tmp)],
            stdout=subprocess.PIPE,
        )
        try:
            line = await asyncio.wait_for(asyncio.to_thread(doomed.stdout.readline), 30)  # type: ignore[union-attr]
            assert line.strip() == b"holding"
            await asyncio.sleep(ACK_WAIT_S)  # held past ack_wait by the runner that will die
            os.kill(doomed.pid, signal.SIGKILL)
        finally:
            doomed.kill()
            doomed.wait()
        stage = Holder()
        runner = StageRunner(stage, js, tmp, inputs_of(FerryConfig(), stage.group))
        await runner.start()
        try:
            await _until(lambda: len(stage.seen) == 2, 3 * ACK_WAIT_S, "the dead runner's held batches came back")
            assert sorted(stage.seen) == [("k0", True), ("k1", True)], "redelivered, and marked so"
            assert stage.ctx is not None
            await stage.ctx.release(["k0", "k1"])
            await _until(lambda: _all_acked(js, LOGGING), 10, "the new runner's release acknowledged them")
        finally:
            await runner.stop()


def test_inputs_held_by_a_killed_runner_come_back_to_a_new_one(tmp_path: Path) -> None:
    asyncio.run(_held_by_a_killed_runner(tmp_path))


class Exporter:
    """Sends every input on to another region's bus."""

    group = LOG_PARSER
    kind = "parser"

    def __init__(self) -> None:
        self.fetch = FetchPolicy(max_msgs=100, max_rows=100_000, max_wait_s=0.1)

    async def process(self, topic: str, batches: list[codec.Batch]) -> list[Output]:
        return [Output(LOG_COMMIT, b, bus="b") for b in batches]

    async def close(self) -> None:
        return None


async def _stored_ids(js: Bus, topic: str) -> list[str]:
    stream = stream_of(topic)
    state = (await js.stream_info(stream)).state
    ids = []
    for seq in range(state.first_seq, state.last_seq + 1) if state.messages else ():
        m = await js.get_msg(stream, seq)
        ids.append((m.headers or {}).get("Nats-Msg-Id", ""))
    return ids


async def _to_another_bus(tmp: Path) -> None:
    async with private_bus(tmp / "a") as (_, bus_a), private_bus(tmp / "b") as (server_b, bus_b):
        runner = StageRunner(Exporter(), bus_a, tmp, inputs_of(FerryConfig(), Exporter.group), buses={"b": bus_b})
        await runner.start()
        try:
            await publish(bus_a, LOGGING, _batch("x0"))
            await _until(lambda: _all_acked(bus_a, LOGGING), 20, "x0 was acknowledged on bus A")
            assert await _stored_ids(bus_b, LOG_COMMIT) == ["x0"], "acknowledged only once bus B had it"
            assert await _stored_ids(bus_a, LOG_COMMIT) == [], "nothing went to bus A's own topic"

            server_b.stop()  # the other region is down
            await publish(bus_a, LOGGING, _batch("x1"))
            t0 = time.monotonic()
            while time.monotonic() - t0 < 2 * ACK_WAIT_S:
                assert await _unacked(bus_a, LOGGING) == 1, "x1 stays on bus A while bus B is down"
                await asyncio.sleep(0.5)
            server_b.start()
            await _until(lambda: _all_acked(bus_a, LOGGING), 60, "x1 was acknowledged once bus B was back")
            assert sorted(await _stored_ids(bus_b, LOG_COMMIT)) == ["x0", "x1"], "nothing lost, nothing doubled"
        finally:
            await runner.stop()


def test_outputs_to_another_bus_are_durable_there_before_input_is_acked(tmp_path: Path) -> None:
    asyncio.run(_to_another_bus(tmp_path))
