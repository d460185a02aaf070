"""Physics-based sensor noise for synthetic low-light raws (after Wei et al., ELD, CVPR 2020).

A clean mosaic (normalised raw scale, 0 = black, 1 = white) is darkened by an exposure
``ratio``, turned into electrons at a sampled system gain ``K`` (DN per electron), given
Poisson shot noise, read noise (Gaussian or heavier-tailed Tukey-lambda) whose sigma follows
``K`` log-linearly, per-row banding noise, a black-level offset, ADC quantisation to 12–14
bits and clipping at 0 and at the white level, then normalised back.

Ranges come from darktable's measured ``noiseprofiles.json``: over the ISO 800–25600 green
channel profiles of all its cameras, ``a`` spans about 9e-6 … 8.5e-4 (2nd–98th percentile;
8e-7 … 3e-5 at ISO 100–800, the clean photos a fifth of the training samples are)
and ``log b ≈ 1.32 · log a − 2.34`` with a residual std of 1.1 (natural log). The sampled
camera is returned with the ``a, b`` (``Var = a·x + b``) it really has, which is what the
network is told, exactly as the engine tells it darktable's (or an estimated) profile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..pipeline.noise import LOG_B_FIT, NoiseProfile

A_RANGE = (9e-6, 8.5e-4)  # shot-noise slope a on the normalised scale, ISO 800–25600
CLEAN_A_RANGE = (8e-7, 3e-5)  # the same at ISO 100–800 (darktable, 2nd–98th percentile)
CLEAN_SHARE = 0.2  # share of training samples that are well-exposed low-ISO photos (×1)
LOG_B_SPREAD = 0.8  # std of the sampled log b around the fit (darktable's residual: 1.1)
B_RANGE = (1e-8, 3e-5)
RATIO_RANGE = (1.0, 300.0)
BIT_DEPTHS = (12, 14)


@dataclass(frozen=True)
class SensorModel:
    """One sampled camera/ISO, in raw DN units."""

    bits: int
    black: float  # black level, DN
    system_gain: float  # K, DN per electron
    read_sigma: float  # total read noise sigma, DN (Gaussian/Tukey part + row part)
    row_fraction: float  # share of the read variance that is per-row banding
    tukey_lambda: float | None  # None: Gaussian read noise; < 0: heavier tails

    @property
    def white(self) -> float:
        return float(2**self.bits - 1)

    @property
    def span(self) -> float:
        """``white - black``: one unit of the normalised scale, in DN."""
        return self.white - self.black

    @classmethod
    def with_profile(cls, a: float, b: float, bits: int = 14, black: float = 1024.0) -> "SensorModel":
        """A Gaussian-read-noise sensor whose :meth:`profile` is ``Var = a·x + b``."""
        span = 2.0**bits - 1.0 - black
        return cls(bits=bits, black=black, system_gain=a * span,
                   read_sigma=math.sqrt(max(b * span**2 - 1.0 / 12.0, 0.0)), row_fraction=0.0, tukey_lambda=None)

    @property
    def point_sigma(self) -> float:
        """Sigma (DN) of the per-pixel read noise: the read noise less its row part."""
        return self.read_sigma * math.sqrt(1.0 - self.row_fraction)

    @property
    def row_sigma(self) -> float:
        """Sigma (DN) of the per-row banding noise."""
        return self.read_sigma * math.sqrt(self.row_fraction)

    def electrons_at_white(self, ratio: float) -> float:
        """Mean electrons a pixel collects for a clean value of 1 shot ``ratio``× darker."""
        return self.span / self.system_gain / ratio

    def profile(self) -> NoiseProfile:
        """``Var = a·x + b`` of this sensor on the normalised scale (quantisation included)."""
        a = self.system_gain / self.span
        b = (self.read_sigma**2 + 1.0 / 12.0) / self.span**2
        return NoiseProfile(a=a, b=b, source=f"synthetic ({self.bits}-bit, K={self.system_gain:.3g} DN/e-)")


def sample_sensor(rng: np.random.Generator, a_range: tuple[float, float] = A_RANGE) -> SensorModel:
    """A random camera at a random high ISO, matching darktable's measured ``a``/``b`` spread."""
    bits = int(rng.choice(BIT_DEPTHS))
    white = 2**bits - 1
    black = float(round(rng.uniform(0.03, 0.13) * white))
    span = white - black
    log_a = rng.uniform(math.log(a_range[0]), math.log(a_range[1]))
    log_b = LOG_B_FIT[0] * log_a + LOG_B_FIT[1] + float(np.clip(rng.normal(), -2.0, 2.0)) * LOG_B_SPREAD
    b = float(np.clip(math.exp(log_b), *B_RANGE))
    read_var = max(b * span**2 - 1.0 / 12.0, 0.05)
    tukey = None if rng.random() < 0.5 else float(rng.uniform(-0.25, 0.1))
    return SensorModel(
        bits=bits,
        black=black,
        system_gain=math.exp(log_a) * span,
        read_sigma=math.sqrt(read_var),
        row_fraction=float(rng.uniform(0.0, 0.15)),
        tukey_lambda=tukey,
    )


def sample_exposure(rng: np.random.Generator) -> tuple[SensorModel, float]:
    """Sensor and exposure ratio of one training sample.

    :data:`CLEAN_SHARE` of them are well-exposed photos at a low ISO (×1): a good photo in a
    mixed batch must come back as sharp as it went in. The rest: a high-ISO sensor at a ratio
    from :func:`sample_ratio`.
    """
    if rng.random() < CLEAN_SHARE:
        return sample_sensor(rng, a_range=CLEAN_A_RANGE), 1.0
    return sample_sensor(rng), sample_ratio(rng)


def sample_ratio(rng: np.random.Generator) -> float:
    """Exposure ratio, log-uniform within a band drawn by :data:`RATIO_BANDS`' shares: most in ×3–×100,
    where most rescued photos are (the v2 networks drew 70 % from ×50–×300)."""
    bands, shares = zip(*RATIO_BANDS.items())
    lo, hi = bands[int(rng.choice(len(bands), p=shares))]
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


RATIO_BANDS = {(1.0, 3.0): 0.15, (3.0, 100.0): 0.55, (100.0, RATIO_RANGE[1]): 0.30}  # band → share of dark samples


TUKEY_U_MARGIN = 1e-7  # uniform samples are drawn from (margin, 1 - margin): finite quantiles


def tukey_lambda_std(lam: float) -> float:
    """Standard deviation of the standard Tukey-lambda distribution (``lam`` in (-0.5, 0.14])."""
    if abs(lam) < 1e-4:  # the logistic limit
        return math.pi / math.sqrt(3.0)
    var = 2.0 / lam**2 * (1.0 / (1.0 + 2.0 * lam) - math.gamma(lam + 1.0) ** 2 / math.gamma(2.0 * lam + 2.0))
    return math.sqrt(var)


def tukey_lambda_from_uniform(u, lam: float):
    """Zero-mean, unit-variance Tukey-lambda samples from uniform ``u`` (a numpy array or a torch
    tensor, the result is the same type): the quantile function, divided by :func:`tukey_lambda_std`."""
    if abs(lam) < 1e-4:
        odds = u / (1.0 - u)
        x = odds.log() if hasattr(odds, "log") else np.log(odds)
    else:
        x = (u**lam - (1.0 - u) ** lam) / lam
    return x / tukey_lambda_std(lam)


def tukey_lambda_noise(rng: np.random.Generator, shape: tuple[int, ...], lam: float) -> np.ndarray:
    """Zero-mean, unit-variance Tukey-lambda samples (``lam`` in (-0.5, 0.14]; < 0: heavy tails)."""
    return tukey_lambda_from_uniform(rng.uniform(TUKEY_U_MARGIN, 1.0 - TUKEY_U_MARGIN, size=shape), lam)


def simulate_dark_raw(clean_mosaic: np.ndarray, ratio: float, sensor: SensorModel, rng: np.random.Generator) -> np.ndarray:
    """Clean ``(H, W)`` mosaic (normalised, well exposed) → noisy normalised mosaic shot ``ratio``× darker.

    Returns ``(raw - black) / (white - black)`` of the simulated dark raw, float32.
    """
    electrons = np.clip(clean_mosaic, 0.0, 1.0) * sensor.electrons_at_white(ratio)
    signal_dn = rng.poisson(electrons).astype(np.float64) * sensor.system_gain
    if sensor.tukey_lambda is None:
        read = rng.normal(0.0, 1.0, size=clean_mosaic.shape)
    else:
        read = tukey_lambda_noise(rng, clean_mosaic.shape, sensor.tukey_lambda)
    row = rng.normal(0.0, sensor.row_sigma, size=(clean_mosaic.shape[0], 1))
    raw = np.round(signal_dn + sensor.point_sigma * read + row + sensor.black)
    raw = np.clip(raw, 0.0, sensor.white)
    return ((raw - sensor.black) / sensor.span).astype(np.float32)
