"""A full disk: ferry refuses data with 429 instead of hanging or losing it, and takes data again by
itself once space is back, with every acknowledged record stored exactly once.

Each test puts the data directory on a small tmpfs of its own (needs root to mount; skipped without).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import grpc
import httpx
import pytest

from ferry.testing import FerryProcess, free_port
from ferry.testing.exactly_once import assert_exactly_once
from ferry.testing.otlp import logs_request

MiB = 1024**2
PB = {"content-type": "application/x-protobuf"}



def _free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _fill(disk: Path, leave: int) -> Path:
    """Take all but `leave` bytes of the disk's free space (a few MiB of slack either way)."""
    filler = disk / "filler"
    with open(filler, "ab") as f:
        chunk = b"\0" * MiB
        try:
            while _free(disk) > leave + MiB:
                f.write(chunk)
                f.flush()
        except OSError:  # leave == 0: written until the disk said no
            pass
    return filler


def _post(f: FerryProcess, bodies: list[str], timeout: float = 5) -> httpx.Response | None:
    try:
        return httpx.post(f"{f.otlp_http}/v1/logs", content=logs_request(bodies), headers=PB, timeout=timeout)
    except httpx.TimeoutException:
        return None


def test_nearly_full_disk_refuses_with_429_then_takes_data_again(small_disk: Path) -> None:
    """Under the free-space floor: OTLP/HTTP 429 with Retry-After at once, gRPC RESOURCE_EXHAUSTED,
    UDP syslog drops counted as disk_full, TCP syslog lines held; all of it lands once space is back."""
    f = FerryProcess(
        small_disk / "data",
        config={"backpressure": {"min_free_disk_bytes": 64 * MiB, "retry_after_s": 1}},
    ).start()
    try:
        # 7 topics x 2 GiB do not fit this disk: the bus shrinks its topics instead of failing to start.
        assert "bus.max_bytes_per_topic lowered from 2,048 MiB" in f.output()
        tag = f"disk{uuid.uuid4().hex[:8]}"
        before = [f"{tag} before-{i}" for i in range(200)]
        r = _post(f, before)
        assert r is not None and r.status_code == 200
        acked = list(before)

        filler = _fill(small_disk, leave=24 * MiB)
        refused = None
        deadline = time.monotonic() + 10
        while refused is None and time.monotonic() < deadline:
            bodies = [f"{tag} during-{len(acked)}-{i}" for i in range(50)]
            t0 = time.monotonic()
            r = _post(f, bodies)
            assert r is not None, "a client is answered, not left hanging, while the disk is full"
            assert time.monotonic() - t0 < 3
            if r.status_code == 200:
                acked += bodies  # taken before the monitor's next look at the disk
            else:
                refused = r
            time.sleep(0.2)
        assert refused is not None and refused.status_code == 429, "ferry refuses data while the disk is full"
        assert refused.headers["Retry-After"] == "1"
        assert "min_free_disk_bytes" in refused.text
        assert f.metric("ferry_refused_records_total", reason="disk_full") >= 1
        assert f.metric("ferry_receivers_refusing", reason="disk_full") == 1
        disk = f.get("/api/v1/status")["disk"]
        assert disk["min_free_bytes"] == 64 * MiB and disk["free_bytes"] < 64 * MiB, disk
        assert f.metric("ferry_data_disk_free_bytes") < f.metric("ferry_data_disk_min_free_bytes")
        cli = subprocess.run([sys.executable, "-m", "ferry", "status", "--api", f.api], capture_output=True, text=True, timeout=60)
        assert cli.returncode == 1, "ferry status fails while receivers refuse"
        assert "receivers  REFUSING data: disk_full" in cli.stdout and "UNDER THE FLOOR" in cli.stdout, cli.stdout

        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

        stub = logs_service_pb2_grpc.LogsServiceStub(grpc.insecure_channel(f.otlp_grpc))
        with pytest.raises(grpc.RpcError) as ei:
            stub.Export(ExportLogsServiceRequest.FromString(logs_request([f"{tag} grpc"])), timeout=10)
        assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

        # Syslog over TCP: lines are held (and reading stops when too many are), not lost.
        tcp_bodies = [f"{tag} tcp-{i}" for i in range(100)]
        with socket.create_connection(("127.0.0.1", f.syslog_port)) as tcp:
            tcp.sendall("".join(f"<14>1 - h app - - - {body}\n" for body in tcp_bodies).encode())
        # Syslog over UDP: once too many lines are held, datagrams are dropped and counted.
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for wave in range(3):
            for i in range(200):
                udp.sendto(f"<14>1 - h app - - - udp{tag} {wave} {i}".encode(), ("127.0.0.1", f.syslog_port))
            time.sleep(1)
        f.wait_for(lambda: f.metric("ferry_dropped_records_total", component="syslog_udp", reason="disk_full") > 0, timeout=20)

        filler.unlink()  # space is back: ferry takes data again by itself
        after = [f"{tag} after-{i}" for i in range(100)]
        r = f.wait_for(lambda: (r := _post(f, after)) is not None and r.status_code == 200 and r, timeout=15)
        acked += after
        assert f.metric("ferry_receivers_refusing", reason="disk_full") == 0
        assert_exactly_once(f, tag, acked + tcp_bodies)
    finally:
        assert f.stop() == 0


def test_bus_that_ran_out_of_disk_is_restarted_once_space_is_back(small_disk: Path) -> None:
    """With the floor turned off, the bus itself hits "no space left on device", after which it
    stores nothing until restarted: the supervisor restarts it once there is room again."""
    f = FerryProcess(small_disk / "data", config={"backpressure": {"min_free_disk_bytes": 0}}).start()
    try:
        tag = f"wall{uuid.uuid4().hex[:8]}"
        before = [f"{tag} before-{i}" for i in range(100)]
        r = _post(f, before)
        assert r is not None and r.status_code == 200
        filler = _fill(small_disk, leave=0)
        # Random text, so the bus's compression cannot make it fit in the last page it holds.
        big = [f"{tag} x-{i} " + os.urandom(1000).hex() for i in range(500)]
        r = _post(f, big)
        assert r is None or r.status_code != 200, "nothing is acknowledged that the bus could not store"
        f.wait_for(lambda: "critical write error" in (f.data_dir / "bus" / "nats.log").read_text().lower(), timeout=20)

        filler.unlink()
        after = [f"{tag} after-{i}" for i in range(100)]
        f.wait_for(lambda: (r := _post(f, after)) is not None and r.status_code == 200, timeout=60, interval=1)
        assert "nats-server failed to write to disk" in f.output()
        assert_exactly_once(f, tag, before + after)
        assert f.metric("ferry_bus_server_restarts_total") >= 1
    finally:
        assert f.stop() == 0


def test_too_little_disk_to_start_is_a_clear_error(small_disk: Path) -> None:
    """With less free space than the bus and the floor need, `ferry run` says so and exits."""
    _fill(small_disk, leave=200 * MiB)  # under the default 512 MiB floor
    f = FerryProcess(small_disk / "data")
    with pytest.raises(RuntimeError) as ei:
        f.start(timeout=30)
    msg = str(ei.value)
    assert "ferry exited with 1" in msg
    assert "not enough free disk for the bus" in msg and "min_free_disk_bytes" in msg
    assert "Traceback" not in msg


def test_store_over_max_bytes_drops_its_oldest_hours_first(tmp_path: Path) -> None:
    """With `store.max_bytes` set, a store that outgrows it loses its oldest hours, never the
    current one, and every dropped row is counted."""
    limit = 4 * MiB
    f = FerryProcess(tmp_path / "data", config={"store": {"max_bytes": limit, "size_check_s": 1}}).start()
    try:
        assert "at most 4 MiB on disk (store.max_bytes)" in f.output()
        tag = f"cap{uuid.uuid4().hex[:8]}"
        hour = 3600 * 10**9
        now = time.time_ns()
        # ~1 MiB an hour on disk, whatever merges do: random hex compresses to about half, no better.
        per_hour = 2000
        for h in range(5, -1, -1):  # five hours ago .. now
            bodies = [f"{tag} h{h} {i} {os.urandom(512).hex()}" for i in range(per_hour)]
            r = httpx.post(f"{f.otlp_http}/v1/logs", content=logs_request(bodies, time_ns=now - h * hour), headers=PB, timeout=30)
            assert r.status_code == 200

        def hours_left() -> set[int]:
            rows = f.get("/api/v1/logs/count", q=tag, since="1d")["count"]
            assert rows <= 6 * per_hour
            return {h for h in range(6) if f.get("/api/v1/logs/count", q=f"{tag} h{h}", since="1d")["count"]}

        seen: list[tuple[set[int], float]] = []

        def settled() -> set[int] | None:
            # Drops come in rounds while the hours arrive: read until the store and the count agree.
            left = hours_left()
            dropped = f.metric("ferry_dropped_records_total", component="store", reason="size_limit")
            seen.append((left, dropped))
            return left if len(left) < 6 and dropped == (6 - len(left)) * per_hour else None

        try:
            left = f.wait_for(settled, timeout=60)
        except AssertionError:
            raise AssertionError(f"hours left and rows counted as dropped never agreed: {seen[-3:]}") from None
        assert 0 in left, "the current hour is never dropped"
        assert left == set(range(max(left) + 1)), f"only the oldest hours go: {sorted(left)} left"
    finally:
        assert f.stop() == 0


# scripts/test unpacks Prometheus beside the tree (installing the package would start a service).
_UNPACKED_PROMETHEUS = Path(__file__).resolve().parents[2] / ".cache/peers/bin/prometheus"
PROMETHEUS = str(_UNPACKED_PROMETHEUS) if _UNPACKED_PROMETHEUS.exists() else shutil.which("prometheus")
ALERTS = Path(__file__).resolve().parents[2] / "docs" / "ferry-alerts.yml"


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed")
def test_prometheus_scrapes_ferry_and_the_shipped_alert_fires_on_a_full_disk(small_disk: Path, tmp_path: Path) -> None:
    """A real Prometheus scrapes ferry's /metrics and evaluates docs/ferry-alerts.yml: when the
    disk fills, FerryRefusingData and FerryDiskNearlyFull fire (their `for:` shortened to 0s here)."""
    f = FerryProcess(small_disk / "data", config={"backpressure": {"min_free_disk_bytes": 64 * MiB}}).start()
    rules = tmp_path / "rules.yml"
    rules.write_text(re.sub(r"(?m)^(\s+)for: .*$", r"\1for: 0s", ALERTS.read_text()))
    port = free_port()
    conf = tmp_path / "prometheus.yml"
    conf.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: [{rules}]\n"
        f"scrape_configs: [{{job_name: ferry, static_configs: [{{targets: ['127.0.0.1:{f.config['api']['port']}']}}]}}]\n"
    )
    prom = subprocess.Popen(
        [str(PROMETHEUS), f"--config.file={conf}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    api = f"http://127.0.0.1:{port}/api/v1"

    # Until its storage is open Prometheus answers 503 in plain text: nothing to read yet.
    def query(q: str) -> list[dict]:  # type: ignore[type-arg]
        r = httpx.get(f"{api}/query", params={"query": q}, timeout=5)
        return r.json()["data"]["result"] if r.status_code == 200 else []

    def firing() -> dict[str, str]:
        r = httpx.get(f"{api}/alerts", timeout=5)
        alerts = r.json()["data"]["alerts"] if r.status_code == 200 else []
        return {a["labels"]["alertname"]: a["labels"].get("reason", "") for a in alerts if a["state"] == "firing"}

    try:
        up = f.wait_for(lambda: query('up{job="ferry"}'), timeout=30)
        assert up[0]["value"][1] == "1", "Prometheus parses ferry's /metrics page"
        assert float(f.wait_for(lambda: query("ferry_data_disk_free_bytes"))[0]["value"][1]) > 64 * MiB
        assert not firing()
        filler = _fill(small_disk, leave=24 * MiB)
        alerts = f.wait_for(lambda: (a := firing()) and "FerryRefusingData" in a and "FerryDiskNearlyFull" in a and a, timeout=30)
        assert alerts["FerryRefusingData"] == "disk_full"
        filler.unlink()
        f.wait_for(lambda: "FerryRefusingData" not in firing(), timeout=30)
    finally:
        prom.terminate()
        prom.wait(10)
        assert f.stop() == 0
