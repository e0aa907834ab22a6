"""The three kinds of ferry process: ingest (receivers), parser (stage) and store (writer + API).

`ferry run` starts one of each (parser × --workers) under the supervisor; on many machines each
host runs `ferry run --role NAME` against a shared bus (`run_alone`). Every role drains on SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from ferry import registry
from ferry.bus.client import bus_url, connect_or_stop, declare
from ferry.bus.probe import probe
from ferry.bus.topics import inputs_of, topics
from ferry.config.model import FerryConfig
from ferry.errors import ConfigError, RetryableError
from ferry.host.disk import free_bytes
from ferry.host.http_server import http_server
from ferry.host.sockets import host_port, listening
from ferry.pipeline.view import PipelineView
from ferry.registry import Context, Receiver
from ferry.runtime import readiness
from ferry.runtime.runner import StageRunner
from ferry.telemetry import metrics, own

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


async def run_ingest(cfg: FerryConfig, role: str = "ingest") -> None:
    """Every receiver the registry puts in this role, behind one backpressure monitor."""
    from ferry.receivers.backpressure import BackpressureMonitor

    stop = _stop_event()
    nc = await connect_or_stop(bus_url(cfg), f"ferry-{role}", stop)
    if nc is None:  # told to stop while the bus was unreachable
        return
    js = nc.jetstream()
    await declare(js, cfg)
    telemetry = await own.start(js, cfg, role)
    monitor = BackpressureMonitor(js, cfg)
    monitor.start()
    ctx = Context(cfg, cfg.data_dir, nc=nc, js=js, monitor=monitor)
    receivers: list[Receiver] = [registry.build(c, ctx) for c in registry.in_role(role, "receiver")]  # type: ignore[misc]
    for r in receivers:
        await r.start()
    readiness.mark(role)
    await stop.wait()
    # Drain: every receiver stops taking new data at once, then finishes what it took.
    await asyncio.gather(*(r.stop() for r in receivers), return_exceptions=True)
    await monitor.stop()
    await telemetry.stop()
    await _close_bus(nc)


def stage_instances(cfg: FerryConfig, role: str, index: int = 0) -> list[str]:
    """The stage instances one process of `role` runs: worker `index` of the parser role runs every
    instance that wants more than `index` processes; `--role NAME` of one instance runs just it."""
    if role in cfg.pipeline.stages:
        return [role]
    return [n for n in registry.instances(cfg, role) if registry.instance_workers(cfg, n) > index]


async def run_stages(cfg: FerryConfig, role: str = "parser", index: int = 0) -> None:
    """Stage instances of the pipeline, each in its own runner (its consumer group)."""
    stop = _stop_event()
    nc = await connect_or_stop(bus_url(cfg), f"ferry-{role}", stop)
    if nc is None:  # told to stop while the bus was unreachable
        return
    js = nc.jetstream()
    await declare(js, cfg)
    telemetry = await own.start(js, cfg, role)
    ctx = Context(cfg, cfg.data_dir, nc=nc, js=js)
    runners = [StageRunner(registry.build_stage(name, ctx), js, cfg.data_dir, inputs_of(cfg, name))
               for name in stage_instances(cfg, role, index)]
    for runner in runners:
        await runner.start()
    readiness.mark(role)
    await stop.wait()
    # All at once: each finishes the batch in hand (its outputs are durable on the bus before its
    # inputs are acked), so no order is needed for safety; one at a time, an idle runner's last
    # fetch (up to a second) was waited out per stage instance.
    await asyncio.gather(*(runner.stop() for runner in runners))
    await telemetry.stop()
    await _close_bus(nc)


async def run_store(cfg: FerryConfig, index: int = 0) -> None:
    from ferry.api.app import build_app
    from ferry.store import wrapped
    from ferry.store.chdb_store import ChdbStore

    stop = _stop_event()
    from ferry.store.indexes import keep_indexes

    # FERRY_STORE_WRAPPER may put a wrapper around it (ferry.store.wrapped; tests inject faults so).
    store = wrapped(ChdbStore(cfg.data_dir / "store", cfg.store.max_memory_bytes, defer_indexes=cfg.store.index_after_s > 0))
    await asyncio.to_thread(store.setup, cfg.store.retention)
    nc = await connect_or_stop(bus_url(cfg), "ferry-store", stop)
    if nc is None:  # told to stop while the bus was unreachable
        store.close()
        return
    js = nc.jetstream()
    await declare(js, cfg)
    # The store role runs the writer instances of the pipeline, on the store opened above.
    ctx = Context(cfg, cfg.data_dir, nc=nc, js=js, store=store)
    runners = []
    background = []
    for name in registry.instances(cfg, registry.STORE_ROLE):
        stage = registry.build_stage(name, ctx)
        runner = StageRunner(stage, js, cfg.data_dir, inputs_of(cfg, name))
        await runner.start()
        runners.append(runner)
        # Spooled batches are resubmitted only while the writer has no backlog (the Sink's rule).
        background.append(asyncio.create_task(
            stage.sink.resubmit_forever(lambda r=runner: r.idle)))  # type: ignore[attr-defined,misc]
    if store.defer_indexes:
        background.append(asyncio.create_task(keep_indexes(store, cfg.store.index_after_s)))
    if cfg.store.max_bytes:
        from ferry.store.size_cap import keep_under

        background.append(asyncio.create_task(keep_under(store, cfg.store.max_bytes, cfg.store.size_check_s)))

    lag_cache: list[tuple[str, str, dict[str, str], float]] = []
    view = PipelineView(cfg)

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
                states = await probe(js, list(topics(cfg).values()))
                view.observe(states)
                for state in states:
                    for group, lag in state.lag.items():
                        labels = {"topic": state.topic, "group": group}
                        out.append(("ferry_consumer_lag_batches", "Batches not yet processed by a consumer group.", labels, float(lag)))
                    out.append(("ferry_topic_bytes", "Bytes held by a topic.", {"topic": state.topic}, float(state.bytes)))
                restarts = cfg.data_dir / "run" / "nats_restarts"
                n = float(restarts.read_text()) if restarts.exists() else 0.0
                out.append(("ferry_bus_server_restarts_total", "Restart attempts of nats-server by the supervisor (failed ones included).", {}, n))
                lag_cache[:] = out
            except Exception as e:
                log.debug("lag probe failed: %r", e)
            await asyncio.sleep(1.0)

    lag_task = asyncio.create_task(refresh_lag())
    telemetry = await own.start(js, cfg, registry.STORE_ROLE,
                                page=lambda: metrics.render(metrics.CallbackCollector(gauges)))
    # The dashboards folder the API serves (ferry/dashboards reads it from here: the API gets no config).
    os.environ["FERRY_DASHBOARDS_DIR"] = str(cfg.ui.dashboards_dir or cfg.data_dir / "dashboards")
    sock = listening(socket.SOCK_STREAM, cfg.listen, cfg.api.port)
    api = http_server(build_app(store, gauges, cfg.api, cfg.listen, pipeline=view.snapshot, tenant=cfg.tenant), sock)
    api_task = asyncio.create_task(api.serve(sockets=[sock]))
    while not api.started and not api_task.done():
        await asyncio.sleep(0.05)
    readiness.mark(registry.STORE_ROLE)
    await stop.wait()
    api.should_exit = True
    await asyncio.gather(*(runner.stop(drain_s=15) for runner in runners))  # as in run_stages
    for t in (*background, lag_task):
        t.cancel()
    await asyncio.gather(api_task, return_exceptions=True)
    await telemetry.stop()
    await _close_bus(nc)
    store.close()


def _runtime(role: str) -> Callable[[FerryConfig, int], Awaitable[None]]:
    """How a role process runs: the store's is its own (chDB, API); others run receivers or stages."""
    if role == registry.STORE_ROLE:
        return run_store
    if registry.in_role(role, "receiver"):
        return lambda cfg, index: run_ingest(cfg, role)
    return lambda cfg, index: run_stages(cfg, role, index)


def runtime(role: str) -> Callable[[FerryConfig, int], Awaitable[None]]:
    """A role by name, or one stage instance of the pipeline by its name (`ferry run --role log_parser`)."""
    return ROLES[role] if role in ROLES else (lambda cfg, index: run_stages(cfg, role, 0))


ROLES = {role: _runtime(role) for role in registry.roles()}


async def run_alone(role: str, cfg: FerryConfig, say: Callable[[str], None] = print) -> None:
    """`ferry run --role NAME`: one role in the foreground, banner printed once it serves.

    The store's API serves /metrics; ingest and parser hosts have no store, so they serve their own
    /metrics and /healthz on `metrics.port`. Under the supervisor the store is always there.
    """
    from ferry.runtime import logfiles
    from ferry.runtime.supervisor import banner
    from ferry.telemetry import metrics

    registry.declare_metrics(role)  # as ferry.runtime.child does: series exist at 0 from the start
    logfiles.configure(role, cfg.logs.repeat_interval_s)  # as the child does; rotation is the service manager's
    server: Any = None  # a uvicorn server (host/http_server.py) when this role serves /metrics
    serving: asyncio.Task[None] | None = None
    if role != registry.STORE_ROLE:
        host, port = cfg.listen, cfg.metrics.port_for(role)
        try:
            # No SO_REUSEPORT: two processes on one port would each answer a share of the scrapes
            # with only their own counters; a clash must fail instead.
            sock = listening(socket.SOCK_STREAM, host, port, reuse_port=False)
        except OSError as e:
            raise ConfigError(f"cannot listen on {host_port(host, port)} for /metrics ({e.strerror}); set metrics.port") from None
        server = http_server(metrics.app(lambda: readiness.is_ready(role)), sock)
        # Started before the role and stopped after it, so that a drain can be watched too.
        serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        task = asyncio.create_task(runtime(role)(cfg, 0))
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
