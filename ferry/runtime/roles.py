"""The three kinds of ferry process: ingest (receivers), parser (stage) and store (writer + API).

`ferry run` starts one of each (parser × --workers) under the supervisor; on many machines each
host runs `ferry run --role NAME` against a shared bus (`run_alone`). Every role drains on SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable, Iterable

import uvicorn

from ferry.bus.client import bus_url, connect_or_stop, declare
from ferry.bus.topics import TOPICS
from ferry.config.model import FerryConfig
from ferry.errors import ConfigError, RetryableError
from ferry.runtime import readiness
from ferry.runtime.disk import free_bytes
from ferry.runtime.runner import StageRunner
from ferry.runtime.sockets import host_port, listening

log = logging.getLogger("ferry.role")


async def _close_bus(nc: object) -> None:
    # Not nc.drain(): with pull subscriptions it waits out its 30 s timeout. Acks are already sent.
    try:
        await nc.flush(timeout=2)  # type: ignore[attr-defined]
    except Exception:
        pass
    await nc.close()  # type: ignore[attr-defined]


def _stop_event() -> asyncio.Event:
    ev = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, ev.set)
    return ev


def _uvicorn(app: object, sock: socket.socket, limit: int | None = None, http: object = "auto") -> uvicorn.Server:
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        http=http,  # type: ignore[arg-type]
        log_level="warning",
        access_log=False,
        limit_concurrency=limit,
        timeout_graceful_shutdown=10,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    return server


async def run_ingest(cfg: FerryConfig) -> None:
    from ferry.receivers.backpressure import BackpressureMonitor
    from ferry.receivers.otlp import grpc_server, http
    from ferry.receivers.syslog import server as syslog

    stop = _stop_event()
    nc = await connect_or_stop(bus_url(cfg), "ferry-ingest", stop)
    if nc is None:  # told to stop while the bus was unreachable
        return
    js = nc.jetstream()
    await declare(js, cfg.bus)
    monitor = BackpressureMonitor(js, cfg)
    monitor.start()
    tasks: list[asyncio.Task[None]] = []
    http_server = grpc = batcher = None
    listeners: Iterable[object] = []
    rc = cfg.receivers
    if rc.otlp.http.enabled:
        sock = listening(socket.SOCK_STREAM, cfg.listen, rc.otlp.http.port)
        # No uvicorn concurrency limit: it counts every open connection, so senders that hold sockets
        # open half-sent would refuse everyone else. The app bounds requests in flight and the protocol
        # bounds connections and how long a request may take to arrive.
        h = rc.otlp.http
        http_server = _uvicorn(
            http.build_app(js, cfg, monitor), sock, http=http.protocol(h.read_timeout_s, h.max_connections)
        )
        tasks.append(asyncio.create_task(http_server.serve(sockets=[sock])))
    if rc.otlp.grpc.enabled:
        grpc = grpc_server.build_server(js, cfg, monitor)
        await grpc.start()
    if rc.syslog.enabled:
        batcher, listeners = await syslog.start(js, cfg, monitor)
    while http_server is not None and not http_server.started:
        await asyncio.sleep(0.05)
    readiness.mark("ingest")
    await stop.wait()
    # Drain: stop taking new data, finish what was taken, then leave.
    for lst in listeners:
        lst.close()  # type: ignore[attr-defined]
    if grpc is not None:
        await grpc.stop(grace=10)
    if http_server is not None:
        http_server.should_exit = True
    if batcher is not None:
        await batcher.stop()
    await asyncio.gather(*tasks, return_exceptions=True)
    await monitor.stop()
    await _close_bus(nc)


async def run_parser(cfg: FerryConfig) -> None:
    from ferry.stages.parser import ParserStage

    stop = _stop_event()
    nc = await connect_or_stop(bus_url(cfg), "ferry-parser", stop)
    if nc is None:  # told to stop while the bus was unreachable
        return
    js = nc.jetstream()
    await declare(js, cfg.bus)
    runner = StageRunner(ParserStage(), js, cfg.data_dir)
    await runner.start()
    readiness.mark("parser")
    await stop.wait()
    await runner.stop()
    await _close_bus(nc)


async def run_store(cfg: FerryConfig) -> None:
    from ferry.api.app import build_app
    from ferry.stages.writer import Spool, WriterStage, resubmit_forever
    from ferry.store.chdb_store import ChdbStore

    stop = _stop_event()
    from ferry.store.indexes import keep_indexes

    store = ChdbStore(cfg.data_dir / "store", cfg.store.max_memory_bytes, defer_indexes=cfg.store.index_after_s > 0)
    await asyncio.to_thread(store.setup, cfg.store.retention)
    nc = await connect_or_stop(bus_url(cfg), "ferry-store", stop)
    if nc is None:  # told to stop while the bus was unreachable
        store.close()
        return
    js = nc.jetstream()
    await declare(js, cfg.bus)
    spool = Spool(cfg.data_dir / "spool")
    runner = StageRunner(WriterStage(cfg.writer, store, spool), js, cfg.data_dir)
    await runner.start()
    spool_task = asyncio.create_task(resubmit_forever(spool, store, cfg.writer.spool_retry_s, lambda: runner.idle))
    background = [spool_task]
    if store.defer_indexes:
        background.append(asyncio.create_task(keep_indexes(store, cfg.store.index_after_s)))
    if cfg.store.max_bytes:
        from ferry.store.size_cap import keep_under

        background.append(asyncio.create_task(keep_under(store, cfg.store.max_bytes, cfg.store.size_check_s)))

    lag_cache: list[tuple[str, str, dict[str, str], float]] = []

    def gauges() -> list[tuple[str, str, dict[str, str], float]]:
        # The disk is measured at each read (one statvfs), the bus from the last probe: a bus in
        # trouble may answer slowly, and the disk matters most then.
        return [
            ("ferry_data_disk_free_bytes", "Free bytes on the data directory's disk.", {}, float(free_bytes(cfg.data_dir))),
            ("ferry_data_disk_min_free_bytes", "Receivers refuse data below this (backpressure.min_free_disk_bytes).",
             {}, float(cfg.backpressure.min_free_disk_bytes)),
            *lag_cache,
        ]

    async def refresh_lag() -> None:
        while True:
            out: list[tuple[str, str, dict[str, str], float]] = []
            try:
                for topic in TOPICS.values():
                    for group in topic.consumers:
                        ci = await js.consumer_info(topic.stream, group)
                        labels = {"topic": topic.name, "group": group}
                        out.append(("ferry_consumer_lag_batches", "Batches not yet processed by a consumer group.", labels, float(ci.num_pending or 0) + float(ci.num_ack_pending or 0)))
                    si = await js.stream_info(topic.stream)
                    out.append(("ferry_topic_bytes", "Bytes held by a topic.", {"topic": topic.name}, float(si.state.bytes)))
                restarts = cfg.data_dir / "run" / "nats_restarts"
                n = float(restarts.read_text()) if restarts.exists() else 0.0
                out.append(("ferry_bus_server_restarts_total", "Restart attempts of nats-server by the supervisor (failed ones included).", {}, n))
                lag_cache[:] = out
            except Exception as e:
                log.debug("lag probe failed: %r", e)
            await asyncio.sleep(1.0)

    lag_task = asyncio.create_task(refresh_lag())
    sock = listening(socket.SOCK_STREAM, cfg.listen, cfg.api.port)
    api = _uvicorn(build_app(store, gauges, cfg.api, cfg.listen), sock)
    api_task = asyncio.create_task(api.serve(sockets=[sock]))
    while not api.started and not api_task.done():
        await asyncio.sleep(0.05)
    readiness.mark("store")
    await stop.wait()
    api.should_exit = True
    await runner.stop(drain_s=15)
    for t in (*background, lag_task):
        t.cancel()
    await asyncio.gather(api_task, return_exceptions=True)
    await _close_bus(nc)
    store.close()


ROLES = {"ingest": run_ingest, "parser": run_parser, "store": run_store}


async def run_alone(role: str, cfg: FerryConfig, say: Callable[[str], None] = print) -> None:
    """`ferry run --role NAME`: one role in the foreground, banner printed once it serves.

    The store's API serves /metrics; ingest and parser hosts have no store, so they serve their own
    /metrics and /healthz on `metrics.port`. Under the supervisor the store is always there.
    """
    from ferry.runtime import logfiles
    from ferry.runtime.supervisor import banner
    from ferry.telemetry import metrics

    metrics.declare(role)  # as ferry.runtime.child does: series exist at 0 from the start
    logfiles.configure(role, cfg.logs.repeat_interval_s)  # as the child does; rotation is the service manager's
    server: uvicorn.Server | None = None
    serving: asyncio.Task[None] | None = None
    if role != "store":
        host, port = cfg.listen, cfg.metrics.port_for(role)
        try:
            # No SO_REUSEPORT: two processes on one port would each answer a share of the scrapes
            # with only their own counters; a clash must fail instead.
            sock = listening(socket.SOCK_STREAM, host, port, reuse_port=False)
        except OSError as e:
            raise ConfigError(f"cannot listen on {host_port(host, port)} for /metrics ({e.strerror}); set metrics.port") from None
        server = _uvicorn(metrics.app(lambda: readiness.is_ready(role)), sock)
        # Started before the role and stopped after it, so that a drain can be watched too.
        serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        task = asyncio.create_task(ROLES[role](cfg))
        while not task.done() and not (readiness.is_ready(role) and (server is None or server.started)):
            if serving is not None and serving.done():  # uvicorn gave up at start-up; it logged why
                task.cancel()
                raise RetryableError(f"the /metrics server on {host_port(cfg.listen, cfg.metrics.port_for(role))} did not start")
            await asyncio.sleep(0.05)
        if not task.done():
            say(banner(cfg, (role,)))
        await task
    finally:
        if server is not None and serving is not None:
            server.should_exit = True
            await asyncio.gather(serving, return_exceptions=True)
