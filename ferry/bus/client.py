"""Connecting to the bus and declaring its topics (streams) and consumer groups (durable consumers).

Declaring is idempotent: every role does it at start, so any role can come up first.
"""

from __future__ import annotations

import asyncio
import logging
import time

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import APIError, BadRequestError

from ferry.bus.topics import stream_of, subject_of, topics
from ferry.config.model import BusConfig, FerryConfig
from ferry.errors import ConfigError

log = logging.getLogger("ferry.bus")

# JetStream's "insufficient storage resources available": the topic's limit does not fit its storage.
_NO_STORAGE = 10047

# How long a delivered batch may go unacknowledged before the bus hands it out again. Short, so
# that batches whose acknowledgement went down with a cluster node (or whose consumer process died)
# come back within seconds, not a minute; the runner keeps the batches it holds alive with
# in-progress acks every IN_PROGRESS_EVERY_S, however long a stage or an insert retry takes.
# A changed value is applied to existing consumer groups at start (declare updates them).
ACK_WAIT_S = 5.0
IN_PROGRESS_EVERY_S = ACK_WAIT_S / 4
# While the bus cannot be reached, say so this often (and at the first failure), not at every attempt.
_WAITING_SAY_EVERY_S = 10.0
# A payload limit to assume of a server that has not said (the NATS default).
_DEFAULT_MAX_PAYLOAD = 1024 * 1024


def bus_url(cfg: FerryConfig) -> str:
    """The configured cluster, or the private nats-server the supervisor runs, with the credentials
    it made in the data dir (bus/auth.json) when they are there. Never log it: `shown_url` is for that."""
    if cfg.bus.url:
        return cfg.bus.url
    from ferry.bus.server import credentials_file, private_url

    if credentials_file(cfg.data_dir).exists():
        return private_url(cfg.bus.port, cfg.data_dir)
    return f"nats://127.0.0.1:{cfg.bus.port}"


def shown_url(url: str) -> str:
    """A bus URL (or comma-separated URLs) as it may be printed or logged: any user:password@ left out."""
    shown = []
    for u in url.split(","):
        scheme, sep, rest = u.strip().rpartition("://")
        shown.append(f"{scheme}{sep}{rest.rsplit('@', 1)[-1]}")
    return ",".join(shown)


def servers(url: str) -> list[str]:
    """The server URLs of a `bus.url` value: one, or several comma-separated (the config joins a
    YAML list the same way). The client tries them in turn and follows the cluster's other nodes."""
    return [u.strip() for u in url.split(",") if u.strip()]


async def connect(url: str, name: str) -> Client:
    """Connect, retrying for as long as it takes; every `_WAITING_SAY_EVERY_S` s of failing says so
    (log warning), so that a role started before its bus is never silently stuck."""
    nc = Client()
    connected = False
    said = -_WAITING_SAY_EVERY_S

    async def _err(e: Exception) -> None:
        nonlocal said
        if connected:
            log.debug("bus connection: %r", e)
        elif time.monotonic() - said >= _WAITING_SAY_EVERY_S:
            said = time.monotonic()
            log.warning("waiting for the bus at %s (%s); retrying", shown_url(url), str(e) or type(e).__name__)

    async def _lost() -> None:
        if connected and not nc.is_closed:  # not when ferry closes it on purpose
            log.warning("lost the bus connection; reconnecting to %s", shown_url(url))

    async def _back() -> None:
        log.warning("reconnected to the bus at %s", _where(nc))

    try:
        await nc.connect(
            servers(url),
            name=name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.25,
            connect_timeout=5,
            error_cb=_err,
            disconnected_cb=_lost,
            reconnected_cb=_back,
            pending_size=64 * 1024 * 1024,
        )
    except BaseException:  # cancelled (the role was told to stop while waiting): leave no socket behind
        await nc.close()
        raise
    connected = True
    if said >= 0:
        log.warning("connected to the bus at %s", _where(nc))
    return nc


async def connect_or_stop(url: str, name: str, stop: asyncio.Event) -> Client | None:
    """`connect`, given up when `stop` is set first (SIGTERM while the bus is unreachable): None then."""
    task = asyncio.create_task(connect(url, name))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if task.done():
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return None


def _where(nc: Client) -> str:
    u = nc.connected_url
    return f"{u.scheme}://{u.hostname}:{u.port}" if u is not None else "?"


def server_max_payload(nc: Client) -> int:
    """The largest message the connected server accepts, as it announced at connect."""
    return int(getattr(nc, "max_payload", 0) or _DEFAULT_MAX_PAYLOAD)


def stream_config(topic_name: str, cfg: BusConfig, server_limit: int | None = None) -> js_api.StreamConfig:
    """The topic's stream; its largest message is the smaller of bus.max_payload and what the server
    allows (a stock cluster allows 1 MiB, less than ferry's 8 MiB default)."""
    max_msg = min(cfg.max_payload, server_limit) if server_limit else cfg.max_payload
    return js_api.StreamConfig(
        name=stream_of(topic_name),
        subjects=[subject_of(topic_name)],
        # Interest: a batch stays until every consumer group has acknowledged it, so the size
        # limit measures unprocessed data, and discard=new turns "full" into refused publishes.
        retention=js_api.RetentionPolicy.INTEREST,
        discard=js_api.DiscardPolicy.NEW,
        max_bytes=cfg.max_bytes_per_topic,
        max_msg_size=max_msg,
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
        filter_subject=subject_of(topic_name),
    )


async def declare(js: JetStreamContext, whole: FerryConfig) -> None:
    """Create or update every topic's stream and consumer group of the pipeline.

    A consumer group that exists is updated to the current config (the server applies a changed
    ack_wait to an existing durable consumer when it is re-added with the same name). A group on a
    topic that the pipeline no longer has reading it is deleted: with interest retention it would
    otherwise keep every batch on that topic forever, and the topic would fill and refuse publishes.
    """
    cfg = whole.bus
    nc = getattr(js, "_nc", None)
    announced = server_max_payload(nc) if nc is not None else None
    for name, topic in topics(whole).items():
        sc = stream_config(name, cfg, announced)
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
        for info in await js.consumers_info(topic.stream):
            if info.name not in topic.consumers:
                log.warning("topic %s: consumer group %s is no longer in the pipeline; removed", name, info.name)
                await js.delete_consumer(topic.stream, info.name)
