"""Allocator settings for ferry's role processes: freed batch memory is kept for the next batch.

Applied before polars and pyarrow load, since their allocators read their settings once, at start.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

# Every batch allocates and frees tens of MB (bus payloads, IPC buffers, polars columns). With
# the allocators' defaults that memory goes back to the kernel within milliseconds, and the next
# batch faults it in again, one zeroed page at a time: `perf` put a third of the parser's CPU in
# the kernel's clear_page. Holding freed memory for a few seconds cut the parser's page faults
# ~10x (bench/syslog_vs_rsyslog.py prints them per process). Peak RSS is unchanged, since the
# held memory is what the next batch needs anyway; an idle process returns it after the delay.
HOLD_MS = 5000
# Each setting only applies when the operator has not set that variable already.
ALLOCATOR_ENV = {
    "_RJEM_MALLOC_CONF": f"dirty_decay_ms:{HOLD_MS},muzzy_decay_ms:{HOLD_MS}",  # polars' jemalloc
    "MIMALLOC_PURGE_DELAY": str(HOLD_MS),  # pyarrow's mimalloc
}
# glibc (Python's own objects, e.g. a bus message's bytes): serve blocks up to 32 MB (the most
# glibc allows) from the heap instead of a fresh mmap each, and keep up to 256 MB free at its top.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 256 << 20


def tune_allocators() -> None:
    """Call first thing in a role process, before polars or pyarrow is imported.

    FERRY_ALLOCATOR_DEFAULTS=1 leaves every allocator at its own defaults (for A/B runs, or a host
    that must give memory back within milliseconds).
    """
    if os.environ.get("FERRY_ALLOCATOR_DEFAULTS") == "1":
        return
    for key, value in ALLOCATOR_ENV.items():
        os.environ.setdefault(key, value)
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): keep its defaults
        return
    for param, value in ((_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD)):
        if mallopt(param, value) != 1:
            log.debug("mallopt(%d, %d) refused", param, value)
