"""The dashboards ferry serves: the shipped ones (ferry/ui/dashboards) and a folder of the user's, re-read
when a file changes, a broken file keeping its last good version served with its error listed.

A dashboard's name is its file name without `.yaml`/`.yml`; a user file of a shipped name replaces it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ferry.dashboards.load import DashboardError, load_file
from ferry.dashboards.model import Dashboard

log = logging.getLogger("ferry.dashboards")

SHIPPED = Path(__file__).resolve().parent.parent / "ui" / "dashboards"
ENV = "FERRY_DASHBOARDS_DIR"  # the folder of the user's dashboards (config `ui.dashboards_dir`)
POLL_S = 2.0
SUFFIXES = (".yaml", ".yml")


@dataclass
class Entry:
    name: str
    file: Path
    stamp: tuple[int, int]  # (mtime_ns, size) of the version last read
    dashboard: Dashboard | None  # the last good version (None: never valid)
    error: str | None  # why the file as it is now is not served


class Folder:
    """Dashboards from `dirs`, later dirs overriding earlier ones by name; refresh() re-reads changed files."""

    def __init__(self, dirs: list[Path], poll_s: float = POLL_S) -> None:
        self.dirs = dirs
        self.poll_s = poll_s
        self.entries: dict[Path, Entry] = {}
        self._checked = -float("inf")

    def _files(self) -> list[Path]:
        out = []
        for d in self.dirs:
            try:
                out.extend(sorted(p for p in d.iterdir() if p.suffix in SUFFIXES and p.is_file()))
            except OSError:
                continue  # a folder not (yet) made holds no dashboards
        return out

    def refresh(self) -> bool:
        """Re-read new and changed files, forget removed ones; True if anything changed."""
        self._checked = time.monotonic()
        changed = False
        seen = set()
        for path in self._files():
            seen.add(path)
            try:
                st = path.stat()
            except OSError:
                continue
            stamp = (st.st_mtime_ns, st.st_size)
            old = self.entries.get(path)
            if old is not None and old.stamp == stamp:
                continue
            changed = True
            try:
                dash, error = load_file(path), None
            except DashboardError as e:
                dash, error = (old.dashboard if old else None), str(e)
                log.warning("dashboard %s not loaded: %s", path, e)
            self.entries[path] = Entry(path.stem, path, stamp, dash, error)
        for gone in set(self.entries) - seen:
            del self.entries[gone]
            changed = True
        return changed

    def fresh(self) -> Folder:
        """Refresh if the last check is older than poll_s (the API calls this per request)."""
        if time.monotonic() - self._checked >= self.poll_s:
            self.refresh()
        return self

    def by_name(self) -> dict[str, Entry]:
        out: dict[str, Entry] = {}
        for path in self._order():
            out[self.entries[path].name] = self.entries[path]
        return out

    def _order(self) -> list[Path]:
        rank = {d: i for i, d in enumerate(self.dirs)}
        return sorted(self.entries, key=lambda p: (rank.get(p.parent, len(rank)), p.name))

    def listing(self) -> list[Entry]:
        """Every file, the dashboards in effect first by name, then files another one overrides."""
        return list(self.by_name().values())

    def errors(self) -> list[Entry]:
        return [self.entries[p] for p in self._order() if self.entries[p].error]

    def get(self, name: str) -> Entry | None:
        return self.by_name().get(name)


def folder_from_env() -> Folder:
    """The shipped dashboards plus the user's folder named by FERRY_DASHBOARDS_DIR (set by the store role)."""
    dirs = [SHIPPED]
    user = os.environ.get(ENV)
    if user:
        dirs.append(Path(user).expanduser().resolve())
    return Folder(dirs)


async def watch(folder: Folder, stop: asyncio.Event, poll_s: float = POLL_S) -> None:
    """Refresh `folder` every poll_s until `stop` is set (for a process that wants reloads without requests)."""
    while not stop.is_set():
        await asyncio.to_thread(folder.refresh)
        try:
            await asyncio.wait_for(stop.wait(), poll_s)
        except TimeoutError:
            pass
