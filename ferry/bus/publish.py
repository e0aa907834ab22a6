"""Publishing a batch: returns only once the bus has it on disk, or raises a ferry error.

A batch larger than the bus's max payload is cut by bytes into several messages first; a full topic
(discard=new) becomes Backpressure; any bus-unavailable condition becomes RetryableError.
"""

from __future__ import annotations

import asyncio
import math

import nats.errors
from nats.js import JetStreamContext
from nats.js.errors import APIError

from ferry.bus import codec
from ferry.bus.topics import subject_of
from ferry.errors import Backpressure, RetryableError, TooLarge
from ferry.telemetry import events, metrics

# JetStream error codes meaning "this stream is full".
_FULL_CODES = {10077, 10047, 10028}
# Room left in a message for its headers (batch id, signal, table, ... : well under 1 KiB).
_HEADER_ROOM = 4096
# The payload limit before the first connection says what the server allows.
_DEFAULT_MAX_PAYLOAD = 1024 * 1024


def payload_limit(js: JetStreamContext) -> int:
    """The largest payload one message may carry: what the server announced at connect (a stock
    cluster allows 1 MiB, ferry's private server 8 MiB) less room for the headers."""
    announced = getattr(getattr(js, "_nc", None), "max_payload", 0) or _DEFAULT_MAX_PAYLOAD
    return max(announced - _HEADER_ROOM, 1024)


def split_to_fit(batch: codec.Batch, limit: int) -> list[codec.Batch]:
    """`batch` as pieces whose payloads each fit `limit` bytes, in row order.

    A batch that fits is returned as it is (its id unchanged). Otherwise its rows are cut into
    about as many slices as the payload is over the limit, and each slice is a batch of its own
    whose id is derived from the parent's (`<id>.<i>`): the same input always splits the same way,
    so a retried publish is still deduplicated by the bus and the store. Raises TooLarge when a
    single row cannot fit.
    """
    size = len(batch.payload())
    if size <= limit:
        return [batch]
    rows = batch.num_rows
    if rows <= 1:
        raise TooLarge(
            f"one {batch.signal} record is {size:,} bytes encoded, more than the bus carries in a message "
            f"({limit:,} bytes)"
        )
    # A little over the ratio, since rows differ in size and compress differently.
    parts = min(rows, max(2, math.ceil(size / limit * 1.2)))
    table = batch.table
    step = math.ceil(rows / parts)
    out: list[codec.Batch] = []
    for i, start in enumerate(range(0, rows, step)):
        piece = codec.Batch(
            table.slice(start, step),
            batch.signal,
            batch.target,
            batch.source,
            batch.tenant,
            f"{batch.batch_id}.{i}",
            batch.redelivered,
        )
        out.extend(split_to_fit(piece, limit))
    return out


async def publish(js: JetStreamContext, topic: str, batch: codec.Batch, *, timeout: float = 10.0) -> None:
    """Make `batch` durable on `topic`, cut into as many messages as the server's max payload needs."""
    pieces = split_to_fit(batch, payload_limit(js))
    if len(pieces) == 1:
        await _publish_one(js, topic, pieces[0], timeout)
        return
    metrics.split_batches.labels(topic).inc()
    await asyncio.gather(*(_publish_one(js, topic, p, timeout) for p in pieces))


async def _publish_one(js: JetStreamContext, topic: str, batch: codec.Batch, timeout: float) -> None:
    subject = subject_of(topic)
    payload = batch.payload()
    headers = batch.headers()
    last: Exception | None = None
    for attempt in range(3):
        try:
            # publish_async futures never time out on their own; js.publish with a timeout does.
            ack = await asyncio.wait_for(js.publish(subject, payload, headers=headers, timeout=timeout), timeout + 1)
        except APIError as e:
            if e.err_code in _FULL_CODES or "maximum" in str(e.description or "").lower():
                raise Backpressure(f"topic {topic} is full") from e
            last = e  # includes ServiceUnavailableError (503) while a stream elects a leader
        except nats.errors.MaxPayloadError as e:
            # The server allows less than it announced (a node of a cluster configured lower).
            raise TooLarge(f"the bus refused a {len(payload):,}-byte message for {topic} as too large") from e
        except nats.errors.ConnectionClosedError as e:
            raise RetryableError("bus connection closed") from e
        except (TimeoutError, nats.errors.Error) as e:
            # No responders, no stream response (a leader election), a reconnecting or stale connection,
            # a full outbound buffer: the bus is unavailable for now, never a client's fault.
            last = e
        else:
            if ack.duplicate:
                metrics.bus_duplicates.labels(topic).inc()
            else:
                metrics.published.labels(topic).inc()
            return
        events.retried("publish", batch.signal, "bus_unavailable", detail=f"{topic}: {type(last).__name__}: {last}")
        await asyncio.sleep(0.2 * (attempt + 1))
    raise RetryableError(f"bus did not accept a batch for {topic}: {type(last).__name__}: {last}")
