"""Bus messages: batch ids travel inside the rows, and the writer's splice of many messages is an
insertable stream holding exactly their rows, without decoding them."""

from __future__ import annotations

import pyarrow as pa
import pytest

from ferry.bus import codec


def _batch(bodies: list[str], batch_id: str) -> codec.Batch:
    table = pa.table({"Body": pa.array(bodies, pa.string()), "BatchId": pa.array([""] * len(bodies), pa.string())})
    return codec.Batch(table, "logs", "otel_logs", "t", batch_id=batch_id)


def test_published_rows_carry_their_batch_id() -> None:
    got = codec.decode(_batch(["a", "b"], "B1").payload())
    assert got.column("BatchId").to_pylist() == ["B1", "B1"]


def test_splice_joins_messages_of_one_schema_into_one_stream() -> None:
    payloads = [_batch(["a", "b"], "B1").payload(), _batch([], "B2").payload(), _batch(["c"], "B3").payload()]
    streams = codec.splice(payloads)
    assert len(streams) == 1
    got = codec.decode(streams[0])
    assert got.column("Body").to_pylist() == ["a", "b", "c"]
    assert got.column("BatchId").to_pylist() == ["B1", "B1", "B3"]


def test_splice_keeps_a_different_schema_in_its_own_stream() -> None:
    other = codec.Batch(pa.table({"Body": ["z"], "Extra": [1]}), "logs", "otel_logs", "t", batch_id="X").payload()
    streams = codec.splice([_batch(["a"], "B1").payload(), other, _batch(["b"], "B2").payload()])
    tables = sorted((codec.decode(s) for s in streams), key=lambda t: t.num_columns)
    assert [t.column("Body").to_pylist() for t in tables] == [["a", "b"], ["z"]]


def test_a_message_from_an_older_ferry_is_decoded_and_stamped_again() -> None:
    old = codec.encode(pa.table({"Body": ["a"], "BatchId": [""]}))
    b = codec.from_message(old, {"Nats-Msg-Id": "OLD", "Ferry-Schema": "1", "Ferry-Table": "otel_logs"})
    assert codec.decode(b.payload()).column("BatchId").to_pylist() == ["OLD"]


def test_a_malformed_message_is_refused_when_read_off_the_bus() -> None:
    """The runner sets such a message aside (quarantine) instead of letting it fail a whole insert."""
    good = _batch(["a"], "B1")
    for bad in (b"garbage that is not arrow", good.payload()[: len(good.payload()) // 2]):
        with pytest.raises(ValueError):
            codec.from_message(bad, good.headers())
