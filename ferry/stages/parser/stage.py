"""The parser stage: normalises each source's batches to the common schema of their signal.

Syslog raw lines are parsed here (parser/syslog.py); OTLP batches arrive decoded and are checked
against their table's schema. Each output keeps its input's batch id, so redelivery dedupes.
"""

from __future__ import annotations

import asyncio

from ferry.bus import codec
from ferry.bus.topics import COMMIT_OF, PARSER
from ferry.runtime.stage import FetchPolicy, Output
from ferry.schema import TABLES, conform
from ferry.telemetry import metrics


class ParserStage:
    group = PARSER

    def __init__(self) -> None:
        self.fetch = FetchPolicy(max_msgs=32, max_rows=200_000, max_wait_s=0.02)

    async def process(self, topic: str, batches: list[codec.Batch]) -> list[Output]:
        return await asyncio.to_thread(self._process, topic, batches)

    def _process(self, topic: str, batches: list[codec.Batch]) -> list[Output]:
        out = []
        for b in batches:
            if b.target == "raw_lines":
                from ferry.stages.parser.syslog import parse_syslog

                table = parse_syslog(b.table, tenant=b.tenant)
                nb = codec.Batch(table, "logs", "otel_logs", b.source, b.tenant, b.batch_id)
            else:
                nb = codec.Batch(conform(b.table, TABLES[b.target]), b.signal, b.target, b.source, b.tenant, b.batch_id)
            metrics.processed.labels(PARSER).inc(nb.table.num_rows)
            out.append(Output(COMMIT_OF[topic], nb))
        return out

    async def close(self) -> None:
        return None
