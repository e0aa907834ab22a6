"""A 3-node NATS JetStream cluster on loopback for tests: real nats-server processes, killable one by one.

Nodes are configured as docs/cluster.md recommends (sync_interval: always, a stated max_payload).
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from ferry.bus.server import binary
from ferry.host.procs import die_with_parent
from ferry.testing.process import free_port


class NatsNode:
    def __init__(self, name: str, root: Path, port: int, monitor_port: int, cluster_port: int) -> None:
        self.name = name
        self.dir = root / name
        self.port = port
        self.monitor_port = monitor_port
        self.cluster_port = cluster_port
        self.conf = self.dir / "nats.conf"
        self.log = self.dir / "nats.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [binary(), "-c", str(self.conf), "-l", str(self.log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,  # a killed test run must not leave servers behind
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def healthy(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.monitor_port}/healthz?js-enabled-only=true"
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """SIGKILL: what a power cut or an OOM kill does to a node."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def jsz(self) -> dict[str, Any]:
        r = httpx.get(f"http://127.0.0.1:{self.monitor_port}/jsz?streams=true", timeout=5)
        r.raise_for_status()
        return dict(r.json())


class NatsCluster:
    """Three JetStream nodes routed to one another, each with its own store dir and ports below 32768."""

    def __init__(self, root: Path, nodes: int = 3, max_payload: int = 1024 * 1024,
                 max_file_store: int = 4 * 1024**3, name: str = "ferry-test") -> None:
        self.root = Path(root)
        self.max_payload = max_payload
        self.nodes = [NatsNode(f"n{i + 1}", self.root, free_port(), free_port(), free_port()) for i in range(nodes)]
        routes = ", ".join(f"nats-route://127.0.0.1:{n.cluster_port}" for n in self.nodes)
        for n in self.nodes:
            n.dir.mkdir(parents=True, exist_ok=True)
            n.conf.write_text(
                f"""server_name: {n.name}
listen: 127.0.0.1:{n.port}
http: 127.0.0.1:{n.monitor_port}
max_payload: {max_payload}
jetstream {{
  store_dir: "{n.dir / "js"}"
  max_file_store: {max_file_store}
  sync_interval: always
}}
cluster {{
  name: {name}
  listen: 127.0.0.1:{n.cluster_port}
  routes: [{routes}]
}}
"""
            )

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    @property
    def url(self) -> str:
        """Every node, comma-separated, as `bus.url` takes them."""
        return ",".join(self.urls)

    def start(self, timeout: float = 30.0) -> NatsCluster:
        for n in self.nodes:
            n.start()
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 30.0, nodes: list[NatsNode] | None = None) -> None:
        deadline = time.monotonic() + timeout
        for n in nodes or self.nodes:
            while not n.healthy():
                if not n.alive():
                    raise RuntimeError(f"nats-server {n.name} exited:\n{n.log.read_text(errors='replace')[-2000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nats-server {n.name} not healthy after {timeout}s")
                time.sleep(0.1)
        # Healthy nodes may still be electing the JetStream meta leader, without which no stream
        # can be declared: wait for every live node to name one.
        while not all(self._meta_leader(n) for n in nodes or self.nodes if n.alive()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no JetStream meta leader after {timeout}s")
            time.sleep(0.1)

    @staticmethod
    def _meta_leader(n: NatsNode) -> str | None:
        try:
            return (n.jsz().get("meta_cluster") or {}).get("leader") or None
        except httpx.HTTPError:
            return None

    def stream_leader(self, stream: str) -> NatsNode | None:
        """The node leading `stream`'s replica group, as any live node's monitor port reports it."""
        for n in self.nodes:
            if not n.alive():
                continue
            try:
                jsz = n.jsz()
            except httpx.HTTPError:
                continue
            for account in jsz.get("account_details") or []:
                for s in account.get("stream_detail") or []:
                    leader = (s.get("cluster") or {}).get("leader")
                    if s.get("name") == stream and leader:
                        return next((m for m in self.nodes if m.name == leader), None)
        return None

    def wait_leader(self, stream: str, timeout: float = 30.0, other_than: NatsNode | None = None) -> NatsNode:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.stream_leader(stream)
            if leader is not None and leader is not other_than and leader.alive():
                return leader
            time.sleep(0.1)
        raise RuntimeError(f"no leader for {stream} within {timeout}s")

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
