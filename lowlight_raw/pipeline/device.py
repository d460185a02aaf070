"""Where and how the network runs: the device, bf16 or float32, how many CPU threads; and how a
photo is held in memory (:func:`image_dtype`, :func:`freed_memory_reused`, :func:`release_freed_memory`).

``auto`` picks CUDA, then Apple MPS, then the CPU; bf16 runs where the hardware computes it
natively; the thread count follows the cores idle right now, so a busy or shared machine is not
made to spin.
"""

from __future__ import annotations

import os
import time
from contextlib import AbstractContextManager

import numpy as np
import torch

from ..machine import freed_blocks_kept, trim_heap


def choose_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA, then Apple MPS, then CPU; otherwise the named device (must be available)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA GPU is available")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("--device mps: Apple MPS is not available")
    return device


PRECISION_VARIABLE = "LOWLIGHT_PRECISION"  # "fp32": never bf16 (a CPU or GPU whose bf16 misbehaves)


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX): there bf16 convolutions
    run ≈ 2× faster than float32 (``bench/bench_engine.py``); elsewhere oneDNN would emulate
    them, slower than float32."""
    capability = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return torch.backends.mkldnn.is_available() and any(check is not None and check() for check in (capability, amx))


def use_bf16(device: torch.device, bf16: bool = True) -> bool:
    """Whether the network runs under bf16 autocast on ``device``: on CUDA, and on a CPU with native
    bf16 (:func:`cpu_has_bf16`), unless ``bf16`` is false or :data:`PRECISION_VARIABLE` is ``fp32``.
    Either way the output is float32; bf16 and float32 agree within 0.05 dB (tested)."""
    if not bf16 or os.environ.get(PRECISION_VARIABLE, "").lower() == "fp32":
        return False
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16())


DEFAULT_THREADS = torch.get_num_threads()  # torch's choice at start: the physical cores (or OMP_NUM_THREADS)


CPU_SAMPLE_S = 0.05  # how long cpu_threads() watches the machine


def idle_cpus(sample_s: float = CPU_SAMPLE_S) -> float | None:
    """How many of the CPUs this process may run on were idle over the last ``sample_s`` seconds
    (``/proc/stat``); ``None`` where there is no ``/proc/stat``."""
    def idle_and_total() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            ticks = [int(t) for t in stat.readline().split()[1:]]
        return ticks[3] + ticks[4], sum(ticks[:8])  # idle + iowait; user … steal

    try:
        idle_before, total_before = idle_and_total()
        time.sleep(sample_s)
        idle_after, total_after = idle_and_total()
    except (OSError, ValueError, IndexError):
        return None
    idle_share = (idle_after - idle_before) / max(total_after - total_before, 1)
    return idle_share * len(os.sched_getaffinity(0))


def cpu_threads() -> int:
    """Threads for the network and the array work around it on the CPU: torch's default (the
    physical cores), but no more than the CPUs idle right now, at least one; ``OMP_NUM_THREADS``,
    where set, decides alone. On a shared machine a thread that has to wait for a busy core stalls
    every parallel step until it runs: on this project's 2-core machine under load, 2 threads
    smoothed a 24 MP photo's chroma 2–8× slower than 1, and ran the network no faster."""
    if os.environ.get("OMP_NUM_THREADS"):
        return DEFAULT_THREADS
    idle = idle_cpus()
    return DEFAULT_THREADS if idle is None else max(1, min(DEFAULT_THREADS, round(idle)))


# A large photo is held in half floats, as OpenEXR holds linear photographs: its restored result, and a linear
# raw's decoded pixels and packed planes (three values a pixel, where a mosaic has one). Half floats keep 11
# significant bits: a rounding error at most 1/2048 of a value, 16× below the photon noise of a clean 14-bit
# raw (outputs differ from float32's by 87 dB PSNR for Bayer and X-Trans, 68 dB for a dark linear raw). In
# float32 a 100 MP photo peaked at 2.3 GB (Bayer) to 3.2 GB (linear); in half floats 1.8–2.1. Below this
# size float32 is kept: converting blocks to and from half floats cost 24 MP photos 10–16 % of their time.
HALF_FLOATS_FROM_PIXELS = 40_000_000


def image_dtype(pixels: int) -> type[np.floating]:
    """The dtype a photo of ``pixels`` (full-resolution pixels) is held in: float32, or half floats
    from :data:`HALF_FLOATS_FROM_PIXELS`. Every step that reads it works on float32 blocks of it."""
    return np.float16 if pixels >= HALF_FLOATS_FROM_PIXELS else np.float32


# glibc's malloc serves a block this large or smaller from its heap, and keeps this much freed at the
# heap's top, instead of mapping fresh pages for each (a 1024² tile's activations are 12–50 MB apiece;
# by default glibc maps anything over 32 MB anew, and the kernel faults in and zeroes every 4 KB page of
# it on first touch, each time). 24 MP on two cores (in-process, min of 2): the network 2.05 → 1.78 s
# (Bayer), 3.31 → 2.36 s (X-Trans); one 1024² tile 254 → 150 ms; the peak 0.05–0.1 GB higher.
HEAP_REUSE_BYTES = 256 << 20
# … and for a photo from HALF_FLOATS_FROM_PIXELS, what glibc's own adaptive threshold reaches at most (its
# 768² tiles' activations fit; 100 MP linear peaked at 2.04 GB with the larger value, 1.94 without)
LARGE_PHOTO_HEAP_REUSE_BYTES = 32 << 20


def freed_memory_reused(pixels: int) -> AbstractContextManager[bool]:
    """While a photo of ``pixels`` is restored (:func:`~lowlight_raw.machine.freed_blocks_kept`): this
    process's glibc malloc reuses freed blocks up to :data:`HEAP_REUSE_BYTES`
    (:data:`LARGE_PHOTO_HEAP_REUSE_BYTES` for a large photo) instead of returning them to the operating
    system and faulting fresh pages in for the next (:func:`release_freed_memory` still returns memory
    where it is asked to). Afterwards the daemon returns large blocks again: with its policy
    throughout, a 24 MP photo took it 5.0 s where 2.7 on the command line (every activation mapped and
    faulted in anew); with the engine's throughout, its received file bytes stayed
    (``tests/test_bridge_hardening.py``: 114–118 MiB held for 64 MiB of queued files). Yields whether
    it took effect."""
    return freed_blocks_kept(HEAP_REUSE_BYTES if pixels < HALF_FLOATS_FROM_PIXELS else LARGE_PHOTO_HEAP_REUSE_BYTES)


def release_freed_memory(pixels: int) -> None:
    """For a photo of ``pixels`` from :data:`HALF_FLOATS_FROM_PIXELS`: give the heap memory freed so
    far back to the operating system (:func:`~lowlight_raw.machine.trim_heap`). glibc keeps what
    numpy and torch free in its arenas (one per thread), so after a phase of large temporaries the
    process's resident memory stays up to 0.4 GB above what it holds (a 100 MP X-Trans raw after
    its clean rendering), and the next phase's peak sits on top of that (Dask's workers trim for
    the same reason). Not for smaller photos: faulting the memory back in cost a 24 MP X-Trans raw
    0.5 s of its 9."""
    if pixels >= HALF_FLOATS_FROM_PIXELS:
        trim_heap()
