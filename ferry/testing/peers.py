"""Private instances of the syslog daemons ferry is tested and benchmarked against (syslog-ng here).

Each runs in the foreground on a config it is handed, with all its state in a directory of its own.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import IO

# scripts/test unpacks syslog-ng beside the tree (Debian's package conflicts with rsyslog's).
_UNPACKED_SYSLOG_NG = Path(__file__).resolve().parents[2] / ".cache/peers/bin/syslog-ng"


def syslog_ng_binary() -> str | None:
    """The syslog-ng scripts/test unpacked, else one on PATH, else None."""
    return str(_UNPACKED_SYSLOG_NG) if _UNPACKED_SYSLOG_NG.exists() else shutil.which("syslog-ng")


def start_syslog_ng(config: str, work: Path, stdout: int | IO[bytes] = subprocess.PIPE) -> subprocess.Popen[bytes]:
    """syslog-ng in the foreground on CONFIG, its config, persist file, pid file and control socket in
    WORK: a system syslog-ng (or another test's) keeps its own, and none needs root (--no-caps)."""
    binary = syslog_ng_binary()
    if binary is None:
        raise FileNotFoundError("syslog-ng not found (scripts/test unpacks it into .cache/peers)")
    work.mkdir(parents=True, exist_ok=True)
    conf = work / "syslog-ng.conf"
    conf.write_text(config)
    return subprocess.Popen(
        [binary, "-F", "--no-caps", "-f", str(conf), "-R", str(work / "persist"),
         "-p", str(work / "pid"), "-c", str(work / "ctl")],
        stdout=stdout, stderr=subprocess.STDOUT,
    )
