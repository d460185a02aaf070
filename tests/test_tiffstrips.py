"""The one-pass TIFF writing: a stand-in's header pointed at strips written after it."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tifffile

from lowlight_raw.files.tiffstrips import header_for_strips


def _one_pass(pixels: np.ndarray, rows_per_strip: int, byteorder: str, **tags) -> bytes:
    """What the writers do: a stand-in of one pixel a strip, its header re-pointed, the strips after it."""
    height, width, channels = pixels.shape
    starts = range(0, height, rows_per_strip)
    stand_in = io.BytesIO()
    tifffile.imwrite(stand_in, np.zeros((len(starts), 1, channels), pixels.dtype), rowsperstrip=1, planarconfig="contig",
                     byteorder=byteorder, metadata=None, **tags)
    strips = [pixels[start : start + rows_per_strip].astype(pixels.dtype.newbyteorder(byteorder)).tobytes() for start in starts]
    return header_for_strips(stand_in.getvalue(), height, width, rows_per_strip, [len(s) for s in strips]) + b"".join(strips)


@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("height,rows_per_strip", [(90, 64), (64, 64), (1, 64), (300, 7)])
def test_the_strips_after_the_stand_in_read_back_as_the_image(byteorder, height, rows_per_strip):
    pixels = np.random.default_rng(height).integers(0, 65536, (height, 123, 3), dtype=np.uint16)
    data = _one_pass(pixels, rows_per_strip, byteorder, photometric="rgb", software="test",
                     extratags=[(274, "H", 1, 6, True)])
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        page = tif.pages[0]
        assert (page.imagelength, page.imagewidth, page.rowsperstrip) == (height, 123, min(rows_per_strip, height))
        assert page.tags[274].value == 6  # the other tags as the stand-in had them
        np.testing.assert_array_equal(page.asarray(), pixels)
        assert min(page.dataoffsets) % 2 == 0


def test_what_is_not_a_stand_in_is_refused():
    with pytest.raises(ValueError, match="not a classic TIFF"):
        header_for_strips(b"\xff\xd8\xff\xe0 a JPEG", 2, 2, 64, [12])
    stand_in = io.BytesIO()
    tifffile.imwrite(stand_in, np.zeros((2, 1, 3), np.uint16), rowsperstrip=1, photometric="rgb", metadata=None)
    with pytest.raises(ValueError, match="holds 2 values"):  # three strips asked of a stand-in of two
        header_for_strips(stand_in.getvalue(), 3, 5, 1, [30, 30, 30])
    with pytest.raises(ValueError, match="too large"):
        header_for_strips(stand_in.getvalue(), 2 * 40000, 40000, 40000, [40000 * 40000 * 6, 40000 * 40000 * 6])
