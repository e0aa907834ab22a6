"""Role processes keep freed batch memory for the next batch instead of faulting it in again."""

from __future__ import annotations

import subprocess
import sys

# Allocates, fills and frees a 16 MB buffer (a large bus payload) 40 times, as a role does per
# batch, and prints the page faults that cost; TUNE=1 applies ferry's allocator settings first.
_PROBE = """
import os, resource, sys
if sys.argv[1] == "1":
    from ferry.host.memory import tune_allocators
    tune_allocators()
import pyarrow as pa
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
payload = b"x" * (16 << 20)
buf = bytes(bytearray(payload)); del buf   # first touch: the heap grows once
start = faults()
for _ in range(40):
    buf = bytes(bytearray(payload))        # two 16 MB copies, as framing and slicing make
    arr = pa.py_buffer(buf).to_pybytes()
    del buf, arr
print(faults() - start)
"""


def _faults(tuned: bool) -> int:
    out = subprocess.run([sys.executable, "-c", _PROBE, "1" if tuned else "0"], capture_output=True, text=True,
                         check=True, timeout=60)
    return int(out.stdout.strip())


def test_freed_batch_memory_is_reused_without_page_faults() -> None:
    untuned, tuned = _faults(False), _faults(True)
    # 40 rounds x 48 MB of fresh pages is ~470k faults when every buffer is a new mmap.
    assert untuned > 100_000, f"the probe no longer exercises fresh allocations ({untuned} faults)"
    assert tuned < untuned / 20, f"tuned allocators still fault: {tuned} vs {untuned} untuned"
