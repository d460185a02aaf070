"""Blind graphs: a trained network that measures its tile's gain and noise itself.

darktable hands a raw-denoise graph one tile, ``(raw − black) / (white − black)`` (Bayer: packed
R, G1, G2, B; linear: the demosaiced RGB), and nothing else. Our networks want the amplified
planes and the per-pixel noise sigma of the amplified raw (:mod:`lowlight_raw.pipeline.network_input`), so
the graph works both out from the tile, with the engine's own rules:

* **gain**: :func:`lowlight_raw.pipeline.exposure.auto_ev` on the tile: the mean of all but the brightest
  2 % of its luminance (here of 4 × 4 packed-pixel means, without white balance) brought to the
  engine's target brightness, capped so that the brightest 2 % stay below :data:`HEADROOM`,
  between ×1 and ×2^MAX_EV;
* **noise**: :func:`lowlight_raw.pipeline.noise.estimate_profile`'s measurement, as fixed tensor ops: the
  layout's green noise residual (a green pixel against its green neighbours, in which every
  quadratic scene cancels) in 8 × 8 blocks, each block's ``a`` solved for from its variance with
  ``b`` tied to ``a`` as darktable's camera profiles have it, and of the blocks without clipped
  highlights the flattest 10 % decide (corrected by what that quantile gives on pure noise);
* **network share**: :func:`lowlight_raw.pipeline.restore.network_share` of that profile and gain (with
  the ramp chosen for a partner that is not denoised: :data:`BLIND_SHARE`), blended
  with each site's own value (what the engine's clean rendering keeps at a sampled site), so a
  clean tile keeps its detail;
* **highlights**: where the network's (amplified, denoised) result reaches :data:`HIGHLIGHT_FROM`
  and beyond (the amplified input clipped there), the output fades to the tile's own values:
  darktable writes the result back un-amplified, so a lamp keeps its level. (Judged on the
  network's result, not the noisy input, whose noise alone reaches it at ×300.)

The output is the network's camera RGB divided by the gain: on the input's own scale, so the
package declares ``output_scale: absolute`` (:mod:`.package` says why not ``match_gain``).
Everything depends on the tile alone. Neighbouring tiles estimate nearly the same noise, but their
gains differ with their brightness, and a gain that pushes more of a tile into clipping changes the
network's result most: hence :data:`HEADROOM`, with which the result where darktable's tiles meet
differs from a tiling that meets elsewhere by 15 % of the noise left (``tests/test_dtmodel.py``).
Mirroring the tile out for the network (as the engine mirrors an image's edges) changed that by
less than 10 %, at 27 % more computation, so the graph does not.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..layouts.base import SensorLayout
from ..pipeline.exposure import HIGHLIGHT_PERCENTILE, MAX_EV, TARGET_MEAN
from ..pipeline.noise import ESTIMATE_BLOCK, LOG_B_FIT, LOW_QUANTILE
from ..pipeline.restore import MID_GREY

HIGHLIGHT_FROM = 0.8  # amplified level from which the output fades to the tile's own values (reached at 1)
LUMINANCE_POOL = 4  # the gain's statistics are taken on means of 4 × 4 packed pixels
CLIPPED_LEVEL = 0.95  # a block whose green reaches this is not used for the noise estimate
HEADROOM = 0.5  # the brightest 2 % of a tile are amplified to at most this (clipping at 1 changes the result)
LOG_A_RANGE = (math.log(1e-9), math.log(1e-1))  # where each block's shot-noise slope is searched
BISECTIONS = 30  # halvings of that range: a to 1e-8 relative
_ABS_TO_VARIANCE = math.pi / 2  # (mean |r|)² · π/2 is σ² for Gaussian r


def quincunx_residual(centre: torch.Tensor, diagonal: torch.Tensor, down_left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`lowlight_raw.layouts.base.quincunx_residual` for ``(N, 1, h, w)`` tensors: the noise
    residual of two green planes on a quincunx and the green level there, ``(N, 1, h − 2, w − 2)``."""
    h, w = int(centre.shape[-2]) - 2, int(centre.shape[-1]) - 2
    left = 1 if down_left else 0
    box = 0.25 * (diagonal[..., :h, left : left + w] + diagonal[..., :h, left + 1 : left + w + 1]
                  + diagonal[..., 1 : h + 1, left : left + w] + diagonal[..., 1 : h + 1, left + 1 : left + w + 1])
    middle = centre[..., 1:-1, 1:-1]
    neighbours = centre[..., :-2, 1:-1] + centre[..., 2:, 1:-1] + centre[..., 1:-1, :-2] + centre[..., 1:-1, 2:]
    return (middle + 0.25 * neighbours - 2.0 * box) / 1.5, 0.5 * (middle + box)


def block_variances(residual: torch.Tensor) -> torch.Tensor:
    """Each :data:`~lowlight_raw.pipeline.noise.ESTIMATE_BLOCK`² block's noise variance from its residual
    ``(N, 1, h, w)`` → ``(N, blocks)`` (from the mean absolute value: robust, and cheap in a graph)."""
    return (F.avg_pool2d(residual.abs(), ESTIMATE_BLOCK) ** 2 * _ABS_TO_VARIANCE).flatten(1)


@lru_cache(maxsize=8)
def low_quantile_ratio(layout: type[SensorLayout], side: int) -> float:
    """The :data:`~lowlight_raw.pipeline.noise.LOW_QUANTILE` of :func:`block_variances` of unit white noise
    through ``layout``'s green residual on a ``side``-packed-pixel tile, ÷ 1: what the flattest
    blocks of pure noise read (measured, as neighbouring residuals share pixels)."""
    noise = torch.from_numpy(np.random.default_rng(0).normal(size=(16, layout.channels, side, side)).astype(np.float32))
    residual, _ = green_residual(layout, noise)
    return float(torch.quantile(block_variances(residual), LOW_QUANTILE, dim=1).mean())


def green_residual(layout: type[SensorLayout], planes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The noise residual and green level of packed ``planes`` ``(N, C, h, w)`` of ``layout`` (its
    :meth:`~lowlight_raw.layouts.base.SensorLayout.noise_residual`, as tensor ops): Bayer's G1 against
    G2; for linear RGB the diagonal pair of greens that differs more (the measured one)."""
    if layout.kind == "bayer":
        return quincunx_residual(planes[:, 1:2], planes[:, 2:3], down_left=True)
    if layout.kind == "linear":
        first = quincunx_residual(planes[:, 5:6], planes[:, 6:7], down_left=True)  # pixels (0, 1) / (1, 0)
        second = quincunx_residual(planes[:, 4:5], planes[:, 7:8], down_left=False)  # pixels (0, 0) / (1, 1)
        spread = [(c - d)[..., ::4, ::4].abs().mean(dim=(1, 2, 3), keepdim=True)
                  for c, d in ((planes[:, 5:6], planes[:, 6:7]), (planes[:, 4:5], planes[:, 7:8]))]
        use_first = spread[0] >= spread[1]
        return torch.where(use_first, first[0], second[0]), torch.where(use_first, first[1], second[1])
    raise ValueError(f"no blind graph for {layout.label} planes")


def read_variance(a: torch.Tensor) -> torch.Tensor:
    """:func:`lowlight_raw.pipeline.noise.read_variance_for` of a tensor of slopes."""
    return torch.exp(LOG_B_FIT[0] * torch.log(a) + LOG_B_FIT[1])


def block_slopes(level: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """Per block, the ``a`` for which ``a·level + read_variance(a)`` equals ``variance`` (bisection
    in log a: the left side grows with a)."""
    level = level.clamp_min(0.0)
    lo = torch.full_like(variance, LOG_A_RANGE[0])
    hi = torch.full_like(variance, LOG_A_RANGE[1])
    for _ in range(BISECTIONS):
        mid = 0.5 * (lo + hi)
        below = torch.exp(mid) * level + torch.exp(LOG_B_FIT[0] * mid + LOG_B_FIT[1]) < variance
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return torch.exp(0.5 * (lo + hi))


def estimate_slope(layout: type[SensorLayout], planes: torch.Tensor, ratio: float) -> torch.Tensor:
    """The shot-noise slope ``a`` ``(N, 1, 1, 1)`` of packed normalised ``planes`` (un-amplified);
    ``ratio``: :func:`low_quantile_ratio` for their size."""
    residual, level = green_residual(layout, planes)
    variance = block_variances(residual) / ratio
    mean_level = F.avg_pool2d(level, ESTIMATE_BLOCK).flatten(1)
    usable = F.max_pool2d(level, ESTIMATE_BLOCK).flatten(1) < CLIPPED_LEVEL
    slopes = torch.where(usable, block_slopes(mean_level, variance), torch.ones_like(variance))  # unusable: last
    k = max(1, round(LOW_QUANTILE * int(slopes.shape[1])))
    return torch.topk(slopes, k, dim=1, largest=False).values[:, -1:].reshape(-1, 1, 1, 1)


def tile_gain(luminance: torch.Tensor) -> torch.Tensor:
    """:func:`lowlight_raw.pipeline.exposure.auto_ev`'s gain (not its EV) for a tile's luminance ``(N, 1, h, w)``
    → ``(N, 1, 1, 1)``."""
    small = F.avg_pool2d(luminance, LUMINANCE_POOL).flatten(1)
    k = max(1, round((1.0 - HIGHLIGHT_PERCENTILE / 100.0) * int(small.shape[1])))
    high = torch.topk(small, k, dim=1).values[:, -1:]
    body = (small <= high).to(small.dtype)
    mean = (small * body).sum(dim=1, keepdim=True) / body.sum(dim=1, keepdim=True).clamp_min(1.0)
    gain = torch.minimum(TARGET_MEAN / mean.clamp_min(1e-6), HEADROOM / high.clamp_min(1e-6))
    return gain.clamp(1.0, 2.0**MAX_EV).reshape(-1, 1, 1, 1)


# The graph's network share: (clean share, ramp from σ, full network from σ) per layout. The graph's
# partner is each site's own, noisy value, not the engine's denoised clean rendering, so it keeps the
# ramp bench/blend.py chose for an undenoised partner (the engine's since moved: restore.network_share).
BLIND_SHARE = {"bayer": (0.15, 0.004, 0.03), "linear": (0.0, 0.004, 0.01)}


def network_share(layout: type[SensorLayout], a: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """:func:`lowlight_raw.pipeline.restore.network_share` of tensors (``b`` tied to ``a``), with the
    ramp of :data:`BLIND_SHARE`."""
    clean_share, start, full = BLIND_SHARE[layout.kind]
    sigma = torch.sqrt((gain * a * MID_GREY + gain * gain * read_variance(a)).clamp_min(1e-20))
    position = torch.log(sigma / start) / math.log(full / start)
    return position.clamp(clean_share, 1.0)


def own_site_rgb(packed: torch.Tensor) -> torch.Tensor:
    """Bayer planes ``(N, 4, h, w)`` → ``(N, 3, 2h, 2w)`` RGB at every site whose own colour is
    exactly the site's value (R and B repeated, the green sites their own green, the red and blue
    sites the mean of the greens): what darktable's re-mosaic keeps of a rendering that changes nothing."""
    r, g1, g2, b = packed.unbind(1)
    g = 0.5 * (g1 + g2)
    return F.pixel_shuffle(torch.stack([r, r, r, r, g, g1, g2, g, b, b, b, b], dim=1), 2)


class BlindGraph(nn.Module):
    """A trained Bayer or linear network (:class:`lowlight_raw.networks.sid_unet.SIDUNet` or a subclass) as a
    blind graph of darktable's contract (see the module docs).

    Bayer: ``(1, 4, T, T)`` packed planes → ``(1, 3, 2T, 2T)`` camera RGB. Linear: ``(1, 3, T, T)``
    RGB → ``(1, 3, T, T)``. ``T`` (the tile the graph is exported for) fixes the noise estimate's
    calibration; the network's pooling needs it to be a multiple of ``network.config.multiple``
    (linear: of twice it).
    """

    def __init__(self, network: nn.Module, tile: int) -> None:
        super().__init__()
        self.network = network
        self.layout: type[SensorLayout] = network.layout
        if self.layout.kind not in ("bayer", "linear"):
            raise ValueError(f"darktable's contract has no {self.layout.label} input: export the Bayer and linear networks")
        packed_side = tile // (self.layout.scale if self.layout.kind == "linear" else 1)
        if packed_side % network.config.multiple:
            raise ValueError(f"tile {tile} does not pack to a multiple of the network's {network.config.multiple}")
        self.tile = tile
        self.ratio = low_quantile_ratio(self.layout, packed_side)

    def forward(self, tile: torch.Tensor) -> torch.Tensor:
        planes = tile if self.layout.kind == "bayer" else F.pixel_unshuffle(tile, self.layout.scale)
        gain = tile_gain(planes.mean(dim=1, keepdim=True))
        a = estimate_slope(self.layout, planes, self.ratio)
        amplified = (gain * planes).clamp(-1.0, 1.0)
        sigma = torch.sqrt((gain * a * amplified.clamp(0.0, 1.0) + gain * gain * read_variance(a)).clamp_min(1e-12))
        restored = self.network(torch.cat([amplified, sigma], dim=1))
        own = own_site_rgb(planes) if self.layout.kind == "bayer" else tile
        highlight = ((restored.amax(dim=1, keepdim=True) - HIGHLIGHT_FROM) / (1.0 - HIGHLIGHT_FROM)).clamp(0.0, 1.0)
        weight = network_share(self.layout, a, gain) * (1.0 - highlight)
        return own + weight * (restored / gain - own)
