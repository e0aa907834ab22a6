"""Process helpers shared by everything that starts a child process.

Children die with their parent, so a SIGKILLed ferry never leaves orphans holding ports or files,
and they inherit an open-files limit raised to what the system allows.
"""

from __future__ import annotations

import ctypes
import logging
import resource
import signal

log = logging.getLogger("ferry.runtime")

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """preexec_fn: ask Linux to SIGKILL this child when its parent dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def raise_open_files_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit, for itself and the children
    it starts; returns the limit now in force.

    Every syslog TCP connection is a file descriptor, and Debian's default soft limit (1024) would
    refuse the 1024th sending host; the hard limit (often 512 k or more) is what the system allows.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # An unlimited hard limit still leaves the kernel's per-process maximum (fs.nr_open, 1 M by default).
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            return want
        except (ValueError, OSError) as e:
            log.warning("could not raise the open-files limit from %d to %d: %s", soft, want, e)
    return soft
