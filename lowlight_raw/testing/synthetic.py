"""Real DNG files made from synthetic scenes: test fixtures, the bundled example, benchmarks.

:func:`write_cfa_dng` writes a CFA DNG (tifffile, DNG 1.4 tags) that LibRaw decodes like any
camera raw: any 2×2 Bayer or 6×6 X-Trans phase, per-position black levels, an ActiveArea with
masked (optical black) borders at odd or even offsets, EXIF and GPS tags.
:func:`write_linear_dng` writes a LinearRaw DNG (demosaiced camera RGB, as Adobe DNG Converter
or a phone writes them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile

from ..files.atomic import write_atomically
from ..files.dngtags import camera_tags
from ..layouts.base import COLOR_CODES, mosaic_from_rgb

# XYZ(D65) → camera matrix of a plausible camera (Sony-like), used when none is given.
DEFAULT_CAM_XYZ = np.array(
    [[0.6344, -0.1612, -0.0506], [-0.4412, 1.2143, 0.2455], [-0.0785, 0.1641, 0.6233]]
)


@dataclass
class DngSpec:
    """Everything :func:`write_cfa_dng` writes besides the pixels."""

    pattern: str = "RGGB"  # CFA phase at the top-left of the active area (row-major; 36 letters: X-Trans)
    black: tuple[int, int, int, int] = (512, 512, 512, 512)  # per position of the 2×2 CFA block
    white: int = 16383
    margins: tuple[int, int, int, int] = (0, 0, 0, 0)  # masked rows/cols: top, left, bottom, right
    make: str = "Lowlight"
    camera_model: str = "Synthetic Bayer"
    cam_xyz: np.ndarray = field(default_factory=lambda: DEFAULT_CAM_XYZ.copy())
    as_shot_neutral: tuple[float, float, float] = (0.5, 1.0, 0.62)
    orientation: int = 1
    exif: dict[str, str] = field(default_factory=dict)  # exiv2 keys → values, e.g. Exif.Photo.ISOSpeedRatings
    raw_tags: tuple = ()  # more tifffile extratags for the raw's IFD, e.g. OpcodeList3
    raw_in_subifd: bool = False  # Adobe DNG Converter's layout: IFD0 a small RGB preview, the raw in a SubIFD


def write_cfa_dng(path: Path, active: np.ndarray, spec: DngSpec, masked_value: np.ndarray | None = None) -> Path:
    """Write the ``(H, W)`` uint16 active-area mosaic ``active`` as a CFA DNG at ``path``.

    Masked borders (``spec.margins``) hold the black level plus ``masked_value`` noise (or just
    the black level). The black level tags are given relative to the active area's phase.
    """
    path = Path(path)
    top, left, bottom, right = spec.margins
    h, w = active.shape
    full_h, full_w = h + top + bottom, w + left + right
    black_full = _black_mosaic(full_h, full_w, spec.black, top, left)
    full = black_full.astype(np.int64)
    if masked_value is not None:
        full += np.rint(masked_value[:full_h, :full_w]).astype(np.int64)
    full[top : top + h, left : left + w] = active
    full = np.clip(full, 0, 65535).astype(np.uint16)
    cfa = bytes(COLOR_CODES[c] for c in spec.pattern)
    repeat = int(round(len(cfa) ** 0.5))  # 2 for Bayer; 6 writes an X-Trans-like file
    neutral = np.asarray(spec.as_shot_neutral, dtype=float)
    extratags = camera_tags(spec.make, spec.camera_model, spec.cam_xyz, neutral, spec.orientation)
    raw_tags = [
        (33421, "H", 2, (repeat, repeat), True),  # CFARepeatPatternDim
        (33422, "B", len(cfa), cfa, True),  # CFAPattern
        (50710, "B", 3, (0, 1, 2), True),  # CFAPlaneColor
        (50711, "H", 1, 1, True),  # CFALayout: rectangular
        (50713, "H", 2, (2, 2), True),  # BlackLevelRepeatDim
        (50714, "I", 4, tuple(int(b) for b in spec.black), True),  # BlackLevel
        (50717, "I", 1, int(spec.white), True),  # WhiteLevel
        (50829, "I", 4, (top, left, top + h, left + w), True),  # ActiveArea
        *spec.raw_tags,
    ]

    def write(temp: Path) -> None:
        with tifffile.TiffWriter(temp) as tif:
            if spec.raw_in_subifd:
                preview = np.zeros((max(1, full_h // 8), max(1, full_w // 8), 3), np.uint8)
                ifd0_tags = [tag for tag in extratags if tag[0] != 254]  # NewSubFileType: 1 here, set by subfiletype
                tif.write(preview, photometric="rgb", subfiletype=1, subifds=1, extratags=ifd0_tags, metadata=None)
                tif.write(full, photometric=32803, subfiletype=0, extratags=raw_tags, metadata=None)
            else:
                tif.write(full, photometric=32803, extratags=extratags + raw_tags, metadata=None)
        if spec.exif:
            _write_exif(temp, spec.exif)

    return write_atomically(path, write)


def write_linear_dng(path: Path, active: np.ndarray, spec: DngSpec) -> Path:
    """Write the ``(H, W, 3)`` uint16 camera RGB ``active`` as a LinearRaw DNG at ``path``.

    ``spec.black`` gives the black level of R, G and B (its first three values); no masked borders.
    """
    path = Path(path)
    h, w, _ = active.shape
    neutral = np.asarray(spec.as_shot_neutral, dtype=float)
    extratags = camera_tags(spec.make, spec.camera_model, spec.cam_xyz, neutral, spec.orientation)
    raw_tags = [
        (50713, "H", 2, (1, 1), True),  # BlackLevelRepeatDim
        (50714, "I", 3, tuple(int(b) for b in spec.black[:3]), True),  # BlackLevel, per sample
        (50717, "I", 3, (int(spec.white),) * 3, True),  # WhiteLevel, per sample
        (50829, "I", 4, (0, 0, h, w), True),  # ActiveArea
        *spec.raw_tags,
    ]

    def write(temp: Path) -> None:
        with tifffile.TiffWriter(temp) as tif:
            tif.write(np.ascontiguousarray(active, dtype=np.uint16), photometric=34892, planarconfig="contig",
                      extratags=extratags + raw_tags, metadata=None)
        if spec.exif:
            _write_exif(temp, spec.exif)

    return write_atomically(path, write)


def _black_mosaic(h: int, w: int, black: tuple[int, int, int, int], top: int, left: int) -> np.ndarray:
    """Per-pixel black level, its 2×2 pattern anchored at the active area's origin."""
    rows = (np.arange(h) - top) % 2
    cols = (np.arange(w) - left) % 2
    return np.asarray(black, dtype=np.int64).reshape(2, 2)[rows[:, None], cols[None, :]]


def _write_exif(path: Path, tags: dict[str, str]) -> None:
    import exiv2

    image = exiv2.ImageFactory.open(str(path))
    image.readMetadata()
    exif = image.exifData()
    for key, value in tags.items():
        exif[key] = value
    image.writeMetadata()


def test_scene(height: int, width: int) -> np.ndarray:
    """A linear camera-RGB scene ``(H, W, 3)`` in [0, 1]: a grey ramp and saturated patches.

    Top half: red, green, blue and mid-grey patches (left to right); bottom half: a horizontal
    grey ramp from 0.02 to 0.9. Values are camera RGB *before* white balance: a white-balanced
    neutral grey is ``g / neutral`` for the default neutral.
    """
    scene = np.zeros((height, width, 3), dtype=np.float32)
    half = height // 2
    quarter = max(width // 4, 1)
    neutral = np.asarray(DngSpec().as_shot_neutral, dtype=np.float32)
    patches = [
        np.array([0.6, 0.05, 0.05]),
        np.array([0.05, 0.6, 0.05]),
        np.array([0.05, 0.05, 0.6]),
        np.array([0.3, 0.3, 0.3]),
    ]
    for i, colour in enumerate(patches):
        scene[:half, i * quarter : (i + 1) * quarter if i < 3 else width] = colour * neutral
    ramp = np.linspace(0.02, 0.9, width, dtype=np.float32)
    scene[half:] = ramp[None, :, None] * neutral[None, None, :]
    return scene


test_scene.__test__ = False  # a scene for tests, not a test: keep pytest from collecting it


def dark_exposure(
    scene: np.ndarray,
    spec: DngSpec,
    ratio: float,
    a: float,
    b: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """A dark, noisy raw exposure of ``scene`` (linear, 1 = white): uint16 active-area mosaic.

    The scene is darkened by ``ratio`` and given Poisson-Gaussian noise ``Var = a·x + b`` on the
    normalised scale, then quantised with the black level added, like a sensor would.
    """
    x = _noisy(mosaic_from_rgb(scene, spec.pattern).astype(np.float64) / ratio, a, b, rng)
    return _to_dn(x, _black_mosaic(*x.shape, spec.black, 0, 0), spec.white)


def dark_linear_exposure(
    scene: np.ndarray,
    spec: DngSpec,
    ratio: float,
    a: float,
    b: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """What a converter makes of :func:`dark_exposure` on an RGGB sensor: the noisy mosaic
    demosaiced (bilinear), ``(H, W, 3)`` uint16 with ``spec.black[:3]`` added (even H and W)."""
    from ..layouts.linear import LinearLayout

    x = _noisy(mosaic_from_rgb(scene, "RGGB").astype(np.float64) / ratio, a, b, rng)
    rgb = LinearLayout.as_stored(x.astype(np.float32)).astype(np.float64)
    return _to_dn(rgb, np.asarray(spec.black[:3], dtype=np.float64), spec.white)


def _to_dn(x: np.ndarray, black: np.ndarray, white: int) -> np.ndarray:
    """Normalised values (0 = black, 1 = white) → uint16 sensor numbers, rounded and clipped."""
    return np.clip(np.rint(black + x * (white - black)), 0, white).astype(np.uint16)


def _noisy(x: np.ndarray, a: float, b: float, rng: np.random.Generator) -> np.ndarray:
    """Poisson-Gaussian noise ``Var = a·x + b`` on normalised values."""
    if a > 0:
        x = rng.poisson(np.maximum(x, 0) / a) * a
    return x + rng.normal(0.0, np.sqrt(b), size=x.shape)
