"""`ferry run` keeps going and keeps its own footprint bounded: role logs rotate and repeats are
counted instead of written, restarting children leaks nothing, a bus that cannot come back at once
is tried again, and a data dir whose topics must shrink starts."""

from __future__ import annotations

import errno
import os
import re
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from ferry.testing import FerryProcess
from ferry.testing.otlp import logs_request

MiB = 1024**2
PB = {"content-type": "application/x-protobuf"}


def _scan(port: int, seconds: float) -> int:
    """What a port scanner does to the OTLP/HTTP port: connections that send no HTTP. uvicorn logs
    one warning for each. Returns how many were made."""
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"\x16\x03\x01 not http\r\n\r\n")
            try:
                s.recv(100)
            except OSError:
                pass
        n += 1
    return n


def _http_port(f: FerryProcess) -> int:
    return int(f.config["receivers"]["otlp"]["http"]["port"])


def _send(f: FerryProcess, tag: str) -> None:
    r = httpx.post(f"{f.otlp_http}/v1/logs", content=logs_request([f"{tag} hello"]), headers=PB, timeout=10)
    assert r.status_code == 200, r.text
    assert f.wait_for(lambda: f.search(tag), timeout=60)[0]["body"] == f"{tag} hello"


def test_role_logs_rotate_at_their_size(tmp_path: Path) -> None:
    """Tens of thousands of log lines a minute (every repeat logged here) keep each role's log files
    within logs.max_bytes x (logs.keep + 1)."""
    limit = 64 * 1024
    with FerryProcess(tmp_path / "data", config={"logs": {"max_bytes": limit, "keep": 1, "repeat_interval_s": 0}}) as f:
        written, end = 0, time.monotonic() + 20
        while written < 2 * 2 * limit and time.monotonic() < end:  # twice what may be kept
            written += _scan(_http_port(f), 1.0) * len("WARNING:  Invalid HTTP request received.\n")
        assert written >= 2 * 2 * limit, "the flood was not large enough to test the bound"
        run = f.data_dir / "run"
        f.wait_for(lambda: (run / "ingest-0.log.1").exists(), timeout=20)
        for log in run.glob("*.log*"):
            assert re.fullmatch(r"\w+-\d+\.log(\.1)?", log.name), f"more files than logs.keep: {log.name}"
            assert log.stat().st_size <= limit, f"{log.name} is {log.stat().st_size} bytes"
        assert "Invalid HTTP request received" in (run / "ingest-0.log").read_text()


@pytest.fixture(scope="module")
def ferry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerryProcess]:
    """Repeats told once a second; a crashing child's Python prints its fatal error (C code, fd 2)."""
    config = {"logs": {"repeat_interval_s": 1}, "receivers": {"syslog": {"max_connections": 2}}}
    proc = FerryProcess(tmp_path_factory.mktemp("ferry") / "data", config=config, env={"PYTHONFAULTHANDLER": "1"}).start()
    try:
        yield proc
    finally:
        assert proc.stop() == 0, proc.output()[-3000:]


def test_a_repeated_message_is_logged_once_an_interval_with_a_count(ferry: FerryProcess) -> None:
    """uvicorn's warning for each connection that sends no HTTP (it logs through a handler of its own)."""
    f = ferry
    assert f.metric("ferry_log_messages_suppressed_total", level="warning") == 0
    made = _scan(_http_port(f), 3.5)
    time.sleep(1.2)
    _scan(_http_port(f), 0.1)  # the first repeat after an interval carries the count
    log = (f.data_dir / "run" / "ingest-0.log").read_text()
    lines = [ln for ln in log.splitlines() if "Invalid HTTP request received" in ln]
    assert 1 <= len(lines) <= 8, lines
    counts = [int(m) for m in re.findall(r"\(repeated (\d+) times in the last 1 s\)", log)]
    assert counts and sum(counts) > made / 2, (made, lines)
    suppressed = f.wait_for(lambda: f.metric("ferry_log_messages_suppressed_total", level="warning"))
    assert suppressed >= made - len(lines)


def test_a_flood_of_refused_connections_is_logged_once_an_interval(ferry: FerryProcess) -> None:
    """ferry's own warning for each syslog TCP connection over max_connections, with the peer's port
    in it: one message all the same. (What fills a log when descriptors run out.)"""
    f = ferry
    before = f.metric("ferry_log_messages_suppressed_total", level="warning")
    held = [socket.create_connection(("127.0.0.1", f.syslog_port)) for _ in range(2)]
    try:
        f.wait_for(lambda: f.metric("ferry_open_connections", component="syslog_tcp") == 2)
        made, end = 0, time.monotonic() + 2.0
        while time.monotonic() < end:
            with socket.create_connection(("127.0.0.1", f.syslog_port), timeout=2) as s:
                try:
                    s.recv(1)  # closed by ferry at once
                except OSError:
                    pass
            made += 1
    finally:
        for s in held:
            s.close()
    lines = [ln for ln in (f.data_dir / "run" / "ingest-0.log").read_text().splitlines()
             if "TCP connections open (max_connections); closing a new one" in ln]
    assert made > 100 and 1 <= len(lines) <= 4, (made, lines)
    assert f.wait_for(lambda: f.metric("ferry_log_messages_suppressed_total", level="warning") - before >= made - 4)


def _fds(pid: int) -> int:
    """Descriptors a process holds, not counting one it opens for a moment (the least of a few looks)."""
    seen = []
    for _ in range(5):
        seen.append(len(os.listdir(f"/proc/{pid}/fd")))
        time.sleep(0.1)
    return min(seen)


def _pid_of(f: FerryProcess, role: str) -> int | None:
    """The pid of a role's process once it is ready (None while it is starting)."""
    try:
        return int((f.data_dir / "run" / f"{role}-0.ready").read_text())
    except (FileNotFoundError, ValueError):
        return None


def test_restarted_children_leak_no_descriptors_and_their_crash_is_logged(ferry: FerryProcess) -> None:
    """A child that crashes is restarted, its dying words (written by C code to fd 2) are in its
    log, and the supervisor holds as many descriptors after restarts as before."""
    f = ferry
    assert f.proc is not None
    before = _fds(f.proc.pid)
    for _ in range(2):
        old = f.wait_for(lambda: _pid_of(f, "parser"))
        os.kill(old, signal.SIGSEGV)
        f.wait_for(lambda old=old: _pid_of(f, "parser") not in (None, old), timeout=60)
    assert _fds(f.proc.pid) == before
    assert f.output().count("parser process exited with code -11; restarting it") == 2
    assert (f.data_dir / "run" / "parser-0.log").read_text().count("Fatal Python error: Segmentation fault") == 2
    _send(f, f"restart{uuid.uuid4().hex[:8]}")


def _hold(port: int, timeout: float = 5.0) -> socket.socket:
    """Listen on `port` as soon as it is free (the killed server's socket goes with it)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past the dead server's TIME_WAITs
    deadline = time.monotonic() + timeout
    while True:
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
            return s
        except OSError as e:
            if e.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                s.close()
                raise
            time.sleep(0.001)


def test_a_bus_that_cannot_restart_at_once_is_tried_again(tmp_path: Path) -> None:
    """nats-server killed, and its port taken by another program for a few seconds: ferry keeps
    running, tries again with a growing pause, and stores data once the bus is back."""
    with FerryProcess(tmp_path / "data") as f:
        nats_pid = int(subprocess.check_output(["pgrep", "-f", f"nats-server -c {f.data_dir.resolve()}"]).split()[0])
        os.kill(nats_pid, signal.SIGKILL)
        holder = _hold(f.config["bus"]["port"])
        try:
            f.wait_for(lambda: f.output().count("trying again in") >= 2, timeout=30)
            assert "address already in use" in f.output()
        finally:
            holder.close()
        f.wait_for(lambda: "nats-server is running again" in f.output(), timeout=30)
        assert f.proc is not None and f.proc.poll() is None
        _send(f, f"busback{uuid.uuid4().hex[:8]}")
        assert f.wait_for(lambda: f.metric("ferry_bus_server_restarts_total") >= 3, timeout=10)


def _restart_with(f: FerryProcess, **bus: object) -> None:
    f.config["bus"].update(bus)
    f.config_path.write_text(yaml.safe_dump(f.config))
    f.start()


def _topic_limits(f: FerryProcess) -> set[int]:
    mon = f.config["bus"]["monitor_port"]
    jsz = httpx.get(f"http://127.0.0.1:{mon}/jsz?streams=true&config=true", timeout=10).json()
    return {s["config"]["max_bytes"] for a in jsz["account_details"] for s in a["stream_detail"]}


def test_topics_shrink_when_restarted_with_a_smaller_limit(tmp_path: Path) -> None:
    """A data dir made with bus.max_bytes_per_topic = 256 MiB starts with 32 MiB (JetStream used to
    refuse to lower the topics' limit: exit 2), keeps what it stored, and takes new data."""
    f = FerryProcess(tmp_path / "data", config={"bus": {"max_bytes_per_topic": 256 * MiB}}).start()
    creds = (f.data_dir / "bus" / "auth.json").read_text()
    try:
        first = f"before{uuid.uuid4().hex[:8]}"
        _send(f, first)
    finally:
        assert f.stop() == 0
    _restart_with(f, max_bytes_per_topic=32 * MiB)
    try:
        assert _topic_limits(f) == {32 * MiB}
        assert f.search(first), "what was stored before the restart is still there"
        _send(f, f"after{uuid.uuid4().hex[:8]}")
        assert (f.data_dir / "bus" / "auth.json").read_text() == creds, "the bus credentials are kept"
    finally:
        assert f.stop() == 0



def test_topics_shrink_when_the_disk_has_less_room_than_at_first_start(small_disk: Path) -> None:
    """First started with ~1 GiB free, then restarted with ~300 MiB free: the topics are lowered to
    fit (said in the banner) instead of ferry exiting."""
    f = FerryProcess(small_disk / "data", config={
        "bus": {"max_payload": MiB},
        "backpressure": {"min_free_disk_bytes": 64 * MiB},
    }).start()
    try:
        first = _topic_limits(f)
    finally:
        assert f.stop() == 0
    with open(small_disk / "filler", "wb") as filler:
        chunk = b"\0" * MiB
        while (st := os.statvfs(small_disk)).f_bavail * st.f_frsize > 300 * MiB:
            filler.write(chunk)
            filler.flush()
    f.start()
    try:
        now = _topic_limits(f)
        assert len(now) == 1 and max(now) < min(first), (first, now)
        assert f.output().count("bus.max_bytes_per_topic lowered from") == 2
        _send(f, f"smaller{uuid.uuid4().hex[:8]}")
    finally:
        assert f.stop() == 0
