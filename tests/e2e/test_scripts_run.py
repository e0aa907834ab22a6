"""The README's first command, `./scripts/run`: it installs only when the venv is new or the
dependencies changed, prints no installer noise, and the first thing a user reads is the banner."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from ferry.testing import free_port

ROOT = Path(__file__).resolve().parents[2]


def _run_once(tmp: Path) -> tuple[str, str]:
    """Start scripts/run on free ports, wait for the banner, stop it with Ctrl-C: (stdout, stderr)."""
    syslog = free_port(udp_too=True)
    args = ["bash", str(ROOT / "scripts" / "run"), "--data-dir", str(tmp / "data")]
    for key, port in (("receivers.otlp.grpc.port", free_port()), ("receivers.otlp.http.port", free_port()),
                      ("receivers.syslog.udp_port", syslog), ("receivers.syslog.tcp_port", syslog),
                      ("api.port", free_port()), ("bus.port", free_port()), ("bus.monitor_port", free_port())):
        args += ["--set", f"{key}={port}"]
    tmp.mkdir(parents=True, exist_ok=True)
    out, err = tmp / "run.out", tmp / "run.err"
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen(args, stdout=o, stderr=e, stdin=subprocess.DEVNULL, cwd=tmp)
        try:
            deadline = time.monotonic() + 240  # a first install may take a while
            while "ferry is running" not in out.read_text() and time.monotonic() < deadline:
                assert proc.poll() is None, f"scripts/run exited early:\n{out.read_text()}\n{err.read_text()}"
                time.sleep(0.2)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
    return out.read_text(), err.read_text()


def test_scripts_run_installs_once_and_shows_the_banner_first(tmp_path: Path) -> None:
    first_out, _ = _run_once(tmp_path / "one")
    assert first_out.startswith("ferry is running"), first_out[:500]
    second_out, second_err = _run_once(tmp_path / "two")
    # Nothing changed since the first start: no install, nothing above the banner on either stream.
    assert second_out.startswith("ferry is running"), second_out[:500]
    assert "install" not in second_err, second_err
    assert "ferry: stopped" in second_out
    assert (ROOT / ".venv" / ".ferry-installed").read_text().strip() != ""
    assert os.access(ROOT / ".venv" / "bin" / "ferry", os.X_OK)
