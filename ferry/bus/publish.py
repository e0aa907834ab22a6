"""Publishing a batch: returns only once the bus has it on disk, or raises a ferry error.

A full topic (discard=new) becomes Backpressure; an unreachable bus becomes RetryableError.
The batch id is the Nats-Msg-Id, so a retried publish is stored once.
"""

from __future__ import annotations

import asyncio

import nats.errors
from nats.js import JetStreamContext
from nats.js.errors import APIError

from ferry.bus import codec
from ferry.bus.topics import TOPICS
from ferry.errors import Backpressure, RetryableError
from ferry.telemetry import metrics

# JetStream error codes meaning "this stream is full".
_FULL_CODES = {10077, 10047, 10028}


async def publish(js: JetStreamContext, topic: str, batch: codec.Batch, *, timeout: float = 10.0) -> None:
    t = TOPICS[topic]
    payload = batch.payload()
    headers = batch.headers()
    last: Exception | None = None
    for attempt in range(3):
        try:
            # publish_async futures never time out on their own; js.publish with a timeout does.
            ack = await asyncio.wait_for(js.publish(t.subject, payload, headers=headers, timeout=timeout), timeout + 1)
        except APIError as e:
            if e.err_code in _FULL_CODES or "maximum" in str(e.description or "").lower():
                raise Backpressure(f"topic {topic} is full") from e
            last = e
        except (TimeoutError, nats.errors.TimeoutError, nats.errors.NoRespondersError) as e:
            last = e
        except nats.errors.ConnectionClosedError as e:
            raise RetryableError("bus connection closed") from e
        else:
            if ack.duplicate:
                metrics.bus_duplicates.labels(topic).inc()
            else:
                metrics.published.labels(topic).inc()
            return
        metrics.retried.labels("publish", "bus_unavailable").inc()
        await asyncio.sleep(0.2 * (attempt + 1))
    raise RetryableError(f"bus did not accept a batch for {topic}: {last!r}")
