"""Consuming a topic as a consumer group: pull, acknowledge, nak and keep alive, in ferry's types.

The runner reads the bus only through this module, so every NATS error it can meet is mapped here
(a fetch that times out is an empty list, a closed or reconnecting connection is RetryableError).
"""

from __future__ import annotations

from datetime import datetime

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from ferry.bus.topics import Topic
from ferry.errors import RetryableError


class Message:
    """One delivered batch message: its bytes, headers and delivery facts, and how to settle it."""

    __slots__ = ("_msg",)

    def __init__(self, msg: Msg) -> None:
        self._msg = msg

    @property
    def data(self) -> bytes:
        return self._msg.data

    @property
    def headers(self) -> dict[str, str]:
        return self._msg.headers or {}

    @property
    def batch_id(self) -> str:
        return self.headers.get("Nats-Msg-Id") or f"seq{self.stream_seq}"

    @property
    def rows(self) -> int:
        return int(self.headers.get("Ferry-Rows", "0") or 0)

    @property
    def num_delivered(self) -> int:
        return self._msg.metadata.num_delivered

    @property
    def num_pending(self) -> int:
        """Messages still waiting on the topic for this group after this one."""
        return self._msg.metadata.num_pending

    @property
    def stream_seq(self) -> int:
        return self._msg.metadata.sequence.stream

    @property
    def published(self) -> datetime:
        return self._msg.metadata.timestamp

    async def ack(self) -> None:
        """Done with it. A failed ack (bus unavailable) is raised: the batch will be redelivered."""
        try:
            await self._msg.ack()
        except nats.errors.Error as e:
            raise RetryableError(f"ack failed: {e!r}") from e

    async def nak(self, delay: float = 0.0) -> None:
        """Hand it back for redelivery after `delay` s. Best effort: an unsent nak is an ack_wait later."""
        try:
            await self._msg.nak(delay=delay)
        except nats.errors.Error:
            pass

    async def in_progress(self) -> None:
        """Restart its ack_wait. Raises RetryableError when the bus cannot be told."""
        try:
            await self._msg.in_progress()
        except nats.errors.Error as e:
            raise RetryableError(f"in-progress ack failed: {e!r}") from e


class Consumer:
    """A consumer group's durable pull consumer on one topic (declared by bus/client.declare)."""

    def __init__(self, sub: JetStreamContext.PullSubscription, topic: Topic, group: str) -> None:
        self._sub = sub
        self.topic = topic
        self.group = group

    @classmethod
    async def bind(cls, js: JetStreamContext, group: str, topic: Topic) -> Consumer:
        sub = await js.pull_subscribe_bind(durable=group, stream=topic.stream)
        return cls(sub, topic, group)

    async def fetch(self, batch: int, timeout: float) -> list[Message]:
        """Up to `batch` messages, waiting at most `timeout` s; [] when none came."""
        try:
            got = await self._sub.fetch(batch=batch, timeout=max(timeout, 0.01))
        except (TimeoutError, nats.errors.TimeoutError):
            return []
        except nats.errors.Error as e:  # closed, reconnecting, slow consumer: the bus is unavailable for now
            raise RetryableError(f"fetch from {self.topic.name} failed: {e!r}") from e
        return [Message(m) for m in got]
