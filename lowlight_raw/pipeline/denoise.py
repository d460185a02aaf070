"""A denoiser for the clean rendering: wavelet (B3-spline) Wiener shrinkage of the packed planes,
driven by the known noise profile, then an empirical Wiener filter of their block DCTs.

The clean rendering the network is blended with (:mod:`.restore`) is the layout's classical
demosaic; on a noisy raw (×3–×30) it was noisy (Bayer ×10 in ``evaluate --sweep``: 30.9 dB), and
so was half the product there. This denoises the *packed planes* before that demosaic: there the
noise is white and its variance known at every sample, ``Var = A·x + B`` (the amplified profile,
:meth:`~.noise.NoiseProfile.amplified`), where after a demosaic it is spatially correlated and
different per site; and they are a third of the values of the camera-RGB rendering (Bayer,
X-Trans), which the time budget needs.

How (:func:`denoise_planes`):

* **Decorrelated colours.** The planes, white-balanced (``wb``), become each packed pixel's colour
  means (its red, green and blue samples: the layout's ``colour_planes``) as an orthonormal luma
  and two chromas, plus each colour's orthonormal (Helmert) within-colour differences (Bayer:
  G1 − G2), which hold the finest detail and noise. Linear, inverted exactly.
* **Noise per component and pixel.** A component's noise variance is ``Σ_c W[k, c]·(A·x̂_c + B)``,
  ``x̂_c`` colour ``c``'s level smoothed (B3, ≥ 0), ``W`` the transform's squared weights on that
  colour's samples (white balance included). No variance-stabilising transform, whose inverse is
  biased near black: the shrinkage works on the linear values.
* **Bands.** Each component is split into :data:`SCALES` detail bands and a coarse residual: band 0
  is the planes less their B3 smoothing; the coarser ones are made the same way on the 2×-decimated
  smoothing, recursively, and their change is interpolated back (linearly) onto the finer
  smoothing (a Laplacian-pyramid reading of the à-trous transform: a quarter of the work per band;
  it scored within 0.05 dB of the undecimated à-trous in the sweep). The finest
  :data:`ORIENTED_LEVELS` bands are split into three oriented ones that sum to them (separable:
  vertical edges, horizontal edges, diagonal detail; :func:`_bands`), so that an edge's energy does
  not raise the gain of the noise across it. Each band is multiplied by
  its local Wiener gain ``s² / (s² + n²)``: ``n²`` its noise variance (the component's, times the
  band's response ``β²`` to unit white noise, times :data:`FACTOR` squared), ``s²`` its 3 × 3 mean
  square less ``n²`` (≥ 0). The coarse residual is kept as it is: a linear low-pass, so a flat
  area keeps its mean level, near black too (an unbiased mean, which shadow ΔL\\* scores; the
  tests measure it within 1.2 standard errors of the noisy samples' mean).
* **A second stage** (:func:`_block_wiener`, BM3D's second step without its block matching),
  where the planes' noise is white (mosaics; not a converter's linear raw): the first stage's
  result is the pilot; each component is cut into blocks of :data:`WIENER_BLOCK`² packed pixels on
  three grids (:data:`WIENER_GRIDS`, offset by a third of a block along each diagonal), each
  block's DCT coefficients multiplied by ``p² / (p² + n²)`` (``p`` the pilot's, ``n²`` the block's
  mean noise variance; the mean kept, so levels stay unbiased), and the grids' estimates
  averaged with BM3D's weights.

Measured on the sweep's 5 scenes (sRGB PSNR of the clean rendering alone, mean): Bayer ×3 39.15 →
39.56, ×10 30.90 → 34.08, ×30 24.75 → 30.48; X-Trans ×10 30.24 → 31.93; linear ×10 29.29 → 32.64.
Oriented finest bands (:data:`ORIENTED_LEVELS` 1, :data:`FACTOR` 1.3 → 1.5): Bayer ×3 39.58 →
39.80, ×10 34.08 → 34.45, ×30 30.48 → 30.65 (the unseen test scene ×10 34.15 → 35.28); X-Trans
×10 32.93 → 33.14; linear ×10 32.67 → 32.84. Two oriented levels scored 0.1–0.2 dB more
(Bayer ×10 34.61) but cost X-Trans up to 1.9× the isotropic denoiser's time. A second,
empirical-Wiener stage (BM3D's second step: the first stage's estimate, decomposed the same way,
as the pilot, gain ``p² / (p² + n²)``) gained 0.06 dB with the pilot's 3 × 3 energy and lost
0.3 dB without it; with oriented bands 0.08 dB over the oriented first stage alone, for twice the
time and twice the reach. Oriented energy windows (5 × 3 along the edge) gained ≤ 0.06 dB.
The second stage, on the sweep (``lowlight-raw evaluate --sweep --methods model``; the model,
whose clean rendering it denoises): Bayer ×10 / ×30 / ×100 35.27 / 32.38 / 28.90 → 35.61 / 32.66 /
29.04, SSIM ×10 0.923 → 0.927, edge chroma ×10 4.34 → 4.12; X-Trans 34.64 / 32.14 / 29.11 → 34.91
/ 32.33 / 29.22; ×1 unchanged; ×3, at full strength since (:mod:`.restore`), 40.04 / 38.68 → 40.09 /
38.71. Sliding blocks (every pixel's 36) scored 0.1 dB more at
×10 for 9× the work; four grids (every half block) no more than three; blocks of 4 px 0.1 dB less,
of 8 px the same as 6; hard thresholds (2.7 σ) on the same grids as the pilot, in place of the wavelet
stage, 0.1–0.2 dB less; on linear raws +0.05 / +0.02 dB at ×10 / ×30 for 3× the denoising time (left out).
24 MP on two cores: Bayer's denoising 0.71 → 1.18 s, X-Trans's 0.80 → 1.36 s.
Tried and dropped: soft thresholds at fixed multiples of σ (1–2 dB lower at ×10–×30), chroma
shrunk harder than luma (lower: the packed chromas mix the samples' sub-pixel positions, so they
hold fine luminance detail), each plane shrunk alone (0.3–0.8 dB lower). 24 MP Bayer on one core
of a shared machine, in areas of 512 × 1,024 packed pixels (:func:`~.restore.blend_clean_rendering`;
the isotropic denoiser in 256 × 1,024, min of 3 interleaved runs): 0.79 → 1.30 s; X-Trans
(1,640 × 2,460 × 9) 1.52 → 2.29 s.

A sample depends on the planes within :data:`REACH` packed pixels; an area denoised alone must
start on a multiple of :data:`ALIGN` (the decimations' grid) and say where it starts (the block
grids are the whole image's) to equal the whole image's. Each level's bands are shrunk only where
the result is needed (the window and the second stage's blocks around it, at the finest; at a coarser
one, what the finer one's interpolation reads), its smoothing made everywhere (the next level's
input): the same values, and 24 MP Bayer's denoising on two cores 1.22 → 1.01 s (its areas' reach
had been shrunk whole).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch.nn import functional as F

from ..layouts.base import SensorLayout
from .noise import NoiseProfile

SCALES = 4  # detail bands
WIENER_BLOCK = 6  # packed pixels a side of the second stage's DCT blocks
# the second stage's block grids: where their blocks start in the whole image, (rows, columns) mod WIENER_BLOCK
WIENER_GRIDS = ((0, 0), (2, 4), (4, 2))
# packed pixels a denoised sample depends on, each way (level j, on the 2^j-times decimated planes: the
# spline's 2, the local energy's 1 and the interpolation's 1; the smoothed levels the noise follows: 2),
# and the second stage's blocks around it (5)
REACH = 4 * (2**SCALES - 1) + 4 + WIENER_BLOCK - 1
ALIGN = 2 ** (SCALES - 1)  # an area denoised alone starts on a multiple of this: the decimations' grid
ORIENTED_LEVELS = 1  # the finest levels whose band is split into three orientations (the coarser ones: one band)
FACTOR = 1.3  # the noise sigma the Wiener gains assume, in the components' own noise sigmas (1.5 until the result's
# fine false colour was taken out, 2026-12-07: then the sweep's model ×10 Bayer / X-Trans / linear scored 36.71 / 36.03 /
# 35.03 dB, with 1.3 36.75 / 36.11 / 35.11 (SSIM 0.9359 → 0.9367, 0.9303 → 0.9318), ×3 +0.01 … +0.08, ×30 within
# 0.04; 1.15 and 1.7: Bayer ×10 36.75, 36.63)
_B3 = (1.0 / 16, 4.0 / 16, 6.0 / 16, 4.0 / 16, 1.0 / 16)


@lru_cache(maxsize=8)
def _transform(colour_planes: tuple[tuple[int, ...], ...], wb: tuple[float, float, float]):
    """``(matrix, inverse, weights)``: ``matrix (C, C)`` takes the white-balanced planes to luma,
    two chromas and the within-colour differences; ``weights (C, 3)``: each component's noise
    variance per unit of each colour's raw noise variance."""
    channels = sum(len(p) for p in colour_planes)
    means = np.zeros((3, channels))
    differences = []
    for colour, planes in enumerate(colour_planes):
        n = len(planes)
        means[colour, list(planes)] = 1.0 / n
        if n > 1:  # Helmert's orthonormal contrasts among the colour's samples
            for k in range(1, n):
                row = np.zeros(channels)
                row[list(planes[:k])] = 1.0 / np.sqrt(k * (k + 1))
                row[planes[k]] = -k / np.sqrt(k * (k + 1))
                differences.append(row)
    opponent = np.array([[1, 1, 1], [1, 0, -1], [1, -2, 1]], dtype=np.float64)
    opponent /= np.linalg.norm(opponent, axis=1, keepdims=True)
    balance = np.zeros(channels)
    for colour, planes in enumerate(colour_planes):
        balance[list(planes)] = wb[colour]
    matrix = np.concatenate([opponent @ means] + ([np.stack(differences)] if differences else []), axis=0)
    matrix = matrix * balance[None, :]  # of the raw planes: white balance first
    inverse = np.linalg.inv(matrix)
    weights = np.zeros((channels, 3))
    for colour, planes in enumerate(colour_planes):
        weights[:, colour] = (matrix[:, list(planes)] ** 2).sum(1)
    return (torch.from_numpy(matrix.astype(np.float32)), torch.from_numpy(inverse.astype(np.float32)),
            torch.from_numpy(weights.astype(np.float32)))


@lru_cache(maxsize=1)
def band_noise() -> tuple[tuple[float, ...], ...]:
    """``β_j``: the standard deviations of level ``j``'s bands (:func:`_bands`: three oriented ones
    at the first :data:`ORIENTED_LEVELS`, one after) of unit white noise (:func:`_shrink_level`'s
    decomposition, without shrinking), measured once on a 512² draw (fixed seed)."""
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 512, 512)).astype(np.float32))
    betas = []
    for level in range(SCALES):
        smooth, bands = _bands(x, level < ORIENTED_LEVELS)
        betas.append(tuple(float(band[:, 16:-16, 16:-16].std()) for band in bands))
        x = smooth[:, ::2, ::2]
    return tuple(betas)


def _smooth(x: torch.Tensor, step: int = 1) -> torch.Tensor:
    """``x (K, h, w)`` filtered by the B3 spline (taps 1, 4, 6, 4, 1 over 16) dilated by ``step``,
    the border replicated."""
    pad = 2 * step
    h, w = x.shape[-2:]
    padded = F.pad(x[None], (pad, pad, pad, pad), mode="replicate")[0]
    across = padded.narrow(2, 2 * step, w) * _B3[2]
    across.add_(padded.narrow(2, step, w).add(padded.narrow(2, 3 * step, w)), alpha=_B3[1])
    across.add_(padded.narrow(2, 0, w).add(padded.narrow(2, 4 * step, w)), alpha=_B3[0])
    result = across.narrow(1, 2 * step, h) * _B3[2]
    result.add_(across.narrow(1, step, h).add(across.narrow(1, 3 * step, h)), alpha=_B3[1])
    result.add_(across.narrow(1, 0, h).add(across.narrow(1, 4 * step, h)), alpha=_B3[0])
    return result


def _smooth_along(x: torch.Tensor, axis: int) -> torch.Tensor:
    """``x (K, h, w)`` filtered by the B3 spline along ``axis`` (1: down the columns, 2: across the
    rows), the border replicated."""
    n = x.shape[axis]
    padded = F.pad(x[None], (2, 2, 0, 0) if axis == 2 else (0, 0, 2, 2), mode="replicate")[0]
    result = padded.narrow(axis, 2, n) * _B3[2]
    result.add_(padded.narrow(axis, 1, n).add(padded.narrow(axis, 3, n)), alpha=_B3[1])
    result.add_(padded.narrow(axis, 0, n).add(padded.narrow(axis, 4, n)), alpha=_B3[0])
    return result


def _bands(x: torch.Tensor, oriented: bool, rows: slice = slice(None), columns: slice = slice(None)
           ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """``(smoothing, bands)`` of ``x (K, h, w)``: the B3 smoothing ``S = Sᵥ·Sₕ`` (everywhere) and,
    within ``rows`` × ``columns`` (slices with a start and a stop, or whole), the detail ``x − S``,
    whole, or (``oriented``) as its three separable parts, which sum to it: ``Sᵥ·(1 − Sₕ)`` (detail
    across the rows: vertical edges), ``Sₕ·(1 − Sᵥ)`` (horizontal edges) and ``(1 − Sₕ)·(1 − Sᵥ)``
    (diagonal detail), the whole image's there."""
    across = _smooth_along(x, 2)
    smooth = _smooth_along(across, 1)
    area = (slice(None), rows, columns)
    if not oriented:
        return smooth, (x[area] - smooth[area],)
    h = x.shape[1]
    top, bottom = max((rows.start or 0) - 2, 0), min((h if rows.stop is None else rows.stop) + 2, h)  # the spline's reach
    start = (rows.start or 0) - top
    down = _smooth_along(x[:, top:bottom, columns], 1)[:, start : start + smooth[area].shape[1]]
    diagonal = (x[area] - across[area]).sub_(down).add_(smooth[area])
    return smooth, (down.sub_(smooth[area]), across[area] - smooth[area], diagonal)


def _box3(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """``x (K, h, w)``'s 3 × 3 means times ``scale``, the border replicated."""
    padded = F.pad(x[None], (1, 1, 1, 1), mode="replicate")[0]
    across = padded[:, :, :-2] + padded[:, :, 1:-1]
    across += padded[:, :, 2:]
    result = across[:, :-2] + across[:, 1:-1]
    result += across[:, 2:]
    return result.mul_(scale / 9.0)


def _upsample(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``x (K, ⌈h/2⌉, ⌈w/2⌉)``, the samples at even pixels of ``(K, h, w)``, linearly interpolated between."""
    def along(t: torch.Tensor, axis: int, length: int) -> torch.Tensor:
        n = t.shape[axis]
        shape = list(t.shape)
        shape[axis] = 2 * n
        out = torch.empty(shape, dtype=t.dtype)
        even, odd = out.narrow(axis, 0, 2 * n).unflatten(axis, (n, 2)).unbind(axis + 1)
        even.copy_(t)
        if n > 1:
            torch.add(t.narrow(axis, 0, n - 1), t.narrow(axis, 1, n - 1), out=odd.narrow(axis, 0, n - 1)).mul_(0.5)
        odd.narrow(axis, n - 1, 1).copy_(t.narrow(axis, n - 1, 1))
        return out.narrow(axis, 0, length)
    return along(along(x, 1, h), 2, w)


def _wiener(result: torch.Tensor, detail: torch.Tensor, noise_variance: torch.Tensor, beta: float) -> torch.Tensor:
    """In place: ``result`` plus band ``detail`` (overwritten) times its local Wiener gain,
    ``s² / (s² + n²)``: ``n² = β²·v`` its noise variance (``noise_variance``: ``v``, > 0), ``s²`` its
    local energy ``e`` (the 3 × 3 mean of its square) less that noise (≥ 0); computed as
    ``1 − v / max(e / β², v)``."""
    energy = _box3(detail.square(), 1.0 / beta**2)
    gain = torch.maximum(energy, noise_variance, out=energy)
    gain = torch.div(noise_variance, gain, out=gain)
    return result.add_(detail).addcmul_(detail, gain, value=-1.0)


def _shrink_level(x: torch.Tensor, variance: torch.Tensor, level: int, needed: tuple[slice, slice]) -> torch.Tensor:
    """Components ``x (K, h, w)`` of pixel noise ``variance`` (as at full resolution) within
    ``needed`` (rows, columns: ``slice(start, stop)``): their bands of this ``level``
    (:func:`_bands`, made there and a pixel around, the local energy's reach) Wiener-shrunk, and the
    coarser ones, made on the 2× decimated smoothing (of the whole of ``x``), shrunk in turn where
    the interpolation back reads them."""
    h, w = x.shape[-2:]
    step = 2**level
    rows = slice(max(needed[0].start - 1, 0), min(needed[0].stop + 1, h))
    columns = slice(max(needed[1].start - 1, 0), min(needed[1].stop + 1, w))
    smooth, bands = _bands(x, level < ORIENTED_LEVELS, rows, columns)
    noise_variance = variance[:, ::step, ::step][:, rows, columns].clamp_min(1e-30)
    coarser = level + 1 < SCALES and min(h, w) > 2
    result = smooth[:, rows, columns].clone() if coarser else smooth[:, rows, columns]  # the coarser level reads smooth
    for band, beta in zip(bands, band_noise()[level]):
        _wiener(result, band, noise_variance, beta)
    if coarser:
        small = smooth[:, ::2, ::2]
        # the decimated samples the interpolation onto ``rows`` × ``columns`` reads
        within = tuple(slice(span.start // 2, min(span.stop // 2 + 1, length))
                       for span, length in zip((rows, columns), small.shape[1:]))
        change = _shrink_level(small, variance, level + 1, within).sub_(small[:, within[0], within[1]])
        upsampled = _upsample(change, 2 * change.shape[1], 2 * change.shape[2])
        result.add_(upsampled[:, rows.start - 2 * within[0].start : rows.stop - 2 * within[0].start,
                              columns.start - 2 * within[1].start : columns.stop - 2 * within[1].start])
    return result[:, needed[0].start - rows.start : needed[0].stop - rows.start,
                  needed[1].start - columns.start : needed[1].stop - columns.start]


@lru_cache(maxsize=1)
def _block_dct_matrix() -> torch.Tensor:
    """The orthonormal 2-D DCT-II of a :data:`WIENER_BLOCK`² block, as one ``(n², n²)`` matrix on its
    flattened pixels (``coefficients = pixels @ matrix``; its transpose inverts it): one matrix
    product for every block at once, where the separable pair of 6 × 6 ones took 3× as long."""
    n = WIENER_BLOCK
    k = np.arange(n)
    dct = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n))
    dct[0] /= np.sqrt(2.0)
    return torch.from_numpy(np.kron(dct, dct).T.astype(np.float32))


def _block_wiener(x: torch.Tensor, variance: torch.Tensor, pilot: torch.Tensor, origin: tuple[int, int]) -> torch.Tensor:
    """The second stage: components ``x (K, h, w)`` of noise ``variance`` (per pixel), each block's
    DCT coefficients multiplied by the empirical Wiener gain ``p² / (p² + n²)`` (``p`` the
    ``pilot``'s coefficient, ``n²`` the block's mean noise variance; the mean, the first
    coefficient, kept), on each of :data:`WIENER_GRIDS` (``origin``: where ``x`` starts in the whole
    image), the grids' estimates averaged per pixel with BM3D's weights (1 / the sum of the squared
    gains). Mirrored at the area's border (repeated, where the area is too small to mirror)."""
    k, h, w = x.shape
    n, pad = WIENER_BLOCK, WIENER_BLOCK
    dct = _block_dct_matrix()

    def mirrored(t: torch.Tensor) -> torch.Tensor:  # room for any grid's last block too (a tiny area: repeated)
        return F.pad(t[None], (pad, pad + n, pad, pad + n), mode="reflect" if min(h, w) > pad + n else "replicate")[0]

    x, variance, pilot = mirrored(x), mirrored(variance), mirrored(pilot)
    weighted, weights = torch.zeros_like(x), torch.zeros_like(x)
    for grid_row, grid_column in WIENER_GRIDS:
        top, left = (grid_row - origin[0] + pad) % n, (grid_column - origin[1] + pad) % n
        rows, columns = -(-(pad + h - top) // n), -(-(pad + w - left) // n)

        def area(t: torch.Tensor) -> torch.Tensor:
            return t[:, top : top + rows * n, left : left + columns * n]

        def flattened(t: torch.Tensor) -> torch.Tensor:  # (K, rows, columns, n²): each block's pixels
            return area(t).reshape(k, rows, n, columns, n).transpose(2, 3).reshape(k, rows, columns, n * n)

        noise_variance = F.avg_pool2d(area(variance)[None], n)[0, ..., None]
        gain = (flattened(pilot) @ dct).square_()
        gain = gain.div_((gain + noise_variance).clamp_min_(1e-30))
        gain[..., 0] = 1.0
        weight = gain.square().sum(-1, keepdim=True).reciprocal_()
        estimate = ((flattened(x) @ dct).mul_(gain).mul_(weight) @ dct.T).view(k, rows, columns, n, n).transpose(2, 3)
        area(weighted).view(k, rows, n, columns, n).add_(estimate)
        area(weights).view(k, rows, n, columns, n).add_(weight.view(k, rows, 1, columns, 1))
    return weighted.div_(weights)[:, pad : pad + h, pad : pad + w]


def denoise_planes(planes: torch.Tensor, layout: type[SensorLayout] | SensorLayout, wb: np.ndarray,
                   noise: NoiseProfile, strength: float = 1.0, origin: tuple[int, int] = (0, 0),
                   window: tuple[slice, slice] | None = None) -> torch.Tensor:
    """Packed planes ``(C, h, w)`` of ``layout`` (amplified, not clamped) → denoised, same shape, or
    only their ``window`` (rows, columns: ``slice(start, stop)``); ``noise``: the *amplified*
    profile; ``strength``: the noise the shrinkage assumes (the first stage: times :data:`FACTOR`);
    ``origin``: where the planes start in the whole image (packed row, column). The second stage
    (:func:`_block_wiener`) runs where the layout's planes hold white noise (``layout.white_noise``)
    and at full ``strength`` (1: the restore's ramp is at its top, σ 0.0028 at mid-grey; below it, on
    clean textured photos whose noise the estimate overrates, it took up to 0.07 dB of detail in
    ``bench/no_harm.py``), on the window and the blocks' reach around it."""
    channels, h, w = planes.shape
    rows, columns = window if window is not None else (slice(0, h), slice(0, w))
    matrix, inverse, weights = _transform(tuple(tuple(p) for p in layout.colour_planes), tuple(float(v) for v in wb[:3]))
    # each colour's level (raw units), smoothed: the signal its noise variance follows
    colour_means = torch.stack([planes[list(p)].mean(0) for p in layout.colour_planes])
    raw_variance = _smooth(colour_means).clamp_min_(0.0).mul_(noise.a).add_(noise.b)
    variance = (weights @ raw_variance.reshape(3, -1)).reshape(channels, h, w)  # each component's
    variance.mul_(strength**2)
    components = (matrix @ planes.reshape(channels, -1)).reshape(channels, h, w)
    if layout.white_noise and strength >= 1.0:  # the second stage, on the window and its blocks' reach
        reach = WIENER_BLOCK - 1
        top, bottom = max(rows.start - reach, 0), min(rows.stop + reach, h)
        left, right = max(columns.start - reach, 0), min(columns.stop + reach, w)
        around = (slice(None), slice(top, bottom), slice(left, right))
        pilot = _shrink_level(components, variance * FACTOR**2, 0, around[1:])
        result = _block_wiener(components[around], variance[around], pilot, (origin[0] + top, origin[1] + left))
        result = result[:, rows.start - top : rows.stop - top, columns.start - left : columns.stop - left]
    else:
        result = _shrink_level(components, variance * FACTOR**2, 0, (rows, columns))
    return (inverse @ result.reshape(channels, -1)).reshape(result.shape)
