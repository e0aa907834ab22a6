"""The parser stage on OTLP batches: already in their table's schema they pass through as the bus
carried them; otherwise they are conformed to it (missing columns get defaults)."""

from __future__ import annotations

import asyncio

import pyarrow as pa

from ferry.bus import codec
from ferry.config.model import FerryConfig
from ferry.receivers.otlp.decode import decode_logs
from ferry.schema import LOGS
from ferry.stages.parser.stage import ParserStage
from ferry.testing.otlp import logs_request


def _through_the_bus(batch: codec.Batch) -> codec.Batch:
    return codec.from_message(batch.payload(), batch.headers())


def test_otlp_batches_pass_through_or_are_conformed() -> None:
    cfg = FerryConfig()  # the shipped pipeline: its log parser routes every batch (the SIEM fork)
    stage = ParserStage("log_parser", cfg.pipeline.stages["log_parser"], cfg.pipeline)
    table = decode_logs(logs_request(["hello", "world"]), "protobuf").tables["otel_logs"]
    ready = _through_the_bus(codec.Batch(table, "logs", "otel_logs", "otlp", batch_id="R"))
    partial = _through_the_bus(codec.Batch(pa.table({"Body": ["only a body"]}), "logs", "otel_logs", "otlp", batch_id="P"))
    out = {o.batch.batch_id: o for o in asyncio.run(stage.process("logging", [ready, partial]))}
    assert out["R"].topic == out["P"].topic == "log_commit"
    assert out["R"].batch.payload() is ready.payload(), "no row decoded or re-encoded"
    conformed = codec.decode(out["P"].batch.payload())
    assert conformed.schema == LOGS
    assert conformed.column("Body").to_pylist() == ["only a body"]
    assert conformed.column("BatchId").to_pylist() == ["P"]
    assert codec.decode(out["R"].batch.payload()).column("Body").to_pylist() == ["hello", "world"]
