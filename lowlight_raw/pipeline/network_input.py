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
such a sample, ``E[X | X ≤ 0]`` for ``X ~ N(μ, a·μ + b)`` (:func:`clipped_stand_ins`), where ``μ``
is the level around it: the mean of its plane over :data:`STAND_IN_WINDOW`² packed pixels, zeros
mended, found in :data:`STAND_IN_ROUNDS` rounds from black's own, ``−√b·√(2/π)``
(:data:`ZERO_MEAN_IN_SIGMAS`). Black's alone, for every zero, is right for black but too dark for a
dark grey: the sweep's converter-clipped linear raws scored ×100 27.89 dB with it, 28.28 with the
level around (×300 23.17 → 23.47; 5² packed pixels: 28.22, 15²: 28.34 but blacks +1.3 L* where
9² has +1.0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..layouts.base import separable_filter
from .noise import NoiseProfile, noise_sigma_map

CLIPPED_ZERO_SHARE = 0.01  # at least this share of exact zeros, and none below: blacks clipped at zero
ZERO_MEAN_IN_SIGMAS = -math.sqrt(2.0 / math.pi)  # E[X | X ≤ 0] of zero-mean Gaussian noise, in its sigmas
STAND_IN_WINDOW = 9  # packed pixels a side of the window a zero's level is measured in
STAND_IN_ROUNDS = 2  # rounds of level, then stand-ins (a third moved ×100 by 0.01 dB)


def clipped_at_black(packed_norm: np.ndarray) -> bool:
    """Whether ``packed_norm``'s blacks were clipped at zero: no sample below zero, and at least
    :data:`CLIPPED_ZERO_SHARE` of them exactly zero (noise around black, kept, has both signs)."""
    return float(packed_norm.min()) >= 0.0 and np.count_nonzero(packed_norm == 0.0) >= CLIPPED_ZERO_SHARE * packed_norm.size


def amplified_planes(packed_norm: np.ndarray, gain: float, profile: NoiseProfile, in_place: bool = False,
                     blacks_clipped: bool | None = None) -> np.ndarray:
    """``(C, h, w)`` normalised packed planes of the dark raw (Bayer: C = 4, RGGB) → the network
    input's first ``C`` channels, ``clip(gain · x, −1, 1)``, of ``packed_norm``'s dtype (float32, or a
    large linear raw's half floats: :func:`~.device.image_dtype`); where the blacks were clipped at
    zero (:func:`clipped_at_black`), each zero is first given the mean of what it stands for (the
    module's text). ``packed_norm`` is ``(raw − black) / (white − black)`` (may be slightly
    negative), ``profile`` the ``Var = a·x + b`` noise of that *un-amplified* raw; ``in_place``:
    amplified where they are, so memory holds the planes once;
    ``blacks_clipped``: :func:`clipped_at_black` of ``packed_norm`` where the caller has it already."""
    planes = packed_norm if in_place else np.empty_like(packed_norm)
    unclip = clipped_at_black(packed_norm) if blacks_clipped is None else blacks_clipped
    for channel in range(len(planes)):  # plane by plane: no full-size temporaries
        plane = clipped_stand_ins(packed_norm[channel], profile) if unclip else packed_norm[channel]
        amplified = torch.from_numpy(plane).to(torch.float32, copy=True).mul_(gain).clamp_(-1.0, 1.0)  # in float32
        torch.from_numpy(planes[channel]).copy_(amplified)  # stored in the planes' dtype (torch: 4× numpy's speed)
    return planes


def clipped_stand_ins(plane: np.ndarray, profile: NoiseProfile) -> np.ndarray:
    """A normalised packed ``plane (h, w)`` whose blacks were clipped at zero, each zero replaced by
    ``E[X | X ≤ 0]`` for ``X ~ N(μ, a·μ + b)`` of the un-amplified ``profile``, ``μ ≥ 0`` the level
    around it (the module's text); a new float32 array."""
    mended = torch.tensor(plane, dtype=torch.float32)
    zeros = torch.nonzero(mended.view(-1) == 0.0).squeeze(1)  # flat positions of the clipped samples
    flat = mended.view(-1)
    flat[zeros] = ZERO_MEAN_IN_SIGMAS * math.sqrt(max(profile.b, 0.0))
    box = torch.ones(STAND_IN_WINDOW)
    counts = [separable_filter(torch.ones(size), box, -1) for size in mended.shape]  # pixels each window holds, per axis
    inside = counts[0][zeros // mended.shape[1]] * counts[1][zeros % mended.shape[1]]
    for _ in range(STAND_IN_ROUNDS):
        level = separable_filter(mended, box).view(-1)[zeros].div_(inside).clamp_(min=0.0)  # the rest: at zeros only
        sigma = (level * profile.a + profile.b).clamp_(min=1e-20).sqrt_()
        alpha = -level / sigma
        mills = torch.exp(-0.5 * alpha * alpha - 0.5 * math.log(2.0 * math.pi) - torch.special.log_ndtr(alpha))  # φ(α)/Φ(α)
        flat[zeros] = level - sigma * mills
    return mended.numpy()


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
        # made contiguous, then copied: written straight into the channels-last view, whose values
        # are strided, it took 7× as long (24 MP Bayer: 0.21 against 0.03 s)
        inputs[:, count:] = noise_sigma_map(planes, self.profile, self.gain)
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
