"""Keep freed image buffers in the process heap between images (glibc ``mallopt``).

A 4 MP cutout allocates and frees a few hundred MB of numpy temporaries. With glibc's defaults many of
them are fresh ``mmap`` regions: every page is faulted in and zeroed by the kernel again for the next
image, and returned to the OS when freed. Measured in one process, u2netp int8 at 4 MP, 8 photos x 2
(benchmarks/throughput.py's inputs), two runs each:

| CLEARCUT_MALLOC_RETAIN_MB | minor page faults per image | wall per image | CPU per image | peak RSS |
|---|---|---|---|---|
| 0 (glibc defaults) | 13,800-14,800 | 435-450 ms | 584-592 ms | 769 MiB |
| 256 | 3,200-3,500 | 392-400 ms | 534-549 ms | 787 MiB |
| 512 (default) | 700-2,300 | 360-401 ms | 509-551 ms | 788 MiB |

In the whole service (benchmarks/throughput.py, int8, 4 MP) 512 beat 256 in every cell (e.g. one
worker, 4 clients, u2netp: 2.89 vs 2.32 images/s), probably because 256 trims the heap after the
larger images, whose temporaries then fault in again. The price is memory not handed back: RSS settles at the high-water
mark plus at most this much free heap instead of following each image (300 sequential 4 MP and 1 MP
requests: API + worker 1.11-1.12 GiB after the first 20, against 0.64-0.71 GiB with 0, which took
114 s instead of 92-95 s). More in docs/int8.md, "Session tuning".

All threads share one heap (``M_ARENA_MAX`` 1). By default glibc gives each thread that allocates its own
arena, and each arena keeps its own freed memory: the pipeline's helper threads (the networks' grid, PNG
segments, foreground chunks) then held their temporaries apart from the main thread's, which faulted in
fresh pages for the same sizes (benchmarks/speed.py, int8, 24 MP PNG: peak RSS 1.31 GiB with an arena per
thread, 1.16 GiB with one, refinement 385 -> 364 ms). The threads allocate a few large buffers each, so
sharing one arena's lock costs nothing measurable.

Only glibc has ``mallopt``; elsewhere (musl, macOS) this does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util

from clearcut import config

M_TRIM_THRESHOLD = -1  # free memory at the top of the heap kept instead of returned to the OS
M_MMAP_THRESHOLD = -3  # allocations at least this large get their own mmap region
M_ARENA_MAX = -8       # how many heaps (arenas) the process's threads may spread over
MIB = 1024 * 1024


def retain_freed_memory(megabytes: int | None = None) -> bool:
    """Apply ``CLEARCUT_MALLOC_RETAIN_MB`` (or ``megabytes``) to this process: allocations below half of
    it come from the heap, up to all of it stays in the heap when freed, and threads share that heap.
    Returns whether glibc took the settings (``False`` for 0, which leaves glibc's adaptive defaults, or
    without glibc)."""
    retain = config.get("CLEARCUT_MALLOC_RETAIN_MB") if megabytes is None else megabytes
    if retain <= 0:
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    threshold, keep = min(retain * MIB // 2, 2**31 - 1), min(retain * MIB, 2**31 - 1)
    return (bool(mallopt(M_MMAP_THRESHOLD, threshold)) and bool(mallopt(M_TRIM_THRESHOLD, keep))
            and bool(mallopt(M_ARENA_MAX, 1)))
