"""Mutated DNG files for the fuzz tests: damaged IFD entries, flipped bytes, truncations (seeded)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np


def ifd_entries(data: bytes) -> list[int]:
    """Byte offsets of every 12-byte entry of IFD0, its chained IFDs and the EXIF/GPS/Sub IFDs."""
    order = "<" if data[:2] == b"II" else ">"
    offsets, seen, entries = [struct.unpack_from(order + "I", data, 4)[0]], set(), []
    while offsets:
        ifd = offsets.pop()
        if ifd in seen or not 8 <= ifd <= len(data) - 2:
            continue
        seen.add(ifd)
        (count,) = struct.unpack_from(order + "H", data, ifd)
        for index in range(count):
            entry = ifd + 2 + 12 * index
            if entry + 12 > len(data):
                break
            entries.append(entry)
            tag, kind, n, value = struct.unpack_from(order + "HHII", data, entry)
            if tag in (0x8769, 0x8825, 0x014A) and kind in (4, 13) and n == 1:  # EXIF, GPS, SubIFDs
                offsets.append(value)
        next_at = ifd + 2 + 12 * count
        if next_at + 4 <= len(data):
            offsets.append(struct.unpack_from(order + "I", data, next_at)[0])
    return entries


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One seeded mutation of a TIFF/DNG: an IFD entry's type/count/value, random bytes, or a cut."""
    out = bytearray(data)
    entries = ifd_entries(data)
    for _ in range(int(rng.integers(1, 4))):
        how = rng.integers(0, 6)
        if how <= 2 and entries:  # a damaged entry: bad type (0, >18), huge count, wild offset
            entry = int(entries[rng.integers(0, len(entries))])
            field, size = [(2, 2), (4, 4), (8, 4)][how]
            choices = [0, 1, 0xFFFF, 0xFFFFFFFF, len(data) - 1, int(rng.integers(0, 1 << 31))]
            value = choices[rng.integers(0, len(choices))] & ((1 << (8 * size)) - 1)
            out[entry + field: entry + field + size] = value.to_bytes(size, "little" if data[:2] == b"II" else "big")
        elif how <= 4:  # random bytes in the structure at either end
            start = int(rng.integers(0, min(len(out), 4096))) if how == 3 else int(rng.integers(max(0, len(out) - 4096), len(out)))
            length = int(rng.integers(1, 9))
            out[start: start + length] = rng.integers(0, 256, size=len(out[start: start + length]), dtype=np.uint8).tobytes()
        else:  # truncated
            del out[int(rng.integers(8, len(out))):]
    return bytes(out)


def write_mutants(bases: list[Path], count: int, folder: Path, seed: int = 11) -> list[Path]:
    """``count`` mutated copies of the ``bases`` in ``folder`` (``fuzz_000.dng`` …), reproducibly."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    originals = [base.read_bytes() for base in bases]
    paths = []
    for index in range(count):
        path = folder / f"fuzz_{index:03d}.dng"
        path.write_bytes(mutate(originals[index % len(originals)], rng))
        paths.append(path)
    return paths
