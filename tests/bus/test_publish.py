"""Publishing against a real nats-server whose max payload is a stock 1 MiB: a batch far larger than
that lands as several messages holding every row once, a retry of it is deduplicated, and a single
row that cannot fit is refused as too large rather than wedging the caller."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pyarrow as pa
import pytest

from ferry.bus import codec
from ferry.bus.publish import payload_limit, publish, split_to_fit
from ferry.bus.topics import LOGGING, stream_of
from ferry.errors import TooLarge
from ferry.testing.bus import private_bus


def _batch(rows: int, row_bytes: int, batch_id: str = "big") -> codec.Batch:
    # Random hex barely compresses, so the encoded size is close to rows x row_bytes.
    body = pa.array([os.urandom(row_bytes // 2).hex() for _ in range(rows)], pa.string())
    ids = pa.array([""] * rows, pa.string())
    return codec.Batch(pa.table({"Body": body, "BatchId": ids}), "logs", "otel_logs", "test", batch_id=batch_id)


def test_split_pieces_fit_keep_every_row_in_order_and_are_deterministic() -> None:
    batch = _batch(300, 60_000)
    pieces = split_to_fit(batch, 1_000_000)
    assert len(pieces) > 1
    assert all(len(p.payload()) <= 1_000_000 for p in pieces)
    bodies = [b for p in pieces for b in p.table.column("Body").to_pylist()]
    assert bodies == batch.table.column("Body").to_pylist()
    assert [p.batch_id for p in pieces] == [p.batch_id for p in split_to_fit(batch, 1_000_000)]
    assert len({p.batch_id for p in pieces}) == len(pieces)
    # Each piece's rows carry the piece's own id, which is what the store deduplicates on.
    for p in pieces:
        assert set(codec.decode(p.payload()).column("BatchId").to_pylist()) == {p.batch_id}


def test_a_batch_that_fits_keeps_its_id() -> None:
    batch = _batch(10, 100, "small")
    assert [p.batch_id for p in split_to_fit(batch, 1_000_000)] == ["small"]


def test_one_row_larger_than_a_message_is_too_large() -> None:
    with pytest.raises(TooLarge, match="more than the bus carries"):
        split_to_fit(_batch(1, 2_000_000), 1_000_000)


async def _scenario(tmp: Path) -> None:
    async with private_bus(tmp, max_payload=1024 * 1024) as (_, js):
        assert payload_limit(js) < 1024 * 1024
        big = _batch(300, 60_000)  # ~18 MB: 18 times what one message may carry
        await publish(js, LOGGING, big)
        info = await js.stream_info(stream_of(LOGGING))
        assert info.state.messages >= 18
        first = info.state.messages
        await publish(js, LOGGING, big)  # a retry: every piece is a duplicate the bus drops
        info = await js.stream_info(stream_of(LOGGING))
        assert info.state.messages == first
        with pytest.raises(TooLarge):
            await publish(js, LOGGING, _batch(1, 3_000_000, "huge"))


def test_a_batch_over_the_servers_max_payload_is_published_in_pieces_once(tmp_path: Path) -> None:
    asyncio.run(_scenario(tmp_path))
