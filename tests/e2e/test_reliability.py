"""Crash, store failure and overload: acknowledged data is never lost, never doubled, never silent.

Each test drives a real `ferry run` (private nats-server, chDB) with real OTLP/HTTP and syslog traffic.
"""

from __future__ import annotations

import collections
import os
import signal
import socket
import threading
import time
import uuid
from pathlib import Path

import grpc
import httpx
import pytest

from ferry.host.faults import FAULTS_ENV
from ferry.store import WRAPPER_ENV
from ferry.testing import FerryProcess, faulty_store
from ferry.testing.exactly_once import assert_exactly_once, stored_bodies
from ferry.testing.otlp import logs_request

PB = {"content-type": "application/x-protobuf"}


def _store_faults(faults: Path) -> dict[str, str]:
    """Env of a ferry whose store fails every insert while `faults` holds the word `store`."""
    return {WRAPPER_ENV: faulty_store.SPEC, FAULTS_ENV: str(faults)}


class Sender(threading.Thread):
    """Posts numbered OTLP log batches until stopped; remembers which batches were acknowledged (200)."""

    def __init__(self, ferry: FerryProcess, tag: str, per_batch: int = 200, max_batches: int = 45) -> None:
        super().__init__(daemon=True)
        self.max_batches = max_batches  # the check reads back at most 10,000 rows
        self.url = f"{ferry.otlp_http}/v1/logs"
        self.tag, self.per_batch = tag, per_batch
        self.acked: list[str] = []
        self.refused = collections.Counter[int]()
        self.stop_flag = threading.Event()
        self.batch = 0

    def bodies(self, b: int) -> list[str]:
        return [f"{self.tag} rec-{b}-{i}" for i in range(self.per_batch)]

    def run(self) -> None:
        with httpx.Client(timeout=10) as c:
            payload, built_for = b"", -1
            while not self.stop_flag.is_set() and self.batch < self.max_batches:
                b = self.batch
                if built_for != b:  # a retry resends the identical request, as OTLP exporters do
                    payload, built_for = logs_request(self.bodies(b)), b
                try:
                    r = c.post(self.url, content=payload, headers=PB)
                except httpx.HTTPError:
                    self.refused[0] += 1
                    time.sleep(0.05)
                    continue
                if r.status_code == 200:
                    self.acked.extend(self.bodies(b))
                    self.batch += 1
                    time.sleep(0.05)  # sustained load, spread over a few seconds
                else:
                    self.refused[r.status_code] += 1
                    time.sleep(0.05)


def test_identical_retry_is_stored_once(ferry: FerryProcess) -> None:
    """An exporter that resends the identical request (its answer was lost) does not double the data."""
    tag = f"retry{uuid.uuid4().hex[:8]}"
    payload = logs_request([f"{tag} one", f"{tag} two"])
    for _ in range(3):
        assert httpx.post(f"{ferry.otlp_http}/v1/logs", content=payload, headers=PB).status_code == 200
    ferry.wait_for(lambda: len(ferry.search(tag)) == 2)
    time.sleep(1.5)
    assert sorted(r["body"] for r in ferry.search(tag)) == [f"{tag} one", f"{tag} two"]
    assert ferry.metric("ferry_bus_duplicate_batches_total", topic="logging") >= 2


def test_kill_9_under_load_loses_and_doubles_nothing(tmp_path: Path) -> None:
    """SIGKILL of ferry and its nats-server mid-load, then a restart: every acknowledged record is stored once."""
    f = FerryProcess(tmp_path / "data").start()
    tag = f"crash{uuid.uuid4().hex[:8]}"
    s = Sender(f, tag)
    s.start()
    f.wait_for(lambda: s.batch >= 15, timeout=60, interval=0.05)
    f.kill()  # supervisor, roles and nats-server all die at once (PR_SET_PDEATHSIG)
    s.stop_flag.set()
    s.join()
    assert 3000 <= len(s.acked) < 9000, f"the kill did not land mid-load ({len(s.acked)} acked)"
    f.start()
    try:
        assert_exactly_once(f, tag, s.acked)
    finally:
        assert f.stop() == 0


def test_nats_server_death_is_survived(tmp_path: Path) -> None:
    """If the private nats-server is SIGKILLed, ferry restarts it and acknowledged data still lands once."""
    f = FerryProcess(tmp_path / "data").start()
    try:
        tag = f"natskill{uuid.uuid4().hex[:8]}"
        s = Sender(f, tag)
        s.max_batches = 40
        s.start()
        f.wait_for(lambda: s.batch >= 10, timeout=60, interval=0.05)
        pid = int(next(line for line in os.popen(f"pgrep -f 'nats-server -c {f.data_dir.resolve()}'").read().split()))
        os.kill(pid, signal.SIGKILL)
        s.join(timeout=120)
        assert s.batch == 40, "ingest resumed after the bus came back and the sender finished"
        assert "nats-server died; restarting it" in f.output()
        assert_exactly_once(f, tag, s.acked)
        assert f.metric("ferry_bus_server_restarts_total") >= 1
    finally:
        assert f.stop() == 0


def test_store_failure_retries_spools_and_recovers_once(tmp_path: Path) -> None:
    """While the store refuses inserts, batches are retried then spooled; after recovery all land exactly once."""
    faults = tmp_path / "faults"
    faults.write_text("store")
    f = FerryProcess(
        tmp_path / "data",
        config={"pipeline": {"stages": {"writer": {"retries": 2, "backoff_s": 0.1, "spool_retry_s": 0.5}}}},
        env=_store_faults(faults),
    ).start()
    try:
        tag = f"spool{uuid.uuid4().hex[:8]}"
        acked: list[str] = []
        for b in range(5):
            bodies = [f"{tag} rec-{b}-{i}" for i in range(100)]
            r = httpx.post(f"{f.otlp_http}/v1/logs", content=logs_request(bodies), headers=PB, timeout=10)
            assert r.status_code == 200, "the bus is healthy, so clients are still acknowledged"
            acked += bodies
        f.wait_for(lambda: f.metric("ferry_spooled_batches_total") >= 1, timeout=30)
        assert f.metric("ferry_retried_batches_total", component="writer", reason="store_unavailable") >= 1
        assert list((f.data_dir / "spool").glob("*/*.spool")), "spooled batches are on disk"
        assert not stored_bodies(f, tag), "nothing was stored while the store failed"
        faults.write_text("")  # the store recovers
        fresh = [f"{tag} fresh-{i}" for i in range(50)]
        r = httpx.post(f"{f.otlp_http}/v1/logs", content=logs_request(fresh), headers=PB, timeout=10)
        assert r.status_code == 200
        assert_exactly_once(f, tag, acked + fresh, timeout=60)
        assert f.metric("ferry_spool_resubmitted_batches_total") >= 1
        f.wait_for(lambda: f.metric("ferry_spool_pending_batches") == 0, timeout=30)  # raises if it stays > 0
        assert not list((f.data_dir / "spool").glob("*/*.spool")), "the spool is empty after recovery"
    finally:
        assert f.stop() == 0


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_overload_backpressure_429_grpc_tcp_udp(tmp_path: Path) -> None:
    """When writers lag past the bound: HTTP 429 + Retry-After, gRPC RESOURCE_EXHAUSTED, TCP stops reading, UDP drops are counted; RSS stays bounded."""
    faults = tmp_path / "faults"
    faults.write_text("store")
    f = FerryProcess(
        tmp_path / "data",
        config={
            "pipeline": {"stages": {"writer": {"retries": 1000, "backoff_s": 0.2}}},  # the writer keeps retrying: lag grows
            "backpressure": {"max_pending_batches": 3, "retry_after_s": 3},
        },
        env=_store_faults(faults),
    ).start()
    try:
        tag = f"bp{uuid.uuid4().hex[:8]}"
        acked: list[str] = []
        got_429 = None
        for b in range(200):
            bodies = [f"{tag} rec-{b}-{i}" for i in range(50)]
            r = httpx.post(f"{f.otlp_http}/v1/logs", content=logs_request(bodies), headers=PB, timeout=10)
            if r.status_code == 200:
                acked += bodies
            elif r.status_code == 429:
                got_429 = r
                break
            time.sleep(0.05)
        assert got_429 is not None, "ferry answered 429 once writers lagged"
        assert got_429.headers["Retry-After"] == "3"
        assert f.metric("ferry_refused_records_total", reason="backpressure") >= 1

        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

        stub = logs_service_pb2_grpc.LogsServiceStub(grpc.insecure_channel(f.otlp_grpc))
        req = ExportLogsServiceRequest.FromString(logs_request([f"{tag} grpc"]))
        with pytest.raises(grpc.RpcError) as ei:
            stub.Export(req, timeout=10)
        assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

        # UDP: datagrams that cannot be taken are counted.
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for wave in range(3):  # the first wave fills the bounded buffer; later ones are shed
            for i in range(200):
                udp.sendto(f"<14>1 - h app - - - udp{tag} {wave} {i}".encode(), ("127.0.0.1", f.syslog_port))
            time.sleep(1)
        f.wait_for(lambda: f.metric("ferry_dropped_records_total", component="syslog_udp", reason="overload") > 0, timeout=20)

        # TCP: ferry stops reading, so a sender eventually blocks instead of ferry buffering without end.
        ingest_pid = int((f.data_dir / "run" / "ingest-0.ready").read_text())
        rss_before = _rss_kb(ingest_pid)
        tcp = socket.create_connection(("127.0.0.1", f.syslog_port))
        tcp.settimeout(5)
        line = f"<14>1 - h app - - - {'x' * 900} filler{tag}\n".encode()
        sent = 0
        with pytest.raises(socket.timeout):
            for _ in range(200_000):  # up to ~180 MB if nobody pushed back
                tcp.sendall(line)
                sent += len(line)
        assert sent < 120 * 1024 * 1024, f"ferry read {sent} bytes before pushing back"
        rss_after = _rss_kb(ingest_pid)
        assert rss_after - rss_before < 150 * 1024, f"ingest RSS grew {rss_after - rss_before} kB under overload"
        tcp.close()

        faults.write_text("")  # recovery: everything acknowledged drains into the store
        assert_exactly_once(f, tag, acked, timeout=90)
    finally:
        assert f.stop() == 0
