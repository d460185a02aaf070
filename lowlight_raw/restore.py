"""How much network a photo gets: a little for a clean one, all of it for a noisy one.

The network is trained to rescue dark, noisy raws; on a clean, well-exposed photo it alone
softens detail that a good classical rendering keeps (``bench/no_harm.py``). So the result is a
blend, ``share · network + (1 − share) · clean rendering``, where ``share`` follows the noise the
amplified photo has at mid-grey, ``σ = sqrt(gain·a·0.18 + gain²·b)``: the layout's
``clean_network_share`` until the log-linear ramp from 0 at :data:`NETWORK_FROM_SIGMA` to 1 at the
layout's ``full_network_sigma`` passes it. The clean rendering is the layout's
(:meth:`~lowlight_raw.layouts.SensorLayout.clean_rgb`: Bayer: an edge-directed demosaic on
white-balanced planes; X-Trans: an iterated colour-difference demosaic; linear RGB: the file's own
pixels).
The two err differently (aliasing and noise against softness), so even a clean photo is better
with some of the network: on BSDS500's validation photos (``bench/blend.py``, which chose each
layout's settings) 0.15 of it takes clean Bayer raws from 35.74 to 36.17 dB, and the ramp
reaching 1 at σ = 0.03 rather than 0.02 takes ×1–×10 from 30.13 to 30.55 dB.

A photo the network takes alone leaves it with low-frequency colour blotches; their chroma is
smoothed by a filter that the photo's own colours guide (:func:`smooth_chroma`), which keeps
colour edges (``bench/chroma.py``).

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
    else:
        smooth_chroma(full, wb)
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


def smooth_chroma(rgb: np.ndarray, wb: np.ndarray) -> np.ndarray:
    """In place: the chroma of camera RGB ``rgb (H, W, 3)`` smoothed by a guided filter (He, Sun &
    Tang) that the photo's own colours guide: in each window, chroma is fitted as a linear function
    of the white-balanced RGB, whose regularisation (:data:`CHROMA_EPS`) is above the network's
    left-over colour noise and below real colour edges, so the low-frequency colour blotches go and
    edges stay, between colours of equal luminance too; the luminance is kept. Luminance is the
    mean of the white-balanced channels, chroma each one's difference from it. The fit is made on
    :data:`CHROMA_SUBSAMPLE`² block means and upsampled (He & Sun's fast variant), and
    :data:`CHROMA_BAND` rows at a time with the filter's reach above and below, the result the
    whole image's. For a noisy photo only (the network alone): on a clean one it blurs real colour
    detail (``bench/chroma.py``)."""
    gains = torch.tensor(np.asarray(wb, dtype=np.float32)).view(1, 3, 1, 1)
    height = rgb.shape[0]
    reach = CHROMA_SUBSAMPLE * (2 * CHROMA_RADIUS + 2)  # two window means, the bilinear upsampling, rounding
    above = rgb[:0].copy()  # the original rows just above the current band (already overwritten)
    for top in range(0, height, CHROMA_BAND):
        bottom, high = min(top + CHROMA_BAND, height), min(top + CHROMA_BAND + reach, height)
        offset = len(above)
        balanced = torch.from_numpy(np.concatenate([above, rgb[top:high]]))[None].permute(0, 3, 1, 2) * gains
        slopes, shifts = _guided_coefficients(torch.nn.functional.avg_pool2d(balanced, CHROMA_SUBSAMPLE, ceil_mode=True))
        size = balanced.shape[-2:]
        slopes, shifts = (torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
                          for x in (slopes, shifts))
        red_blue = shifts  # chroma of red and of blue: the fitted linear function of the guide
        for guide in range(3):
            red_blue.addcmul_(slopes[:, 2 * guide : 2 * guide + 2], balanced[:, guide : guide + 1])
        luminance = balanced.mean(1, keepdim=True)
        green = luminance - red_blue.sum(1, keepdim=True)  # the three chroma sum to zero
        smoothed = torch.cat([luminance + red_blue[:, :1], green, luminance + red_blue[:, 1:]], dim=1) / gains
        above = rgb[max(bottom - reach, 0) : bottom].copy()
        rgb[top:bottom] = smoothed[0, :, offset : offset + bottom - top].permute(1, 2, 0).numpy()
    return rgb


CHROMA_SUBSAMPLE = 4  # the fit is made on 4 × 4 block means
CHROMA_RADIUS = 2  # block means: windows of 5 × 5 of them, 20 × 20 px (bench/chroma.py)
CHROMA_EPS = 1e-3  # regularisation of the fit, in squared white-balanced linear units (bench/chroma.py)
CHROMA_BAND = 512  # rows; like the reach, a multiple of the subsampling, so bands share the whole image's grid


def _guided_coefficients(small: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For white-balanced block means ``small (1, 3, h, w)``: the guided filter's coefficients of the
    red and blue chroma, already averaged over the windows holding each pixel: ``slopes (1, 6, h,
    w)`` (guide channel ``g``'s slopes at ``2g``, ``2g + 1``) and ``shifts (1, 2, h, w)``."""
    chroma = small[:, 0::2] - small.mean(1, keepdim=True)  # red and blue
    pairs = [(i, j) for i in range(3) for j in range(i, 3)]
    means = _window_mean(torch.cat([small, chroma] + [small[:, i : i + 1] * small[:, j : j + 1] for i, j in pairs]
                                   + [small[:, i : i + 1] * chroma[:, k : k + 1] for i in range(3) for k in range(2)], dim=1))
    mean_guide, mean_chroma = means[:, :3], means[:, 3:5]
    _, _, h, w = small.shape
    covariance = torch.empty(h, w, 3, 3)
    for n, (i, j) in enumerate(pairs):
        covariance[..., i, j] = covariance[..., j, i] = means[0, 5 + n] - mean_guide[0, i] * mean_guide[0, j]
    cross = (means[0, 11:17].view(3, 2, h, w) - mean_guide[0, :, None] * mean_chroma[0, None]).permute(2, 3, 0, 1)
    slopes = torch.linalg.solve(covariance + CHROMA_EPS * torch.eye(3), cross)  # (h, w, 3 guide, 2 chroma)
    shifts = mean_chroma - torch.einsum("hwgk,ghw->khw", slopes, mean_guide[0])[None]
    return _window_mean(torch.cat([slopes.permute(2, 3, 0, 1).reshape(1, 6, h, w), shifts], dim=1)).split([6, 2], dim=1)


def _window_mean(planes: torch.Tensor) -> torch.Tensor:
    """The mean over each pixel's (2·:data:`CHROMA_RADIUS` + 1)² window, of the pixels inside (rows, then columns)."""
    size, radius = 2 * CHROMA_RADIUS + 1, CHROMA_RADIUS
    rows = torch.nn.functional.avg_pool2d(planes, (1, size), stride=1, padding=(0, radius), count_include_pad=False)
    return torch.nn.functional.avg_pool2d(rows, (size, 1), stride=1, padding=(radius, 0), count_include_pad=False)
