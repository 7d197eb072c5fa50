"""Process-wide CPU memory settings for training: a lower peak, fewer page faults.

An LSTM step allocates activations whose sizes change with every batch's length.
glibc serves blocks below its adaptive mmap threshold (which climbs up to 32 MB)
from heaps that fragment under that churn: a default CPU run of `model=lstm` peaked
at 3.4 GB in its first epoch and 4.4 GB over a whole run, while one step needs about
1.9 GB. Two settings (README, Performance):
- a fixed 16 MB mmap threshold: the big activations (65-260 MB for a long batch) go
  back to the system when freed; smaller blocks stay in the heap and are reused
  without page faults (a 4 MB threshold refaulted the Keras models' 4-16 MB blocks
  every step: 1.2-7x the system time a step);
- a 32 MB trim threshold (twice the mmap threshold, glibc's own rule when it adjusts
  them): fixing the mmap threshold freezes the trim threshold at 128 KB, and glibc
  then hands the heap's free top back after nearly every step and faults it in again
  (`python -m lightning_sentiment.bench_allocator`, 40 training batches: keras_mlp
  4,253 page faults -> 0, 0.77 of the time; keras_lstm_80 7,880 -> 0, 0.85);
- `THP_MEM_ALLOC_ENABLE=1`: torch puts tensors of 2 MB and more on huge pages, so
  fresh pages cost fewer faults.
Freed heap pages stay resident: a short batch's activations (all under the threshold) grow
the heap by ~700 MB, which then sits beside a long batch's mapped blocks. `trim_heap`
(glibc's `malloc_trim`) hands them back; `callbacks.HeapTrim` calls it before long
batches.
Environment variables set by the user win: `THP_MEM_ALLOC_ENABLE=0`,
`MALLOC_MMAP_THRESHOLD_=...` or `MALLOC_TRIM_THRESHOLD_=...` keep torch's and glibc's
own behaviour.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers
MMAP_THRESHOLD_BYTES = 16 << 20
TRIM_THRESHOLD_BYTES = 2 * MMAP_THRESHOLD_BYTES


def _libc():
    """glibc's (or musl's) C library, or None where malloc has no such calls."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


def resident_bytes() -> int:
    """This process's resident memory now (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def trim_heap() -> bool:
    """Hand every free page of glibc's heaps back to the system (`malloc_trim(0)`, which
    also releases whole free pages inside the heap, not only its top); False where there
    is no such call. The next allocations there fault fresh pages in."""
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return False
    trim(0)
    return True


def configure_cpu_memory() -> bool:
    """Apply the settings; True if glibc's mmap threshold was set. Call before torch is
    imported: torch reads THP_MEM_ALLOC_ENABLE once, at its first allocation."""
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    mallopt = getattr(_libc(), "mallopt", None)  # glibc and musl's symbol table
    if mallopt is None:
        return False
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
