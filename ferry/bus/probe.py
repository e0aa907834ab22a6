"""One probe of the bus's state: how far each consumer group lags on each topic, and each topic's size.

Backpressure (receivers) and the lag gauges (store role) both read it, so both see the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nats.js import JetStreamContext

from ferry.bus.topics import TOPICS


@dataclass(frozen=True)
class TopicState:
    topic: str
    bytes: int
    # Batches each group has not acknowledged yet: waiting on the topic plus delivered and in hand.
    lag: dict[str, int] = field(default_factory=dict)


async def probe(js: JetStreamContext) -> list[TopicState]:
    """Every topic's state, in TOPICS order. Raises whatever the bus raises (the callers retry)."""
    out = []
    for topic in TOPICS.values():
        si = await js.stream_info(topic.stream)
        lag = {}
        for group in topic.consumers:
            ci = await js.consumer_info(topic.stream, group)
            lag[group] = (ci.num_pending or 0) + (ci.num_ack_pending or 0)
        out.append(TopicState(topic.name, int(si.state.bytes), lag))
    return out
