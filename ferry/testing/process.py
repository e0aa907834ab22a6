"""Starts `ferry run` as a subprocess with its own data dir and ports, for tests and benchmarks.

Ports come from 20000–32000 (below the ephemeral range, which collided with NATS once).
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from ferry.config.model import ROLE_METRICS_PORTS
from ferry.host.procs import die_with_parent
from ferry.host.sockets import host_port

# Ports this process has handed out: a port is free until the ferry it was given to binds it, so
# two calls for one config could otherwise return the same port (seen: grpc port == bus port).
_given: set[int] = set()


def free_port(udp_too: bool = False) -> int:
    for _ in range(200):
        port = random.randint(20000, 32000)
        if port in _given:
            continue
        kinds = [socket.SOCK_STREAM] + ([socket.SOCK_DGRAM] if udp_too else [])
        ok = True
        for kind in kinds:
            with socket.socket(socket.AF_INET, kind) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
        if ok:
            _given.add(port)
            return port
    raise RuntimeError("no free port found in 20000-32000")


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class FerryProcess:
    def __init__(self, data_dir: Path, config: dict[str, Any] | None = None, env: dict[str, str] | None = None,
                 workers: int = 1, role: str | None = None) -> None:
        """`role` runs `ferry run --role ROLE` instead (one role of the many-machine shape, against the
        `bus.url` the config names)."""
        self.role = role
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        base = {
            "data_dir": str(self.data_dir),
            "bus": {"port": free_port(), "monitor_port": free_port()},
            "receivers": {
                "otlp": {"grpc": {"port": free_port()}, "http": {"port": free_port()}},
                "syslog": {"udp_port": (sp := free_port(udp_too=True)), "tcp_port": sp, "batch_wait_s": 0.1},
                "prometheus": {"port": free_port()},
                "loki": {"port": free_port()},
            },
            "api": {"port": free_port()},
            "pipeline": {"stages": {"writer": {"max_wait_s": 0.3}, "siem_writer": {"max_wait_s": 0.3}}},
            "parser": {"workers": workers},
        }
        self.config = _merge(base, config or {})
        self.config_path = self.data_dir.parent / f"{self.data_dir.name}.yaml"
        self.config_path.write_text(yaml.safe_dump(self.config))
        self.env = dict(os.environ, **(env or {}))
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.out"
        self._offset = 0

    # addresses
    def _at(self, port: int) -> str:
        return host_port(self.config.get("listen", "127.0.0.1"), port)

    @property
    def api(self) -> str:
        return f"http://{self._at(self.config['api']['port'])}"

    @property
    def otlp_http(self) -> str:
        return f"http://{self._at(self.config['receivers']['otlp']['http']['port'])}"

    @property
    def otlp_grpc(self) -> str:
        return self._at(self.config["receivers"]["otlp"]["grpc"]["port"])

    @property
    def remote_write_url(self) -> str:
        return f"http://{self._at(self.config['receivers']['prometheus']['port'])}/api/v1/write"

    @property
    def loki_push_url(self) -> str:
        return f"http://{self._at(self.config['receivers']['loki']['port'])}/loki/api/v1/push"

    @property
    def syslog_port(self) -> int:
        return int(self.config["receivers"]["syslog"]["tcp_port"])

    @property
    def metrics_url(self) -> str:
        """Where this process's /metrics is: the API's, or a lone ingest/parser role's metrics.port."""
        if self.role in ("ingest", "parser"):
            port = (self.config.get("metrics") or {}).get("port") or ROLE_METRICS_PORTS[self.role]
            return f"http://{self._at(port)}/metrics"
        return self.api + "/metrics"

    def start(self, timeout: float = 90.0) -> FerryProcess:
        return self.launch().wait_started(timeout)

    def launch(self) -> FerryProcess:
        """Start the process without waiting for it to serve (to start several at once)."""
        # A restart on the same data dir appends to the same log: only this run's lines count.
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log = open(self.log_path, "ab")
        role = ["--role", self.role] if self.role else []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ferry", "run", *role, "--config", str(self.config_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            preexec_fn=die_with_parent,  # a killed test run must not leave ferry running
        )
        return self

    def wait_started(self, timeout: float = 90.0) -> FerryProcess:
        assert self.proc is not None, "launch() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ferry exited with {self.proc.returncode}:\n{self.output()}")
            if b"ferry is running" in self._output_bytes()[self._offset :]:
                return self
            time.sleep(0.1)
        raise RuntimeError(f"ferry not ready after {timeout}s:\n{self.output()}")

    def _output_bytes(self) -> bytes:
        return self.log_path.read_bytes() if self.log_path.exists() else b""

    def output(self) -> str:
        return self._output_bytes().decode(errors="replace")

    def stop_cleanly(self) -> None:
        """Stop with Ctrl-C and fail unless ferry drained and exited 0 (what a module's fixture checks)."""
        rc = self.stop()
        assert rc == 0, f"ferry did not stop cleanly (rc={rc}):\n{self.output()[-3000:]}"

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        """SIGKILL the supervisor; its children die with it (PR_SET_PDEATHSIG)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        time.sleep(0.5)

    # API helpers
    def get(self, path: str, **params: Any) -> Any:
        r = httpx.get(self.api + path, params=params, timeout=30)
        r.raise_for_status()
        return r.json()

    def search(self, q: str = "", since: str = "1h", limit: int = 1000) -> list[dict[str, Any]]:
        return self.get("/api/v1/logs", q=q, since=since, limit=limit)["logs"]

    def sql_count(self, table: str) -> int:
        return int(self.get("/api/v1/status")["stored"].get(table, 0))

    def wait_for(self, fn: Any, timeout: float = 30.0, interval: float = 0.25) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = fn()
                if last:
                    return last
            except (httpx.HTTPError, KeyError):
                pass
            time.sleep(interval)
        raise AssertionError(f"condition not met within {timeout}s (last value {last!r})\n{self.output()[-3000:]}")

    def metrics_text(self) -> str:
        return httpx.get(self.metrics_url, timeout=30).text

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a /metrics sample over series whose labels include `labels`."""
        total = 0.0
        for line in self.metrics_text().splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            head, _, value = line.rpartition(" ")
            metric_name = head.split("{")[0]
            if metric_name != name:
                continue
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
        return total

    def __enter__(self) -> FerryProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
