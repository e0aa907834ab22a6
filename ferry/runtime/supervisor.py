"""`ferry run`: owns the data dir, starts nats-server and every role process, restarts what dies.

Shutdown order on Ctrl-C/SIGTERM is the data path's: receivers stop taking data first, parsers
finish their batches, writers drain into the store, and the bus goes last.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Collection
from dataclasses import dataclass

from ferry.bus.client import bus_url, connect, declare
from ferry.bus.server import NatsServer, fit_to_disk
from ferry.config.model import FerryConfig
from ferry.errors import ConfigError, DiskFull, RetryableError
from ferry.runtime.disk import free_bytes, mib
from ferry.runtime.lock import DataDirLock
from ferry.runtime.ports import check_free as check_ports_free
from ferry.runtime.procs import die_with_parent, raise_open_files_limit
from ferry.runtime.sockets import host_port

ROLE_NAMES = ("ingest", "parser", "store")


def banner(cfg: FerryConfig, roles: Collection[str]) -> str:
    """Where `ferry run` (every role) or `ferry run --role NAME` (one) listens, one line a listener."""
    r = cfg.receivers

    def at(port: int) -> str:
        return host_port(cfg.listen, port)

    whole = set(roles) >= set(ROLE_NAMES)
    lines = ["ferry is running. It listens on:" if whole else f"ferry is running (role {', '.join(roles)}). It listens on:"]
    if "ingest" in roles:
        if r.otlp.grpc.enabled:
            lines.append(f"  OTLP gRPC      {at(r.otlp.grpc.port)}")
        if r.otlp.http.enabled:
            lines.append(f"  OTLP HTTP      http://{at(r.otlp.http.port)}  (/v1/logs, /v1/traces, /v1/metrics)")
        if r.syslog.enabled:
            lines.append(f"  syslog         udp://{at(r.syslog.udp_port)}  tcp://{at(r.syslog.tcp_port)}")
    if "store" in roles:
        lines.append(f"  API + metrics  http://{at(cfg.api.port)}  (/api/v1/..., /metrics)")
    else:  # no store API on this host to serve /metrics: the role serves its own (roles.run_alone)
        lines.append(f"  metrics        http://{at(cfg.metrics.port)}  (/metrics, /healthz)")
    # Only the supervisor starts a private nats-server; a lone role connects to where it would be.
    bus = cfg.bus.url or (f"private nats-server on 127.0.0.1:{cfg.bus.port}" if whole else bus_url(cfg))
    if "store" in roles:
        lines.append(f"Data is kept in {cfg.data_dir.resolve()}  (bus: {bus}; store: embedded ClickHouse)")
        keep = cfg.store.retention
        days = ", ".join(f"{name} {f'{n} d' if n else 'forever'}" for name, n in
                         (("logs", keep.logs_days), ("traces", keep.traces_days), ("metrics", keep.metrics_days)))
        cap = f"; at most {mib(cfg.store.max_bytes)} on disk (store.max_bytes)" if cfg.store.max_bytes else ""
        lines.append(f"Retention: {days}  (store.retention){cap}")
        lines.append("Try: ferry query 'error' --since 1h      Stop with Ctrl-C (in-flight data is drained).")
    else:
        lines.append(f"Bus: {bus}      Stop with Ctrl-C (in-flight data is drained).")
    return "\n".join(lines)


@dataclass
class Child:
    role: str
    index: int
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0


class Supervisor:
    def __init__(self, cfg: FerryConfig, say: callable = print) -> None:  # type: ignore[valid-type]
        self.cfg = cfg
        self.data_dir = cfg.data_dir.resolve()
        self.cfg.data_dir = self.data_dir
        self.say = say
        self.lock = DataDirLock(self.data_dir)
        self.nats: NatsServer | None = None
        self.children: list[Child] = []
        self._stop = False
        self.run_dir = self.data_dir / "run"
        self._bus_restarted = 0.0

    # --- start ---------------------------------------------------------------------------------
    def start(self) -> None:
        self.lock.acquire()
        private_bus = self.cfg.bus.url is None
        warning = None
        try:  # what stops a start before anything runs: the lock is let go again
            check_ports_free(self.cfg, ROLE_NAMES, private_bus=private_bus)
            if private_bus:
                self.cfg.bus, warning = fit_to_disk(self.cfg.bus, self.data_dir, self.cfg.backpressure.min_free_disk_bytes)
        except (ConfigError, DiskFull):
            self.lock.release()
            raise
        if warning:
            self.say(f"ferry: {warning}")
        shutil.rmtree(self.run_dir, ignore_errors=True)
        (self.run_dir / "prom").mkdir(parents=True)
        if private_bus:
            self.nats = NatsServer(self.cfg.bus, self.data_dir)
            self.nats.start()
        asyncio.run(self._declare())
        env = dict(os.environ)
        env["FERRY_CONFIG_JSON"] = self.cfg.model_dump_json()
        env["PROMETHEUS_MULTIPROC_DIR"] = str(self.run_dir / "prom")
        self._env = env
        self.children = [Child("store", 0)]
        self.children += [Child("parser", i) for i in range(self.cfg.parser.workers)]
        self.children += [Child("ingest", i) for i in range(self.cfg.receivers.workers)]
        for c in self.children:
            self._spawn(c)
        self._wait_ready(timeout=60)

    async def _declare(self) -> None:
        nc = await connect(bus_url(self.cfg), "ferry-supervisor")
        try:
            await declare(nc.jetstream(), self.cfg.bus)
        finally:
            await nc.close()

    def _spawn(self, c: Child) -> None:
        (self.run_dir / f"{c.role}-{c.index}.ready").unlink(missing_ok=True)
        log = open(self.data_dir / "run" / f"{c.role}-{c.index}.log", "ab")
        c.proc = subprocess.Popen(
            [sys.executable, "-m", "ferry.runtime.child", c.role, str(c.index)],
            env=self._env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            preexec_fn=die_with_parent,
        )

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for c in self.children:
            ready = self.run_dir / f"{c.role}-{c.index}.ready"
            while not ready.exists():
                if c.proc is not None and c.proc.poll() is not None:
                    tail = (self.run_dir / f"{c.role}-{c.index}.log").read_text(errors="replace")[-2000:]
                    self.shutdown()
                    raise RetryableError(f"the {c.role} process exited during start-up:\n{tail}")
                if time.monotonic() > deadline:
                    self.shutdown()
                    raise RetryableError(f"the {c.role} process was not ready after {timeout:.0f}s")
                time.sleep(0.05)

    def banner(self) -> str:
        return banner(self.cfg, ROLE_NAMES)

    # --- watch ---------------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        """Before anything starts: a Ctrl-C at any moment means an orderly stop, never a traceback."""

        def _stop(*_: object) -> None:
            self._stop = True

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)

    def watch(self) -> None:
        while not self._stop:
            time.sleep(0.25)
            if self.nats is not None:
                self._watch_bus(self.nats)
            for c in self.children:
                if not self._stop and c.proc is not None and c.proc.poll() is not None:
                    c.restarts += 1
                    self.say(f"{c.role} process exited with code {c.proc.returncode}; restarting it (restart {c.restarts})")
                    # A role that keeps crashing is restarted with a growing pause, not in a hot loop.
                    time.sleep(min(0.5 * c.restarts, 5.0))
                    self._spawn(c)
        self.shutdown()

    def _watch_bus(self, nats: NatsServer) -> None:
        if not nats.alive():
            self.say("nats-server died; restarting it")
            nats.ensure_running()
        elif nats.write_failed() and self._disk_has_room() and time.monotonic() - self._bus_restarted > 5.0:
            # Until then receivers refuse with reason disk_full, and the bus keeps what it had.
            self.say("nats-server failed to write to disk (it was full); restarting it now that there is room")
            nats.restart()
            self._bus_restarted = time.monotonic()
        else:
            return
        # The store process publishes this file as ferry_bus_server_restarts_total.
        (self.run_dir / "nats_restarts").write_text(str(nats.restarts))

    def _disk_has_room(self) -> bool:
        """Room for the bus to write again: the backpressure floor, and never less than a few batches."""
        return free_bytes(self.data_dir) >= max(self.cfg.backpressure.min_free_disk_bytes, 4 * self.cfg.bus.max_payload)

    def shutdown(self) -> None:
        self.say("ferry: draining and stopping…")
        for role in ("ingest", "parser", "store"):
            procs = [c.proc for c in self.children if c.role == role and c.proc and c.proc.poll() is None]
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        if self.nats is not None:
            self.nats.stop()
        self.lock.release()
        self.say("ferry: stopped")


def run(cfg: FerryConfig) -> int:
    raise_open_files_limit()
    sup = Supervisor(cfg, say=lambda s: print(s, flush=True))
    sup.install_signal_handlers()
    sup.start()
    print(sup.banner(), flush=True)
    sup.watch()
    return 0
