"""The one place where packed, normalised planes (any sensor layout) become the network's input.

Training (:mod:`lowlight_raw.training`) and inference (the engine) both call
:func:`network_input` (batches made on a GPU: its torch twin :func:`network_input_torch`), so
the amplification, clipping and noise conditioning the network sees are identical in both.

A raw whose blacks were clipped at zero (a converter's linear DNG: its demosaic's negatives cut
off; :func:`clipped_at_black`) has lost the lower half of the noise around black: left so, every
dark area is biased upward and the network, trained on noise of both signs, sees a signal that is
not there. Each zero then stands for a sample that was at or below zero, and is given the mean of
such a sample of black's noise, ``−σ₀·√(2/π)`` (:data:`ZERO_MEAN_IN_SIGMAS`; ``σ₀ = √b`` of the
noise profile), before the gain.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .noise import NoiseProfile, noise_sigma_map

CLIPPED_ZERO_SHARE = 0.01  # at least this share of exact zeros, and none below: blacks clipped at zero
ZERO_MEAN_IN_SIGMAS = -math.sqrt(2.0 / math.pi)  # E[X | X ≤ 0] of zero-mean Gaussian noise, in its sigmas


def clipped_at_black(packed_norm: np.ndarray) -> bool:
    """Whether ``packed_norm``'s blacks were clipped at zero: no sample below zero, and at least
    :data:`CLIPPED_ZERO_SHARE` of them exactly zero (noise around black, kept, has both signs)."""
    return float(packed_norm.min()) >= 0.0 and np.count_nonzero(packed_norm == 0.0) >= CLIPPED_ZERO_SHARE * packed_norm.size


def network_input(packed_norm: np.ndarray, gain: float, profile: NoiseProfile) -> np.ndarray:
    """``(C, h, w)`` normalised packed planes of the dark raw (Bayer: C = 4, RGGB) → ``(2C, h, w)``
    float32 network input.

    ``packed_norm`` is ``(raw - black) / (white - black)`` (may be slightly negative);
    ``profile`` is the ``Var = a·x + b`` noise of that *un-amplified* raw. Channels 0…C−1 hold
    ``clip(gain · x, -1, 1)``, channels C…2C−1 the per-pixel noise sigma after amplification; where
    the blacks were clipped at zero (:func:`clipped_at_black`), each zero is first given the mean
    of what it stands for (the module's text).
    """
    packed_norm = np.asarray(packed_norm, dtype=np.float32)
    planes = len(packed_norm)
    inputs = np.empty((2 * planes, *packed_norm.shape[1:]), dtype=np.float32)
    zero_stands_for = np.float32(ZERO_MEAN_IN_SIGMAS * math.sqrt(max(profile.b, 0.0)) * gain)
    unclip = clipped_at_black(packed_norm)
    for channel in range(planes):  # plane by plane, in place: no full-size temporaries
        x = np.multiply(packed_norm[channel], np.float32(gain), out=inputs[channel])
        if unclip:
            x[x == 0.0] = zero_stands_for
        np.clip(x, -1.0, 1.0, out=x)
        inputs[planes + channel] = noise_sigma_map(x, profile, gain)
    return inputs


def network_input_torch(packed_norm: torch.Tensor, gain: torch.Tensor | float, profile: NoiseProfile) -> torch.Tensor:
    """:func:`network_input` for a batch ``(N, C, h, w)`` on any device → ``(N, 2C, h, w)``.

    ``gain`` and ``profile.a``/``profile.b`` may be ``(N, 1, 1, 1)`` tensors: one per sample. Made
    for training batches, whose synthetic raws keep the noise of both signs: it does not look for
    blacks clipped at zero.
    """
    x = (gain * packed_norm).clamp(-1.0, 1.0)
    return torch.cat([x, noise_sigma_map(x, profile, gain)], dim=1)
