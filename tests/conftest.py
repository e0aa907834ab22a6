"""Shared fixtures: a real `ferry run` (private nats-server, chDB) per test module."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferry.testing import FerryProcess

# An unknown event reason or component is a bug to fail on here, not to count as `other`
# (ferry/telemetry/events.py); every `ferry run` a test starts inherits it.
os.environ.setdefault("FERRY_STRICT_EVENTS", "1")


@pytest.fixture(scope="module")
def ferry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerryProcess]:
    proc = FerryProcess(tmp_path_factory.mktemp("ferry") / "data").start()
    try:
        yield proc
    finally:
        proc.stop_cleanly()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 GiB tmpfs (memory is used only for what is written), for the full-disk tests; needs root
    to mount, as CI has."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1g", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
