"""How much network a photo gets: a little for a clean one, all of it for a noisy one.

The network is trained to rescue dark, noisy raws; on a clean, well-exposed photo it alone
softens detail that a good classical rendering keeps (``bench/no_harm.py``). So the result is a
blend, ``share · network + (1 − share) · clean rendering``, where ``share`` follows the noise the
amplified photo has at mid-grey, ``σ = sqrt(gain·a·0.18 + gain²·b)``: the layout's
``clean_network_share`` until the log-linear ramp from 0 at :data:`NETWORK_FROM_SIGMA` to 1 at the
layout's ``full_network_sigma`` passes it (the ramp starts at the layout's ``network_from_sigma``
where it has one; :func:`network_share`). Each pixel's share is that ramp taken at the noise of its
own level (:func:`pixel_shares`): more network in the shadows, where a photo's noise is largest
against its signal, less in the highlights. The clean rendering is the layout's
(:meth:`~lowlight_raw.layouts.base.SensorLayout.clean_rgb`: Bayer: an edge-directed demosaic on
white-balanced planes; X-Trans: an iterated colour-difference demosaic; linear RGB: the file's own
pixels) of planes first denoised (:mod:`.denoise`, driven by the amplified noise profile) at a
strength that follows the noise too (:func:`denoise_strength`: none for a clean raw).
The two err differently (aliasing and noise against softness), so even a clean photo is better
with some of the network; ``bench/blend.py`` chose each layout's settings (its measurements are in
the model card, "The clean-photo blend").

The network leaves a noisy photo with low-frequency colour blotches; their chroma is smoothed
by a filter that the photo's own colours guide (:func:`smooth_chroma`), which keeps colour edges
(``bench/chroma.py``), at a strength that follows the noise (:func:`chroma_smoothing_strength`).

The network, like any denoiser that cannot resolve dark detail under the noise, lifts the darkest
tones (thin dark lines, small dark figures, dark gaps: ``evaluate --sweep``'s shadow ΔL\\* of the
shipped Bayer model +6.2 at ×100). The lift is at the scale of a few pixels, not of the mean level
of dark areas: replacing the result's low frequencies (Gaussian σ ≥ 8 px) with the *truth's* took
×100 only from +6.2 to +6.0, so no low-pass correction towards an unbiased rendering can mend it,
and one towards the noisy plain demosaic cost 0.3–5 dB. What does mend it is a tone curve measured
on the photo itself (:func:`dark_level_curve`): among the pixels the result renders at a given
luminance, the mean of an unbiased rendering (the layout's clean demosaic of the unclamped planes)
is where they should be on average; where it is darker, the result is scaled down to it. Every
pixel of a level gets the same gain, so it adds no noise.

Last, the demosaic's pixel-scale false colour, in the clean rendering and the network's result
alike, is taken out of the whole result (:mod:`.false_colour`).

The engine and the evaluation both call :func:`restore`, so what is scored is what users get.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from ..layouts.base import SensorLayout, separable_filter
from ..layouts.bayer import RCD_REACH, BayerLayout
from ..layouts.xtrans import CLEAN_REACH as XTRANS_CLEAN_REACH
from ..layouts.xtrans import XTransLayout
from .denoise import ALIGN as DENOISE_ALIGN
from .denoise import REACH as DENOISE_REACH
from .denoise import denoise_planes
from .device import image_dtype, release_freed_memory
from .false_colour import false_colour_filter, suppress_false_colour
from .network_input import NoiseConditioning
from .noise import NoiseProfile
from .tiling import automatic_tile, run_tiled

MID_GREY = 0.18  # the signal level (linear, after the gain) the noise is judged at
NETWORK_FROM_SIGMA = 0.006  # the network's share ramps up from this noise sigma at mid-grey
NETWORK_ALONE_WITHIN = 0.05  # a share this close to 1 is 1: the denoised clean rendering (24 MP: 1.5–4.5 s on two
# cores) would move the result by less than this part of its difference from the network's (in the sweep 0.05 scored
# as 0.01 did, within 0.01 dB; with 0.01 the engine bench's ×300 raw, 1 % of whose pixels had shares of 0.98–0.99, was
# rendered nearly whole: 24 MP Bayer 4.0 → 5.9 s)
# The clean rendering is made in blocks of packed rows and columns, each with this context around:
# the least even number of packed pixels (an X-Trans block then starts on the same kind of cell as the
# image) that covers each clean rendering's reach, Bayer's 10 px (5 packed pixels) and X-Trans's 15 (5 cells)
CLEAN_BAND = 128
CLEAN_COLUMNS = 1024
CLEAN_HALO = 2 * math.ceil(max(math.ceil(RCD_REACH / BayerLayout.scale), math.ceil(XTRANS_CLEAN_REACH / XTransLayout.scale)) / 2)
# The clean rendering the network is blended with is made of denoised planes (:mod:`.denoise`), at a
# strength (denoise_strength) rising log-linearly with the amplified raw's noise at mid-grey from none at
# DENOISE_FROM_SIGMA (×1 at ISO 400 in the sweep: 0.0008, kept as it is) to all of it, with the denoiser's
# second stage, at DENOISE_FULL_SIGMA (×3 at ISO 1600: 0.0029; with the ramp's top at 0.004 it got 0.77 of the
# first stage alone, which scored Bayer / X-Trans 40.04 / 38.68 dB where all of it and the second stage score
# 40.09 / 38.71; bench/no_harm.py's clean textured photos −0.01 … +0.05 dB).
DENOISE_FROM_SIGMA = 0.001
DENOISE_FULL_SIGMA = 0.0028
DENOISE_BAND = 512  # packed rows × columns the denoiser takes at a time, for Bayer's 4 planes; a layout of more
DENOISE_COLUMNS = 1024  # planes takes as many values at a time, in fewer columns (_denoise_columns: X-Trans 448,
# linear 336). 24 MP end to end on two idle cores, 1024 against 512 columns: Bayer 4.9 against 5.3 s, X-Trans 8.3 and
# 8.3, linear 6.7 and 6.1; peak memory of a 100 MP raw, 1024 against 512 columns: X-Trans 1.98 against 1.65 GB,
# linear 1.90 against 1.69. 512 rows against 256 (each area computes its reach of 69 packed pixels around it too):
# 24 MP denoising Bayer 1.20 against 1.36 s, X-Trans 1.28 against 1.63, the same peaks; 100 MP peaks X-Trans 1.87
# against 1.74 GB, linear 1.92 and 1.92


def mid_grey_sigma(profile: NoiseProfile, gain: float) -> float:
    """The noise sigma at mid-grey of a raw of noise ``profile`` amplified by ``gain`` (linear, after
    the gain): ``sqrt(gain·a·0.18 + gain²·b)``."""
    amplified = profile.amplified(gain)
    return math.sqrt(max(amplified.a * MID_GREY + amplified.b, 1e-20))


def log_ramp(sigma: float, none_at: float, all_at: float) -> float:
    """0 … 1: where ``sigma`` lies between ``none_at`` (0) and ``all_at`` (1) on a log scale, held at
    the ends (``all_at`` may be the smaller: a ramp down). The network's share (:func:`shares_at`,
    in torch), the denoising's strength, the chroma smoothing's and the dark-level calibration's
    all follow the noise this way."""
    position = math.log(sigma / none_at) / math.log(all_at / none_at)
    return float(min(max(position, 0.0), 1.0))


def denoise_strength(profile: NoiseProfile, gain: float) -> float:
    """How strongly (0 … 1) the clean rendering of a raw of noise ``profile`` amplified by ``gain``
    is denoised: none up to :data:`DENOISE_FROM_SIGMA` of noise at mid-grey, all from
    :data:`DENOISE_FULL_SIGMA`, log-linear between."""
    return log_ramp(mid_grey_sigma(profile, gain), DENOISE_FROM_SIGMA, DENOISE_FULL_SIGMA)


def network_share(profile: NoiseProfile, gain: float, layout: type[SensorLayout] | SensorLayout) -> float:
    """The network's share at mid-grey (the ``layout``'s ``clean_network_share`` … 1) of the result
    for a raw of noise ``profile`` amplified by ``gain``: :func:`shares_at` :data:`MID_GREY`, where
    the ramp is taken at the noise there, ``σ_mid``."""
    return float(shares_at(torch.tensor([MID_GREY], dtype=torch.float64), profile, gain, layout)[0])


# The network's share of each pixel (pixel_shares) follows the noise of the pixel's own level, not mid-grey's
# alone: the ramp above is taken at σ_mid · (r / r_mid)^SHARE_NOISE_EXPONENT, r = σ(y) / y the noise relative to
# the signal y around the pixel (r_mid: mid-grey's), so the network's share rises in the shadows, where it beats
# the denoised clean rendering, and falls in the highlights. `lowlight-raw evaluate --sweep` against one share a
# photo (each layout's full_network_sigma 0.05 then): Bayer ×10 / ×30 / ×100 35.13 → 35.27, 32.20 → 32.39,
# 28.51 → 28.90 dB (shadow ΔL* at ×100 +1.8 → +1.4); X-Trans 34.54 → 34.64, 32.01 → 32.14, 28.77 → 29.11; linear
# 33.88 → 33.99, 31.75 → 31.90, 28.58 → 28.91 (+2.2 → +1.9 L*); ×1, ×3 and ×300 within 0.06 dB. The exponent:
# 0.75 scored the same, 1 (the pixel's noise alone) 0.05–0.1 dB lower; only lowering the share of bright pixels
# (never raising it in the shadows) gave a third of the gain.
SHARE_NOISE_EXPONENT = 0.5
SHARE_STEP = 4  # full-resolution pixels a side of the blocks a share is computed for (then bilinearly upsampled)
SHARE_BLUR = 1.0  # blocks: the Gaussian σ of the signal level around a pixel (4 px; 2 px scored within 0.02 dB)
SHARE_BAND = 512  # rows of the result read at a time for its block means (a multiple of SHARE_STEP)


def network_from_sigma(layout: type[SensorLayout] | SensorLayout) -> float:
    """The noise sigma at mid-grey from which the network's share of ``layout``'s result ramps up:
    the layout's ``network_from_sigma``, else :data:`NETWORK_FROM_SIGMA`."""
    return NETWORK_FROM_SIGMA if layout.network_from_sigma is None else layout.network_from_sigma


def luminance_weights(wb: np.ndarray) -> np.ndarray:
    """``(3,)`` float32: camera RGB's weights in the luminance the shares, the dark levels and the
    chroma smoothing judge by, the mean of the white-balanced channels (which
    :mod:`.false_colour` keeps, and takes from its white-balanced planes where it scales the dark
    levels)."""
    return np.asarray(wb, dtype=np.float32) / np.float32(3.0)


def pixel_shares(full: np.ndarray, profile: NoiseProfile, gain: float, layout: type[SensorLayout] | SensorLayout,
                 wb: np.ndarray) -> torch.Tensor | None:
    """The network's share of each :data:`SHARE_STEP`² block of the network's result ``full (H, W, 3)``
    (camera RGB of a raw of noise ``profile`` amplified by ``gain``), ``(⌈H/step⌉, ⌈W/step⌉)``
    float32 (:func:`shares_at` the signal level around each block: the mean of its white-balanced
    luminance, blurred by a Gaussian of :data:`SHARE_BLUR` blocks, normalised at the photo's
    edges); ``None`` where it is 1 everywhere (the network alone), known without reading ``full``
    when it is 1 at :data:`SHARE_BRIGHTEST`, the lowest share. Memory: the block means, 1/16 of a
    channel of the photo."""
    if float(shares_at(torch.tensor([SHARE_BRIGHTEST]), profile, gain, layout)[0]) >= 1.0:
        return None
    gains = torch.from_numpy(luminance_weights(wb)).view(3, 1, 1)
    levels = (_block_means(full, SHARE_STEP, SHARE_BAND) * gains).sum(0)
    radius = math.ceil(3 * SHARE_BLUR)
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float32) / SHARE_BLUR) ** 2)
    shares = shares_at(separable_filter(levels, taps).div_(separable_filter(torch.ones_like(levels), taps)), profile, gain, layout)
    return None if bool(shares.min() >= 1.0) else shares


def shares_at(levels: torch.Tensor, profile: NoiseProfile, gain: float, layout: type[SensorLayout] | SensorLayout) -> torch.Tensor:
    """The network's share at each signal level in ``levels`` (white-balanced luminance, linear,
    after the gain; overwritten) of a raw of noise ``profile`` amplified by ``gain``:
    :func:`network_share`'s ramp taken at ``σ_mid · (r(y) / r_mid)^``:data:`SHARE_NOISE_EXPONENT`,
    ``r(y) = sqrt(a·y + b) / y`` the noise relative to the signal (``y`` held within
    :data:`SHARE_DARKEST` … :data:`SHARE_BRIGHTEST`), the layout's ``clean_network_share`` at least,
    1 within :data:`NETWORK_ALONE_WITHIN` of it; the brighter the level, the lower its share."""
    amplified = profile.amplified(gain)
    levels = levels.clamp_(SHARE_DARKEST, SHARE_BRIGHTEST)
    relative = levels.mul(amplified.a).add_(amplified.b).clamp_(min=1e-20).sqrt_().div_(levels)
    mid = mid_grey_sigma(profile, gain)
    sigma = relative.mul_(MID_GREY / mid).pow_(SHARE_NOISE_EXPONENT).mul_(mid)  # σ_mid · (r / r_mid)^exponent
    start = network_from_sigma(layout)
    shares = sigma.div_(start).log_().div_(math.log(layout.full_network_sigma / start)).clamp_(layout.clean_network_share, 1.0)
    shares[shares >= 1.0 - NETWORK_ALONE_WITHIN] = 1.0
    return shares


SHARE_DARKEST = 1e-3  # a pixel's relative noise is judged at a signal level (linear, after the gain) of at least this …
SHARE_BRIGHTEST = 1.0  # … and at most this (a brighter one, a clipped white, gets white's share)


# The network's result has its chroma smoothed (smooth_chroma) at a strength rising log-linearly with the noise
# at mid-grey from none here …
CHROMA_FROM_SIGMA = 0.04  # (×30 at ISO 6400: 0.022, none; so the engine bench's "dark" raw, 0.032, is not smoothed)
CHROMA_FULL_SIGMA = 0.07  # … to all of it here (×100 at ISO 6400, 0.052, gets half of it: in the sweep that scored
# 0.13 dB above all of it, for every layout; ×300 all)


def chroma_smoothing_strength(profile: NoiseProfile, gain: float) -> float:
    """How much (0 … 1) of :func:`smooth_chroma`'s smoothing the network's result of a raw of noise
    ``profile`` amplified by ``gain`` gets: none up to :data:`CHROMA_FROM_SIGMA` at mid-grey, all
    from :data:`CHROMA_FULL_SIGMA`, log-linear between."""
    return log_ramp(mid_grey_sigma(profile, gain), CHROMA_FROM_SIGMA, CHROMA_FULL_SIGMA)


# Until the fifth session of 2026-12-07 the whole result (the blend, or the clean rendering alone) got a fifth of
# that smoothing too, as strongly as its planes were denoised (it had lifted the sweep's ×3 / ×10 by 0.1–0.45 dB).
# Once the result's fine false colour was taken out (:mod:`.false_colour`) it cost: none scored Bayer / X-Trans /
# linear ×3 41.34 → 41.75, 40.27 → 40.64, 37.74 → 37.94 dB, ×10 +0.03 … +0.09, ×30 and ×100 within 0.03.


# The dark-level calibration (dark_level_curve): its settings were chosen on `lowlight-raw evaluate
# --sweep` with the shipped weights; the measurements are in the model card ("The dark-level calibration").
# It runs at full strength at every noise level: at ×300 (ISO 25600) it costs 0.3–0.9 dB of PSNR there
# (the model stays 3.5–4.7 dB ahead of the best tuned classical method) and takes the blacks from
# +9.1 … +9.7 L* to +2.9 … +4.2. Except where the raw's blacks were clipped at zero (a converter's linear
# DNG): the zeros' stand-ins (network_input.clipped_stand_ins) are the means of what they hide at the level
# around them, which a window of noisy samples measures too low at high noise, so the unbiased rendering is
# too dark there, and the more so the more noise: at ×300 full strength crushed the blacks (−6.1 L*, 23.47 →
# 19.88 dB). For such raws the strength ramps down with the noise, log-linearly from full here …
CLIPPED_DARK_LEVEL_FULL_SIGMA = 0.075  # … (×150 at ISO 6400: 0.074) …
CLIPPED_DARK_LEVEL_LEAST_SIGMA = 0.2  # … to the least here and above (×300 at ISO 25600: 0.24) …
CLIPPED_DARK_LEVEL_LEAST = 0.5  # … this much of it: at ×300 +3.8 L* and 22.79 dB (none: +9.2 L*, 23.47 dB; 0.4:
# +5.1, 23.08; 0.6: +2.4, 22.43; 0.75: −0.3, 21.73; the limit there is 5 L*)
DARK_LEVEL_BINS = 48  # luminance levels (equal counts of pixels) the curve is measured at
DARK_LEVEL_SAMPLE = 2_000_000  # at least this many pixels, where the photo has them, measure the curve
DARK_LEVEL_BLOCK = 128  # packed pixels a side of the blocks the measured pixels are taken in (64: as many pixels in
# more, smaller blocks, a curve as good (the two differ by 9 % of the correction, as two samples do); 24 MP Bayer on
# two cores 0.73 s against 0.42: each block costs the demosaic a call)
DARK_LEVEL_SIGNIFICANCE = 1.0  # a level is brought down by its deficit less this many standard errors of it
DARK_LEVEL_TOP = 0.2  # levels brighter than this (white-balanced luminance; mid-grey 0.18) keep a gain of 1:
# clipped highlights, whose unbiased rendering is clipped too, are left alone
DARK_LEVEL_MIN = 1e-4  # a level darker than this (a result at or below black) keeps its gain of 1


def dark_level_strength(profile: NoiseProfile, gain: float, blacks_clipped: bool) -> float:
    """How much of :func:`dark_level_curve`'s correction (0 … 1) a raw of noise ``profile``
    amplified by ``gain`` gets: all of it, unless its ``blacks_clipped`` at zero; then all of it up
    to :data:`CLIPPED_DARK_LEVEL_FULL_SIGMA` of noise at mid-grey, :data:`CLIPPED_DARK_LEVEL_LEAST`
    from :data:`CLIPPED_DARK_LEVEL_LEAST_SIGMA`, log-linear between."""
    if not blacks_clipped:
        return 1.0
    ramp = log_ramp(mid_grey_sigma(profile, gain), CLIPPED_DARK_LEVEL_LEAST_SIGMA, CLIPPED_DARK_LEVEL_FULL_SIGMA)
    return CLIPPED_DARK_LEVEL_LEAST + (1.0 - CLIPPED_DARK_LEVEL_LEAST) * ramp


def restore(
    network: nn.Module,
    planes: np.ndarray,
    layout: type[SensorLayout] | SensorLayout,
    profile: NoiseProfile,
    gain: float,
    wb: np.ndarray,
    device: torch.device,
    tile: int | None = None,
    should_cancel: Callable[[], bool] | None = None,
    on_progress: Callable[[float], None] | None = None,
    bf16: bool = True,
    blacks_clipped: bool = False,
) -> tuple[np.ndarray, float]:
    """Amplified packed planes ``(C, h, w)`` (:func:`~lowlight_raw.pipeline.network_input.amplified_planes`)
    → ``(s·h, s·w, 3)`` camera RGB of the packed area (float32, or half floats for a large photo:
    :func:`~.device.image_dtype`), and the network's share at mid-grey
    (:func:`network_share`). The network gets the planes' noise sigma as well, made per tile
    (:class:`~lowlight_raw.pipeline.network_input.NoiseConditioning`). A share of 0 at mid-grey (a
    clean linear raw) skips the network altogether; otherwise its result's chroma is smoothed (at
    :func:`chroma_smoothing_strength`) and each pixel gets its share of it (:func:`pixel_shares`),
    the clean rendering made only where a share is below 1; its dark levels are calibrated
    (:func:`dark_level_curve`, at :func:`dark_level_strength`; ``blacks_clipped``: the raw's blacks
    were clipped at zero, :func:`~lowlight_raw.pipeline.network_input.clipped_at_black`) as its fine
    false colour goes (:func:`~.false_colour.suppress_false_colour`, the filter of
    :func:`denoise_strength`, one pass over the photo for both), which a clean linear raw's own
    pixels get too.
    The tiling arguments go to :func:`run_tiled` (``tile`` ``None``: :func:`~.tiling.automatic_tile` of the photo)."""
    if len(planes) != layout.channels:
        raise ValueError(f"restore takes the {layout.channels} amplified planes of the layout, not {len(planes)}")
    share = network_share(profile, gain, layout)
    denoising = denoise_strength(profile, gain)
    noise = profile.amplified(gain) if denoising > 0.0 else None
    pixels = planes.shape[1] * planes.shape[2] * layout.scale**2
    if share == 0.0:
        if on_progress is not None:
            on_progress(1.0)
        full, levels = blend_clean_rendering(None, 0.0, planes, layout, wb, noise, denoising), None
    else:
        full = run_tiled(network, planes, device, tile=automatic_tile(pixels) if tile is None else tile, should_cancel=should_cancel,
                         on_progress=on_progress, bf16=bf16, conditioning=NoiseConditioning(profile, gain), dtype=image_dtype(pixels))
        release_freed_memory(pixels)  # the tiles' activations: the blend's areas would otherwise come on top of them
        smoothing = chroma_smoothing_strength(profile, gain)
        if smoothing > 0.0:
            smooth_chroma(full, wb, smoothing)
        shares = pixel_shares(full, profile, gain, layout, wb)
        if shares is not None:
            full = blend_clean_rendering(full, shares, planes, layout, wb, noise, denoising)
            release_freed_memory(pixels)
        # the dark levels are measured before the false colour goes, which keeps every pixel's luminance, so
        # that one pass over the photo takes the false colour out and scales the levels
        strength = dark_level_strength(profile, gain, blacks_clipped)
        levels = dark_level_curve(full, planes, layout, wb, strength) if strength > 0.0 else None
    suppress_false_colour(full, wb, false_colour_filter(denoising), None if levels is None else levels.scales)
    release_freed_memory(pixels)
    return full, share


def blend_clean_rendering(full: np.ndarray | None, shares: float | torch.Tensor, inputs: np.ndarray,
                          layout: type[SensorLayout] | SensorLayout, wb: np.ndarray,
                          noise: NoiseProfile | None = None, strength: float = 1.0) -> np.ndarray:
    """``share · full + (1 − share) · clean rendering`` of the packed planes in ``inputs``, in place
    in ``full`` (``None``: the clean rendering alone, of :func:`~.device.image_dtype`). ``shares``: one
    share for every pixel, or the network's share of each :data:`SHARE_STEP`² block of ``full``
    (:func:`pixel_shares`), bilinearly upsampled; an area or block whose shares are all 1 is left
    as it is, its clean rendering (and denoising) skipped. Made in blocks of :data:`CLEAN_BAND` packed
    rows × :data:`CLEAN_COLUMNS` columns, each with :data:`CLEAN_HALO` packed pixels of context
    around, so that memory never holds more than a block of the classical demosaic's
    intermediates, and those stay in the CPU's cache (an X-Trans block of 128 × 1024 ran 1.5× faster
    per pixel than a band of 128 rows across 2,000 columns); the result is the whole-image rendering's.
    ``noise``: the planes' *amplified* noise profile, when they are to be denoised first
    (:func:`~.denoise.denoise_planes` at ``strength``): in areas of :data:`DENOISE_BAND` rows ×
    :func:`_denoise_columns`, each with the denoiser's reach and the clean rendering's halo around
    (24 MP Bayer on one core of a shared machine: 3.5–4.7 s, of which the denoising 1.1–1.4 s, and
    150 MB at peak, against 2.7–3.1 s and 90 MB without it, measured with the isotropic denoiser in
    areas of 256 rows; the oriented one in 512: the denoising 1.3 s)."""
    planes = inputs[: layout.channels]
    (height, width), scale = planes.shape[1:], layout.scale
    alone = full is None
    if alone:
        full = np.empty((scale * height, scale * width, 3), dtype=image_dtype(scale * height * scale * width))
    rows, columns = (DENOISE_BAND, _denoise_columns(layout)) if noise is not None else (height, width)
    for area_top in range(0, height, rows):
        area_bottom = min(area_top + rows, height)
        for area_left in range(0, width, columns):
            area_right = min(area_left + columns, width)
            if _network_alone(shares, (area_top * scale, area_bottom * scale), (area_left * scale, area_right * scale)):
                continue
            source, row_offset, column_offset = planes, 0, 0
            if noise is not None:
                source, row_offset, column_offset = _denoised_area(planes, layout, wb, noise, strength,
                                                                   (area_top, area_bottom), (area_left, area_right))
            for top in range(area_top, area_bottom, CLEAN_BAND):
                bottom = min(top + CLEAN_BAND, area_bottom)
                for left in range(area_left, area_right, CLEAN_COLUMNS):
                    right = min(left + CLEAN_COLUMNS, area_right)
                    block_rows, block_columns = (top * scale, bottom * scale), (left * scale, right * scale)
                    if _network_alone(shares, block_rows, block_columns):
                        continue
                    rendering = clean_block(source, layout, wb, (top - row_offset, bottom - row_offset),
                                            (left - column_offset, right - column_offset), clamp=True)
                    rendering = rendering.permute(1, 2, 0).numpy()
                    pixels = full[top * scale : bottom * scale, left * scale : right * scale]
                    if alone:
                        pixels[...] = rendering
                    elif not isinstance(shares, torch.Tensor):
                        pixels *= shares
                        pixels += (1.0 - shares) * rendering
                    else:  # the network's share of each pixel
                        target = torch.from_numpy(pixels)  # a view
                        clean_shares = _upsampled_block(shares[None], 0, block_rows, block_columns, SHARE_STEP)[0].neg_().add_(1.0)
                        blended = target.float().lerp_(torch.from_numpy(rendering), clean_shares[..., None])  # in place if float32
                        if blended is not target:
                            target.copy_(blended)
    return full


def _network_alone(shares: float | torch.Tensor, rows: tuple[int, int], columns: tuple[int, int]) -> bool:
    """Whether the network's ``shares`` (one, or :func:`pixel_shares`' blocks) are 1 at every
    full-resolution pixel of ``rows`` × ``columns`` (``[start, end)``): of the blocks there and the
    neighbours their upsampling reads."""
    if not isinstance(shares, torch.Tensor):
        return shares >= 1.0
    (top, bottom), (left, right) = rows, columns
    step = SHARE_STEP
    return bool(shares[max(top // step - 1, 0) : -(-bottom // step) + 1, max(left // step - 1, 0) : -(-right // step) + 1].min() >= 1.0)


def _denoise_columns(layout: type[SensorLayout] | SensorLayout) -> int:
    """The packed columns of the areas ``layout``'s planes are denoised in: :data:`DENOISE_COLUMNS`
    for Bayer's planes, fewer for more planes (as many values an area), a multiple of the
    denoiser's alignment."""
    columns = DENOISE_COLUMNS * BayerLayout.channels // layout.channels
    return max(columns // DENOISE_ALIGN * DENOISE_ALIGN, DENOISE_ALIGN)


def _denoised_area(planes: np.ndarray, layout: type[SensorLayout] | SensorLayout, wb: np.ndarray, noise: NoiseProfile,
                   strength: float, rows: tuple[int, int], columns: tuple[int, int]) -> tuple[np.ndarray, int, int]:
    """The packed ``planes`` of ``rows`` × ``columns`` (``[start, end)``) with the clean rendering's
    :data:`CLEAN_HALO` around, denoised (:func:`~.denoise.denoise_planes`) from the denoiser's reach
    around them, on the whole image's grid, so that they are the whole image's; and the packed row
    and column where they start."""
    (top, bottom), (left, right) = rows, columns
    height, width = planes.shape[1:]
    row_offset, row_end = max(top - CLEAN_HALO, 0), min(bottom + CLEAN_HALO, height)
    column_offset, column_end = max(left - CLEAN_HALO, 0), min(right + CLEAN_HALO, width)
    low = max(row_offset - DENOISE_REACH, 0) // DENOISE_ALIGN * DENOISE_ALIGN
    first = max(column_offset - DENOISE_REACH, 0) // DENOISE_ALIGN * DENOISE_ALIGN
    high, last = min(row_end + DENOISE_REACH, height), min(column_end + DENOISE_REACH, width)
    window = (slice(row_offset - low, row_end - low), slice(column_offset - first, column_end - first))
    denoised = denoise_planes(torch.from_numpy(planes[:, low:high, first:last].astype(np.float32)),
                              layout, wb, noise, strength, origin=(low, first), window=window)
    return denoised.numpy(), row_offset, column_offset


def clean_block(planes: np.ndarray, layout: type[SensorLayout] | SensorLayout, wb: np.ndarray, rows: tuple[int, int],
                columns: tuple[int, int], clamp: bool) -> torch.Tensor:
    """The layout's clean rendering ``(3, s·h, s·w)`` of packed ``planes (C, H, W)`` in ``rows`` ×
    ``columns`` (``[start, end)``), rendered with :data:`CLEAN_HALO` packed pixels of context around
    so that it is the whole image's there; ``clamp``: of the planes clipped to ``[0, 1]`` first."""
    return clean_blocks(planes, layout, wb, [(rows, columns)], clamp)[0]


def clean_blocks(planes: np.ndarray, layout: type[SensorLayout] | SensorLayout, wb: np.ndarray,
                 blocks: list[tuple[tuple[int, int], tuple[int, int]]], clamp: bool) -> list[torch.Tensor]:
    """:func:`clean_block` of each of ``blocks`` (``(rows, columns)``), those whose context has the
    same size and holds them at the same place rendered together: the demosaic's many small steps
    run once for all of them (the dark-level measurement of a 24 MP Bayer photo, 32 blocks: 0.30 →
    0.23 s; X-Trans 0.40 → 0.35 s)."""
    (height, width), scale = planes.shape[1:], layout.scale
    contexts = []  # (rows, columns) of each block's context, and where the block lies in it
    for (top, bottom), (left, right) in blocks:
        low, high = max(top - CLEAN_HALO, 0), min(bottom + CLEAN_HALO, height)
        first, last = max(left - CLEAN_HALO, 0), min(right + CLEAN_HALO, width)
        contexts.append(((low, high), (first, last), (top - low, bottom - low, left - first, right - first)))
    alike: dict[tuple[int, ...], list[int]] = {}
    for index, ((low, high), (first, last), inner) in enumerate(contexts):
        alike.setdefault((high - low, last - first) + inner, []).append(index)
    renderings: list[torch.Tensor] = [torch.empty(0)] * len(blocks)
    for (_, _, top, bottom, left, right), members in alike.items():
        batch = np.empty((len(members), planes.shape[0], *(end - start for start, end in contexts[members[0]][:2])), np.float32)
        for place, index in enumerate(members):  # one copy, to float32 (the planes may be half floats)
            batch[place] = planes[:, slice(*contexts[index][0]), slice(*contexts[index][1])]
        if clamp:
            np.clip(batch, 0.0, 1.0, out=batch)
        rendered = layout.clean_rgb(torch.from_numpy(batch), wb)[:, :, top * scale : bottom * scale, left * scale : right * scale]
        for index, rendering in zip(members, rendered):
            renderings[index] = rendering
    return renderings


class _PiecewiseLinear:
    """``np.interp(x, knots, values)`` of a float32 tensor, from a table of it at :data:`CURVE_TABLE`
    points evenly spaced over the knots, linearly interpolated (the same but within a step of each
    knot): a multiply-add and two look-ups a pixel, where ``torch.bucketize`` on the knots took 5–9×
    as long. The end values hold outside the knots."""

    def __init__(self, knots: np.ndarray, values: np.ndarray) -> None:
        grid = np.linspace(knots[0], knots[-1], CURVE_TABLE)
        table = np.interp(grid, knots, values)
        self.start, self.per_step = float(knots[0]), (CURVE_TABLE - 1) / max(float(knots[-1] - knots[0]), 1e-12)
        self.table = torch.from_numpy(table.astype(np.float32))
        self.steps = torch.from_numpy(np.append(np.diff(table), 0.0).astype(np.float32))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        position = (x - self.start).mul_(self.per_step).clamp_(0.0, CURVE_TABLE - 1)
        index = position.to(torch.int64)  # torch.take's (a quarter faster than indexing with it)
        return position.sub_(index).mul_(torch.take(self.steps, index)).add_(torch.take(self.table, index))


CURVE_TABLE = 16384  # points of _PiecewiseLinear's table (64 KB: it stays in the CPU's cache)


def dark_level_curve(full: np.ndarray, inputs: np.ndarray, layout: type[SensorLayout] | SensorLayout,
                     wb: np.ndarray, strength: float = 1.0) -> DarkLevels | None:
    """The scale that brings the too-light dark levels of camera RGB ``full (s·h, s·w, 3)``, restored
    from the packed planes in ``inputs``, down to where an unbiased rendering of the same planes
    has them on average (``None``: no level lifted). :func:`~.false_colour.suppress_false_colour`
    applies it in its pass.

    Luminance is the mean of the white-balanced channels (as in :func:`smooth_chroma`). Pixels are
    put in :data:`DARK_LEVEL_BINS` bins of equal count by the result's luminance ``Y``; in each, the
    mean luminance of the layout's clean rendering of the planes, *not* clamped at 0 (so the noise
    of blacks averages to black), is where the level belongs. Its gain is that over the mean ``Y``,
    the deficit first reduced by :data:`DARK_LEVEL_SIGNIFICANCE` standard errors of it (the noise of
    the measurement does not move a level), capped at 1 (only lifted levels are brought down: upward
    corrections scored lower) and at 0;
    levels above :data:`DARK_LEVEL_TOP` keep a gain of 1.
    Every pixel is to be scaled, all channels alike (its chromaticity kept), by
    ``1 + strength·(gain(Y) − 1)``, the gain interpolated between the bins' mean ``Y``; the gain at
    the darkest bin holds below it. The same gain for every pixel of a level: no noise added, and no
    low-pass of a noisy rendering (see the module's text for what those cost). The curve is measured
    on at least :data:`DARK_LEVEL_SAMPLE` pixels where the photo has them: blocks of
    :data:`DARK_LEVEL_BLOCK`² packed pixels on diagonals across the whole photo, each rendered with
    :data:`CLEAN_HALO` of context (24 MP Bayer: 2.1 MP), so memory holds the measured pixels' luminances
    (24 MP Bayer on two cores: 0.17–0.19 s, of which the renderings, in batches, 0.08–0.09)."""
    planes = inputs[: layout.channels]
    (height, width), scale = planes.shape[1:], layout.scale
    gains = luminance_weights(wb)
    block = DARK_LEVEL_BLOCK
    rows, columns = -(-height // block), -(-width // block)
    every = max(1, (height * width * scale * scale) // DARK_LEVEL_SAMPLE)  # one block in ``every`` along each row
    blocks = [((row * block, min((row + 1) * block, height)), (column * block, min((column + 1) * block, width)))
              for row in range(rows) for column in range(row % every, columns, every)]  # diagonals: every part of the photo
    result_levels, reference_levels = [], []
    for ((top, bottom), (left, right)), rendering in zip(blocks, clean_blocks(planes, layout, wb, blocks, clamp=False)):
        reference_levels.append(torch.einsum("chw,c->hw", rendering, torch.from_numpy(gains)).reshape(-1).numpy())
        result = full[top * scale : bottom * scale, left * scale : right * scale].astype(np.float32, copy=False)
        result_levels.append((result @ gains).reshape(-1))
    result, reference = np.concatenate(result_levels), np.concatenate(reference_levels)
    # the same quantiles of the sorted values: numpy's SIMD sort then takes them at once, where a
    # selection per quantile took 4× as long (24 MP Bayer: 0.03 against 0.11 s)
    edges = np.quantile(np.sort(result), np.linspace(0.0, 1.0, DARK_LEVEL_BINS + 1)[1:-1])
    bins = np.searchsorted(edges, result, side="right")
    counts = np.bincount(bins, minlength=DARK_LEVEL_BINS)
    filled = counts > 0
    counts = counts[filled]
    levels = np.bincount(bins, result, DARK_LEVEL_BINS)[filled] / counts
    difference = reference - result
    mean_difference = np.bincount(bins, difference, DARK_LEVEL_BINS)[filled] / counts
    spread = np.bincount(bins, difference * difference, DARK_LEVEL_BINS)[filled] / counts - mean_difference**2
    margin = DARK_LEVEL_SIGNIFICANCE * np.sqrt(np.maximum(spread, 0.0) / counts)  # standard errors of the mean
    targets = levels + np.minimum(mean_difference + margin, 0.0)  # only a deficit beyond the margin counts
    level_gains = np.where(levels > DARK_LEVEL_MIN, np.clip(targets / np.maximum(levels, DARK_LEVEL_MIN), 0.0, 1.0), 1.0)
    level_gains[levels > DARK_LEVEL_TOP] = 1.0
    if level_gains.min() >= 1.0:
        return None  # no level lifted: nothing to do
    scales = 1.0 + strength * (level_gains - 1.0)
    kept = min(int(np.flatnonzero(scales < 1.0).max()) + 2, len(levels))  # up to the first level after the lifted ones
    unchanged_from = float(levels[kept - 1]) if scales[kept - 1] == 1.0 else math.inf  # brighter: scale 1
    return DarkLevels(_PiecewiseLinear(levels[:kept], scales[:kept]), unchanged_from)


class DarkLevels(NamedTuple):
    """:func:`dark_level_curve`'s scale of each luminance (the mean of the white-balanced channels)."""

    curve: _PiecewiseLinear  # the scale of a luminance
    unchanged_from: float  # luminances from this one up keep a scale of 1

    def scales(self, luminance: torch.Tensor) -> torch.Tensor | None:
        """The scale of each pixel of ``luminance`` (float32), or ``None`` where all keep 1."""
        return self.curve(luminance) if float(luminance.min()) < self.unchanged_from else None


def smooth_chroma(rgb: np.ndarray, wb: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """In place: the chroma of camera RGB ``rgb (H, W, 3)`` smoothed (``strength`` of the way, 0 … 1) by a guided filter (He, Sun &
    Tang) that the photo's own colours guide: in each window, chroma is fitted as a linear function
    of the white-balanced RGB, whose regularisation (:data:`CHROMA_EPS`) is above the network's
    left-over colour noise and below real colour edges, so the low-frequency colour blotches go and
    edges stay, between colours of equal luminance too; the luminance is kept. Luminance is the
    mean of the white-balanced channels, chroma each one's difference from it. The fit is made on
    :data:`CHROMA_SUBSAMPLE`² block means and upsampled (He & Sun's fast variant). The block means
    of the whole photo are taken first (1/16 of its size); then, :data:`CHROMA_BAND` rows at a
    time, the fit of the block rows that band reads (with the windows' reach above and below) is
    made and applied to it, :data:`CHROMA_COLUMNS` at a time (24 MP on one core: 0.8 s, against
    1.2 s across whole rows), so the result is the whole image's and memory holds one band's
    intermediates. For a noisy photo only (:func:`chroma_smoothing_strength`): on a clean one it
    blurs real colour detail (``bench/chroma.py``)."""
    gains = torch.tensor(np.asarray(wb, dtype=np.float32)).view(3, 1, 1)
    height, width, _ = rgb.shape
    step = CHROMA_SUBSAMPLE
    small = _block_means(rgb, step, CHROMA_BAND).mul_(gains)[None]  # white-balanced block means
    reach = 2 * CHROMA_RADIUS  # block rows: two window means
    for top in range(0, height, CHROMA_BAND):
        bottom = min(top + CHROMA_BAND, height)
        # the block rows the band's bilinear upsampling reads, and the rows their windows reach
        first, last = max(top // step - 1, 0), min(-(-bottom // step) + 1, small.shape[2])
        low, high = max(first - reach, 0), min(last + reach, small.shape[2])
        slopes, shifts = _guided_coefficients(small[:, :, low:high])
        coefficients = torch.cat([slopes, shifts], dim=1)[0, :, first - low : last - low]
        for left in range(0, width, CHROMA_COLUMNS):  # blocks whose planes stay in the CPU's cache
            right = min(left + CHROMA_COLUMNS, width)
            upsampled = _upsampled_block(coefficients, first, (top, bottom), (left, right), step)
            _apply_chroma(rgb[top:bottom, left:right], upsampled, gains, strength)
    return rgb


def _block_means(rgb: np.ndarray, step: int, band: int) -> torch.Tensor:
    """``(3, ⌈H/step⌉, ⌈W/step⌉)`` float32: the means of ``rgb (H, W, 3)`` (float32 or half floats) over
    ``step``² blocks (the last row and column of blocks over what the photo has), read ``band`` rows
    at a time (a multiple of ``step``), so memory holds one band as float32: rows summed in groups
    of ``step``, then pixels along them, each as whole contiguous rows (24 MP: 0.02 s, where
    ``avg_pool2d`` of the channels' strided planes took 0.11 s)."""
    bands = [_group_means(_group_means(torch.from_numpy(rgb[top : top + band]).float(), 0, step), 1, step)
             for top in range(0, rgb.shape[0], band)]
    return torch.cat(bands).permute(2, 0, 1).contiguous()


def _group_means(values: torch.Tensor, axis: int, step: int) -> torch.Tensor:
    """The means of ``values`` over consecutive groups of ``step`` along ``axis`` (the last group over
    what there is)."""
    length = values.shape[axis]
    whole = length // step
    groups = values.narrow(axis, 0, whole * step).unflatten(axis, (whole, step))
    means = groups.select(axis + 1, 0).clone()
    for k in range(1, step):
        means += groups.select(axis + 1, k)
    means *= 1.0 / step
    if length % step:
        means = torch.cat([means, values.narrow(axis, whole * step, length % step).mean(axis, keepdim=True)], dim=axis)
    return means


def _upsampled_block(small: torch.Tensor, first_row: int, rows: tuple[int, int], columns: tuple[int, int],
                     step: int) -> torch.Tensor:
    """``(C, bottom − top, right − left)``: values of ``step``² blocks, ``small (C, h, w)`` (its row 0
    the image's block row ``first_row``; every block column), bilinearly upsampled between the
    blocks' centres (edges held) over the full-resolution ``rows`` × ``columns`` (``[start, end)``):
    the whole image's upsampling there, from the blocks it reads and one more on each side."""
    (top, bottom), (left, right) = rows, columns
    start_row, end_row = max(top // step - 1, first_row), min(-(-bottom // step) + 1, first_row + small.shape[1])
    start, end = max(left // step - 1, 0), min(-(-right // step) + 1, small.shape[2])
    upsampled = _upsample(_upsample(small[:, start_row - first_row : end_row - first_row, start:end], step, -1), step, -2)
    return upsampled[:, top - step * start_row : bottom - step * start_row, left - step * start : right - step * start]


def _apply_chroma(pixels: np.ndarray, coefficients: torch.Tensor, gains: torch.Tensor, strength: float = 1.0) -> None:
    """In place: camera RGB ``pixels (h, w, 3)`` given (``strength`` of the way) the chroma the guided
    filter fits there, ``coefficients (8, h, w)`` (each guide channel's slopes for red and blue, then
    the shifts), its luminance kept."""
    rows = torch.from_numpy(pixels).permute(2, 0, 1)  # (3, h, w), a view
    balanced = torch.mul(rows, gains, out=torch.empty(rows.shape))
    red_blue = coefficients[6:8]  # chroma of red and of blue: the fitted linear function of the guide
    for guide in range(3):
        red_blue.addcmul_(coefficients[2 * guide : 2 * guide + 2], balanced[guide : guide + 1])
    luminance = balanced.mean(0, keepdim=True)
    balanced[0:1] = luminance + red_blue[0:1]
    balanced[1:2] = luminance - red_blue.sum(0, keepdim=True)  # the three chroma sum to zero
    balanced[2:3] = luminance + red_blue[1:2]
    balanced.div_(gains)
    if strength < 1.0:  # part of the way: from the smoothed chroma back towards the pixels' own
        balanced.lerp_(rows.float(), 1.0 - strength)
    rows.copy_(balanced)


CHROMA_SUBSAMPLE = 4  # the fit is made on 4 × 4 block means
CHROMA_RADIUS = 2  # block means: windows of 5 × 5 of them, 20 × 20 px (bench/chroma.py)
CHROMA_EPS = 1e-3  # regularisation of the fit, in squared white-balanced linear units (bench/chroma.py)
CHROMA_BAND = 512  # rows; like the reach, a multiple of the subsampling, so bands share the whole image's grid
CHROMA_COLUMNS = 256  # the filter is applied in blocks of a band this wide (a multiple of the subsampling too): a
# block's 8 upsampled coefficient planes, 4 MB, stay in the CPU's cache (24 MP on two cores: 0.61 s with 1,024, 0.54)


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
    covariance = {(i, j): means[0, 5 + n] - mean_guide[0, i] * mean_guide[0, j] + (CHROMA_EPS if i == j else 0.0)
                  for n, (i, j) in enumerate(pairs)}
    covariance.update({(j, i): value for (i, j), value in list(covariance.items())})
    cross = means[0, 11:17].view(3, 2, h, w) - mean_guide[0, :, None] * mean_chroma[0, None]  # (3 guide, 2 chroma, h, w)
    slopes = _solve_symmetric_3x3(covariance, cross)  # (3 guide, 2 chroma, h, w)
    shifts = mean_chroma - (slopes * mean_guide[0, :, None]).sum(0)[None]
    return _window_mean(torch.cat([slopes.reshape(1, 6, h, w), shifts], dim=1)).split([6, 2], dim=1)


def _solve_symmetric_3x3(matrix: dict[tuple[int, int], torch.Tensor], right: torch.Tensor) -> torch.Tensor:
    """``matrix⁻¹ · right`` at every pixel: ``matrix[i, j]`` the ``(h, w)`` entries of a symmetric,
    positive definite 3×3 matrix, ``right (3, k, h, w)``. By the adjugate over the determinant: a
    few elementwise products, where a batched ``torch.linalg.solve`` of millions of 3×3 systems
    took a third of the chroma smoothing."""
    a = matrix
    adjugate = {(0, 0): a[1, 1] * a[2, 2] - a[1, 2] * a[1, 2], (0, 1): a[0, 2] * a[1, 2] - a[0, 1] * a[2, 2],
                (0, 2): a[0, 1] * a[1, 2] - a[0, 2] * a[1, 1], (1, 1): a[0, 0] * a[2, 2] - a[0, 2] * a[0, 2],
                (1, 2): a[0, 1] * a[0, 2] - a[0, 0] * a[1, 2], (2, 2): a[0, 0] * a[1, 1] - a[0, 1] * a[0, 1]}
    adjugate.update({(j, i): value for (i, j), value in list(adjugate.items())})
    inverse_determinant = 1.0 / (a[0, 0] * adjugate[0, 0] + a[0, 1] * adjugate[1, 0] + a[0, 2] * adjugate[2, 0])
    return torch.stack([sum(adjugate[i, j] * right[j] for j in range(3)) * inverse_determinant for i in range(3)])


def _upsample(planes: torch.Tensor, step: int, axis: int) -> torch.Tensor:
    """``planes (C, h, w)`` upsampled ``step`` times along ``axis`` (-1, -2) by linear interpolation
    between sample centres, edges held (``interpolate(..., mode="bilinear", align_corners=False)``
    along one axis): each of the ``step`` output phases is one ``lerp`` of neighbouring samples,
    about twice as fast on the CPU as the 2-D kernel."""
    length = planes.shape[axis]
    padded = torch.cat([planes.narrow(axis, 0, 1), planes, planes.narrow(axis, length - 1, 1)], dim=axis)
    shape = list(planes.shape)
    shape[axis] = length * step
    out = torch.empty(shape, dtype=planes.dtype)
    phases = out.view(*shape[:-1], length, step) if axis == -1 else out.view(shape[0], length, step, shape[2])
    for phase in range(step):
        position = (phase + 0.5) / step - 0.5  # in samples, from the sample the phase belongs to
        before = 0 if position < 0 else 1  # where the lower neighbour sits in ``padded``
        target = phases[..., phase] if axis == -1 else phases[:, :, phase]
        torch.lerp(padded.narrow(axis, before, length), padded.narrow(axis, before + 1, length), position + 1 - before, out=target)
    return out


def _window_mean(planes: torch.Tensor) -> torch.Tensor:
    """The mean over each pixel's (2·:data:`CHROMA_RADIUS` + 1)² window, of the pixels inside: box
    sums of shifted slices (:func:`~lowlight_raw.layouts.base.separable_filter`, several times faster
    than ``avg_pool2d`` here) over the number of pixels each window holds."""
    box = torch.ones(2 * CHROMA_RADIUS + 1)
    inside = separable_filter(torch.ones((1, 1) + planes.shape[-2:]), box)
    return separable_filter(planes, box).div_(inside)
