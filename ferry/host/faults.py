"""Failures a test switches on in a running ferry from outside it, to prove what users would see.

FERRY_FAULTS_FILE names a file whose words name the paths that fail (`store`, `syslog_publish`).
It is read at each check, so a test can flip it while ferry runs; unset, a check is one lookup.
"""

from __future__ import annotations

import os
from pathlib import Path

FAULTS_ENV = "FERRY_FAULTS_FILE"


def injected(name: str) -> bool:
    path = os.environ.get(FAULTS_ENV)
    if not path:
        return False
    try:
        return name in Path(path).read_text().split()
    except OSError:
        return False
