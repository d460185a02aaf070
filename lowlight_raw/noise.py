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
2. An estimate from the photo itself (:func:`estimate_profile`): the read-noise variance ``b``
   from the masked (optical black) pixels when LibRaw exposes enough of them, and ``a`` (and
   ``b`` when there are no masked pixels) from a robust fit of local variance against local mean
   over the flattest blocks of the packed planes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

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
        var = amp.a * packed.clamp(0.0, 1.0) + amp.b
        return var.clamp_min(1e-12).sqrt()
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


def _camera_key(make: str, model: str) -> tuple[str, str]:
    """Spelling-independent key: EXIF says ("NIKON CORPORATION", "NIKON D750"), darktable ("Nikon", "D750")."""
    maker = (make.strip().lower().split() or [""])[0]
    name = " ".join(model.strip().lower().split())
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


def darktable_profile(make: str, model: str, iso: float, path: Path) -> NoiseProfile | None:
    """darktable's measured profile for this camera at this ISO, or ``None`` if it has none."""
    if not iso or iso <= 0:
        return None
    rows = _load_profiles(Path(path)).get(_camera_key(make, model))
    if rows is None:
        return None
    isos = np.array([r[0] for r in rows])
    a = float(np.interp(iso, isos, [r[1] for r in rows]))
    b = float(np.interp(iso, isos, [r[2] for r in rows]))
    if iso > isos[-1]:  # above the highest measured ISO, noise keeps growing with the gain
        a *= iso / isos[-1]
        b *= (iso / isos[-1]) ** 2
    return NoiseProfile(a=a, b=max(b, 1e-12), source=f"darktable noiseprofiles.json ({make} {model}, ISO {iso:g})")


LOW_QUANTILE = 0.1


def _chi2_quantile_ratio(q: float, dof: int) -> float:
    """Quantile ``q`` of a sample variance divided by the true variance (Wilson–Hilferty)."""
    z = float(np.sqrt(2.0) * _erfinv(2.0 * q - 1.0))
    c = 2.0 / (9.0 * dof)
    return (1.0 - c + z * np.sqrt(c)) ** 3


def _erfinv(y: float) -> float:
    return float(torch.erfinv(torch.tensor(y, dtype=torch.float64)))


def estimate_profile(packed: np.ndarray, masked: np.ndarray | None = None, block: int = 8) -> NoiseProfile:
    """Estimate ``a`` and ``b`` from normalised packed planes ``(4, h, w)`` of one photo.

    ``masked``: normalised optical-black pixels (already black-subtracted) or ``None``.
    """
    low_quantile_ratio = _chi2_quantile_ratio(LOW_QUANTILE, block * block - 1)
    means, variances = [], []
    for plane in packed:
        h, w = (plane.shape[0] // block) * block, (plane.shape[1] // block) * block
        if h == 0 or w == 0:
            continue
        blocks = plane[:h, :w].reshape(h // block, block, w // block, block).swapaxes(1, 2)
        blocks = blocks.reshape(-1, block * block).astype(np.float64)
        means.append(blocks.mean(1))
        variances.append(blocks.var(1, ddof=1))
    if not means:
        return NoiseProfile(a=1e-4, b=1e-6, source="default (image too small to estimate)")
    mean = np.concatenate(means)
    var = np.concatenate(variances)
    b_masked = None
    if masked is not None and masked.size >= 1024:
        b_masked = float(np.var(masked.astype(np.float64)))
    # Flat blocks carry only noise: per brightness bin, the low quantile of variance.
    ok = (mean > -0.01) & (mean < 0.9)
    mean, var = mean[ok], var[ok]
    edges = np.quantile(mean, np.linspace(0, 1, 17)) if mean.size >= 64 else np.array([])
    xs, ys = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (mean >= lo) & (mean <= hi)
        if sel.sum() >= 8:
            xs.append(float(np.median(mean[sel])))
            ys.append(float(np.quantile(var[sel], LOW_QUANTILE)) / low_quantile_ratio)
    if len(xs) >= 2 and np.ptp(xs) > 1e-6:
        x, y = np.array(xs), np.array(ys)
        if b_masked is not None:  # fit the slope only, through the measured read noise
            a = float(np.sum(x * (y - b_masked)) / np.sum(x * x))
            b = b_masked
        else:
            a, b = (float(v) for v in np.polyfit(x, y, 1))
        source = "estimated from the image" + (" and its masked pixels" if b_masked is not None else "")
    else:
        a, b = 0.0, float(np.quantile(var, LOW_QUANTILE)) / low_quantile_ratio if var.size else 1e-6
        source = "estimated from the image (flat image: read noise only)"
    return NoiseProfile(a=max(a, 1e-7), b=max(b, 1e-10), source=source)


def profile_for(
    packed: np.ndarray,
    make: str,
    model: str,
    iso: float,
    masked: np.ndarray | None = None,
    profiles_path: Path | None = None,
) -> NoiseProfile:
    """The noise profile to use for one photo: darktable's if known, else estimated."""
    path = find_darktable_profiles(profiles_path)
    if path is not None and path.is_file():
        profile = darktable_profile(make, model, iso, path)
        if profile is not None:
            return profile
    return estimate_profile(packed, masked)
