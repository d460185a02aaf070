"""Unprocessing sRGB photos into clean linear camera RGB and Bayer mosaics.

After Brooks et al., "Unprocessing Images for Learned Raw Denoising" (CVPR 2019): undo the
tone curve (inverse smoothstep), the sRGB transfer curve, a randomly sampled camera colour
matrix and random white-balance / brightness gains. The result is what a sensor would have
recorded (normalised raw scale, not white balanced); :func:`lowlight_raw.layouts.base.mosaic_from_rgb`
samples it in a CFA phase. The sampled :class:`CameraColor` renders it back with :mod:`lowlight_raw.pipeline.color`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..pipeline.color import XYZ_FROM_SRGB, CameraColor, camera_to_linear, srgb_decode, srgb_encode

# XYZ(D65) → camera matrices (Adobe DNG ColorMatrix convention) of four real cameras, the
# set Brooks et al. mix; a random convex combination gives a plausible new camera.
CAMERA_XYZ_MATRICES = np.array(
    [
        [[1.0234, -0.2969, -0.2266], [-0.5625, 1.6328, -0.0469], [-0.0703, 0.2188, 0.6406]],
        [[0.4913, -0.0541, -0.0202], [-0.6130, 1.3513, 0.2906], [-0.1564, 0.2151, 0.7183]],
        [[0.8380, -0.2630, -0.0639], [-0.2887, 1.0725, 0.2496], [-0.0627, 0.1427, 0.5438]],
        [[0.6596, -0.2079, -0.0562], [-0.4782, 1.3016, 0.1933], [-0.0970, 0.1581, 0.5181]],
    ]
)


@dataclass(frozen=True)
class UnprocessParams:
    """The random camera a photo is unprocessed into."""

    color: CameraColor  # white balance and XYZ → camera matrix used to render it back
    brightness: float  # the linear image was divided by this (> 0)


def sample_params(rng: np.random.Generator) -> UnprocessParams:
    """A random camera: mixed colour matrix, red/blue WB gains, brightness gain (Brooks et al.)."""
    weights = rng.uniform(1e-8, 1.0, size=len(CAMERA_XYZ_MATRICES))
    cam_xyz = np.tensordot(weights / weights.sum(), CAMERA_XYZ_MATRICES, axes=1)
    wb = np.array([rng.uniform(1.9, 2.4), 1.0, rng.uniform(1.5, 1.9)])
    brightness = float(np.clip(1.0 / rng.normal(0.8, 0.1), 1.0, 2.0))
    return UnprocessParams(color=CameraColor(wb=wb, cam_xyz=cam_xyz), brightness=brightness)


def inverse_smoothstep(y: np.ndarray) -> np.ndarray:
    """Inverse of the tone curve ``3x² − 2x³`` that Brooks et al. assume photos went through."""
    y = np.clip(y, 0.0, 1.0)
    return 0.5 - np.sin(np.arcsin(1.0 - 2.0 * y) / 3.0)


def camera_matrix_from_srgb(color: CameraColor) -> np.ndarray:
    """(3, 3) linear sRGB → white-balanced camera RGB: the inverse of ``color.matrix_to("srgb")``."""
    cam_rgb = color.cam_xyz @ XYZ_FROM_SRGB
    return cam_rgb / cam_rgb.sum(axis=1, keepdims=True)


def unprocess(srgb: np.ndarray, params: UnprocessParams, tone_curve: bool = True) -> np.ndarray:
    """``(H, W, 3)`` sRGB in [0, 1] → ``(H, W, 3)`` float32 linear camera RGB in [0, 1]."""
    rgb = inverse_smoothstep(srgb) if tone_curve else np.clip(srgb, 0.0, 1.0)
    linear = srgb_decode(rgb) / params.brightness
    camera_wb = linear @ camera_matrix_from_srgb(params.color).T
    camera = camera_wb / params.color.wb[None, None, :]
    return np.clip(camera, 0.0, 1.0).astype(np.float32)


def render_srgb(camera_rgb: np.ndarray, color: CameraColor) -> np.ndarray:
    """Camera RGB ``(H, W, 3)`` → sRGB-encoded ``(H, W, 3)``: the product's colour pipeline."""
    return srgb_encode(camera_to_linear(camera_rgb, color, "srgb"))
