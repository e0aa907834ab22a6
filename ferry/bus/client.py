"""Connecting to the bus and declaring its topics (streams) and consumer groups (durable consumers).

Declaring is idempotent: every role does it at start, so any role can come up first.
"""

from __future__ import annotations

import asyncio
import logging

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import APIError, BadRequestError

from ferry.bus.topics import TOPICS
from ferry.config.model import BusConfig, FerryConfig
from ferry.errors import ConfigError

log = logging.getLogger("ferry.bus")

# JetStream's "insufficient storage resources available": the topic's limit does not fit its storage.
_NO_STORAGE = 10047

# Long enough for a writer to retry an insert several times before it spools; the runner also
# sends in-progress acks while it works.
ACK_WAIT_S = 60.0


def bus_url(cfg: FerryConfig) -> str:
    """The configured cluster, or the private nats-server the supervisor runs."""
    return cfg.bus.url or f"nats://127.0.0.1:{cfg.bus.port}"


async def connect(url: str, name: str) -> Client:
    async def _err(e: Exception) -> None:
        log.debug("bus connection: %s", e)

    return await nats.connect(
        url,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.25,
        connect_timeout=5,
        error_cb=_err,
        pending_size=64 * 1024 * 1024,
    )


def stream_config(topic_name: str, cfg: BusConfig) -> js_api.StreamConfig:
    t = TOPICS[topic_name]
    return js_api.StreamConfig(
        name=t.stream,
        subjects=[t.subject],
        # Interest: a batch stays until every consumer group has acknowledged it, so the size
        # limit measures unprocessed data, and discard=new turns "full" into refused publishes.
        retention=js_api.RetentionPolicy.INTEREST,
        discard=js_api.DiscardPolicy.NEW,
        max_bytes=cfg.max_bytes_per_topic,
        max_msg_size=cfg.max_payload,
        storage=js_api.StorageType.FILE,
        num_replicas=cfg.replicas,
        duplicate_window=cfg.duplicate_window_s,
    )


def consumer_config(group: str, topic_name: str) -> js_api.ConsumerConfig:
    return js_api.ConsumerConfig(
        durable_name=group,
        ack_policy=js_api.AckPolicy.EXPLICIT,
        ack_wait=ACK_WAIT_S,
        max_deliver=-1,
        max_ack_pending=20_000,
        filter_subject=TOPICS[topic_name].subject,
    )


async def declare(js: JetStreamContext, cfg: BusConfig) -> None:
    """Create or update every stream and consumer group."""
    for name, topic in TOPICS.items():
        sc = stream_config(name, cfg)
        for attempt in range(50):
            try:
                try:
                    await js.add_stream(sc)
                except BadRequestError:
                    await js.update_stream(sc)
                break
            except (nats.errors.TimeoutError, nats.js.errors.ServiceUnavailableError):
                if attempt == 49:
                    raise
                await asyncio.sleep(0.1)
            except APIError as e:
                if e.err_code != _NO_STORAGE:
                    raise
                raise ConfigError(
                    f"the bus has no room for topic {name} (stream {topic.stream}) with bus.max_bytes_per_topic = "
                    f"{cfg.max_bytes_per_topic:,} bytes ({e.description}): lower bus.max_bytes_per_topic, or give "
                    "JetStream more storage (its max_file_store, or free disk)"
                ) from e
        for group in topic.consumers:
            await js.add_consumer(topic.stream, consumer_config(group, name))
