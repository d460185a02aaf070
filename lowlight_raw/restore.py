"""How much network a photo gets: a little for a clean one, all of it for a noisy one.

The network is trained to rescue dark, noisy raws; on a clean, well-exposed photo it alone
softens detail that a good classical rendering keeps (``bench/no_harm.py``). So the result is a
blend, ``share · network + (1 − share) · clean rendering``, where ``share`` follows the noise the
amplified photo has at mid-grey, ``σ = sqrt(gain·a·0.18 + gain²·b)``: the layout's
``clean_network_share`` until the log-linear ramp from 0 at :data:`NETWORK_FROM_SIGMA` to 1 at the
layout's ``full_network_sigma`` passes it. The clean rendering is the layout's
(:meth:`~lowlight_raw.layouts.SensorLayout.clean_rgb`: Bayer: an edge-directed demosaic on
white-balanced planes; X-Trans: a colour-difference demosaic; linear RGB: the file's own pixels).
The two err differently (aliasing and noise against softness), so even a clean photo is better
with some of the network: on BSDS500's validation photos (``bench/blend.py``, which chose each
layout's settings) 0.15 of it takes clean Bayer raws from 35.74 to 36.17 dB, and the ramp
reaching 1 at σ = 0.03 rather than 0.02 takes ×1–×10 from 30.13 to 30.55 dB.

The engine and the evaluation both call :func:`restore`, so what is scored is what users get.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .layouts import SensorLayout
from .noise import NoiseProfile
from .tiling import DEFAULT_TILE, run_tiled

MID_GREY = 0.18  # the signal level (linear, after the gain) the noise is judged at
NETWORK_FROM_SIGMA = 0.004  # the network's share ramps up from this noise sigma at mid-grey
# The clean rendering is made in bands of packed rows, each with this context above and below
# (even: an X-Trans band then starts on the same kind of cell row as the image; at least each
# clean rendering's reach: Bayer 5 px = 3 packed rows, X-Trans 15 px = 5).
CLEAN_BAND = 256
CLEAN_HALO = 8


def network_share(profile: NoiseProfile, gain: float, layout: type[SensorLayout] | SensorLayout) -> float:
    """The network's share (the ``layout``'s ``clean_network_share`` … 1) of the result for a raw of
    noise ``profile`` amplified by ``gain``."""
    amplified = profile.amplified(gain)
    sigma = math.sqrt(max(amplified.a * MID_GREY + amplified.b, 1e-20))
    position = math.log(sigma / NETWORK_FROM_SIGMA) / math.log(layout.full_network_sigma / NETWORK_FROM_SIGMA)
    return float(min(max(position, layout.clean_network_share), 1.0))


def restore(
    network: nn.Module,
    inputs: np.ndarray,
    layout: type[SensorLayout] | SensorLayout,
    profile: NoiseProfile,
    gain: float,
    wb: np.ndarray,
    device: torch.device,
    tile: int = DEFAULT_TILE,
    should_cancel: Callable[[], bool] | None = None,
    on_progress: Callable[[float], None] | None = None,
    bf16: bool = True,
) -> tuple[np.ndarray, float]:
    """Network input ``(2C, h, w)`` → ``(s·h, s·w, 3)`` float32 camera RGB of the packed area, and
    the network's share in it (:func:`network_share`). A share of 0 (a clean linear raw) skips the
    network altogether, a share of 1 the clean rendering. The tiling arguments go to :func:`run_tiled`."""
    share = network_share(profile, gain, layout)
    if share == 0.0:
        if on_progress is not None:
            on_progress(1.0)
        return blend_clean_rendering(None, 0.0, inputs, layout, wb), share
    full = run_tiled(network, inputs, device, tile=tile, should_cancel=should_cancel, on_progress=on_progress, bf16=bf16)
    if share < 1.0:
        full = blend_clean_rendering(full, share, inputs, layout, wb)
    return full, share


def blend_clean_rendering(full: np.ndarray | None, share: float, inputs: np.ndarray,
                          layout: type[SensorLayout] | SensorLayout, wb: np.ndarray) -> np.ndarray:
    """``share · full + (1 − share) · clean rendering`` of the packed planes in ``inputs``, in place
    in ``full`` (``None``: the clean rendering alone). Made :data:`CLEAN_BAND` packed rows at a time,
    each with :data:`CLEAN_HALO` rows of context, so that a 24 MP photo never holds more than a band
    of the classical demosaic's intermediates; the result is the whole-image rendering's."""
    planes = inputs[: layout.channels]
    height, scale = planes.shape[1], layout.scale
    alone = full is None
    if alone:
        full = np.empty((scale * height, scale * planes.shape[2], 3), dtype=np.float32)
    for top in range(0, height, CLEAN_BAND):
        bottom, low = min(top + CLEAN_BAND, height), max(top - CLEAN_HALO, 0)
        band = torch.from_numpy(np.clip(planes[None, :, low : min(bottom + CLEAN_HALO, height)], 0.0, 1.0))
        rendering = layout.clean_rgb(band, wb)[0].permute(1, 2, 0).numpy()[(top - low) * scale : (bottom - low) * scale]
        rows = full[top * scale : bottom * scale]
        if alone:
            rows[...] = rendering
        else:
            rows *= share
            rows += (1.0 - share) * rendering
    return full
