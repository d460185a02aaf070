"""How much to brighten: a manual EV, or one chosen from robust statistics of the mosaic."""

from __future__ import annotations

import math

import numpy as np

from ..layouts.base import SensorLayout
from .color import CameraColor

TARGET_MEAN = 0.15  # linear mean brightness of a "typical" well-exposed scene after white balance
HIGHLIGHT_PERCENTILE = 98.0  # at most this share of pixels may be pushed to clipping
MAX_EV = 10.0  # ×1024: beyond this, shot noise leaves nothing to recover


def auto_ev(packed: np.ndarray, color: CameraColor, layout: type[SensorLayout] | SensorLayout) -> float:
    """EV (≥ 0) that brings a dark scene to a natural brightness without blowing light sources.

    On the layout's white-balanced luminance proxy of the packed planes (subsampled): the gain
    that brings the mean of all but the brightest 2 % to :data:`TARGET_MEAN`, capped so the 98th
    percentile does not clip. Already-bright images get 0 EV (they are only denoised).
    """
    step = max(1, int(math.sqrt(packed[0].size / 250_000)))
    planes = np.stack([p[::step, ::step].astype(np.float32) for p in packed])
    luminance = layout.luminance(planes, color.wb).ravel()
    high = float(np.percentile(luminance, HIGHLIGHT_PERCENTILE))
    body = luminance[luminance <= high]
    mean = float(body.mean()) if body.size else high
    gain = min(TARGET_MEAN / max(mean, 1e-6), 1.0 / max(high, 1e-6))
    return float(np.clip(math.log2(max(gain, 1e-6)), 0.0, MAX_EV))
