"""The one place where packed, normalised planes (any sensor layout) become the network's input.

Training (:mod:`lowlight_raw.training`) and inference (the engine) both call
:func:`network_input` (batches made on a GPU: its torch twin :func:`network_input_torch`), so
the amplification, clipping and noise conditioning the network sees are identical in both.
"""

from __future__ import annotations

import numpy as np
import torch

from .noise import NoiseProfile, noise_sigma_map


def network_input(packed_norm: np.ndarray, gain: float, profile: NoiseProfile) -> np.ndarray:
    """``(C, h, w)`` normalised packed planes of the dark raw (Bayer: C = 4, RGGB) → ``(2C, h, w)``
    float32 network input.

    ``packed_norm`` is ``(raw - black) / (white - black)`` (may be slightly negative);
    ``profile`` is the ``Var = a·x + b`` noise of that *un-amplified* raw. Channels 0…C−1 hold
    ``clip(gain · x, -1, 1)``, channels C…2C−1 the per-pixel noise sigma after amplification.
    """
    packed_norm = np.asarray(packed_norm, dtype=np.float32)
    planes = len(packed_norm)
    inputs = np.empty((2 * planes, *packed_norm.shape[1:]), dtype=np.float32)
    for channel in range(planes):  # plane by plane, in place: no full-size temporaries
        x = np.multiply(packed_norm[channel], np.float32(gain), out=inputs[channel])
        np.clip(x, -1.0, 1.0, out=x)
        inputs[planes + channel] = noise_sigma_map(x, profile, gain)
    return inputs


def network_input_torch(packed_norm: torch.Tensor, gain: torch.Tensor | float, profile: NoiseProfile) -> torch.Tensor:
    """:func:`network_input` for a batch ``(N, C, h, w)`` on any device → ``(N, 2C, h, w)``.

    ``gain`` and ``profile.a``/``profile.b`` may be ``(N, 1, 1, 1)`` tensors: one per sample.
    """
    x = (gain * packed_norm).clamp(-1.0, 1.0)
    return torch.cat([x, noise_sigma_map(x, profile, gain)], dim=1)
