"""A TIFF or DNG written in one pass: its tags and metadata first, in a small stand-in, then its pixels.

exiv2 adds metadata to a TIFF by rewriting the whole file (a 24 MP DNG: 0.2 s, and a 100 MP one
held twice in memory). So an output's writer (:mod:`.writers`) makes a *stand-in* first: the same
tags, the same number of strips, one pixel each, which gets the source's metadata
(:func:`~.metadata.with_metadata`) in milliseconds; :func:`header_for_strips` then points its first
image at the real size and at strips that follow the stand-in's bytes, and the pixels are written
after it, strip by strip. The stand-in's own pixels stay behind, unread.
"""

from __future__ import annotations

import struct
from itertools import accumulate

_SHORT, _LONG = 3, 4  # TIFF field types
IMAGE_WIDTH, IMAGE_LENGTH, STRIP_OFFSETS, ROWS_PER_STRIP, STRIP_BYTE_COUNTS = 256, 257, 273, 278, 279


def header_for_strips(stand_in: bytes, height: int, width: int, rows_per_strip: int, strip_sizes: list[int]) -> bytes:
    """The bytes to write before the strips of a ``height × width`` image: ``stand_in``, a classic
    (not Big) TIFF whose first image has as many strips as ``strip_sizes`` (bytes each), with that
    image's width, length, rows per strip, strip offsets and byte counts rewritten, the strips to
    follow it in order (from an even offset). Each of those becomes a LONG: where the stand-in had
    SHORTs (its sizes were small) an array that no longer fits its place is moved to the end of
    the header. Raises ``ValueError`` where ``stand_in`` is not such a TIFF or the image does not fit one."""
    header = bytearray(stand_in)
    order = {b"II": "<", b"MM": ">"}.get(bytes(header[:2]))
    if order is None or len(header) < 8 or struct.unpack(order + "H", header[2:4])[0] != 42:
        raise ValueError("not a classic TIFF")
    counts = {IMAGE_WIDTH: 1, IMAGE_LENGTH: 1, ROWS_PER_STRIP: 1, STRIP_OFFSETS: len(strip_sizes), STRIP_BYTE_COUNTS: len(strip_sizes)}
    places = {}  # tag → where its LONG values go
    (ifd,) = struct.unpack(order + "I", header[4:8])
    (count,) = struct.unpack(order + "H", header[ifd : ifd + 2])
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        tag, kind, number = struct.unpack(order + "HHI", header[entry : entry + 8])
        if tag not in counts:
            continue
        if kind not in (_SHORT, _LONG) or number != counts[tag]:
            raise ValueError(f"tag {tag} holds {number} values of type {kind}, not {counts[tag]} SHORTs or LONGs")
        if number == 1:
            places[tag] = entry + 8
        elif kind == _LONG:
            places[tag] = struct.unpack(order + "I", header[entry + 8 : entry + 12])[0]
        else:  # SHORTs: room for LONGs at the end
            header += bytes(len(header) % 2)
            places[tag] = len(header)
            header[entry + 8 : entry + 12] = struct.pack(order + "I", len(header))
            header += bytes(4 * number)
        header[entry + 2 : entry + 4] = struct.pack(order + "H", _LONG)
    if len(places) < len(counts):
        raise ValueError(f"the stand-in has no tags {sorted(set(counts) - set(places))}")
    header += bytes(len(header) % 2)
    offsets = [len(header) + before for before in accumulate(strip_sizes[:-1], initial=0)]
    if offsets[-1] + strip_sizes[-1] >= 1 << 32:
        raise ValueError("the image is too large for a TIFF (4 GB)")
    values = {IMAGE_WIDTH: [width], IMAGE_LENGTH: [height], ROWS_PER_STRIP: [rows_per_strip],
              STRIP_OFFSETS: offsets, STRIP_BYTE_COUNTS: strip_sizes}
    for tag, at in places.items():
        header[at : at + 4 * counts[tag]] = struct.pack(order + "I" * counts[tag], *values[tag])
    return bytes(header)
