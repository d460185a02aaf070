"""Fine false colour: the demosaic's pixel-scale colour errors taken out of the result.

Any demosaic guesses two of each pixel's three colours; where luminance changes within a pixel or
two (edges, texture, fine lines), the guesses err, and mostly in colour: on the sweep's clean Bayer
raws (``lowlight-raw evaluate --sweep``, ×1, the demosaic of a noise-free mosaic) 70–80 % of the
error's energy in sRGB is chroma, 75–80 % of it finer than a Gaussian of 2 px. A scene's own
colour rarely changes that finely: the optics blur it and the colour filters sample red and blue at
half the rate. So each pixel's colour is replaced by that of its neighbourhood (:func:`suppress_false_colour`),
taken as *ratios* to luminance (hue and saturation, not differences, which scale with brightness
and would bleed a bright side's colour into a dark one), each neighbour weighted by its luminance
(so a dark, noisy neighbour counts little), its luminance kept exactly. Real colour detail is
kept where it stands out: a clean photo's pixel keeps the part of its own colour that differs
from its neighbourhood's by more than :data:`CLEAN_DETAIL_KEEP` (shrunk smoothly,
``d · |d|² / (|d|² + τ²)``); a noisy photo's neighbourhood is wider, and less of the pixel's own
colour, which there is mostly noise, stands out (:func:`false_colour_filter`).

Measured with ``lowlight-raw evaluate --sweep --methods model`` (five scenes, every layout) and
``bench/no_harm.py`` (seven sharp photos and textures, clean, Bayer and X-Trans): the numbers are in
the model card ("Fine false colour").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

from ..layouts.base import separable_filter

CLEAN_ORDER = 2  # the neighbourhood of a clean photo's colour: a binomial filter of this order (taps 1, 2, 1: a
# Gaussian of σ √order / 2 = 0.71 px; σ 0.85 or 1.0 scored the sweep's ×1 0.4 dB higher, but bench/no_harm.py's
# astronaut, a photo of sharp saturated colours, 0.6 … 1.2 dB lower)
CLEAN_DETAIL_KEEP = 0.2  # τ: a clean photo's colour detail (white-balanced channel over luminance, grey = 1, 1, 1)
# this far from the neighbourhood's is half kept, far beyond it kept whole (without: the astronaut −1.2 dB at σ 1)
NOISY_ORDER = 6  # … of a noisy one (its planes denoised at full strength: ×3 and darker): σ 1.22 px. On the sweep
# (model rows, keeping none of the pixel's own colour, Bayer / X-Trans ×3 / ×10 / ×30): order 4 42.12 / 36.75 /
# 33.22 and 40.82 / 36.11 / 32.90 dB, 6 42.10 / 36.86 / 33.29 and 40.94 / 36.21 / 32.96, 8 41.97 / 36.89 / 33.32
# and 40.94 / 36.25 / 32.99; with the whole result's guided chroma smoothing
# still on, order 4 and τ 1 (nearly none kept) had scored Bayer ×3 41.27, τ 0.2 41.10, the clean filter 41.03.
# Only at full strength: no_harm's clean X-Trans photos, whose noise the estimate overreads (their planes denoised
# at 0.3 … 0.84), lost up to 0.7 dB (the astronaut) with a filter that widened with the denoising
NOISY_DETAIL_KEEP = 0.3  # τ of a noisy photo: bench/no_harm.py --iso 6400 (sharp photos, 0 EV), astronaut (sharp
# saturated colours) 37.67 dB before the false-colour step, 37.05 keeping none of the pixel's own colour, τ 0.3 / 0.4 /
# 0.55 / 0.8 37.73 / 37.59 / 37.44 / 37.29 (the other six photos +0.0 … +2.1 over before with any of them); the sweep,
# whose photographs' colour is smoother (JPEGs), Bayer ×3 / ×10 / ×30 42.10 / 36.86 / 33.29 keeping none, τ 0.3
# 41.85 / 36.72 / 33.23, τ 0.8 41.96 / 36.81 / 33.27
DARKEST = 1e-4  # where the neighbourhood's luminance (linear, after the gain) is below this, pixels are left as they are
TINY = 1e-30  # a pixel's own colour is taken over its luminance, or this where that is 0 (black: all channels ≤ 0)
BAND = 128  # rows of the result filtered at a time …
COLUMNS = 1024  # … and columns: a block's planes stay in the CPU's cache


class FalseColourFilter(NamedTuple):
    """The neighbourhood and the kept detail of :func:`suppress_false_colour`."""

    order: int  # the neighbourhood: a binomial filter of this even order (a Gaussian of σ √order / 2)
    detail_keep: float  # τ: colour detail this far from the neighbourhood's is half kept

    @property
    def reach(self) -> int:
        """Pixels on each side the filter reads."""
        return self.order // 2

    def taps(self) -> torch.Tensor:
        """The binomial coefficients of :attr:`order`, float32, unnormalised (their sum is ``2^order``)."""
        return torch.tensor([math.comb(self.order, k) for k in range(self.order + 1)], dtype=torch.float32)


def false_colour_filter(denoising: float) -> FalseColourFilter:
    """The filter for a photo whose planes are denoised at ``denoising`` (0 … 1,
    :func:`~.restore.denoise_strength`): a noisy photo's at full strength, else a clean one's."""
    if denoising >= 1.0:
        return FalseColourFilter(NOISY_ORDER, NOISY_DETAIL_KEEP)
    return FalseColourFilter(CLEAN_ORDER, CLEAN_DETAIL_KEEP)


def suppress_false_colour(rgb: np.ndarray, wb: np.ndarray, colour_filter: FalseColourFilter,
                          scales: Callable[[torch.Tensor], torch.Tensor | None] | None = None) -> np.ndarray:
    """In place: camera RGB ``rgb (H, W, 3)`` (float32 or half floats) with each pixel's colour that of
    its neighbourhood, plus its own colour detail beyond ``colour_filter.detail_keep``; luminance
    (the mean of the white-balanced channels) kept. Colour is each white-balanced channel over
    luminance; the neighbourhood's is ``G * b / G * y``, ``G`` the binomial filter of ``colour_filter.order``,
    ``b`` and ``y`` the white-balanced channels and luminance with negatives taken as 0 (zero outside
    the photo too, which the ratio cancels at its borders). Made :data:`BAND` rows × :data:`COLUMNS` at
    a time, each with the filter's reach around read from the photo as it was, so that the result is
    the whole image's and memory holds a band. ``scales``: each pixel is then scaled by what it gives
    for the luminance (float32, ``None``: all by 1), in the same pass (the dark levels:
    :meth:`~.restore.DarkLevels.scales`)."""
    height, width, _ = rgb.shape
    reach, taps = colour_filter.reach, colour_filter.taps()
    gains = torch.tensor(np.asarray(wb, dtype=np.float32)).view(3, 1, 1)
    above = torch.empty(3, 0, width)  # the band's rows above, white-balanced, as they were before they were written
    for top in range(0, height, BAND):
        bottom = min(top + BAND, height)
        first = top - above.shape[1]  # the image row of the band's row 0
        below = min(bottom + reach, height)
        band = torch.empty(3, below - first, width)  # planes: one copy of the photo's rows, white-balanced
        band[:, : above.shape[1]] = above
        torch.mul(torch.from_numpy(rgb[top:below]).permute(2, 0, 1), gains, out=band[:, above.shape[1] :])
        above = band[:, max(bottom - reach, first) - first : bottom - first]
        for left in range(0, width, COLUMNS):
            right = min(left + COLUMNS, width)
            low, high = max(left - reach, 0), min(right + reach, width)
            filtered = _filtered(band[:, :, low:high], taps, colour_filter.detail_keep, scales)
            inner = filtered[:, top - first : bottom - first, left - low : right - low].div_(gains)
            torch.from_numpy(rgb[top:bottom, left:right]).copy_(inner.permute(1, 2, 0))
    return rgb


def _filtered(balanced: torch.Tensor, taps: torch.Tensor, detail_keep: float,
              scales: Callable[[torch.Tensor], torch.Tensor | None] | None) -> torch.Tensor:
    """:func:`suppress_false_colour` of white-balanced camera RGB ``balanced (3, h, w)`` (float32), whole
    (its borders read zeros beyond), scaled by ``scales`` of its luminance: ``(3, h, w)`` float32,
    white-balanced. Colours are taken here as shares of the channels' sum (a third of the ratios to
    their mean), so ``detail_keep`` is too."""
    positive = balanced.clamp(min=0.0)
    colour = separable_filter(positive, taps)
    neighbourhood = _channel_sum(colour)
    darkest = 3.0 * DARKEST * float(taps.sum()) ** 2  # the taps are unnormalised: so is the neighbourhood
    dark = neighbourhood < darkest if float(neighbourhood.min()) < darkest else None
    colour.mul_(neighbourhood.clamp_(min=darkest).reciprocal_())
    detail = positive.mul_(_channel_sum(positive).clamp_(min=TINY).reciprocal_()).sub_(colour)  # own colour minus it
    energy = detail[0].square()
    energy.addcmul_(detail[1], detail[1]).addcmul_(detail[2], detail[2])
    colour.addcmul_(detail, energy.div_(energy + (detail_keep / 3.0) ** 2))
    luminance_sum = _channel_sum(balanced)
    colour.mul_(luminance_sum)
    result = colour if dark is None else torch.where(dark, balanced, colour)
    scale = None if scales is None else scales(luminance_sum.div_(3.0))
    return result if scale is None else result.mul_(scale)


def _channel_sum(planes: torch.Tensor) -> torch.Tensor:
    """``(1, h, w)``: the sum of the three ``planes (3, h, w)`` (two adds: several times faster than
    a reduction over the first axis here)."""
    return torch.add(planes[0:1], planes[1:2]).add_(planes[2:3])
