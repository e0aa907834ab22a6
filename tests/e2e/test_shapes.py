"""The same ferry in other shapes: several parser/receiver processes, and an external NATS bus.

Also checks the self-metrics page names every outcome an operator needs, and that every host of the
many-machine shape can be scraped.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from ferry.bus.server import binary
from ferry.testing import FerryProcess, free_port
from ferry.testing.otlp import logs_request

PB = {"content-type": "application/x-protobuf"}


def _sample(text: str, series: str) -> float:
    """The value of one exact series (name{labels in Prometheus' sorted order}) on a /metrics page."""
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        if head == series:
            return float(value)
    raise AssertionError(f"{series} not on the page")


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _children(ferry: FerryProcess) -> list[str]:
    out = subprocess.run(["ps", "-o", "args=", "--ppid", str(ferry.proc.pid)], capture_output=True, text=True)  # type: ignore[union-attr]
    return out.stdout.splitlines()


def test_workers_run_as_a_consumer_group(tmp_path: Path) -> None:
    """`parser.workers: 2` and `receivers.workers: 2` run four role processes; every record lands once.

    With the store among them, /metrics is the API's alone: no role opens `metrics.port`.
    """
    metrics_port = free_port()
    f = FerryProcess(tmp_path / "data", config={"receivers": {"workers": 2}, "metrics": {"port": metrics_port}},
                     workers=2).start()
    try:
        kids = _children(f)
        assert sum("ferry.runtime.child parser" in k for k in kids) == 2
        assert sum("ferry.runtime.child ingest" in k for k in kids) == 2
        assert "/healthz" not in f.output() and str(metrics_port) not in f.output()
        assert not _listening(metrics_port)
        tag = f"grp{uuid.uuid4().hex[:8]}"
        bodies = [f"{tag} r{i}" for i in range(3000)]
        for k in range(0, 3000, 100):  # many requests, spread over both receivers by the kernel
            with httpx.Client() as c:
                assert c.post(f"{f.otlp_http}/v1/logs", content=logs_request(bodies[k:k + 100]), headers=PB).status_code == 200
        rows = f.wait_for(lambda: (r := f.search(tag, limit=5000)) and len(r) >= 3000 and r, timeout=60)
        assert sorted(r["body"] for r in rows) == sorted(bodies)
    finally:
        assert f.stop() == 0


def _external_nats(tmp_path: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    port, mon = free_port(), free_port()
    conf = tmp_path / "nats.conf"
    conf.write_text(f'listen: 127.0.0.1:{port}\nhttp: 127.0.0.1:{mon}\nmax_payload: 8388608\n'
                    f'jetstream {{ store_dir: "{tmp_path / "js"}" }}\n')
    nats = subprocess.Popen([binary(), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            if httpx.get(f"http://127.0.0.1:{mon}/healthz?js-enabled-only=true").status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    return nats, port, mon


def test_roles_run_as_separate_processes_over_a_shared_bus(tmp_path: Path) -> None:
    """`ferry run --role store|log_parser|ingest`, each its own process (as on separate hosts), form one
    pipeline: `log_parser` is one stage instance of the pipeline, run alone (`--role parser` runs them all).

    The ingest and parser hosts have no store API, so each serves its own /metrics and /healthz on
    `metrics.port` (set per process here, since all three share this machine) and says so at start.
    """
    nats, port, _ = _external_nats(tmp_path)
    f = FerryProcess(tmp_path / "data", config={"bus": {"url": f"nats://127.0.0.1:{port}"}})
    metrics_port = {"log_parser": free_port(), "ingest": free_port()}
    procs, outs = [], {}
    try:
        for role in ("store", "log_parser", "ingest"):
            outs[role] = tmp_path / f"{role}.out"
            extra = ["--set", f"metrics.port={metrics_port[role]}"] if role in metrics_port else []
            with open(outs[role], "wb") as out:
                procs.append(subprocess.Popen([sys.executable, "-m", "ferry", "run", "--role", role,
                                               "--config", str(f.config_path), *extra],
                                              stdout=out, stderr=subprocess.STDOUT))
        tag = f"roles{uuid.uuid4().hex[:8]}"

        def sent() -> bool:
            r = httpx.post(f"{f.otlp_http}/v1/logs", content=logs_request([f"{tag} hi"]), headers=PB, timeout=5)
            return r.status_code == 200

        f.wait_for(sent, timeout=60, interval=0.5)
        assert f.wait_for(lambda: f.search(tag), timeout=60)[0]["body"] == f"{tag} hi"

        def scrape(role: str) -> str:
            return httpx.get(f"http://127.0.0.1:{metrics_port[role]}/metrics", timeout=10).text

        received = 'ferry_received_records_total{component="otlp_http",signal="logs"}'
        assert f.wait_for(lambda: _sample(scrape("ingest"), received) > 0)
        assert f.wait_for(lambda: _sample(scrape("log_parser"), 'ferry_stage_records_total{stage="log_parser"}') > 0)
        for role in metrics_port:
            assert httpx.get(f"http://127.0.0.1:{metrics_port[role]}/healthz", timeout=10).json() == {"status": "ok"}
            assert f"  metrics        http://127.0.0.1:{metrics_port[role]}  (/metrics, /healthz)" in outs[role].read_text()
        # The store's banner still names its API as the metrics page, and the receiver port has none.
        assert "API + metrics" in outs["store"].read_text() and "/healthz" not in outs["store"].read_text()
        assert httpx.get(f"{f.otlp_http}/metrics", timeout=10).status_code == 404
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            assert p.wait(60) == 0
        nats.terminate()
        nats.wait(10)


def test_external_bus_url_is_used_instead_of_a_private_server(tmp_path: Path) -> None:
    """With bus.url set, ferry starts no nats-server of its own and runs over the given JetStream;
    this host's disk then holds no bus, so its free-space floor does not hold data back."""
    nats, port, mon = _external_nats(tmp_path)
    try:
        f = FerryProcess(tmp_path / "data", config={
            "bus": {"url": f"nats://127.0.0.1:{port}"},
            "backpressure": {"min_free_disk_bytes": 2**60},  # more than any disk has
        }).start()
        try:
            assert not any("nats-server" in k for k in _children(f))
            assert f"bus: nats://127.0.0.1:{port}" in f.output()
            tag = f"ext{uuid.uuid4().hex[:8]}"
            r = httpx.post(f"{f.otlp_http}/v1/logs", content=logs_request([f"{tag} hello"]), headers=PB)
            assert r.status_code == 200
            assert f.wait_for(lambda: f.search(tag))[0]["body"] == f"{tag} hello"
            streams = httpx.get(f"http://127.0.0.1:{mon}/jsz?streams=true").json()
            names = {s["name"] for a in streams["account_details"] for s in a["stream_detail"]}
            assert {"FERRY_LOGGING", "FERRY_LOG_COMMIT", "FERRY_SYSLOG", "FERRY_TRACE_COMMIT"} <= names
        finally:
            assert f.stop() == 0
    finally:
        nats.terminate()
        nats.wait(10)


def test_metrics_page_names_every_outcome(ferry: FerryProcess) -> None:
    """GET /metrics has received, written, refused (by reason), consumer lag and insert latency after traffic."""
    tag = f"m{uuid.uuid4().hex[:8]}"
    httpx.post(f"{ferry.otlp_http}/v1/logs", content=logs_request([f"{tag} a", f"{tag} b"]), headers=PB)
    httpx.post(f"{ferry.otlp_http}/v1/logs", content=b"junk", headers=PB)
    ferry.wait_for(lambda: ferry.search(tag))
    text = ferry.wait_for(lambda: (t := ferry.metrics_text()) and "ferry_consumer_lag_batches" in t and t)
    for name in (
        'ferry_received_records_total{component="otlp_http",signal="logs"}',
        'ferry_written_rows_total{table="otel_logs"}',
        'ferry_refused_records_total{component="otlp_http",reason="malformed",signal="logs"}',
        'ferry_consumer_lag_batches{group="writer",topic="log_commit"}',
        'ferry_store_insert_seconds_bucket{le="0.1",table="otel_logs"}',
        "ferry_spool_pending_batches",
        'ferry_store_late_index_builds_total{table="otel_logs"}',
        "ferry_bus_server_restarts_total",
        "ferry_topic_bytes",
    ):
        assert name in text, name
    for family in ("ferry_retried_batches_total", "ferry_spooled_batches_total", "ferry_deduplicated_batches_total",
                   "ferry_dropped_records_total"):
        assert f"# TYPE {family.removesuffix('_total')} counter" in text or f"# HELP {family}" in text, family
    assert ferry.metric("ferry_written_rows_total", table="otel_logs") >= 2


def test_parts_no_merge_reaches_get_their_search_index(tmp_path: Path) -> None:
    """Inserts leave the full-text index to merges; a lone part gets it from the store's index keeper."""
    f = FerryProcess(tmp_path / "data", config={"store": {"index_after_s": 1}}).start()
    try:
        tag = f"late{uuid.uuid4().hex[:8]}"
        httpx.post(f"{f.otlp_http}/v1/logs", content=logs_request([f"{tag} PaymentService refused"]), headers=PB)
        assert f.wait_for(lambda: f.search(f"{tag} payment"))  # found before and after indexing
        f.wait_for(lambda: f.metric("ferry_store_late_index_builds_total", table="otel_logs") >= 1, timeout=30)
        assert [r["body"] for r in f.search(f"{tag} payment")] == [f"{tag} PaymentService refused"]
    finally:
        assert f.stop() == 0


def test_listens_on_ipv6(tmp_path: Path) -> None:
    """`listen: "::1"`: OTLP/HTTP, syslog (a real `logger` over IPv6) and the API all answer there,
    the banner writes the addresses bracketed, and a peer address is kept as [::1]:port."""
    f = FerryProcess(tmp_path / "data", config={"listen": "::1"}).start()
    try:
        assert f"OTLP HTTP      http://[::1]:{f.config['receivers']['otlp']['http']['port']}" in f.output()
        tag = f"v6{uuid.uuid4().hex[:8]}"
        r = httpx.post(f"{f.otlp_http}/v1/logs", content=logs_request([f"{tag} otlp"]),
                       headers={"content-type": "application/x-protobuf"}, timeout=10)
        assert r.status_code == 200
        for transport in ("-T", "-d"):
            subprocess.run(["logger", "-n", "::1", "-P", str(f.syslog_port), transport, "--rfc3164", "-t", "v6app",
                            f"{tag} syslog{transport}"], check=True, timeout=10)
        rows = f.wait_for(lambda: len(r := f.search(tag)) >= 3 and r, timeout=30)
        peers = sorted(r["attributes"]["net.peer"] for r in rows if r["service"] == "v6app")
        assert len(peers) == 2 and all(p.startswith("[::1]:") for p in peers), peers
        r = subprocess.run([sys.executable, "-m", "ferry", "query", tag, "--api", f.api, "--json"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and len(r.stdout.splitlines()) == 3
    finally:
        assert f.stop() == 0
