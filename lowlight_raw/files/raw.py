"""Decode a camera RAW with LibRaw (rawpy) into normalised visible data, its sensor layout and metadata.

:func:`read_raw` is the one dispatch point from a file to a sensor layout
(:mod:`lowlight_raw.layouts.base`): a 2×2 CFA is Bayer, a 6×6 one X-Trans, 3 or 4 samples per pixel
(LibRaw's ``Stack``, e.g. a LinearRaw DNG) linear RGB.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import rawpy
import tifffile
import torch

from ..errors import LowlightError, UnsupportedSensor
from ..layouts.base import SensorLayout
from ..layouts.bayer import PATTERNS, BayerLayout, pattern_from_colors
from ..layouts.linear import LinearLayout
from ..layouts.xtrans import XTransLayout, phase_of
from ..pipeline.color import CameraColor
from ..pipeline.device import image_dtype
from .dngtags import D65
from .metadata import camera_iso, is_utf8_path, read_exif

# tifffile complains per damaged tag; a damaged matrix is simply not used (see _dng_color_matrix).
logging.getLogger("tifffile").setLevel(logging.CRITICAL)

# LibRaw's ``flip`` → EXIF/TIFF Orientation.
_FLIP_TO_ORIENTATION = {0: 1, 3: 3, 5: 8, 6: 6}
DECODE_ROWS = 256  # a linear raw is normalised in float32 bands of this many rows


@dataclass(frozen=True)
class RawPhoto:
    """One decoded RAW: the visible data on a 0 = black, 1 = white scale, and its metadata."""

    path: Path
    visible: np.ndarray  # black subtracted per colour, / (white - black): (H, W) float32 CFA mosaic or (H, W, 3) RGB
    # of image_dtype (a large one: half floats)
    layout: SensorLayout
    color: CameraColor
    orientation: int
    make: str
    camera_model: str
    iso: float | None
    masked: np.ndarray | None  # normalised masked (optical black) pixels, when LibRaw exposes them

    def packed(self) -> tuple[np.ndarray, "RawPhoto"]:
        """The layout's packed planes of :attr:`visible` (:meth:`SensorLayout.pack`), and this photo
        without its decoded pixels (``visible`` empty), so that memory holds the pixels once."""
        return self.layout.pack(self.visible), replace(self, visible=np.empty((0,) * self.visible.ndim, self.visible.dtype))


def read_raw(path: Path) -> RawPhoto:
    """Decode ``path``; raise :class:`LowlightError` (one line naming the file) on any failure.

    Any Bayer or X-Trans phase, per-channel black levels and visible areas at odd offsets are
    handled (the phase is read from LibRaw's colour map of the *visible* area); linear
    (already demosaiced) raws too. Foveon, monochrome and other CFAs raise :class:`UnsupportedSensor`.
    """
    path = Path(path)
    if not path.exists():
        raise LowlightError(path, "file not found")
    if path.is_dir():
        raise LowlightError(path, "is a directory, not a RAW file")
    with _libraw_stderr() as printed:
        try:
            with _open_raw(path) as raw:
                return _decode(path, raw)
        except LowlightError:
            raise
        except rawpy.LibRawFileUnsupportedError as exc:
            raise LowlightError(path, _why_unsupported(path)) from exc
        except rawpy.LibRawIOError as exc:
            message = _libraw_message(exc, printed.take_libraw_lines())
            raise LowlightError(path, f"not a RAW file, or a truncated one (LibRaw: {message})") from exc
        except (rawpy.LibRawDataError, rawpy.LibRawError) as exc:
            message = _libraw_message(exc, printed.take_libraw_lines())
            raise LowlightError(path, f"corrupt RAW file (LibRaw: {message})") from exc
        except OSError as exc:
            raise LowlightError(path, f"cannot read file ({exc.strerror or exc})") from exc


def _open_raw(path: Path):
    """LibRaw on ``path``: by name, or from its bytes when the name is not valid UTF-8."""
    if is_utf8_path(path):
        return rawpy.imread(str(path))
    with open(path, "rb") as handle:
        return rawpy.imread(handle)


def _decode(path: Path, raw) -> RawPhoto:
    if raw.num_colors < 3:
        raise UnsupportedSensor(path, "monochrome sensor: not supported yet")
    black = np.asarray(raw.black_level_per_channel, dtype=np.float32)
    white = float(raw.white_level)
    if raw.raw_type == rawpy.RawType.Stack:
        visible, layout = _linear_visible(path, raw, black, white)
    else:
        visible, layout = _cfa_visible(path, raw, black, white)
    masked = _masked_pixels(raw, black, white) if layout.kind != LinearLayout.kind else None
    cam_xyz = np.asarray(raw.rgb_xyz_matrix)[:3, :3]
    if not cam_xyz.any():  # LibRaw leaves it empty for DNGs: read their own ColorMatrix tags
        cam_xyz = _dng_color_matrix(path)
    color = CameraColor.from_libraw(raw.camera_whitebalance, raw.daylight_whitebalance, cam_xyz)
    exif = read_exif(path)
    make = exif.get("Image Make", "").strip()
    model = exif.get("Image Model", "").strip()
    iso = camera_iso(path, exif, float(raw.other.iso_speed))
    return RawPhoto(
        path=path,
        visible=visible,
        layout=layout,
        color=color,
        orientation=_FLIP_TO_ORIENTATION.get(int(raw.sizes.flip), 1),
        make=make,
        camera_model=model,
        iso=iso,
        masked=masked,
    )


def _cfa_visible(path: Path, raw, black: np.ndarray, white: float) -> tuple[np.ndarray, SensorLayout]:
    """The normalised visible CFA mosaic and its Bayer or X-Trans layout."""
    if raw.raw_pattern is None:
        raise UnsupportedSensor(path, "no colour filter pattern (Foveon or multi-shot raw?): not supported yet")
    colors = raw.raw_colors_visible
    desc = raw.color_desc.decode("ascii", "replace")
    if raw.raw_pattern.shape == (2, 2):
        pattern = pattern_from_colors(colors, desc)
        if pattern not in PATTERNS:
            raise UnsupportedSensor(path, f"CFA pattern {pattern!r} is not an RGB Bayer pattern: not supported yet")
        make_layout = lambda h, w: BayerLayout(pattern, h, w)  # noqa: E731
    elif raw.raw_pattern.shape == (6, 6):
        rgb = np.array([{"R": 0, "G": 1, "B": 2}.get(c, 3) for c in desc])[colors[:6, :6]]
        phase = phase_of(rgb)
        if phase is None or min(colors.shape) < 6:
            raise UnsupportedSensor(path, "6×6 CFA that is not Fujifilm's X-Trans: not supported yet")
        make_layout = lambda h, w: XTransLayout(phase, h, w)  # noqa: E731
    else:
        rows, cols = raw.raw_pattern.shape
        raise UnsupportedSensor(path, f"{rows}×{cols} CFA: not supported yet")
    period = colors[: raw.raw_pattern.shape[0], : raw.raw_pattern.shape[1]]  # the visible area's CFA repeats it
    mosaic = np.empty(raw.raw_image_visible.shape, np.float32)  # the one full-size float copy
    sites_of = torch.from_numpy(mosaic)
    sites_of.copy_(torch.from_numpy(raw.raw_image_visible))  # by torch's threads (24 MP: 0.04 s, numpy's 0.08)
    for (row, column), colour in np.ndenumerate(period):  # in place, site by site: no full-size temporaries
        scale = np.float32(1.0) / np.float32(max(white - float(black[colour]), 1.0))
        sites_of[row :: period.shape[0], column :: period.shape[1]].sub_(float(black[colour])).mul_(float(scale))
    return mosaic, make_layout(*mosaic.shape)


def _linear_visible(path: Path, raw, black: np.ndarray, white: float) -> tuple[np.ndarray, LinearLayout]:
    """The normalised visible RGB of a linear (demosaiced) raw and its layout."""
    data = raw.raw_image_visible
    if data.ndim != 3 or data.shape[2] < 3:
        raise UnsupportedSensor(path, f"linear raw with {data.shape[2] if data.ndim == 3 else 1} samples per pixel: not supported yet")
    rgb_black = black[:3] if black.size >= 3 else np.full(3, float(black.flat[0]), np.float32)
    scale = np.float32(1.0) / np.maximum(white - rgb_black, 1.0)
    rgb = np.empty(data.shape[:2] + (3,), image_dtype(data.shape[0] * data.shape[1]))  # the one full-size copy
    samples, offsets, scales = torch.from_numpy(data), torch.from_numpy(rgb_black), torch.from_numpy(scale)
    # half floats from one float32 band, made once (a new one per band fragmented the heap: 100 MP after
    # a smaller photo peaked 0.3 GB higher)
    buffer = None if rgb.dtype == np.float32 else torch.empty((DECODE_ROWS,) + rgb.shape[1:])
    for top in range(0, len(rgb), DECODE_ROWS):  # normalised in float32, a band of rows at a time, by torch's
        rows = torch.from_numpy(rgb[top : top + DECODE_ROWS])  # threads (24 MP: 0.15 s, numpy's 0.36)
        band = rows if buffer is None else buffer[: len(rows)]
        band.copy_(samples[top : top + DECODE_ROWS, :, :3]).sub_(offsets).mul_(scales)
        if band is not rows:
            rows.copy_(band)
    if min(rgb.shape[:2]) < 2:
        raise LowlightError(path, f"image too small ({rgb.shape[0]}×{rgb.shape[1]})")
    return rgb, LinearLayout(*rgb.shape[:2])


def _dng_color_matrix(path: Path) -> np.ndarray:
    """XYZ → camera matrix from a DNG's ColorMatrix1/2 (the D65 one preferred); zeros if absent.

    A damaged tag counts as absent: tifffile raises all sorts of errors on fuzzed files.
    """
    try:
        with tifffile.TiffFile(path) as tif:
            tags = tif.pages[0].tags
            matrices = {}
            for matrix_tag, illuminant_tag in ((50721, 50778), (50722, 50779)):
                if matrix_tag in tags:
                    values = np.asarray(tags[matrix_tag].value, dtype=np.float64)
                    if values.size == 18:  # stored as numerator/denominator pairs
                        values = values[0::2] / values[1::2]
                    if values.size >= 9:
                        illuminant = tags[illuminant_tag].value if illuminant_tag in tags else 0
                        matrices[int(illuminant)] = values[:9].reshape(3, 3)
    except Exception:  # noqa: BLE001 - any damage means "no usable matrix"
        return np.zeros((3, 3))
    if not matrices:
        return np.zeros((3, 3))
    return matrices.get(D65, list(matrices.values())[-1])


def _masked_pixels(raw, black: np.ndarray, white: float) -> np.ndarray | None:
    """Normalised optical-black pixels outside the visible area, or ``None`` if too few."""
    s = raw.sizes
    full = raw.raw_image
    colors = raw.raw_colors
    top, left = s.top_margin, s.left_margin
    bottom, right = top + s.height, left + s.width
    strips = [(slice(0, top), slice(None)), (slice(bottom, None), slice(None)),
              (slice(top, bottom), slice(0, left)), (slice(top, bottom), slice(right, None))]
    values = [
        (full[r, c].astype(np.float32) - black[colors[r, c]]) / max(white - float(black.mean()), 1.0)
        for r, c in strips
        if full[r, c].size
    ]
    if not values:
        return None
    masked = np.concatenate([v.ravel() for v in values])
    return masked if masked.size >= 1024 else None


_JPEG_XL = 52546  # DNG 1.7 compression code
_RAW_PHOTOMETRICS = frozenset({32803, 34892})  # CFA, LinearRaw


def _why_unsupported(path: Path) -> str:
    """Why LibRaw refused a file, as a user can act on it: a DNG compressed with JPEG XL, a DNG
    that holds only a preview, or simply not a raw."""
    try:
        with tifffile.TiffFile(path) as tif:
            pages = [p for top in tif.pages for p in (top, *_sub_pages(tif, top))]
            if 50706 not in tif.pages[0].tags:  # DNGVersion
                return "not a RAW file LibRaw can read"
            if any(int(p.compression) == _JPEG_XL for p in pages):
                return "JPEG XL-compressed DNG, which this LibRaw cannot decode (save it uncompressed or lossless JPEG)"
            if not any(int(p.photometric) in _RAW_PHOTOMETRICS for p in pages):
                return "DNG without raw data (only a preview image): nothing to enhance"
    except Exception:  # noqa: BLE001 - not even a TIFF: the generic answer
        pass
    return "not a RAW file LibRaw can read"


def _sub_pages(tif: tifffile.TiffFile, page) -> list:
    """A DNG's SubIFDs (where Adobe DNG Converter puts the raw) of ``page``."""
    offsets = page.tags[330].value if 330 in page.tags else ()
    pages = []
    for offset in offsets if isinstance(offsets, (tuple, list)) else (offsets,):
        tif.filehandle.seek(offset)
        pages.append(tifffile.TiffPage(tif, index=0))
    return pages


def _libraw_message(exc: Exception, printed: list[str]) -> str:
    """LibRaw's error, and what it printed about the data (``"Unexpected end of file"``)."""
    text = exc.args[0] if exc.args else str(exc)
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return "; ".join(dict.fromkeys([text, *(line.rsplit(": ", 1)[-1] for line in printed)]))


_STDERR_LOCK = threading.RLock()
_LIBRAW_DATA_ERRORS = ("Unexpected end of file", "data corrupted at")  # LibRaw's default data-error callback


class _Printed:
    """What was printed into a file descriptor so far (read without moving its shared offset)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self.taken: set[str] = set()

    def lines(self) -> list[str]:
        size = os.fstat(self._fd).st_size
        return os.pread(self._fd, size, 0).decode("utf-8", "replace").splitlines() if size else []

    def take_libraw_lines(self) -> list[str]:
        """LibRaw's own reports about damaged data, which the caller now reports (not printed again)."""
        lines = [line for line in self.lines() if any(marker in line for marker in _LIBRAW_DATA_ERRORS)]
        self.taken.update(lines)
        return lines


@contextmanager
def _libraw_stderr() -> Iterator[_Printed]:
    """Hold what is printed on the process's stderr (descriptor 2) while LibRaw reads a file.

    LibRaw reports damaged data itself, there (``"<file>: Unexpected end of file"``), so that a
    failure would print two lines. The body may take those lines to fold into its one-line error;
    everything else is printed when the body ends, so nothing is lost.
    """
    with _STDERR_LOCK, tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        printed = _Printed(sink.fileno())
        try:
            yield printed
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            rest = [line for line in printed.lines() if line not in printed.taken]
            if rest:
                sys.stderr.write("".join(line + "\n" for line in rest))
                sys.stderr.flush()
