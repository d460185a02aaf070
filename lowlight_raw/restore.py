"""How much network a photo gets: none for a clean one, all of it for a noisy one.

The network is trained to rescue dark, noisy raws; on a clean, well-exposed photo it softens
detail that a good classical demosaic keeps (``bench/no_harm.py``). So the result is a blend,
``share · network + (1 − share) · clean rendering``, where ``share`` follows the noise the
amplified photo has at mid-grey, ``σ = sqrt(gain·a·0.18 + gain²·b)``: 0 up to
:data:`NETWORK_FROM_SIGMA`, 1 from :data:`NETWORK_FULL_SIGMA`, log-linear in between. The clean
rendering is the layout's (:meth:`~lowlight_raw.layouts.SensorLayout.clean_rgb`: Bayer: the
Malvar–He–Cutler demosaic on white-balanced planes; X-Trans: a colour-difference demosaic;
linear RGB: the file's own pixels). Measured on sharp Bayer raws (scikit-image photos, ``a`` =
1e-4, gains 1–16): the classical demosaic is 0.5–3 dB better up to σ ≈ 0.005, they cross at
σ ≈ 0.006–0.009, and at σ ≈ 0.013 the network is 2–5 dB better; on X-Trans raws likewise.

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
NETWORK_FROM_SIGMA = 0.004  # below this noise sigma at mid-grey: no network
NETWORK_FULL_SIGMA = 0.010  # from this one on: the network alone


def network_share(profile: NoiseProfile, gain: float) -> float:
    """The network's share (0…1) of the result for a raw of noise ``profile`` amplified by ``gain``."""
    amplified = profile.amplified(gain)
    sigma = math.sqrt(max(amplified.a * MID_GREY + amplified.b, 1e-20))
    position = math.log(sigma / NETWORK_FROM_SIGMA) / math.log(NETWORK_FULL_SIGMA / NETWORK_FROM_SIGMA)
    return float(min(max(position, 0.0), 1.0))


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
    the network's share in it (:func:`network_share`). A share of 0 skips the network altogether,
    a share of 1 the clean rendering. The tiling arguments go to :func:`run_tiled`."""
    share = network_share(profile, gain)
    if share < 1.0:
        clean = layout.clean_rgb(torch.from_numpy(np.clip(inputs[None, : layout.channels], 0.0, 1.0)), wb)
    if share == 0.0:
        if on_progress is not None:
            on_progress(1.0)
        return clean[0].permute(1, 2, 0).numpy(), share
    full = run_tiled(network, inputs, device, tile=tile, should_cancel=should_cancel, on_progress=on_progress, bf16=bf16)
    if share < 1.0:
        full = share * full + (1.0 - share) * clean[0].permute(1, 2, 0).numpy()
    return full, share
