"""Process heap settings for the pixel work: large arrays (decoded windows, crops, network
activations) are allocated and freed again and again; glibc serves each one above its mmap
threshold with fresh pages (one page fault per 4 KiB, about a fifth of a 2-core batch's CPU
time in the kernel). :func:`reuse_freed_memory` keeps such blocks on the heap for reuse."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["reuse_freed_memory"]

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

_done = False


def reuse_freed_memory(mmap_threshold_mb: int = 32, top_pad_mb: int = 8) -> bool:
    """Make glibc's malloc serve blocks below ``mmap_threshold_mb`` MiB (at most 32 on 64-bit glibc) from the heap and keep
    freed heap memory (no trimming; the heap grows with ``top_pad_mb`` MiB to spare, small so
    that a decode worker's address-space limit is not spent on padding), so that a block
    freed and allocated again reuses its pages. Peak memory is unchanged (freed blocks are
    reused, not added); the process keeps its peak heap until it exits. Meant for processes
    that do only this work (the CLI, decode workers), not for a library caller's process.

    Returns True when the settings were applied, False where there is no glibc (another C
    library, another OS) or they were already applied. Never raises."""
    global _done
    if _done or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = ((_M_MMAP_THRESHOLD, mmap_threshold_mb << 20), (_M_TRIM_THRESHOLD, 2**31 - 1),
                (_M_TOP_PAD, top_pad_mb << 20))
    ok = all([mallopt(p, v) == 1 for p, v in settings])  # every one applied, not stopped at a refusal
    _done = ok
    return ok
