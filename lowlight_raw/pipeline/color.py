"""Colour management: camera RGB → white-balanced linear sRGB / Rec.2020, and the sRGB curve.

The network outputs *camera* RGB (the sensor's own primaries, not white balanced). A
:class:`CameraColor` holds what LibRaw knows of the camera: the as-shot white-balance
multipliers and the XYZ(D65) → camera matrix (Adobe's ColorMatrix convention, as a DNG's
ColorMatrix1). The camera → output matrix is built the dcraw/LibRaw way: rows of
``cam_xyz · xyz_rgb`` normalised to sum 1 (so a white-balanced neutral stays neutral), inverted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

# Linear sRGB (D65) → XYZ, IEC 61966-2-1.
XYZ_FROM_SRGB = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
# Linear Rec.2020 (D65) → XYZ, ITU-R BT.2020.
XYZ_FROM_REC2020 = np.array(
    [[0.6369580, 0.1446169, 0.1688810], [0.2627002, 0.6779981, 0.0593017], [0.0, 0.0280727, 1.0609851]]
)
SPACES = {"srgb": XYZ_FROM_SRGB, "rec2020": XYZ_FROM_REC2020}


@dataclass(frozen=True)
class CameraColor:
    """As-shot white balance and the XYZ → camera matrix of one photo."""

    wb: np.ndarray  # (3,) multipliers for camera R, G, B; G = 1
    cam_xyz: np.ndarray  # (3, 3) XYZ(D65) → camera

    @staticmethod
    def from_libraw(camera_wb, daylight_wb, rgb_xyz_matrix) -> "CameraColor":
        """Build from rawpy's ``camera_whitebalance``, ``daylight_whitebalance``, ``rgb_xyz_matrix``.

        Falls back to daylight multipliers when the file records no as-shot white balance, and
        to sRGB primaries (identity colour) for a camera LibRaw has no matrix for.
        """
        wb = _normalised_wb(camera_wb)
        if wb is None:
            wb = _normalised_wb(daylight_wb)
        if wb is None:
            wb = np.ones(3)
        cam_xyz = np.asarray(rgb_xyz_matrix, dtype=np.float64)[:3, :3]
        if not np.isfinite(cam_xyz).all() or abs(np.linalg.det(cam_xyz)) < 1e-8:
            cam_xyz = np.linalg.inv(XYZ_FROM_SRGB)
        return CameraColor(wb=wb, cam_xyz=cam_xyz)

    def matrix_to(self, space: str = "srgb") -> np.ndarray:
        """(3, 3) white-balanced camera RGB → linear ``space`` RGB."""
        cam_rgb = self.cam_xyz @ SPACES[space]
        cam_rgb = cam_rgb / cam_rgb.sum(axis=1, keepdims=True)
        return np.linalg.inv(cam_rgb)

    @property
    def as_shot_neutral(self) -> np.ndarray:
        """The DNG AsShotNeutral: camera RGB of a neutral grey, G = 1."""
        return 1.0 / self.wb


def _normalised_wb(values) -> np.ndarray | None:
    v = np.asarray(values, dtype=np.float64)[:3]
    if v.shape != (3,) or not np.isfinite(v).all() or (v <= 0).any():
        return None
    return v / v[1]


def camera_to_linear(camera_rgb: np.ndarray, color: CameraColor, space: str = "srgb") -> np.ndarray:
    """``(..., 3)`` camera RGB → white-balanced linear ``space`` RGB, clipped to [0, 1], float32."""
    m = (color.matrix_to(space) * color.wb[None, :]).astype(np.float32)
    out = camera_rgb.astype(np.float32, copy=False) @ m.T
    return np.clip(out, 0.0, 1.0, out=out)


# The sRGB transfer curve (IEC 61966-2-1): linear below the knee, an offset power above it.
SRGB_KNEE_LINEAR = 0.0031308
SRGB_SLOPE = 12.92
SRGB_GAMMA = 2.4
SRGB_OFFSET = 0.055
SRGB_KNEE_ENCODED = SRGB_SLOPE * SRGB_KNEE_LINEAR  # 0.04045


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    """Linear values → sRGB-encoded, float32 (clipped to [0, 1] first)."""
    v = np.clip(linear, 0.0, 1.0)
    curve = (1.0 + SRGB_OFFSET) * np.power(v, 1.0 / SRGB_GAMMA) - SRGB_OFFSET
    return np.where(v <= SRGB_KNEE_LINEAR, SRGB_SLOPE * v, curve).astype(np.float32)


def srgb_decode(encoded: np.ndarray) -> np.ndarray:
    """sRGB-encoded values → linear (the inverse of :func:`srgb_encode`; clipped to [0, 1] first)."""
    v = np.clip(encoded, 0.0, 1.0)
    return np.where(v <= SRGB_KNEE_ENCODED, v / SRGB_SLOPE, ((v + SRGB_OFFSET) / (1.0 + SRGB_OFFSET)) ** SRGB_GAMMA)


def srgb_encode_torch(linear: "torch.Tensor") -> "torch.Tensor":
    """:func:`srgb_encode` for tensors, differentiable (the training loss renders through it)."""
    v = linear.clamp(0.0, 1.0)
    curve = (1.0 + SRGB_OFFSET) * v.clamp_min(SRGB_KNEE_LINEAR).pow(1.0 / SRGB_GAMMA) - SRGB_OFFSET
    return curve.where(v > SRGB_KNEE_LINEAR, SRGB_SLOPE * v)


def srgb_decode_torch(encoded: "torch.Tensor") -> "torch.Tensor":
    """:func:`srgb_decode` for tensors."""
    v = encoded.clamp(0.0, 1.0)
    curve = ((v.clamp_min(SRGB_KNEE_ENCODED) + SRGB_OFFSET) / (1.0 + SRGB_OFFSET)).pow(SRGB_GAMMA)
    return curve.where(v > SRGB_KNEE_ENCODED, v / SRGB_SLOPE)
