"""Keep freed memory in the process during training, instead of glibc handing it back each step.

glibc serves large blocks with mmap and returns them on free, and it shrinks the heap whenever its
top is free, so each training step maps fresh pages and takes a page fault on every one of them:
kernel time, not training. Measured here (one thread, the quick lifecycle's data, 8 epochs): the
DS-CNN took 107.5 user + 29.5 system CPU-s; with these two settings 95.4 + 3.0 (given to glibc as
GLIBC_TUNABLES) and 103.4 + 3.3 (set by this function), with the same metrics. The CNN's run did
not change (39 + 3), nor BC-ResNet's (93 + 3 against 90 + 5). It also
let the DS-CNN's channels-last layout pay: 89.4 + 2.8 CPU-s (docs/extending.md). The price is up to
TRIM_BYTES of freed memory the process keeps for its next step.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, <malloc.h>
MMAP_BYTES = 32 << 20  # blocks below this come from the heap (glibc's largest dynamic threshold)
TRIM_BYTES = 256 << 20  # free memory at the heap's top kept up to this


def keep_freed_memory() -> bool:
    """Set glibc's malloc thresholds for a training process; False where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    except (OSError, AttributeError):  # musl and others: no mallopt, their allocator is left alone
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_BYTES))
