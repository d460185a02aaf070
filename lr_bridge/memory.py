"""Giving memory back: file bytes come and go in large blocks that glibc would otherwise keep.

glibc raises its mmap threshold after a large block is freed, so later blocks of file bytes come
from the heap and stay with the process after they are freed (the daemon was measured holding
1.16 GB after six jobs). :func:`return_large_blocks` fixes the threshold, so every block of at
least :data:`MMAP_THRESHOLD_BYTES` is its own mapping, unmapped when freed;
:func:`release_memory` trims what the heap holds free. Both do nothing without glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util

MMAP_THRESHOLD_BYTES = 1 << 20
_M_MMAP_THRESHOLD = -3  # mallopt parameter (malloc.h)


def _glibc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


_LIBC = _glibc()


def return_large_blocks() -> None:
    """Make blocks of :data:`MMAP_THRESHOLD_BYTES` or more go back to the system as soon as they are freed."""
    if _LIBC is not None:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def release_memory() -> None:
    """Hand the heap's free memory back to the system."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
