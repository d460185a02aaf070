"""The DNG tags that describe a camera, shared by every DNG this project writes.

Both the enhanced LinearRaw output (:mod:`lowlight_raw.files.writers`) and the CFA test fixtures
(:mod:`lowlight_raw.testing.synthetic`) carry them, as tifffile ``extratags`` tuples.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

D65 = 21  # EXIF LightSource / DNG CalibrationIlluminant code


def rationals(values, denominator: int = 10000) -> tuple[int, ...]:
    """Flat ``(numerator, denominator, …)`` pairs for TIFF (S)RATIONAL tags."""
    out: list[int] = []
    for value in np.asarray(values, dtype=np.float64).ravel():
        fraction = Fraction(float(value)).limit_denominator(denominator)
        out += [fraction.numerator, fraction.denominator]
    return tuple(out)


def valid_orientation(value: int) -> int:
    """An EXIF/TIFF Orientation (1..8); anything else becomes 1 (as stored)."""
    return int(value) if 1 <= int(value) <= 8 else 1


def camera_tags(make: str, camera_model: str, cam_xyz: np.ndarray, as_shot_neutral, orientation: int) -> list[tuple]:
    """Main-image, version, camera identity and colour tags of a DNG 1.4 file.

    ``cam_xyz`` is the XYZ(D65) → camera matrix, written as ColorMatrix1 with
    CalibrationIlluminant1 = D65 (readers drop a matrix without its illuminant).
    """
    make = make or "Unknown"
    camera_model = camera_model or "Unknown"
    return [
        (254, "I", 1, 0, True),  # NewSubFileType: main image
        (271, "s", 0, make, True),
        (272, "s", 0, camera_model, True),
        (274, "H", 1, valid_orientation(orientation), True),
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50707, "B", 4, (1, 1, 0, 0), True),  # DNGBackwardVersion
        (50708, "s", 0, f"{make} {camera_model}", True),  # UniqueCameraModel
        (50721, "2i", 9, rationals(cam_xyz), True),  # ColorMatrix1: XYZ → camera
        (50778, "H", 1, D65, True),  # CalibrationIlluminant1
        (50728, "2I", 3, rationals(as_shot_neutral), True),  # AsShotNeutral
    ]
