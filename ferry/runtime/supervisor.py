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
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from ferry import registry
from ferry.bus.client import bus_url, connect_or_stop, declare, shown_url
from ferry.bus.server import NatsServer, fit_to_disk
from ferry.config.model import FerryConfig
from ferry.errors import ConfigError, DiskFull, RetryableError
from ferry.host.disk import free_bytes, mib
from ferry.host.lock import DataDirLock
from ferry.host.procs import die_with_parent, raise_open_files_limit
from ferry.host.sockets import host_port
from ferry.runtime.logfiles import RotatingLog, pump
from ferry.runtime.ports import check_free as check_ports_free

# A nats-server that does not come back (its port held a moment by another program, a slow
# JetStream recovery) is tried again after this long, doubling up to the cap: ferry keeps going.
_BUS_RETRY_FIRST_S = 0.5
_BUS_RETRY_MAX_S = 10.0


def banner(cfg: FerryConfig, roles: Collection[str]) -> str:
    """Where `ferry run` (every role) or `ferry run --role NAME` (one) listens, one line a listener."""
    def at(port: int) -> str:
        return host_port(cfg.listen, port)

    whole = set(roles) >= set(registry.roles())
    lines = ["ferry is running. It listens on:" if whole else f"ferry is running (role {', '.join(roles)}). It listens on:"]
    # One line per label (syslog's UDP and TCP share one), in the registry's order.
    shown: dict[str, list[str]] = {}
    for lst in registry.listeners(cfg, set(roles)):
        where = f"{lst.scheme}{at(lst.port)}"
        shown.setdefault(lst.label, []).append(f"{where}  {lst.note}" if lst.note else where)
    lines += [f"  {label:<13}  {'  '.join(places)}" for label, places in shown.items()]
    if registry.STORE_ROLE in roles:
        lines.append(f"  API + metrics  http://{at(cfg.api.port)}  (/api/v1/..., /metrics; for Grafana: /prometheus, /loki, /tempo, /jaeger)")
    else:  # no store API on this host to serve /metrics: the role serves its own (roles.run_alone)
        lines.append(f"  metrics        http://{at(cfg.metrics.port)}  (/metrics, /healthz)")
    # Only the supervisor starts a private nats-server; a lone role connects to where it would be.
    bus = shown_url(cfg.bus.url or (f"private nats-server on 127.0.0.1:{cfg.bus.port}" if whole else bus_url(cfg)))
    if registry.STORE_ROLE in roles:
        lines.append(f"Data is kept in {cfg.data_dir.resolve()}  (bus: {bus}; store: embedded ClickHouse)")
        keep = cfg.store.retention
        days = ", ".join(f"{name} {f'{n} d' if n else 'forever'}" for name, n in
                         (("logs", keep.logs_days), ("traces", keep.traces_days), ("metrics", keep.metrics_days)))
        cap = f"; at most {mib(cfg.store.max_bytes)} on disk (store.max_bytes)" if cfg.store.max_bytes else ""
        lines.append(f"Retention: {days}  (store.retention){cap}")
        lines.append("Try: ferry query 'level:error' --since 1h      Stop with Ctrl-C (in-flight data is drained).")
    else:
        lines.append(f"Bus: {bus}      Stop with Ctrl-C (in-flight data is drained).")
    return "\n".join(lines)


@dataclass
class Child:
    role: str
    index: int
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    log: threading.Thread | None = None  # copies the child's output into its rotated log
    restart_at: float | None = None  # when a child that died is started again

    @property
    def name(self) -> str:
        return f"{self.role}-{self.index}"


class Supervisor:
    def __init__(self, cfg: FerryConfig, say: callable = print,  # type: ignore[valid-type]
                 reread: Callable[[], FerryConfig] | None = None) -> None:
        self.cfg = cfg
        self.reread = reread  # how SIGHUP reads the config again (the file and --set overrides it started with)
        self._reload = False
        self.data_dir = cfg.data_dir.resolve()
        self.cfg.data_dir = self.data_dir
        self.say = say
        self.lock = DataDirLock(self.data_dir)
        self.nats: NatsServer | None = None
        self.children: list[Child] = []
        self._stop = False
        self.run_dir = self.data_dir / "run"
        self._bus_restarted = 0.0
        self._bus_retry_at = 0.0
        self._bus_retry_s = _BUS_RETRY_FIRST_S

    # --- start ---------------------------------------------------------------------------------
    def start(self) -> bool:
        """Start everything; False when told to stop before the bus could be reached."""
        # The data dir holds the bus's credentials and everything sent to ferry: nothing in it is
        # for other local users. Files made from here on (by ferry, nats-server, chDB) are private,
        # and a data dir made before this rule is closed at its top level.
        os.umask(0o077)
        self.lock.acquire()
        try:
            self.data_dir.chmod(0o700)
        except PermissionError:  # another user's directory: ferry may still use it, but says so
            self.say(f"ferry: cannot make {self.data_dir} private (chmod 700): it belongs to another user")
        private_bus = self.cfg.bus.url is None
        warning = None
        try:  # what stops a start before anything runs: the lock is let go again
            check_ports_free(self.cfg, registry.roles(), private_bus=private_bus)
            if private_bus:
                self.cfg.bus, warning = fit_to_disk(self.cfg.bus, self.data_dir, self.cfg.backpressure.min_free_disk_bytes,
                                                   len(self.cfg.pipeline.topics))
        except (ConfigError, DiskFull):
            self.lock.release()
            raise
        if warning:
            self.say(f"ferry: {warning}")
        shutil.rmtree(self.run_dir, ignore_errors=True)
        (self.run_dir / "prom").mkdir(parents=True)
        if private_bus:
            self.nats = NatsServer(self.cfg.bus, self.data_dir, list(self.cfg.pipeline.topics))
            self.nats.start()
        if not asyncio.run(self._declare()):
            if self.nats is not None:
                self.nats.stop()
            self.lock.release()
            return False
        env = dict(os.environ)
        env["FERRY_CONFIG_JSON"] = self.cfg.model_dump_json()
        env["PROMETHEUS_MULTIPROC_DIR"] = str(self.run_dir / "prom")
        self._env = env
        # Started against the data path (store first), so that each role finds its consumer ready.
        self.children = [Child(role, i) for role in reversed(registry.roles()) for i in range(registry.workers(self.cfg, role))]
        for c in self.children:
            self._spawn(c)
        self._wait_ready(timeout=60)
        return True

    async def _declare(self) -> bool:
        """Declare the topics; False when told to stop while the bus was still unreachable."""
        stop = asyncio.Event()

        async def watch_stop() -> None:  # the signal handler only sets a flag (it may come at any moment)
            while not self._stop:
                await asyncio.sleep(0.2)
            stop.set()

        watcher = asyncio.create_task(watch_stop())
        nc = await connect_or_stop(bus_url(self.cfg), "ferry-supervisor", stop)
        watcher.cancel()
        if nc is None:
            return False
        try:
            await declare(nc.jetstream(), self.cfg)
        finally:
            await nc.close()
        return True

    def _spawn(self, c: Child) -> None:
        (self.run_dir / f"{c.name}.ready").unlink(missing_ok=True)
        self._log_done(c)  # the previous run's last lines are written before this run's first
        c.proc = subprocess.Popen(
            [sys.executable, "-m", "ferry.runtime.child", c.role, str(c.index)],
            env=self._env,
            stdin=subprocess.DEVNULL,
            # One pipe for both, so that a traceback stays in order with the lines before it.
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
        assert c.proc.stdout is not None
        logs = self.cfg.logs
        c.log = pump(c.proc.stdout, RotatingLog(self.run_dir / f"{c.name}.log", logs.max_bytes, logs.keep), c.name)

    @staticmethod
    def _log_done(c: Child, timeout: float = 2.0) -> None:
        """Wait until a dead child's output is all in its log (the pipe ends once it has exited)."""
        if c.log is not None:
            c.log.join(timeout)
            c.log = None

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for c in self.children:
            ready = self.run_dir / f"{c.name}.ready"
            while not ready.exists():
                if c.proc is not None and c.proc.poll() is not None:
                    self._log_done(c)
                    tail = (self.run_dir / f"{c.name}.log").read_text(errors="replace")[-2000:]
                    self.shutdown()
                    raise RetryableError(f"the {c.role} process exited during start-up:\n{tail}")
                if time.monotonic() > deadline:
                    self.shutdown()
                    raise RetryableError(f"the {c.role} process was not ready after {timeout:.0f}s")
                time.sleep(0.05)

    def banner(self) -> str:
        return banner(self.cfg, registry.roles())

    # --- watch ---------------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        """Before anything starts: a Ctrl-C at any moment means an orderly stop, never a traceback."""

        def _stop(*_: object) -> None:
            self._stop = True

        def _reload(*_: object) -> None:
            self._reload = True

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGHUP, _reload)

    def watch(self) -> None:
        while not self._stop:
            time.sleep(0.25)
            if self._reload:
                self._reload = False
                self.reload()
            if self.nats is not None:
                self._watch_bus(self.nats)
            for c in self.children:
                if self._stop or c.proc is None or c.proc.poll() is None:
                    continue
                if c.restart_at is None:
                    c.restarts += 1
                    self.say(f"{c.role} process exited with code {c.proc.returncode}; restarting it (restart {c.restarts})")
                    # A role that keeps crashing is restarted with a growing pause, not in a hot
                    # loop; the pause holds up neither the other children nor the bus's watch.
                    c.restart_at = time.monotonic() + min(0.5 * c.restarts, 5.0)
                elif time.monotonic() >= c.restart_at:
                    c.restart_at = None
                    self._spawn(c)
        self.shutdown()

    def _watch_bus(self, nats: NatsServer) -> None:
        if time.monotonic() < self._bus_retry_at:
            return
        try:
            if not nats.alive():
                if self._bus_retry_s == _BUS_RETRY_FIRST_S:  # said once per outage, not at every try
                    self.say("nats-server died; restarting it")
                nats.ensure_running()
            elif nats.write_failed() and self._disk_has_room() and time.monotonic() - self._bus_restarted > 5.0:
                # Until then receivers refuse with reason disk_full, and the bus keeps what it had.
                self.say("nats-server failed to write to disk (it was full); restarting it now that there is room")
                self._bus_restarted = time.monotonic()
                nats.restart()
            else:
                if self._bus_retry_s > _BUS_RETRY_FIRST_S and nats.healthy():  # a slow start has ended
                    self.say("nats-server is running again")
                    self._bus_retry_s = _BUS_RETRY_FIRST_S
                return
        except RetryableError as e:
            # Roles keep reconnecting meanwhile; receivers answer "unavailable" until the bus is back.
            self.say(f"ferry: {e}; trying again in {self._bus_retry_s:g} s")
            self._bus_retry_at = time.monotonic() + self._bus_retry_s
            self._bus_retry_s = min(2 * self._bus_retry_s, _BUS_RETRY_MAX_S)
        else:
            if self._bus_retry_s > _BUS_RETRY_FIRST_S:
                self.say("nats-server is running again")
            self._bus_retry_s = _BUS_RETRY_FIRST_S
        # The store process publishes this file as ferry_bus_server_restarts_total (every attempt).
        (self.run_dir / "nats_restarts").write_text(str(nats.restarts))

    # --- reload (SIGHUP, `ferry reload`) -------------------------------------------------------
    # What each role's processes read of the config: a role is restarted on reload only when its part changed.
    _READS = {
        "ingest": ("receivers", "backpressure", "own_telemetry", "tenant", "logs"),
        "parser": ("pipeline", "parser", "own_telemetry", "logs"),
        "store": ("pipeline", "store", "api", "own_telemetry", "logs", "backpressure"),
    }
    # Settings the supervisor itself holds (the data dir and its lock, the private bus): a restart's.
    _FIXED = ("data_dir", "listen", "bus", "metrics")

    def reload(self) -> None:
        """Apply a changed config without losing or repeating a record: the roles whose settings changed
        are restarted one role at a time in data-path order, each draining first (inputs are acked only
        once their outputs are durable, and redelivered batches are deduplicated by id). An invalid
        config is refused with its errors and the running one is kept."""
        result = self.run_dir / "reload.result"
        try:
            if self.reread is None:
                raise ConfigError("this ferry was started without a config to read again")
            new = self.reread()
            new.data_dir = self.data_dir
            fixed = [k for k in self._FIXED if getattr(new, k) != getattr(self.cfg, k)]
            if fixed:
                raise ConfigError(f"{', '.join(fixed)} changed: these take effect at the next start, not on reload")
        except ConfigError as e:
            self.say(f"ferry: reload refused; the running configuration is kept:\n{e}")
            result.write_text(f"refused\n{e}\n")
            return
        old_dump = self.cfg.model_dump(mode="json")
        new_dump = new.model_dump(mode="json")
        changed = [role for role, keys in self._READS.items() if any(old_dump.get(k) != new_dump.get(k) for k in keys)]
        other = [k for k in new_dump if k not in self._FIXED and all(k not in keys for keys in self._READS.values())]
        if any(old_dump.get(k) != new_dump.get(k) for k in other):
            changed = list(self._READS)
        if not changed:
            self.say("ferry: reload: the configuration is unchanged")
            result.write_text("unchanged\n")
            return
        previous = self.cfg
        self.cfg = new
        try:
            # New topics and consumer groups exist before any role that uses them starts.
            if not asyncio.run(self._declare()):
                raise ConfigError("stopped while declaring the new topics")
        except Exception as e:
            self.cfg = previous
            self.say(f"ferry: reload refused; the running configuration is kept: {e}")
            result.write_text(f"refused\n{e}\n")
            return
        self._env["FERRY_CONFIG_JSON"] = new.model_dump_json()
        for role in registry.roles():  # receivers first: the path downstream keeps draining meanwhile
            if role not in changed:
                continue
            old = [c for c in self.children if c.role == role]
            for c in old:
                if c.proc is not None and c.proc.poll() is None:
                    c.proc.send_signal(signal.SIGTERM)
            for c in old:
                if c.proc is not None:
                    try:
                        c.proc.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        c.proc.kill()
                        c.proc.wait()
                self._log_done(c)
            fresh = [Child(role, i) for i in range(registry.workers(new, role))]
            self.children = [c for c in self.children if c.role != role] + fresh
            for c in fresh:
                self._spawn(c)
            self._wait_ready(timeout=60)
        self.say(f"ferry: reloaded the configuration; restarted {', '.join(changed)}")
        result.write_text(f"applied\nrestarted {', '.join(changed)}\n")

    def _disk_has_room(self) -> bool:
        """Room for the bus to write again: the backpressure floor, and never less than a few batches."""
        return free_bytes(self.data_dir) >= max(self.cfg.backpressure.min_free_disk_bytes, 4 * self.cfg.bus.max_payload)

    def shutdown(self) -> None:
        self.say("ferry: draining and stopping…")
        for role in registry.roles():  # the data path's order: receivers first, the store last
            procs = [c.proc for c in self.children if c.role == role and c.proc and c.proc.poll() is None]
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        for c in self.children:
            self._log_done(c)
        if self.nats is not None:
            self.nats.stop()
        self.lock.release()
        self.say("ferry: stopped")


def run(cfg: FerryConfig, reread: Callable[[], FerryConfig] | None = None) -> int:
    raise_open_files_limit()
    sup = Supervisor(cfg, say=lambda s: print(s, flush=True), reread=reread)
    sup.install_signal_handlers()
    if not sup.start():
        print("ferry: stopped before the bus could be reached", flush=True)
        return 0
    print(sup.banner(), flush=True)
    sup.watch()
    return 0
