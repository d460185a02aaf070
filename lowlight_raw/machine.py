"""What is local to this machine: live processes, what dead ones left, loopback hosts, and how the C
library's allocator keeps freed memory (shared by engine and bridge).

Pure standard library: the bridge's client imports it and must stay light.
"""

from __future__ import annotations

import ctypes
import gc
import ipaddress
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def left_by_dead_processes(folder: Path, name: re.Pattern[str]) -> list[os.DirEntry]:
    """The entries of ``folder`` whose ``name`` match names the process that made them (group
    ``pid``) and whose process is gone: a killed writer's temporary files or folders. None where
    the folder cannot be read."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    return [entry for entry in entries if (match := name.match(entry.name)) and not pid_alive(int(match["pid"]))]


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 without brackets) is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# glibc's malloc: which freed blocks go back to the operating system. glibc raises its mmap threshold
# after a large block is freed, so later large blocks come from the heap and stay with the process
# after they are freed (the daemon was measured holding 1.16 GB after six jobs); the engine, the other
# way round, keeps its tiles' activations in the heap while it restores a photo (pipeline/device).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (malloc.h)
RETURNED_BLOCK_BYTES = 1 << 20  # return_large_blocks: every block this large is its own mapping
DEFAULT_TRIM_BYTES = 128 << 10  # glibc's default M_TRIM_THRESHOLD
_returns_large_blocks = False  # whether this process asked for return_large_blocks (the daemon)


@contextmanager
def freed_blocks_kept(size: int) -> Iterator[bool]:
    """While it lasts: glibc serves blocks up to ``size`` bytes from its heap and keeps as much freed at
    its top, process-wide; afterwards a process that returns large blocks (:func:`return_large_blocks`)
    does so again, its heap trimmed. Yields whether it took effect (``False``: not glibc, or it
    refused the value)."""
    try:
        yield _LIBC is not None and bool(_LIBC.mallopt(_M_MMAP_THRESHOLD, size)) and bool(_LIBC.mallopt(_M_TRIM_THRESHOLD, size))
    finally:
        if _returns_large_blocks:
            return_large_blocks()
            trim_heap()


def return_large_blocks() -> None:
    """From now on, this process's policy (the daemon's: file bytes come and go in large blocks), and
    again after each :func:`freed_blocks_kept`: every block of :data:`RETURNED_BLOCK_BYTES` or more
    is its own mapping, unmapped when freed, and the heap is trimmed from glibc's default."""
    global _returns_large_blocks
    _returns_large_blocks = True
    if _LIBC is not None:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, RETURNED_BLOCK_BYTES)
        _LIBC.mallopt(_M_TRIM_THRESHOLD, DEFAULT_TRIM_BYTES)


def release_memory() -> None:
    """After a job or a large message: hand what this process no longer uses back to the operating
    system: the garbage that only the cyclic collector frees (a daemon kept 36–63 MiB of file bytes
    after its jobs until it ran; 30–45 ms with the engine loaded), then the heap's free memory
    (:func:`trim_heap`)."""
    gc.collect()
    trim_heap()


def trim_heap() -> None:
    """Hand the heap's free memory back to the operating system (glibc's ``malloc_trim``; a no-op elsewhere)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (it has ``malloc_trim`` and ``mallopt``), else ``None``."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # musl and others
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


_LIBC = _glibc()
