"""The one place where packed, normalised planes (any sensor layout) become the network's input.

Training (:mod:`lowlight_raw.training`) and inference (the engine) both amplify the planes with
:func:`amplified_planes` and add their noise sigma with :class:`NoiseConditioning` (training: in
:func:`network_input`, or batches made on a GPU in its torch twin :func:`network_input_torch`; the
engine: per tile), so the amplification, clipping and noise conditioning the network sees are
identical in both.

A raw whose blacks were clipped at zero (a converter's linear DNG: its demosaic's negatives cut
off; :func:`clipped_at_black`) has lost the lower half of the noise around black: left so, every
dark area is biased upward and the network, trained on noise of both signs, sees a signal that is
not there. Each zero then stands for a sample that was at or below zero, and is given the mean of
such a sample of black's noise, ``−σ₀·√(2/π)`` (:data:`ZERO_MEAN_IN_SIGMAS`; ``σ₀ = √b`` of the
noise profile), before the gain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .noise import NoiseProfile, noise_sigma_map

CLIPPED_ZERO_SHARE = 0.01  # at least this share of exact zeros, and none below: blacks clipped at zero
ZERO_MEAN_IN_SIGMAS = -math.sqrt(2.0 / math.pi)  # E[X | X ≤ 0] of zero-mean Gaussian noise, in its sigmas


def clipped_at_black(packed_norm: np.ndarray) -> bool:
    """Whether ``packed_norm``'s blacks were clipped at zero: no sample below zero, and at least
    :data:`CLIPPED_ZERO_SHARE` of them exactly zero (noise around black, kept, has both signs)."""
    return float(packed_norm.min()) >= 0.0 and np.count_nonzero(packed_norm == 0.0) >= CLIPPED_ZERO_SHARE * packed_norm.size


def amplified_planes(packed_norm: np.ndarray, gain: float, profile: NoiseProfile, in_place: bool = False,
                     blacks_clipped: bool | None = None) -> np.ndarray:
    """``(C, h, w)`` normalised packed planes of the dark raw (Bayer: C = 4, RGGB) → the network
    input's first ``C`` channels, ``clip(gain · x, −1, 1)`` float32; where the blacks were clipped at
    zero (:func:`clipped_at_black`), each zero is first given the mean of what it stands for (the
    module's text). ``packed_norm`` is ``(raw − black) / (white − black)`` (may be slightly
    negative), ``profile`` the ``Var = a·x + b`` noise of that *un-amplified* raw; ``in_place``
    (float32 planes only): amplified where they are, so memory holds the planes once;
    ``blacks_clipped``: :func:`clipped_at_black` of ``packed_norm`` where the caller has it already."""
    packed_norm = np.asarray(packed_norm, dtype=np.float32)
    planes = packed_norm if in_place else np.empty_like(packed_norm)
    zero_stands_for = np.float32(ZERO_MEAN_IN_SIGMAS * math.sqrt(max(profile.b, 0.0)) * gain)
    unclip = clipped_at_black(packed_norm) if blacks_clipped is None else blacks_clipped
    for channel in range(len(planes)):  # plane by plane: no full-size temporaries
        x = np.multiply(packed_norm[channel], np.float32(gain), out=planes[channel])
        if unclip:
            x[x == 0.0] = zero_stands_for
        np.clip(x, -1.0, 1.0, out=x)
    return planes


@dataclass(frozen=True)
class NoiseConditioning:
    """The network input's last ``C`` channels, the per-pixel noise sigma after amplification, made
    from its first ``C`` (:func:`amplified_planes`) where they are needed: the engine's tiler makes
    them per tile (:func:`~lowlight_raw.pipeline.tiling.run_tiled`), so memory never holds them
    for the whole photo. ``profile``: the noise of the *un-amplified* raw; ``gain`` a float or, for
    a training batch, an ``(N, 1, 1, 1)`` tensor (like ``profile.a`` and ``profile.b``)."""

    profile: NoiseProfile
    gain: float | torch.Tensor

    def __call__(self, planes: torch.Tensor, memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
        """Amplified planes ``(N, C, h, w)`` → the network input ``(N, 2C, h, w)``, made in place in
        one tensor of ``memory_format`` (the tiler's: channels-last)."""
        count = planes.shape[1]
        inputs = torch.empty((planes.shape[0], 2 * count, *planes.shape[2:]), dtype=planes.dtype, device=planes.device,
                             memory_format=memory_format)
        inputs[:, :count] = planes
        noise_sigma_map(planes, self.profile, self.gain, out=inputs[:, count:])
        return inputs


def network_input(packed_norm: np.ndarray, gain: float, profile: NoiseProfile) -> np.ndarray:
    """``(C, h, w)`` normalised packed planes of the dark raw → the whole ``(2C, h, w)`` float32
    network input: :func:`amplified_planes`, then the noise sigma of each (:class:`NoiseConditioning`).
    For training samples and tests; the engine keeps the amplified planes alone and lets the tiler
    add the sigma per tile."""
    planes = amplified_planes(packed_norm, gain, profile)
    return np.concatenate([planes, noise_sigma_map(planes, profile, gain)])


def network_input_torch(packed_norm: torch.Tensor, gain: torch.Tensor | float, profile: NoiseProfile) -> torch.Tensor:
    """:func:`network_input` for a batch ``(N, C, h, w)`` on any device → ``(N, 2C, h, w)``.

    ``gain`` and ``profile.a``/``profile.b`` may be ``(N, 1, 1, 1)`` tensors: one per sample. Made
    for training batches, whose synthetic raws keep the noise of both signs: it does not look for
    blacks clipped at zero.
    """
    return NoiseConditioning(profile, gain)((gain * packed_norm).clamp(-1.0, 1.0))
