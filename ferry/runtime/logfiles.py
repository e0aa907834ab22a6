"""Bounded role logs: size-rotated ROLE-N.log files written by the supervisor, and a filter in
every role process that keeps one failure repeated thousands of times a second to a line a minute.

The supervisor reads each child's stdout and stderr from a pipe rather than handing it a file, so
that whatever the child writes (Python logging, tracebacks, C libraries such as gRPC's core or
chDB writing to fd 2) lands in a file the supervisor can rotate: a file given to the child would
keep growing under its old name however it was renamed. Rotation bounds each role's logs on disk to
about (logs.keep + 1) x logs.max_bytes.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import IO

from ferry.telemetry import events, metrics

_CHUNK = 64 * 1024
# Distinct repeating messages remembered per process; beyond it the least recently seen is
# forgotten (at worst it is logged once more): the filter must not grow with message variety.
_MAX_KEYS = 1024
_DIGITS = re.compile(r"\d+")
_OWN_HANDLER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")

class RotatingLog:
    """An append-only file renamed to NAME.1 (NAME.1 to NAME.2, …) once it reaches `max_bytes`."""

    def __init__(self, path: Path, max_bytes: int, keep: int) -> None:
        self.path = path
        self.max_bytes = max(max_bytes, _CHUNK)
        self.keep = keep
        self._fh: IO[bytes] = open(path, "ab")
        self._size = self._fh.tell()

    def write(self, data: bytes) -> None:
        if self._size and self._size + len(data) > self.max_bytes:
            self._rotate()
        self._fh.write(data)
        self._fh.flush()
        self._size += len(data)

    def _rotate(self) -> None:
        self._fh.close()
        if self.keep > 0:
            for i in range(self.keep - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{i}")
                if older.exists():
                    older.replace(self.path.with_name(f"{self.path.name}.{i + 1}"))
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
            self._fh = open(self.path, "ab")
        else:  # nothing kept: start the one file over
            self._fh = open(self.path, "wb")
        self._size = 0

    def close(self) -> None:
        self._fh.close()


def pump(src: IO[bytes], log: RotatingLog, name: str) -> threading.Thread:
    """Copy a child's output pipe into `log` until the child closes it (it exited), then close both.

    A child that writes faster than the disk takes it blocks on its own pipe: its log lines wait,
    nothing is lost or buffered without bound in the supervisor.
    """

    def run() -> None:
        fd = src.fileno()
        try:
            while chunk := os.read(fd, _CHUNK):
                try:
                    log.write(chunk)
                except OSError:  # a full disk: drop this chunk, keep draining so the child never blocks
                    pass
        finally:
            src.close()
            log.close()

    t = threading.Thread(target=run, name=f"log-{name}", daemon=True)
    t.start()
    return t


class RepeatFilter(logging.Filter):
    """Lets a message through the first time, then at most once per `interval_s` with a count of
    the repeats left out in between ("… (repeated 5312 times in the last 60 s)").

    A message is known by where it is logged, its level, its first line with the numbers taken
    out and its exception's type, so that "accept failed on fd 17" and "… fd 18" are one message,
    and one call site that logs unrelated first lines (asyncio's exception handler) is several. The
    count is told with the next occurrence after the interval: a flood that stops leaves its last
    window's count untold (ferry_log_messages_suppressed_total counts every one).
    """

    def __init__(self, interval_s: float) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._seen: OrderedDict[tuple[object, ...], list[float]] = OrderedDict()  # key -> [passed_at, repeats]
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.interval_s <= 0:
            return True
        verdict = getattr(record, "_ferry_repeat_verdict", None)
        if verdict is not None:
            # Decided on its logger or at the first handler: every other handler (the file, ferry's
            # own telemetry) gets the same answer, and the repeat is counted once.
            return bool(verdict)
        record._ferry_repeat_verdict = True
        first_line = str(record.msg).split("\n", 1)[0][:200]
        kind = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else ""
        key = (record.pathname, record.lineno, record.levelno, _DIGITS.sub("#", first_line), kind)
        now = time.monotonic()
        with self._lock:
            entry = self._seen.get(key)
            if entry is not None and now - entry[0] < self.interval_s:
                entry[1] += 1
                metrics.log_suppressed.labels(record.levelname.lower()).inc()
                record._ferry_repeat_verdict = False
                return False
            repeats = int(entry[1]) if entry is not None else 0
            self._seen[key] = [now, 0]
            self._seen.move_to_end(key)
            while len(self._seen) > _MAX_KEYS:
                self._seen.popitem(last=False)
        if repeats:
            record.msg = f"{record.getMessage()} (repeated {repeats} times in the last {self.interval_s:g} s)"
            record.args = None
        return True


class _Forward(logging.Filter):
    """Hands a record of one of uvicorn's loggers (which do not propagate to the root) to `handler`
    too. A filter, not a handler: uvicorn's dictConfig at each server's creation replaces those
    loggers' handlers but keeps their filters. Added after the repeat filter, so it sees only the
    records that one lets through."""

    def __init__(self, handler: logging.Handler) -> None:
        super().__init__()
        self.handler = handler

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= self.handler.level:
            self.handler.handle(record)
        return True


# The process's repeat filter, for handlers added after configure() (telemetry/own.py's).
_repeats: RepeatFilter | None = None


def add_handler(handler: logging.Handler) -> None:
    """Give `handler` every record the role's log file gets: on the root logger and uvicorn's, behind
    the same repeat filter (a repeat left out of the file is left out here too)."""
    if _repeats is not None:
        handler.addFilter(_repeats)
    logging.getLogger().addHandler(handler)
    for name in _OWN_HANDLER_LOGGERS:
        logging.getLogger(name).addFilter(_Forward(handler))


def remove_handler(handler: logging.Handler) -> None:
    logging.getLogger().removeHandler(handler)
    for name in _OWN_HANDLER_LOGGERS:
        logger = logging.getLogger(name)
        for f in [f for f in logger.filters if isinstance(f, _Forward) and f.handler is handler]:
            logger.removeFilter(f)


def configure(label: str, repeat_interval_s: float) -> None:
    """Logging of a role process: one line format naming the role, level from FERRY_LOG_LEVEL
    (WARNING by default), to stderr (the supervisor's pipe, or the terminal of a lone role), with
    repeats limited on every handler configured so far."""
    logging.basicConfig(
        level=os.environ.get("FERRY_LOG_LEVEL", "WARNING"),
        format=f"%(asctime)s {label} %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    global _repeats
    repeats = _repeats = RepeatFilter(repeat_interval_s)
    events.configure(repeat_interval_s)  # event lines: one per (event, component, reason) per interval
    for handler in logging.getLogger().handlers:
        handler.addFilter(repeats)
    # uvicorn logs through a handler of its own (set up later, when a server is made), which the
    # root's filter never sees; a filter on the loggers themselves outlives that set-up. A port
    # scanner makes one "Invalid HTTP request received." a connection.
    for name in _OWN_HANDLER_LOGGERS:
        logging.getLogger(name).addFilter(repeats)
    for level in ("debug", "info", "warning", "error", "critical"):
        metrics.log_suppressed.labels(level)
