"""Turns a decoded OTLP request into bus batches and waits until all of them are durable.

Shared by the HTTP and gRPC receivers, so both count and refuse in exactly the same way.
"""

from __future__ import annotations

import asyncio
import hashlib

from ferry.bus import Bus, codec
from ferry.bus.publish import publish
from ferry.bus.topics import LOGGING, METRICS, TRACING
from ferry.receivers.otlp.decode import Decoded
from ferry.telemetry import events

TOPIC_OF = {"logs": LOGGING, "traces": TRACING, "metrics": METRICS}


def request_id(payload: bytes, signal: str, tenant: str) -> str:
    """A batch id that is the same for the same request bytes.

    OTLP has no idempotency key, but exporters retry a failed export with the identical serialized
    request. Deriving the batch id from the bytes makes such a retry — say after ferry stored the
    batch but died before answering — a duplicate that the bus window and the store ledger drop.
    """
    h = hashlib.blake2b(payload, digest_size=16)
    h.update(f"\0{signal}\0{tenant}".encode())
    return h.hexdigest()


async def publish_decoded(
    js: Bus, signal: str, decoded: Decoded, tenant: str, receiver: str, payload: bytes
) -> None:
    """Raises a FerryError (Backpressure, RetryableError) when the batch is not durable."""
    rid = request_id(payload, signal, tenant)
    batches = [
        codec.Batch(t, signal, name, "otlp", tenant, f"{rid}-{i}")
        for i, (name, t) in enumerate(sorted(decoded.tables.items()))
        if t.num_rows
    ]
    await asyncio.gather(*(publish(js, TOPIC_OF[signal], b) for b in batches))
    events.received(receiver, signal, decoded.accepted)
    for reason, n in decoded.reasons.items():
        events.refused(receiver, signal, reason, n)


def refuse_all(signal: str, receiver: str, reason: str, decoded: Decoded | None, detail: str | None = None) -> None:
    """Count a request refused whole: once as a request, and as its records when it was decoded.

    Records are known only once the body is decoded; a request refused before that (backpressure
    is checked before the body is even read, so refusing stays cheap; a body over the limit or not
    decodable) counts 1 record, a lower bound, and always 1 request.
    """
    records = decoded.accepted + decoded.rejected if decoded is not None else 1
    events.refused(receiver, signal, reason, records, detail=detail, request=True)
