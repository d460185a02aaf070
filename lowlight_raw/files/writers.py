"""Output files: a LinearRaw DNG (default), a 16-bit TIFF or a JPEG, written safely.

Every output is written through :func:`lowlight_raw.files.atomic.write_atomically`: a hidden
temporary file next to the final one gets the pixels and the source's metadata
(:mod:`lowlight_raw.files.metadata`; a DNG or TIFF in one pass, its metadata first:
:mod:`lowlight_raw.files.tiffstrips`), is flushed to disk and only then takes its
name, so a failure, Ctrl-C or SIGTERM never leaves a half-written output, and an existing file is
replaced only on request (even one that appears while the output is written). Temporary files of
ours whose writer process is gone (a crash, SIGKILL) are removed from the folder before the next
write into it. Pixels keep the sensor orientation; the source's orientation is written as a tag.

- **DNG**: camera RGB (not white balanced) as 3 × uint16 LinearRaw, uncompressed strips, with
  the camera's ColorMatrix1 (D65) and AsShotNeutral, so raw editors develop it like the source.
  The exposure gain is baked into the pixels, less :data:`DNG_HEADROOM_EV` stops that
  BaselineExposure gives back (see there), and ExposureBiasValue is 0: the engine's EV replaced
  the camera's exposure compensation.
- **TIFF**: 16-bit white-balanced sRGB with its ICC profile, or linear sRGB / Rec.2020 with a
  matching linear ICC profile (``linear_tiff``).
- **JPEG**: 8-bit sRGB, quality 95, with the sRGB ICC profile.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, ImageCms

from ..errors import LowlightError
from ..pipeline.color import SPACES, CameraColor, camera_to_linear, srgb_encode
from .atomic import write_atomically
from .dngtags import camera_tags, rationals, valid_orientation
from .formats import EXTENSIONS, FORMATS
from .metadata import SOFTWARE, copy_metadata, with_metadata
from .tiffstrips import header_for_strips

OUTPUT_SUFFIX = "_lowlight"  # outputs are <stem>_lowlight<ext>, or <stem>_lowlight_<n><ext> beside an existing one
JPEG_QUALITY = 95
# Stops by which a DNG's pixels sit below the brightness the engine chose, written as its
# BaselineExposure. DNG readers that follow the specification (Adobe's) add BaselineExposure back;
# darktable ignores it but brightens every raw by its scene-referred default exposure, +0.7 EV
# (4.2 and 5.x, measured with darktable-cli: tests/test_plugin_darktable.py). Either way the
# photo opens at the engine's brightness, and highlights up to 2**0.7 × white stay in the file
# for darktable's filmic/sigmoid to roll off instead of clipping.
DNG_HEADROOM_EV = 0.7
_ROWS_PER_STRIP = 64  # DNG and TIFF: rows per strip, each converted and written on its own (no full-size codes in memory)
_ENCODE_LUT_BITS = 20  # linear → encoded lookup table size: error < ½ code of a 16-bit output
MAX_NAME_BYTES = 255  # NAME_MAX of Linux, macOS and Windows file systems


@dataclass
class OutputImage:
    """One enhanced photo, ready to write (:func:`write_output` with ``release_pixels`` drops its
    pixels, ``camera_rgb``, once they are written)."""

    camera_rgb: np.ndarray | None  # (H, W, 3) float16 or float32 linear camera RGB, not white balanced, 1.0 = white
    color: CameraColor  # white balance and XYZ → camera matrix of the source
    orientation: int  # EXIF orientation 1..8 of the source, written as a tag
    make: str
    camera_model: str
    source: Path  # the source RAW: its metadata is copied into the output
    ev: float = 0.0  # the exposure the engine applied, recorded in the processing note
    strength: float = 1.0  # the network's share of the result, recorded in the processing note
    linear_source: bool = False  # the source was a linear (LinearRaw) raw: its OpcodeList2 fits a DNG output


def output_path_for(source: Path, fmt: str, output_dir: Path | None = None, overwrite: bool = False) -> Path:
    """Where the output of ``source`` goes: ``<stem>_lowlight<ext>`` next to it or in ``output_dir``.

    Without ``overwrite`` an existing name is skipped for ``_lowlight_1``, ``_lowlight_2`` …;
    with it the plain name is returned. Never returns the source itself.
    """
    source = Path(source)
    ext = EXTENSIONS[_check_format(fmt)]
    folder = Path(output_dir) if output_dir is not None else source.parent
    candidate = folder / f"{source.stem}{OUTPUT_SUFFIX}{ext}"
    if len(os.fsencode(candidate.name)) + len("_9999") > MAX_NAME_BYTES:
        raise LowlightError(source, f"the output name would be longer than {MAX_NAME_BYTES} bytes; rename the file")
    counter = 0
    while True:
        if overwrite and _same_file(candidate, source):
            raise LowlightError(candidate, "output name is the source file itself; refusing to overwrite it")
        if overwrite or not (candidate.exists() or candidate.is_symlink()):
            return candidate
        counter += 1
        candidate = folder / f"{source.stem}{OUTPUT_SUFFIX}_{counter}{ext}"


def write_output(
    image: OutputImage,
    path: Path,
    fmt: str,
    *,
    linear_tiff: bool = False,
    space: str = "srgb",
    overwrite: bool = False,
    release_pixels: bool = False,
) -> Path:
    """Write ``image`` to ``path`` as ``fmt`` (``dng``, ``tiff`` or ``jpeg``) with the source's metadata.

    Raises :class:`LowlightError` naming ``path`` if it exists (and ``overwrite`` is false), is
    the source, or cannot be written; nothing is left behind on failure. Returns ``path``.
    ``release_pixels``: ``image.camera_rgb`` is set to ``None`` once the file is written, so that
    memory is free of them (where nothing else holds them) before the file is flushed to disk.
    """
    path = Path(path)
    _check_format(fmt)
    if space not in SPACES:
        raise LowlightError(path, f"unknown colour space {space!r} (choose from {', '.join(SPACES)})")

    def write(temp: Path) -> None:
        metadata = SourceMetadata(image.source, processing_note(image, fmt, linear_tiff, space),
                                  _format_exif(image, fmt, linear_tiff), fmt == "dng", image.linear_source)
        try:
            OUTPUT_FORMATS[fmt].write(image, temp, linear_tiff, space, metadata)
        except LowlightError as exc:
            if exc.path == temp:  # name the output the user asked for, not our temporary file
                raise LowlightError(path, exc.reason) from exc
            raise
        if release_pixels:
            image.camera_rgb = None

    return _write_new(path, image.source, write, overwrite)


def write_encoded(data: bytes, path: Path, source: Path, overwrite: bool = False) -> Path:
    """Write an output already encoded elsewhere (a cluster worker ran :func:`write_output`) to ``path``.

    The same rules as :func:`write_output`: never the source, never an existing file unless
    ``overwrite``, written under a temporary name, flushed and renamed, nothing left on failure.
    """
    return _write_new(Path(path), source, data, overwrite)


def _write_new(path: Path, source: Path, content: bytes | Callable[[Path], None], overwrite: bool) -> Path:
    """Write an output of ``source`` atomically (:func:`~lowlight_raw.files.atomic.write_atomically`): never
    the source itself, never over an existing file (even one that appears meanwhile) unless ``overwrite``."""
    if _same_file(path, source):
        raise LowlightError(path, "output is the source file itself; refusing to overwrite it")
    if not overwrite and (path.exists() or path.is_symlink()):
        raise LowlightError(path, "already exists (use overwrite to replace it)")
    if not path.parent.is_dir():
        raise LowlightError(path, "output folder does not exist")
    try:
        return write_atomically(path, content, placement="replace" if overwrite else "new")
    except FileExistsError as exc:
        raise LowlightError(path, "already exists (use overwrite to replace it)") from exc
    except OSError as exc:
        raise LowlightError(path, f"cannot write ({exc.strerror or exc})") from exc


def make_output_dir(folder: Path) -> None:
    """Create the output folder ``folder`` (and its parents); :class:`LowlightError` if impossible."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LowlightError(folder, f"cannot create output folder ({exc.strerror})") from exc


def processing_note(image: OutputImage, fmt: str, linear_tiff: bool = False, space: str = "srgb") -> str:
    """The one-line processing note recorded in the output's metadata."""
    rendering = OUTPUT_FORMATS[fmt].rendering(linear_tiff, space)
    return (
        f"Low-light enhanced by {SOFTWARE} from {os.fsencode(image.source.name).decode('utf-8', 'replace')}: "
        f"exposure {image.ev:+.2f} EV, SID-style network denoise at strength {image.strength:g}, {rendering}"
    )


def _format_exif(image: OutputImage, fmt: str, linear_tiff: bool) -> dict[str, str]:
    """EXIF tags that describe the written TIFF/JPEG image itself (EXIF requires them)."""
    if fmt == "dng":
        # darktable undoes a camera's exposure compensation found here; the engine's EV already did
        return {"Exif.Photo.ExposureBiasValue": "0/1"}
    height, width = image.camera_rgb.shape[:2]
    tags = {"Exif.Photo.ColorSpace": "65535" if linear_tiff else "1"}  # uncalibrated / sRGB
    if fmt == "jpeg":  # TIFF writes these into its own IFD0 / has no pixel dimensions in EXIF
        tags["Exif.Image.Orientation"] = str(valid_orientation(image.orientation))
        tags["Exif.Photo.PixelXDimension"] = str(width)
        tags["Exif.Photo.PixelYDimension"] = str(height)
        tags["Exif.Photo.ComponentsConfiguration"] = "1 2 3 0"  # Y Cb Cr
        tags["Exif.Image.YCbCrPositioning"] = "1"  # centred
    return tags


def _check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown output format {fmt!r} (choose from {', '.join(FORMATS)})")
    return fmt


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


# ---------------------------------------------------------------- metadata, and a TIFF in one pass


@dataclass(frozen=True)
class SourceMetadata:
    """What an output gets from its source besides the pixels: its metadata, and the processing
    note and tags of the output (:func:`~.metadata.copy_metadata`'s arguments)."""

    source: Path
    note: str
    extra: dict[str, str]
    dng_output: bool
    linear_source: bool

    def into_file(self, path: Path) -> None:
        """Into the written file ``path`` (exiv2 rewrites it)."""
        copy_metadata(self.source, path, self.note, self.extra, self.dng_output, self.linear_source)

    def into_tiff(self, stand_in: bytes, named: Path) -> bytes:
        """Into the bytes of a small TIFF (:mod:`.tiffstrips`); errors name ``named``."""
        return with_metadata(self.source, stand_in, named, self.note, self.extra, self.dng_output, self.linear_source)


def _write_tiff_file(path: Path, image: OutputImage, codes: Callable[[np.ndarray], np.ndarray], metadata: SourceMetadata,
                     **tags) -> None:
    """A TIFF or DNG of ``image``: its pixels as ``codes`` (uint16, three a pixel) of
    :data:`_ROWS_PER_STRIP` rows at a time, uncompressed strips, with ``tags`` (``tifffile.imwrite``'s
    arguments) and the source's ``metadata``, in one pass (:mod:`.tiffstrips`): a stand-in of one
    pixel a strip gets the tags and the metadata, then the strips follow it."""
    height, width, channels = image.camera_rgb.shape
    strips = _strips(image)
    stand_in = io.BytesIO()
    tifffile.imwrite(stand_in, np.zeros((len(strips), 1, channels), np.uint16), planarconfig="contig", rowsperstrip=1,
                     metadata=None, **tags)
    sizes = [len(range(height)[rows]) * width * channels * np.dtype(np.uint16).itemsize for rows in strips]
    try:
        header = header_for_strips(metadata.into_tiff(stand_in.getvalue(), path), height, width, _ROWS_PER_STRIP, sizes)
    except ValueError as exc:
        raise LowlightError(path, f"cannot write ({exc})") from exc
    with open(path, "wb") as handle:
        handle.write(header)
        for rows in strips:
            handle.write(np.ascontiguousarray(codes(image.camera_rgb[rows]), dtype=np.uint16).data)


# ---------------------------------------------------------------- DNG


def _write_dng(image: OutputImage, path: Path, metadata: SourceMetadata) -> None:
    scale = np.float32(2.0 ** -DNG_HEADROOM_EV)
    extratags = camera_tags(image.make, image.camera_model, image.color.cam_xyz, image.color.as_shot_neutral, image.orientation)
    extratags += [
        (50714, "I", 3, (0, 0, 0), True),  # BlackLevel, one per sample
        (50717, "I", 3, (65535, 65535, 65535), True),  # WhiteLevel, one per sample
        (50730, "2i", 1, rationals([DNG_HEADROOM_EV], 100), True),  # BaselineExposure: the headroom
        (50827, "B", 0, os.fsencode(image.source.name) + b"\0", True),  # OriginalRawFileName, bytes as on disk
    ]
    _write_tiff_file(path, image, lambda rgb: _quantise(rgb * scale, 65535, np.uint16), metadata,
                     photometric=34892, software=SOFTWARE, extratags=extratags)  # LinearRaw


# ---------------------------------------------------------------- TIFF and JPEG


def _write_tiff(image: OutputImage, path: Path, linear: bool, space: str, metadata: SourceMetadata) -> None:
    profile = linear_icc_profile(space) if linear else _srgb_icc_profile()
    space = space if linear else "srgb"
    _write_tiff_file(path, image, lambda rgb: _display_codes(rgb, image.color, 65535, np.uint16, space, not linear), metadata,
                     photometric="rgb", iccprofile=profile, software=SOFTWARE,
                     extratags=[(274, "H", 1, valid_orientation(image.orientation), True)])


def _write_jpeg(image: OutputImage, path: Path, metadata: SourceMetadata) -> None:
    codes = np.empty(image.camera_rgb.shape, np.uint8)  # the encoder takes the whole image: 8-bit codes, a quarter of the pixels' size
    for rows in _strips(image):
        codes[rows] = _display_codes(image.camera_rgb[rows], image.color, 255, np.uint8, "srgb", True)
    Image.fromarray(codes, "RGB").save(path, format="JPEG", quality=JPEG_QUALITY, icc_profile=_srgb_icc_profile())
    del codes
    metadata.into_file(path)  # a JPEG is small: exiv2 rewrites it


def _strips(image: OutputImage) -> list[slice]:
    """The image's rows, :data:`_ROWS_PER_STRIP` at a time: converted one strip after another, so
    that memory never holds more than a strip of the written codes and their temporaries."""
    height = image.camera_rgb.shape[0]
    return [slice(start, start + _ROWS_PER_STRIP) for start in range(0, height, _ROWS_PER_STRIP)]


def _display_codes(camera_rgb: np.ndarray, color: CameraColor, top: int, dtype, space: str, srgb_curve: bool) -> np.ndarray:
    """Camera RGB → white-balanced ``space`` RGB as codes 0..``top``, sRGB-encoded or (``srgb_curve`` false) linear."""
    linear = camera_to_linear(camera_rgb, color, space)
    return _srgb_codes(linear, top, dtype) if srgb_curve else _quantise(linear, top, dtype)


def _quantise(values: np.ndarray, top: int, dtype) -> np.ndarray:
    """Values in [0, 1] → integer codes 0..top, rounded."""
    scaled = np.multiply(values, np.float32(top), dtype=np.float32)
    np.clip(scaled, 0.0, top, out=scaled)
    scaled += np.float32(0.5)
    return scaled.astype(dtype)


def _srgb_codes(linear: np.ndarray, top: int, dtype) -> np.ndarray:
    """Linear values in [0, 1] → sRGB-encoded integer codes 0..top, through a lookup table."""
    size = 1 << _ENCODE_LUT_BITS
    return _srgb_table(top, np.dtype(dtype))[_quantise(linear, size - 1, np.uint32)]


@lru_cache(maxsize=2)
def _srgb_table(top: int, dtype: np.dtype) -> np.ndarray:
    """sRGB codes 0..top for ``2**_ENCODE_LUT_BITS`` evenly spaced linear values in [0, 1]."""
    return _quantise(srgb_encode(np.linspace(0.0, 1.0, 1 << _ENCODE_LUT_BITS, dtype=np.float32)), top, dtype)


def _srgb_icc_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


# ---------------------------------------------------------------- linear ICC profiles

_D50 = np.array([0.9642, 1.0, 0.8249])
_D65 = np.array([0.95047, 1.0, 1.08883])
_BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])
_SPACE_NAMES = {"srgb": "sRGB", "rec2020": "Rec. ITU-R BT.2020"}


def linear_icc_profile(space: str) -> bytes:
    """An ICC v2 display profile for *linear* (gamma 1.0) ``space`` RGB: D65 primaries adapted to D50."""
    to_d50 = np.linalg.inv(_BRADFORD) @ np.diag((_BRADFORD @ _D50) / (_BRADFORD @ _D65)) @ _BRADFORD
    primaries = to_d50 @ SPACES[space]  # columns: red, green, blue in the D50 PCS
    identity_curve = b"curv" + bytes(4) + struct.pack(">I", 0)
    tags = [
        (b"desc", _icc_desc(f"linear {_SPACE_NAMES[space]} (gamma 1.0, D65), {SOFTWARE}")),
        (b"cprt", b"text" + bytes(4) + b"No copyright, use freely\0"),
        (b"wtpt", _icc_xyz(_D50)),
        (b"rXYZ", _icc_xyz(primaries[:, 0])),
        (b"gXYZ", _icc_xyz(primaries[:, 1])),
        (b"bXYZ", _icc_xyz(primaries[:, 2])),
        (b"rTRC", identity_curve),
        (b"gTRC", identity_curve),
        (b"bTRC", identity_curve),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for signature, body in tags:
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body + bytes(-len(body) % 4)
    size = offset + len(data)
    header = (
        struct.pack(">I", size)
        + bytes(4)  # preferred CMM
        + struct.pack(">I", 0x02100000)  # version 2.1
        + b"mntrRGB XYZ "
        + struct.pack(">6H", 2026, 1, 1, 0, 0, 0)
        + b"acsp"
        + bytes(4 + 4 + 4 + 4 + 8 + 4)  # platform, flags, manufacturer, model, attributes, intent
        + _icc_xyz(_D50)[8:]  # PCS illuminant
        + bytes(4 + 16 + 28)  # creator, profile ID, reserved
    )
    return header + struct.pack(">I", len(tags)) + table + data


def _icc_xyz(xyz) -> bytes:
    return b"XYZ " + bytes(4) + struct.pack(">3i", *(int(round(v * 65536)) for v in xyz))


def _icc_desc(text: str) -> bytes:
    ascii_text = text.encode("ascii", "replace") + b"\0"
    return b"desc" + bytes(4) + struct.pack(">I", len(ascii_text)) + ascii_text + bytes(4 + 4 + 2 + 1 + 67)


@dataclass(frozen=True)
class OutputFormat:
    """How one output format (a name of :data:`.formats.FORMATS`) is written."""

    write: Callable[[OutputImage, Path, bool, str, SourceMetadata], None]  # (image, path, linear TIFF, colour space, metadata)
    rendering: Callable[[bool, str], str]  # the processing note's words for it (linear TIFF, colour space)


# A writer for every format of .formats.FORMATS (tests/test_writers.py holds the two equal).
OUTPUT_FORMATS: dict[str, OutputFormat] = {
    "dng": OutputFormat(lambda image, path, linear, space, metadata: _write_dng(image, path, metadata),
                        lambda linear, space: "linear camera RGB DNG"),
    "tiff": OutputFormat(_write_tiff, lambda linear, space: f"16-bit {'linear ' + space if linear else 'sRGB'} TIFF"),
    "jpeg": OutputFormat(lambda image, path, linear, space, metadata: _write_jpeg(image, path, metadata),
                         lambda linear, space: "sRGB JPEG"),
}
