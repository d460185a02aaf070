"""The one place where packed, normalised Bayer planes become the network's 8 input channels.

Training (:mod:`lowlight_raw.training`) and inference (the engine) both call
:func:`network_input` (batches made on a GPU: its torch twin :func:`network_input_torch`), so
the amplification, clipping and noise conditioning the network sees are identical in both.
"""

from __future__ import annotations

import numpy as np
import torch

from .noise import NoiseProfile, noise_sigma_map


def network_input(packed_norm: np.ndarray, gain: float, profile: NoiseProfile) -> np.ndarray:
    """``(4, h, w)`` normalised RGGB planes of the dark raw → ``(8, h, w)`` float32 network input.

    ``packed_norm`` is ``(raw - black) / (white - black)`` (may be slightly negative);
    ``profile`` is the ``Var = a·x + b`` noise of that *un-amplified* raw. Channels 0–3 hold
    ``clip(gain · x, -1, 1)``, channels 4–7 the per-pixel noise sigma after amplification.
    """
    x = np.clip(gain * np.asarray(packed_norm, dtype=np.float32), -1.0, 1.0)
    sigma = noise_sigma_map(x, profile, gain)
    return np.concatenate([x, sigma], axis=0).astype(np.float32, copy=False)


def network_input_torch(packed_norm: torch.Tensor, gain: torch.Tensor | float, profile: NoiseProfile) -> torch.Tensor:
    """:func:`network_input` for a batch ``(N, 4, h, w)`` on any device → ``(N, 8, h, w)``.

    ``gain`` and ``profile.a``/``profile.b`` may be ``(N, 1, 1, 1)`` tensors: one per sample.
    """
    x = (gain * packed_norm).clamp(-1.0, 1.0)
    return torch.cat([x, noise_sigma_map(x, profile, gain)], dim=1)
