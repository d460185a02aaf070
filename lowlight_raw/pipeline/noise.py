"""Poisson-Gaussian noise level of a photo, and the noise-sigma planes the network sees.

All values are on the normalised raw scale: ``x = (raw - black) / (white - black)``, so 0 is
black and 1 is the sensor's white level. The noise of a pixel whose true value is ``x`` has
variance ``Var = a·x + b`` (``a``: shot noise, ``b``: read noise), the convention of
darktable's ``noiseprofiles.json``.

After amplification by ``gain``, ``y = gain·x`` has variance ``gain·a·y + gain²·b``; the network
gets its square root per pixel (:func:`noise_sigma_map`). Training and inference both call that
one function, so the network's conditioning means the same thing in both.

Where the profile comes from (:func:`profile_for`), first hit wins:

1. darktable's measured profile for the camera model and ISO, when a ``noiseprofiles.json``
   is found (darktable installs one; ``LOWLIGHT_NOISEPROFILES`` or an explicit path overrides);
   between two measured ISOs ``a`` and ``b`` are interpolated linearly in ISO.
2. An estimate from the photo itself (:func:`estimate_profile`): ``a`` from green pixels against
   their green neighbours in the flattest blocks, bounded by what cameras have at the photo's ISO
   when it is known; ``b`` from the masked (optical black) pixels when LibRaw exposes enough of
   them, else the read noise cameras typically have with that ``a``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..layouts.base import SensorLayout
from ..layouts.bayer import BayerLayout

DARKTABLE_PROFILES = (
    Path("/usr/share/darktable/noiseprofiles.json"),
    Path("/usr/local/share/darktable/noiseprofiles.json"),
    Path("/app/share/darktable/noiseprofiles.json"),
    Path("/Applications/darktable.app/Contents/Resources/share/darktable/noiseprofiles.json"),
)


@dataclass(frozen=True)
class NoiseProfile:
    """``Var = a·x + b`` on the normalised raw scale, and where the numbers came from."""

    a: float
    b: float
    source: str

    def amplified(self, gain: float) -> "NoiseProfile":
        """The profile of ``gain·x``: ``Var(y) = (gain·a)·y + gain²·b``."""
        return NoiseProfile(self.a * gain, self.b * gain * gain, self.source)


def noise_sigma_map(packed: torch.Tensor | np.ndarray, profile: NoiseProfile, gain: float):
    """Per-pixel noise sigma of amplified packed planes (same shape and type as ``packed``).

    ``packed`` holds ``gain·x`` (may be noisy, slightly negative, clipped at 1). The signal
    estimate is the observed value clipped to ``[0, 1]``.
    """
    amp = profile.amplified(gain)
    if isinstance(packed, torch.Tensor):
        var = torch.clamp(packed, 0.0, 1.0).mul_(amp.a).add_(amp.b)
        return var.clamp_min_(1e-12).sqrt_()
    var = amp.a * np.clip(packed, 0.0, 1.0) + amp.b
    return np.sqrt(np.maximum(var, 1e-12)).astype(packed.dtype, copy=False)


def find_darktable_profiles(explicit: Path | None = None) -> Path | None:
    """The ``noiseprofiles.json`` to use: ``explicit``, ``$LOWLIGHT_NOISEPROFILES``, or darktable's."""
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get("LOWLIGHT_NOISEPROFILES")
    if env:
        return Path(env)
    return next((p for p in DARKTABLE_PROFILES if p.is_file()), None)


def _camera_key(make: str, camera_model: str) -> tuple[str, str]:
    """Spelling-independent key: EXIF says ("NIKON CORPORATION", "NIKON D750"), darktable ("Nikon", "D750")."""
    maker = (make.strip().lower().split() or [""])[0]
    name = " ".join(camera_model.strip().lower().split())
    if maker and name.startswith(maker + " "):
        name = name[len(maker) + 1 :]
    return maker, name


@lru_cache(maxsize=4)
def _load_profiles(path: Path) -> dict[tuple[str, str], list[tuple[float, float, float]]]:
    """Camera key → sorted ``[(iso, a, b), …]`` using the green channel."""
    data = json.loads(Path(path).read_text())
    table: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for maker in data.get("noiseprofiles", []):
        for model in maker.get("models", []):
            rows = [
                (float(p["iso"]), float(p["a"][1]), float(p["b"][1]))
                for p in model.get("profiles", [])
                if "iso" in p and len(p.get("a", [])) == 3 and len(p.get("b", [])) == 3
            ]
            if rows:
                table[_camera_key(maker["maker"], model["model"])] = sorted(rows)
    return table


def darktable_profile(make: str, camera_model: str, iso: float, path: Path) -> NoiseProfile | None:
    """darktable's measured profile for this camera at this ISO, or ``None`` if it has none."""
    if not iso or iso <= 0:
        return None
    rows = _load_profiles(Path(path)).get(_camera_key(make, camera_model))
    if rows is None:
        return None
    isos = np.array([r[0] for r in rows])
    a = float(np.interp(iso, isos, [r[1] for r in rows]))
    b = float(np.interp(iso, isos, [r[2] for r in rows]))
    if iso > isos[-1]:  # above the highest measured ISO, noise keeps growing with the gain
        a *= iso / isos[-1]
        b *= (iso / isos[-1]) ** 2
    return NoiseProfile(a=a, b=max(b, 1e-12), source=f"darktable noiseprofiles.json ({make} {camera_model}, ISO {iso:g})")


# Facts from darktable's noiseprofiles.json (green channel, every camera, ISO 100–51200): the
# read-noise variance grows with the shot-noise slope, log b ≈ 1.32·log a − 2.34 (residual std
# 1.1), and a grows with the ISO, log a ≈ 0.868·log ISO − 16.58 (90 % of cameras within
# ×0.32 … ×4.9 of that line).
LOG_B_FIT = (1.3235, -2.3358)
ISO_A_FIT = (0.868, -16.58)
ISO_A_SPREAD = (0.32, 4.9)

ESTIMATE_BLOCK = 8  # packed pixels a side of the blocks the noise is measured in
ESTIMATE_BINS = 12  # brightness bins
# at most this many blocks are measured (every k-th, across the whole photo): a 24 MP Bayer raw has 93,000,
# whose robust spreads took 0.2 s; the sweep's 1 MP photos (16,000) are measured whole as before
ESTIMATE_MAX_BLOCKS = 32768
LOW_QUANTILE = 0.1  # per bin, the flattest 10 % of the blocks …
LOWEST_BINS = 1 / 3  # … and of the bins' answers the median of the lowest third
_MAD_TO_SIGMA = 1.0 / 0.6744897501960817


def read_variance_for(a: float) -> float:
    """The typical read-noise variance ``b`` of a camera whose shot-noise slope is ``a``."""
    return float(np.exp(LOG_B_FIT[0] * np.log(a) + LOG_B_FIT[1]))


def typical_a_at_iso(iso: float) -> float:
    """The typical shot-noise slope ``a`` of a camera at ``iso``."""
    return float(np.exp(ISO_A_FIT[0] * np.log(iso) + ISO_A_FIT[1]))


@lru_cache(maxsize=8)
def _low_quantile_ratio(layout: type[SensorLayout]) -> float:
    """The :data:`LOW_QUANTILE` of the blocks' variance estimates from ``layout``'s noise residual
    of white Gaussian noise, ÷ its σ² (neighbouring residuals share pixels, so this is measured
    rather than derived)."""
    noise = np.random.default_rng(0).normal(size=(layout.channels, 512, 512))
    mad = _median_absolute_deviations(_blocks(layout.noise_residual(noise)[0]))
    return float(np.quantile((mad * _MAD_TO_SIGMA) ** 2, LOW_QUANTILE))


def _blocks(plane: np.ndarray) -> np.ndarray:
    n = ESTIMATE_BLOCK
    h, w = plane.shape[0] // n * n, plane.shape[1] // n * n
    return plane[:h, :w].reshape(h // n, n, w // n, n).swapaxes(1, 2).reshape(-1, n * n)


def _median_absolute_deviations(rows: np.ndarray) -> np.ndarray:
    """Each row's median absolute deviation from its median: ``np.median`` along the rows, as the
    mean of the two middle values of sorted rows (the same values; numpy's vectorised sort took a
    sixth of its selection's time: 32,768 blocks of 64, 0.06 → 0.01 s)."""
    def medians(values: np.ndarray) -> np.ndarray:
        ordered = np.sort(values, axis=1)
        n = values.shape[1]
        return (ordered[:, (n - 1) // 2] + ordered[:, n // 2]) / 2
    return medians(np.abs(rows - medians(rows)[:, None]))


def _slope_for(x: np.ndarray, v: np.ndarray, b: float | None) -> np.ndarray:
    """Per bin, the ``a`` for which ``a·x + b`` (``b`` = :func:`read_variance_for` ``(a)`` if None) is ``v``."""
    if b is not None:
        return np.maximum((v - b) / np.maximum(x, 1e-6), 1e-9)
    lo, hi = np.full(x.shape, np.log(1e-9)), np.full(x.shape, np.log(1e-1))
    for _ in range(50):  # bisection in log a: the left side grows with a
        mid = 0.5 * (lo + hi)
        below = np.exp(mid) * x + np.exp(LOG_B_FIT[0] * mid + LOG_B_FIT[1]) < v
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return np.exp(0.5 * (lo + hi))


def _median_of_lowest(values: np.ndarray, weights: np.ndarray, share: float) -> float:
    """Weighted median of the smallest ``values`` that hold ``share`` of the total weight."""
    order = np.argsort(values)
    values, cumulative = values[order], np.cumsum(weights[order])
    if cumulative[-1] <= 0:
        return float(np.median(values))
    lowest = cumulative <= max(share * cumulative[-1], cumulative[0])
    return float(values[lowest][np.searchsorted(cumulative[lowest], 0.5 * cumulative[lowest][-1])])


def estimate_profile(packed: np.ndarray, masked: np.ndarray | None = None, iso: float | None = None,
                     layout: type[SensorLayout] | SensorLayout = BayerLayout) -> NoiseProfile:
    """Estimate ``a`` and ``b`` from normalised packed planes of one photo (``layout``'s, RGGB by default).

    Texture, not noise, is what fools an estimator, so: the noise is measured in the layout's
    :meth:`~lowlight_raw.layouts.base.SensorLayout.noise_residual` (a green pixel against its green
    neighbours, in which every quadratic scene cancels), robustly (median absolute deviation) in
    blocks (at most :data:`ESTIMATE_MAX_BLOCKS`, spread evenly); per brightness bin only the flattest blocks count (each block's variance first brought
    to its bin's level); texture can only *add* variance, so of the bins' answers the lowest
    third decides. ``b`` is the variance of the masked (optical black) pixels when there are
    enough (``masked``), else tied to ``a`` the way darktable's cameras have it. A known ``iso``
    keeps ``a`` within the range real cameras have at that ISO, so a clean, detailed photo is
    not taken for a noisy one.
    """
    residual, level = layout.noise_residual(packed)
    diff, level = _blocks(residual), _blocks(level)
    every = max(1, -(-len(diff) // ESTIMATE_MAX_BLOCKS))
    diff, level = diff[::every], level[::every]
    b_masked = float(np.var(masked.astype(np.float64))) if masked is not None and masked.size >= 1024 else None
    mean = level.mean(axis=1)
    usable = level.max(axis=1) < 0.95  # no clipped highlights
    source = "estimated from the image" + (" and its masked pixels" if b_masked is not None else "")
    if usable.sum() < 16:
        a = typical_a_at_iso(iso) if iso else 1e-5
        return NoiseProfile(a, b_masked if b_masked is not None else read_variance_for(a),
                            "typical for its ISO (too little of the image to measure)" if iso else "default (image too small to measure)")
    mad = _median_absolute_deviations(diff)
    mean, var = mean[usable], (mad[usable] * _MAD_TO_SIGMA) ** 2
    bins = np.array_split(np.argsort(mean), min(ESTIMATE_BINS, mean.size // 16))
    x = np.maximum([np.median(mean[i]) for i in bins], 0.0)  # a dark raw's blacks average slightly below 0
    bin_level = np.empty_like(mean)
    for level_of_bin, members in zip(x, bins):
        bin_level[members] = level_of_bin
    ratio = _low_quantile_ratio(layout if isinstance(layout, type) else type(layout))

    def slope_of(variances: np.ndarray) -> float:
        v = np.array([np.quantile(variances[i], LOW_QUANTILE) for i in bins]) / ratio
        slopes = _slope_for(x, v, b_masked)
        # How much a bin says about a: the share of its variance that is shot noise (all of it
        # when b is tied to a; near black, little when b was measured).
        weights = np.ones_like(slopes) if b_masked is None else (slopes * x / np.maximum(v, 1e-30)).clip(0.0, 1.0) ** 2
        return _median_of_lowest(slopes, weights, LOWEST_BINS)

    # The blocks of one bin differ in brightness and so in noise, and its flattest blocks would
    # be its darkest (a dark bin can span ×4): with a first answer, bring every block's variance
    # to its bin's level, and answer again.
    a = slope_of(var)
    b = b_masked if b_masked is not None else read_variance_for(a)
    a = slope_of(var * (a * bin_level + b) / (a * np.maximum(mean, 0.0) + b))
    if iso:
        typical = typical_a_at_iso(iso)
        bounded = float(np.clip(a, ISO_A_SPREAD[0] * typical, ISO_A_SPREAD[1] * typical))
        if bounded != a:
            source += f", bounded by what cameras have at ISO {iso:g}"
        a = bounded
    return NoiseProfile(a=a, b=b_masked if b_masked is not None else read_variance_for(a), source=source)


def profile_for(
    packed: np.ndarray,
    make: str,
    camera_model: str,
    iso: float,
    masked: np.ndarray | None = None,
    profiles_path: Path | None = None,
    layout: type[SensorLayout] | SensorLayout = BayerLayout,
) -> NoiseProfile:
    """The noise profile to use for one photo: darktable's if known, else estimated."""
    path = find_darktable_profiles(profiles_path)
    if path is not None and path.is_file():
        profile = darktable_profile(make, camera_model, iso, path)
        if profile is not None:
            return profile
    return estimate_profile(packed, masked, iso, layout)
