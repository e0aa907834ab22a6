"""One probe of the bus's state: how far each consumer group lags on each topic, and each topic's size.

Backpressure (receivers) and the lag gauges (store role) both read it, so both see the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nats.js import JetStreamContext

from ferry.bus.topics import Topic


@dataclass(frozen=True)
class TopicState:
    topic: str
    bytes: int
    # Batches each group has not acknowledged yet: waiting on the topic plus delivered and in hand.
    lag: dict[str, int] = field(default_factory=dict)
    messages: int = 0  # batches held now (the depth)
    last_seq: int = 0  # batches ever published: its rise over time is the rate in
    # Per group, the last batch sequence acknowledged in order: its rise is the group's rate out.
    acked: dict[str, int] = field(default_factory=dict)


async def probe(js: JetStreamContext, topics: list[Topic]) -> list[TopicState]:
    """Every topic's state, in the given order. Raises whatever the bus raises (the callers retry)."""
    out = []
    for topic in topics:
        si = await js.stream_info(topic.stream)
        lag, acked = {}, {}
        for group in topic.consumers:
            ci = await js.consumer_info(topic.stream, group)
            lag[group] = (ci.num_pending or 0) + (ci.num_ack_pending or 0)
            acked[group] = int(ci.ack_floor.stream_seq or 0) if ci.ack_floor else 0
        out.append(TopicState(topic.name, int(si.state.bytes), lag, int(si.state.messages or 0),
                              int(si.state.last_seq or 0), acked))
    return out
