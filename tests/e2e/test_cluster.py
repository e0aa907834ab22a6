"""The many-machine shape on a real 3-node NATS JetStream cluster: ferry's roles as separate processes
survive the loss of a stream leader under load from a stock OTel SDK, losing and doubling nothing.

Also: lone roles wait (and say so) for a bus that is not there yet and stop on SIGTERM, refuse
worker counts they cannot honour, and keep a batch worked on longer than ack_wait from redelivery.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import string
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
from opentelemetry._logs import LogRecord, SeverityNumber

from ferry.bus import codec
from ferry.bus.client import ACK_WAIT_S, connect, consumer_config, declare, stream_config
from ferry.bus.publish import publish
from ferry.bus.server import NatsServer
from ferry.bus.topics import LOG_PARSER, LOGGING, inputs_of, stream_of
from ferry.config.model import ROLE_METRICS_PORTS, BusConfig, FerryConfig
from ferry.runtime.runner import StageRunner
from ferry.stages.contract import FetchPolicy, Output
from ferry.testing import FerryProcess, free_port
from ferry.testing.cluster import NatsCluster
from ferry.testing.otlp import logs_request

RECORDS = 30_000
PB = {"content-type": "application/x-protobuf"}
MiB = 1024 * 1024


def _word() -> str:
    # Letters only: the full-text index splits letter/digit boundaries, and the tag is searched as one token.
    return "".join(random.choices(string.ascii_lowercase, k=12))


def _roles(tmp: Path, bus_url: Any, parsers: int = 1, metrics_ports: bool = True) -> dict[str, FerryProcess]:
    """store, parser(s) and ingest as separate processes (as on separate hosts): one config but for
    data_dir and (unless `metrics_ports` is False: the per-role defaults) metrics.port."""
    sp = free_port(udp_too=True)
    common: dict[str, Any] = {
        "bus": {"url": bus_url, "replicas": 3, "max_bytes_per_topic": 64 * MiB},
        "receivers": {"otlp": {"grpc": {"port": free_port()}, "http": {"port": free_port()}},
                      "syslog": {"udp_port": sp, "tcp_port": sp}},
        "api": {"port": free_port()},
    }
    names = ["store", *(f"parser{i + 1}" if i else "parser" for i in range(parsers)), "ingest"]
    return {name: FerryProcess(tmp / name, config={**common, **({"metrics": {"port": free_port()}} if metrics_ports else {})},
                               role=name.rstrip("0123456789"))
            for name in names}


async def _as_an_older_ferry_declared(urls: list[str], cfg: BusConfig) -> None:
    """The logging topic's parser group as a ferry with a 60 s ack_wait left it."""
    nc = await connect(",".join(urls), "older-ferry")
    try:
        js = nc.jetstream()
        await js.add_stream(stream_config(LOGGING, cfg, nc.max_payload))
        await js.add_consumer(stream_of(LOGGING), replace(consumer_config(LOG_PARSER, LOGGING), ack_wait=60.0))
    finally:
        await nc.close()


async def _ack_wait(urls: list[str]) -> float:
    nc = await connect(",".join(urls), "probe")
    try:
        ci = await nc.jetstream().consumer_info(stream_of(LOGGING), LOG_PARSER)
        return float(ci.config.ack_wait or 0)
    finally:
        await nc.close()


def _max_msg_sizes(cluster: NatsCluster) -> set[int]:
    node = next(n for n in cluster.nodes if n.alive())
    jsz = httpx.get(f"http://127.0.0.1:{node.monitor_port}/jsz?streams=true&config=true", timeout=5).json()
    return {s["config"]["max_msg_size"] for a in jsz["account_details"] for s in a["stream_detail"]
            if s["name"].startswith("FERRY_")}


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _sdk(endpoint: str) -> tuple[Any, Any]:
    """A stock OTel SDK logging pipeline, as an app would set it up (queue big enough to drop nothing)."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    lp = LoggerProvider(resource=Resource.create({"service.name": "cluster-test"}))
    # timeout: how long the exporter keeps retrying one batch (503 + Retry-After during a leader change).
    lp.add_log_record_processor(BatchLogRecordProcessor(
        OTLPLogExporter(endpoint=endpoint, timeout=30), max_queue_size=2 * RECORDS, max_export_batch_size=500,
        schedule_delay_millis=50))
    return lp, lp.get_logger("cluster-test")


def test_roles_on_a_3_node_cluster_lose_nothing_when_the_stream_leader_dies(tmp_path: Path) -> None:
    """30 k records from a stock OTel SDK (HTTP) while the FERRY_LOGGING leader is SIGKILLed: every record is
    stored exactly once and the exporter never sees a 500 (a leader election is 503 + Retry-After, which
    it retries). Then one of two parser hosts hangs with batches delivered to it and dies: the bus hands
    them to the other within ack_wait (seconds; it was a minute), so all is visible soon after the flush.

    The nodes allow the stock 1 MiB per message (ferry's bus.max_payload default is 8 MiB): the topics
    are declared with the server's limit and a 3 MB request is cut to fit. The store runs alone, so
    `ferry status` names its own pid.
    """
    cluster = NatsCluster(tmp_path / "nats", max_file_store=1024 * MiB)
    procs = _roles(tmp_path, cluster.urls, parsers=2)  # bus.url as a YAML list
    store, parser, doomed, ingest = procs["store"], procs["parser"], procs["parser2"], procs["ingest"]
    sdk_log = _Collect()
    logging.getLogger("opentelemetry").addHandler(sdk_log)
    try:
        cluster.start()
        asyncio.run(_as_an_older_ferry_declared(cluster.urls, BusConfig(replicas=3, max_bytes_per_topic=64 * MiB)))
        for p in procs.values():
            p.launch()
        for p in procs.values():
            p.wait_started(90)
        # The consumer group an older ferry declared with a 60 s ack_wait now has ferry's.
        assert asyncio.run(_ack_wait(cluster.urls)) == ACK_WAIT_S
        assert _max_msg_sizes(cluster) == {MiB}
        # The store runs alone: `ferry status` names its own pid (not its shell's, as getppid() did).
        status = subprocess.run([sys.executable, "-m", "ferry", "status", "--api", store.api],
                                capture_output=True, text=True, timeout=60)
        assert f"(pid {store.proc.pid})" in status.stdout, status.stdout + status.stderr  # type: ignore[union-attr]

        tag = _word()
        lp, app = _sdk(f"{ingest.otlp_http}/v1/logs")
        leader = cluster.wait_leader("FERRY_LOGGING")
        killed_at = restarted_at = frozen_at = 0.0
        t0 = time.monotonic()
        for i in range(RECORDS):
            app.emit(LogRecord(body=f"{tag} record {i}", attributes={"seq": i}, severity_number=SeverityNumber.INFO))
            if i % 250 == 249:
                time.sleep(0.1)  # ~2,500 records/s: the load spans the kill and the election
            if i == RECORDS // 4:
                leader.kill()
                killed_at = time.monotonic()
            if killed_at and not restarted_at and time.monotonic() - killed_at > 4:
                cluster.wait_leader("FERRY_LOGGING", other_than=leader)
                leader.start()  # the node comes back and catches up while the load goes on
                restarted_at = time.monotonic()
            # A parser host hangs (what the bus delivers to it stays unread in its socket), then dies.
            if i == RECORDS * 2 // 3:
                doomed.proc.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
                frozen_at = time.monotonic()
            if frozen_at and time.monotonic() - frozen_at > 1.5 and doomed.proc.poll() is None:  # type: ignore[union-attr]
                doomed.proc.kill()  # type: ignore[union-attr]
        assert restarted_at and doomed.proc.wait(10) == -signal.SIGKILL  # type: ignore[union-attr]
        assert lp.force_flush(timeout_millis=90_000), "the SDK could not export everything"
        flushed = time.monotonic()
        lp.shutdown()
        exported_in = flushed - t0
        failed = [line for line in sdk_log.lines if "Transient" not in line]
        assert not failed, f"the SDK reported failures: {failed[:5]}"

        def count() -> int:
            return int(store.get("/api/v1/logs/count", q=tag, since="1h")["count"])

        store.wait_for(lambda: count() >= RECORDS, timeout=60, interval=0.5)
        visible_after = time.monotonic() - flushed
        time.sleep(3)  # a late redelivery that would double rows has had time to land
        bodies: list[str] = []
        for lo in range(0, RECORDS, 10_000):
            q = f"{tag} seq:>={lo} seq:<{lo + 10_000}"
            bodies += [r["body"] for r in store.get("/api/v1/logs", q=q, since="1h", limit=10_000)["logs"]]
        assert count() == RECORDS, f"{count() - RECORDS:+d} rows against {RECORDS} records sent"
        assert sorted(bodies) == sorted(f"{tag} record {i}" for i in range(RECORDS))
        # What the dead parser held came back within ack_wait, not a minute later.
        assert visible_after < 20, f"the last records became visible {visible_after:.1f}s after the SDK's flush"
        # A bus election is "unavailable" (503), never "internal" (500, which exporters drop).
        assert ingest.metric("ferry_refused_records_total", reason="internal") == 0
        assert parser.metric("ferry_stage_records_total", stage="log_parser") > 0
        retried = sum("Transient" in line for line in sdk_log.lines)
        if retried:  # what the SDK retried, ferry counted as refused for now
            assert ingest.metric("ferry_refused_records_total", reason="unavailable") > 0
        print(f"\n{RECORDS} records exported in {exported_in:.1f}s across a leader kill; SDK retries: {retried}; "
              f"all visible {visible_after:.1f}s after the flush")

        # A stock 1 MiB cluster: one 3 MB request is cut into messages the nodes accept.
        big = _word()
        payload = logs_request([f"{big} {i} " + os.urandom(500).hex() for i in range(3000)])
        assert len(payload) > 3 * 10**6
        r = httpx.post(f"{ingest.otlp_http}/v1/logs", content=payload, headers=PB, timeout=60)
        assert r.status_code == 200, r.text
        assert ingest.metric("ferry_split_batches_total", topic=LOGGING) >= 1
        store.wait_for(lambda: store.get("/api/v1/logs/count", q=big, since="1h")["count"] == 3000, timeout=60)
    finally:
        logging.getLogger("opentelemetry").removeHandler(sdk_log)
        rcs = {}
        for name in ("ingest", "parser", "parser2", "store"):  # the data path's order
            rcs[name] = procs[name].stop()
        cluster.stop()
    assert rcs == {"ingest": 0, "parser": 0, "parser2": -signal.SIGKILL, "store": 0}, \
        {r: procs[r].output()[-2000:] for r in rcs}


def test_lone_roles_wait_for_the_bus_and_share_a_host_on_their_own_metrics_ports(tmp_path: Path) -> None:
    """A role started before its bus says it is waiting, keeps retrying, serves once the bus is up,
    and stops on SIGTERM at any point. Left unset, metrics.port is per role (ingest 9686, parser
    9687), so an ingest and a parser role share a host; both cluster URL forms are taken."""
    cluster = NatsCluster(tmp_path / "nats", max_file_store=1024 * MiB)
    procs = _roles(tmp_path, cluster.url, metrics_ports=False)  # bus.url comma-separated
    ingest, parser = procs["ingest"], procs["parser"]
    try:
        ingest.launch()
        parser.launch()
        for p in (ingest, parser):
            p.wait_for(lambda p=p: "waiting for the bus at nats://127.0.0.1:" in p.output(), timeout=60)
            assert "Traceback" not in p.output()
            # A load balancer or an orchestrator sees it is not serving yet.
            health = httpx.get(p.metrics_url.replace("/metrics", "/healthz"), timeout=5)
            assert (health.status_code, health.json()) == (503, {"status": "starting"})
        cluster.start()
        for p in (ingest, parser):
            p.wait_started(60)
        for role, p in (("ingest", ingest), ("parser", parser)):
            assert f"metrics        http://127.0.0.1:{ROLE_METRICS_PORTS[role]}" in p.output()
            assert httpx.get(p.metrics_url.replace("/metrics", "/healthz"), timeout=5).json() == {"status": "ok"}
            assert "ferry_retried_batches_total" in p.metrics_text()
    finally:
        rcs = [p.stop() for p in (ingest, parser)]
        cluster.stop()
    assert rcs == [0, 0]

    # SIGTERM while still waiting: a clean stop, promptly.
    dead = f"nats://127.0.0.1:{free_port()}"
    alone = _roles(tmp_path / "again", dead)["store"].launch()
    alone.wait_for(lambda: f"waiting for the bus at {dead}" in alone.output(), timeout=60)
    alone.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    assert alone.proc.wait(15) == 0  # type: ignore[union-attr]


def test_bad_bus_urls_and_worker_counts_are_refused_before_start(tmp_path: Path) -> None:
    """A bus.url the client could not use, and N workers of a lone role, are refused in one sentence."""
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ferry", *args], capture_output=True, text=True, timeout=60)

    ok = tmp_path / "ok.yaml"
    ok.write_text("bus:\n  url: [nats://10.0.0.1:4222, 'tls://nats-2.example:4222']\n")
    assert run("config", "check", "-c", str(ok)).returncode == 0
    for bad, why in (("nats://a:4222,nats//b:4222", "no scheme"), ("http://a:4222", "scheme 'http'"),
                     ("nats://a", "no port"), ("nats://a:99999", "bad port"), ("nats://:4222", "no host")):
        cfg = tmp_path / "bad.yaml"
        cfg.write_text(f"bus:\n  url: '{bad}'\n")
        for args in (("config", "check", "-c", str(cfg)), ("run", "--role", "parser", "-c", str(cfg))):
            r = run(*args)
            assert r.returncode == 2 and "bus.url (line 2)" in r.stderr and why in r.stderr, r.stderr
            assert "Traceback" not in r.stderr
    url = f"bus.url=nats://127.0.0.1:{free_port()}"
    r = run("run", "--role", "parser", "--workers", "2", "--set", url, "--data-dir", str(tmp_path / "p"))
    assert r.returncode == 2 and "parser.workers = 2 is not supported with --role parser" in r.stderr, r.stderr
    r = run("run", "--role", "ingest", "--receivers", "3", "--set", url, "--data-dir", str(tmp_path / "i"))
    assert r.returncode == 2 and "receivers.workers = 3 is not supported with --role ingest" in r.stderr, r.stderr


class _Slow:
    """A stage whose first call works half as long again as ack_wait."""

    group = LOG_PARSER
    kind = "parser"

    def __init__(self) -> None:
        self.fetch = FetchPolicy(max_msgs=10, max_rows=10_000, max_wait_s=0.2)
        self.seen: list[tuple[str, bool]] = []
        self.redelivered = -1  # the consumer group's count, once the runner has stopped

    async def process(self, topic: str, batches: list[codec.Batch]) -> list[Output]:
        self.seen += [(b.batch_id, b.redelivered) for b in batches]
        if len(self.seen) == len(batches):
            await asyncio.sleep(1.5 * ACK_WAIT_S)
        return []

    async def close(self) -> None:
        return None


async def _slow_scenario(tmp: Path) -> _Slow:
    cfg = BusConfig(port=free_port(), monitor_port=free_port())
    server = NatsServer(cfg, tmp)
    server.start()
    try:
        nc = await connect(server.url, "test")
        js = nc.jetstream()
        await declare(js, FerryConfig(bus=cfg))
        for i in range(3):
            table = pa.table({"Body": pa.array([f"slow {i}"], pa.string())})
            await publish(js, LOGGING, codec.Batch(table, "logs", "otel_logs", "test", batch_id=f"slow{i}"))
        stage = _Slow()
        runner = StageRunner(stage, js, tmp, inputs_of(FerryConfig(), stage.group))
        await runner.start()
        deadline = time.monotonic() + 4 * ACK_WAIT_S
        while time.monotonic() < deadline:
            info = await js.consumer_info(stream_of(LOGGING), LOG_PARSER)
            if len(stage.seen) >= 3 and not info.num_ack_pending and not info.num_pending:
                break
            await asyncio.sleep(0.2)
        await runner.stop()
        info = await js.consumer_info(stream_of(LOGGING), LOG_PARSER)
        stage.redelivered = int(info.num_redelivered or 0)
        await nc.close()
        return stage
    finally:
        server.stop()


def test_a_batch_worked_on_longer_than_ack_wait_is_not_redelivered(tmp_path: Path) -> None:
    """ack_wait is short (batches a lost node held come back in seconds), so the runner keeps every
    batch in hand alive with in-progress acks: a stage call of 1.5 x ack_wait gets no duplicate."""
    stage = asyncio.run(_slow_scenario(tmp_path))
    assert sorted(b for b, _ in stage.seen) == ["slow0", "slow1", "slow2"], stage.seen
    assert not any(r for _, r in stage.seen)
    assert stage.redelivered == 0
