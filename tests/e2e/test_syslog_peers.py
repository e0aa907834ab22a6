"""Real syslog senders — util-linux `logger`, a private rsyslogd and a private syslog-ng — deliver to ferry.

Every line lands parsed (facility, severity, host, app, procid, msgid, structured data, message)
over UDP and TCP, newline and octet-counted framing; a line that fits no RFC lands intact. The
rsyslog and syslog-ng configurations are the blocks of docs/forwarding.md, as a user copies them.
"""

from __future__ import annotations

import re
import resource
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from ferry.testing import FerryProcess, free_port
from ferry.testing.peers import start_syslog_ng, syslog_ng_binary

pytestmark = pytest.mark.skipif(shutil.which("logger") is None, reason="util-linux logger not installed")
RSYSLOGD = shutil.which("rsyslogd") or ("/usr/sbin/rsyslogd" if Path("/usr/sbin/rsyslogd").exists() else None)
SYSLOG_NG = syslog_ng_binary()
FORWARDING_GUIDE = Path(__file__).resolve().parents[2] / "docs" / "forwarding.md"
# A fenced block whose first line is `# ferry-test: NAME`.
_GUIDE_BLOCK = re.compile(r"^```[^\n]*\n(# ferry-test: (\S+)\n.*?)^```", re.M | re.S)
GUIDE_HOST, GUIDE_PORT = "ferry.example.net", "5514"


def _guide_config(name: str, port: int) -> str:
    """The guide's block NAME, verbatim but for ferry's host and port."""
    blocks = {m.group(2): m.group(1) for m in _GUIDE_BLOCK.finditer(FORWARDING_GUIDE.read_text())}
    assert name in blocks, f"docs/forwarding.md has no block marked `# ferry-test: {name}` (found {sorted(blocks)})"
    text = blocks[name]
    assert GUIDE_HOST in text and GUIDE_PORT in text, f"block {name} no longer names {GUIDE_HOST}:{GUIDE_PORT}"
    return re.sub(rf"\b{GUIDE_PORT}\b", str(port), text.replace(GUIDE_HOST, "127.0.0.1"))


def _logger(ferry: FerryProcess, *args: str) -> None:
    subprocess.run(["logger", "-n", "127.0.0.1", "-P", str(ferry.syslog_port), *args], check=True, timeout=10)


def _one(ferry: FerryProcess, token: str) -> dict:  # type: ignore[type-arg]
    rows = ferry.wait_for(lambda: ferry.search(token))
    assert len(rows) == 1, rows
    return rows[0]


@pytest.mark.parametrize(
    "transport",
    [["-T"], ["-T", "--octet-count"], ["-d"]],
    ids=["tcp-newline", "tcp-octet-counted", "udp"],
)
def test_logger_rfc5424_fields_are_parsed(ferry: FerryProcess, transport: list[str]) -> None:
    """logger --rfc5424 with SD, msgid and priority lands with every header field parsed."""
    tok = uuid.uuid4().hex[:12]
    _logger(
        ferry, *transport, "--rfc5424", "-p", "local3.err", "-t", "billing", "--id=4242", "--msgid", "PAY01",
        "--sd-id", "order@32473", "--sd-param", 'id="A-77"', "--sd-param", 'amount="9.50"', f"charge failed {tok}",
    )
    r = _one(ferry, tok)
    assert r["body"] == f"charge failed {tok}"
    assert r["service"] == "billing" and r["level"] == "ERR"
    a = r["attributes"]
    assert a["syslog.facility"] == "local3" and a["syslog.severity"] == "err"
    assert a["syslog.procid"] == "4242" and a["syslog.msgid"] == "PAY01"
    assert a["sd.order@32473.id"] == "A-77" and a["sd.order@32473.amount"] == "9.50"
    assert a["net.transport"] == ("udp" if transport == ["-d"] else "tcp")
    assert r["resource"]["host.name"] == socket.gethostname()


@pytest.mark.parametrize("transport", [["-T"], ["-d"]], ids=["tcp", "udp"])
def test_logger_rfc3164_is_parsed(ferry: FerryProcess, transport: list[str]) -> None:
    """logger --rfc3164 lands with tag, pid, facility and severity."""
    tok = uuid.uuid4().hex[:12]
    _logger(ferry, *transport, "--rfc3164", "-p", "auth.warning", "-t", "sshd", "-i", f"Failed password {tok}")
    r = _one(ferry, tok)
    assert r["body"] == f"Failed password {tok}"
    assert r["service"] == "sshd" and r["level"] == "WARNING"
    assert r["attributes"]["syslog.facility"] == "auth" and r["attributes"]["syslog.severity"] == "warning"
    assert r["attributes"]["syslog.procid"].isdigit()


def test_line_fitting_no_rfc_lands_intact(ferry: FerryProcess) -> None:
    """A line that is neither RFC 5424 nor 3164 is stored whole, with a parse-error attribute."""
    tok = uuid.uuid4().hex[:12]
    line = f"<<garbage>> {{json: maybe}} {tok}"
    with socket.create_connection(("127.0.0.1", ferry.syslog_port)) as s:
        s.sendall(line.encode() + b"\n")
    r = _one(ferry, tok)
    assert r["body"] == line
    assert r["attributes"]["syslog.parse_error"]


def test_line_stamped_before_the_retention_window_still_lands(ferry: FerryProcess) -> None:
    """A device whose clock is 30 days behind (logs retention: 7 days) is not dropped on arrival:
    retention counts from when ferry received the line, if that is later than its timestamp."""
    tok = uuid.uuid4().hex[:12]
    then = int(time.time()) - 30 * 86400
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(then))
    with socket.create_connection(("127.0.0.1", ferry.syslog_port)) as s:
        s.sendall(f"<134>1 {stamp} router1 fw - - - behind {tok}\n".encode())
    rows = ferry.wait_for(lambda: ferry.search(tok, since="60d"))
    assert len(rows) == 1 and rows[0]["body"] == f"behind {tok}"
    assert int(rows[0]["time_ns"]) == then * 10**9, "the line keeps its own timestamp"


def test_many_lines_over_one_tcp_connection_all_land(ferry: FerryProcess) -> None:
    """20,000 octet-counted lines (several batches) on one connection all land, none twice."""
    tok = uuid.uuid4().hex[:12]
    frames = []
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    for i in range(20000):
        msg = f"<134>1 {stamp} host1 app 1 - - line {i} {tok}".encode()
        frames.append(str(len(msg)).encode() + b" " + msg)
    with socket.create_connection(("127.0.0.1", ferry.syslog_port)) as s:
        s.sendall(b"".join(frames))
    def count() -> int:
        return ferry.get("/api/v1/logs/count", q=tok, since="30d")["count"]

    ferry.wait_for(lambda: count() >= 20000, timeout=60)
    time.sleep(1)
    assert count() == 20000, "every line once: none lost, none twice"


def _wait_listening(proc: subprocess.Popen[bytes], port: int, name: str) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert proc.poll() is None, f"{name} exited: " + proc.stdout.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, f"{name} did not start"
            time.sleep(0.1)


@pytest.mark.skipif(RSYSLOGD is None, reason="rsyslog not installed")
def test_rsyslog_forwarding_lands(ferry: FerryProcess, tmp_path: Path) -> None:
    """A real rsyslogd, configured with the guide's three rsyslog blocks, relays lines to ferry over
    TCP (octet-counted RFC 5424, through a disk-assisted queue), over UDP (classic 3164) and over
    TCP in RSYSLOG_ForwardFormat (3164 with an RFC 3339 timestamp)."""
    in_port = free_port()
    tok = uuid.uuid4().hex[:12]
    conf = tmp_path / "rsyslog.conf"
    work = tmp_path / "work"
    work.mkdir()
    # The harness around the guide's blocks: a work directory for the queue, and a TCP input
    # bound to the default ruleset, where the blocks' actions sit as in /etc/rsyslog.d.
    blocks = [_guide_config(name, ferry.syslog_port) for name in ("rsyslog", "rsyslog-udp", "rsyslog-forwardformat")]
    conf.write_text(
        f"""global(workDirectory="{work}")
module(load="imtcp")
input(type="imtcp" port="{in_port}" address="127.0.0.1")
"""
        + "\n".join(blocks)
    )
    # rsyslogd starts despite a parameter it does not know (it only logs it): the guide's blocks
    # must pass its own check cleanly.
    check = subprocess.run([str(RSYSLOGD), "-N1", "-f", str(conf)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0 and "error" not in check.stderr.lower(), check.stderr
    proc = subprocess.Popen([str(RSYSLOGD), "-n", "-f", str(conf), "-i", str(tmp_path / "rsyslog.pid")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_listening(proc, in_port, "rsyslogd")
        subprocess.run(["logger", "-n", "127.0.0.1", "-P", str(in_port), "-T", "--rfc3164", "-p", "daemon.notice",
                        "-t", "relayed", f"via rsyslog {tok}"], check=True, timeout=10)
        rows = ferry.wait_for(lambda: (r := ferry.search(tok)) and len(r) >= 3 and r, timeout=30)
        formats = sorted(r["attributes"].get("syslog.format") for r in rows)
        assert formats == ["rfc3164", "rfc3164", "rfc5424"]
        assert sorted(r["attributes"]["net.transport"] for r in rows) == ["tcp", "tcp", "udp"]
        for r in rows:
            assert r["body"] == f"via rsyslog {tok}"
            assert r["service"] == "relayed" and r["level"] == "NOTICE"
            assert r["attributes"]["syslog.facility"] == "daemon" and r["attributes"]["syslog.severity"] == "notice"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.skipif(SYSLOG_NG is None, reason="syslog-ng not installed")
def test_syslog_ng_forwarding_lands(ferry: FerryProcess, tmp_path: Path) -> None:
    """A real syslog-ng, configured with the guide's two syslog-ng blocks, relays an RFC 5424 line
    to ferry twice: its syslog() driver (RFC 5424, octet-counted TCP) and network() over UDP
    (RFC 3164). Each copy lands with the original header fields; the 5424 copy keeps the SD."""
    in_port = free_port()
    tok = uuid.uuid4().hex[:12]
    # The harness: the source the guide's blocks read from (`s_src`, Debian's name), here an
    # RFC 5424 TCP listener, and syslog-ng's options as Debian ships them.
    blocks = [_guide_config(name, ferry.syslog_port) for name in ("syslog-ng", "syslog-ng-udp")]
    proc = start_syslog_ng(
        f"""@version: 3.38
options {{ keep-hostname(yes); chain-hostnames(no); stats-freq(0); }};
source s_src {{ syslog(ip("127.0.0.1") port({in_port}) transport("tcp")); }};
"""
        + "\n".join(blocks),
        tmp_path,
    )
    try:
        _wait_listening(proc, in_port, "syslog-ng")
        subprocess.run(["logger", "-n", "127.0.0.1", "-P", str(in_port), "-T", "--octet-count", "--rfc5424",
                        "-p", "local4.err", "-t", "payments", "-i", "--msgid", "PAY01",
                        "--sd-id", "order@32473", "--sd-param", 'id="A-77"', f"card declined {tok}"],
                       check=True, timeout=10)
        rows = ferry.wait_for(lambda: (r := ferry.search(tok)) and len(r) >= 2 and r, timeout=30)
        assert len(rows) == 2, rows
        by_format = {r["attributes"]["syslog.format"]: r for r in rows}
        assert sorted(by_format) == ["rfc3164", "rfc5424"], rows
        assert by_format["rfc5424"]["attributes"]["net.transport"] == "tcp"
        assert by_format["rfc3164"]["attributes"]["net.transport"] == "udp"
        pids = {r["attributes"].get("syslog.procid") for r in rows}
        assert len(pids) == 1 and pids.pop().isdigit(), rows
        for r in rows:
            assert r["body"] == f"card declined {tok}"
            assert r["service"] == "payments" and r["level"] == "ERR"
            assert r["resource"]["host.name"] == socket.gethostname()
            assert r["attributes"]["syslog.facility"] == "local4" and r["attributes"]["syslog.severity"] == "err"
            assert "syslog.parse_error" not in r["attributes"]
        # RFC 5424 carries MSGID and structured data through syslog-ng; RFC 3164 has no place for them.
        assert by_format["rfc5424"]["attributes"]["syslog.msgid"] == "PAY01"
        assert by_format["rfc5424"]["attributes"]["sd.order@32473.id"] == "A-77"
        assert "sd.order@32473.id" not in by_format["rfc3164"]["attributes"]
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_fleet_of_tcp_senders_beyond_the_default_open_files_limit(tmp_path: Path) -> None:
    """600 hosts with a TCP connection each, held open at once, all land, even when ferry is started
    with a soft open-files limit of 256 (Debian's default is 1024): ferry raises it to the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f"the hard open-files limit here ({hard}) leaves no room to raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    try:
        f = FerryProcess(tmp_path / "data").start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    conns: list[socket.socket] = []
    try:
        ingest = int((f.data_dir / "run" / "ingest-0.ready").read_text())
        limits = Path(f"/proc/{ingest}/limits").read_text()
        open_files = next(line for line in limits.splitlines() if line.startswith("Max open files")).split()
        assert int(open_files[3]) > 256, limits
        tag = uuid.uuid4().hex[:12]
        for i in range(600):
            c = socket.create_connection(("127.0.0.1", f.syslog_port), timeout=10)
            c.sendall(f"<14>1 - host-{i} agent - - - {tag} from host-{i}\n".encode())
            conns.append(c)
        rows = f.wait_for(lambda: len(r := f.search(tag, limit=1000)) >= 600 and r, timeout=60)
        assert sorted(r["resource"]["host.name"] for r in rows) == sorted(f"host-{i}" for i in range(600))
    finally:
        for c in conns:
            c.close()
        assert f.stop() == 0
