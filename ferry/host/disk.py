"""Free space on the data directory's disk, and the floor under which ferry stops taking data.

A nats-server whose file store hits "no space left on device" stops storing on that stream until it
restarts, and a store insert fails halfway: receivers refuse above the floor instead (429, reason
`disk_full`), and the supervisor restarts the bus if it hit the wall anyway (another process filled
the disk between two checks).
"""

from __future__ import annotations

import os
from pathlib import Path

from ferry.errors import DiskFull


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the filesystem holding `path` (or, before it
    exists, its nearest existing parent)."""
    while not path.exists() and path.parent != path:
        path = path.parent
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def mib(n: float) -> str:
    return f"{n / 1024**2:,.0f} MiB"


def check_free(path: Path, floor: int, retry_after: float) -> None:
    """Raise DiskFull when the disk holding `path` has less than `floor` bytes free (0: never)."""
    if floor <= 0:
        return
    free = free_bytes(path)
    if free < floor:
        raise DiskFull(
            f"the disk holding {path} has {mib(free)} free, under backpressure.min_free_disk_bytes ({mib(floor)})",
            retry_after,
        )
