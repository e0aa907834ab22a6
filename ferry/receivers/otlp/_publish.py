"""Turns a decoded OTLP request into bus batches and waits until all of them are durable.

Shared by the HTTP and gRPC receivers, so both count and refuse in exactly the same way.
"""

from __future__ import annotations

import asyncio

from nats.js import JetStreamContext

from ferry.bus import codec
from ferry.bus.publish import publish
from ferry.bus.topics import LOGGING, METRICS, TRACING
from ferry.receivers.otlp.decode import Decoded
from ferry.telemetry import metrics

TOPIC_OF = {"logs": LOGGING, "traces": TRACING, "metrics": METRICS}


async def publish_decoded(js: JetStreamContext, signal: str, decoded: Decoded, tenant: str, receiver: str) -> None:
    """Raises a FerryError (Backpressure, RetryableError) when the batch is not durable."""
    batches = [codec.Batch(t, signal, name, "otlp", tenant) for name, t in decoded.tables.items() if t.num_rows]
    await asyncio.gather(*(publish(js, TOPIC_OF[signal], b) for b in batches))
    metrics.received.labels(signal, receiver).inc(decoded.accepted)
    for reason, n in decoded.reasons.items():
        metrics.refused.labels(signal, receiver, reason).inc(n)


def refuse_all(signal: str, receiver: str, reason: str, n: int = 1) -> None:
    metrics.refused.labels(signal, receiver, reason).inc(n)
