"""The shipped pipeline's SIEM fork with real logs: loghub's OpenSSH and Linux files go in over syslog TCP;
every sshd, su, login and PAM line lands in siem_events AND in the log store, every other line only in the log store.

The expected split is worked out here from the files themselves (the app name before `[pid]:`), not by ferry.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferry.testing import FerryProcess
from ferry.testing.datasets import loghub

_APP = re.compile(r"^\w{3} +\d+ \d\d:\d\d:\d\d \S+ ([^\[:]+)")


def _security(app: str) -> bool:
    """sshd, sudo, su, login and anything authenticating through PAM (`gdm(pam_unix)`), by the line's app name."""
    base = app.split("(", 1)[0]
    return base in {"sshd", "sudo", "su", "login", "systemd-logind", "unix_chkpwd"} or "(pam_" in app


@pytest.fixture(scope="module")
def sent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FerryProcess, int, int, int]]:
    lines = []
    for name in ("OpenSSH/OpenSSH_2k.log", "Linux/Linux_2k.log"):
        lines += [ln for ln in (loghub() / name).read_text(errors="replace").splitlines() if ln.strip()]
    apps = [m.group(1) if (m := _APP.match(ln)) else "" for ln in lines]
    security = sum(_security(a) for a in apps)
    sshd = sum(a.startswith("sshd") for a in apps)
    assert 2500 < security < len(lines)  # both kinds are there, or the test would prove nothing
    with FerryProcess(Path(tmp_path_factory.mktemp("siemfork"))) as f:
        with socket.create_connection(("127.0.0.1", f.syslog_port), timeout=10) as s:
            s.sendall("".join(f"{ln}\n" for ln in lines).encode())
        f.wait_for(lambda: f.sql_count("logs") >= len(lines) and f.sql_count("siem_events") >= security, timeout=90)
        yield f, len(lines), security, sshd


def test_security_lines_are_in_siem_events_and_in_the_log_store(sent: tuple[FerryProcess, int, int, int]) -> None:
    f, total, security, sshd = sent
    f.wait_for(lambda: f.sql_count("logs") - _own(f) == total, timeout=30)
    assert f.sql_count("siem_events") == security
    # Searchable as any log, with the same language, over its own table.
    found = f.get("/api/v1/siem/events/count", q="app:sshd*", since="9000d")
    assert found["count"] == sshd, found
    other = f.get("/api/v1/siem/events/count", q="app:ftpd", since="9000d")
    assert other["count"] == 0
    assert f.get("/api/v1/logs/count", q="app:ftpd", since="9000d")["count"] > 900
    # Counted per route: the OS route took exactly the security lines; nothing went to the application route.
    assert f.metric("ferry_route_records_total", stage="log_parser", route="siem_os") == security
    assert f.metric("ferry_route_records_total", stage="log_parser", route="siem_app") == 0


def _own(f: FerryProcess) -> int:
    """ferry's own log records (service ferry) share otel_logs with what the test sent."""
    return int(f.get("/api/v1/logs/count", q="service:ferry", since="1h")["count"])


def test_the_pipeline_shows_the_fork(sent: tuple[FerryProcess, int, int, int]) -> None:
    f, *_ = sent
    def settled() -> dict | None:  # ferry's own logs and metrics keep flowing: wait for a probe with no backlog
        v = f.get("/api/v1/pipeline")
        lags = [n for s in v["stages"] for n in s["lag"].values() if n is not None]
        return v if v["probed"] and not any(lags) else None

    view = f.wait_for(settled, timeout=30)
    stages = {s["name"]: s for s in view["stages"]}
    assert stages["log_parser"]["outputs"] == ["log_commit", "siemapp_commit", "siemos_commit"]
    assert stages["log_parser"]["routes"] == ["siem_os", "siem_app"]
    assert stages["siem_writer"]["inputs"] == ["siemapp_commit", "siemos_commit"]
    topics = {t["name"]: t for t in view["topics"]}
    assert topics["syslog"]["writers"] == ["receivers.syslog"] and topics["syslog"]["readers"] == ["log_parser"]
    assert topics["siemos_commit"]["writers"] == ["log_parser"] and topics["siemos_commit"]["readers"] == ["siem_writer"]
