"""Linear (already demosaiced) raws: LinearRaw DNGs from Adobe DNG Converter, iPhone ProRAW, phones.

The file holds camera RGB at every pixel (``PhotometricInterpretation`` 34892). It is packed by
space-to-depth: every 2×2 block becomes 12 planes in pixel-shuffle order (plane ``4·c + 2·i + j``
holds colour ``c`` of the block's pixel ``(i, j)``), so the network runs at the same half
resolution as for Bayer. An odd height or width is mirrored by one row/column at the bottom/right.

Such a file was demosaiced by whatever converted it, so its noise is spatially correlated; the
training pipeline makes it the same way (:meth:`LinearLayout.as_stored`: a noisy Bayer mosaic,
bilinearly demosaiced). Four of the twelve planes are where an RGGB sensor's samples were
(:meth:`LinearLayout.bayer_sites`); the network starts as the Bayer network reading them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from .base import SensorLayout, quincunx_residual

BLOCK = 2


@dataclass(frozen=True)
class LinearLayout(SensorLayout):
    """A visible ``height × width`` linear camera-RGB image."""

    kind = "linear"
    label = "linear RGB"
    # None: a clean linear raw comes back as its own pixels, the converter's demosaic the photographer had
    clean_network_share = 0.0  # bench/blend.py; its measurements: MODEL_CARD.md, "The clean-photo blend"
    # its network's share ramps up from restore.NETWORK_FROM_SIGMA, as the others' (from 0.001 until the fine false
    # colour came, 2026-12-07: then the sweep's ×3 / ×10 / ×30 scored 37.94 / 34.60 / 32.25 dB, from 0.006 38.20 / 35.03 / 32.42)
    scale = BLOCK
    channels = 3 * BLOCK * BLOCK
    colour_planes = tuple(tuple(range(c * BLOCK * BLOCK, (c + 1) * BLOCK * BLOCK)) for c in range(3))
    # a converter demosaiced the noise: neighbours share it (its denoiser's second stage, which assumes
    # white noise, scored ×10 / ×30 +0.05 / +0.02 dB in the sweep for 3× the denoising time: left out)
    white_noise = False
    pad_mode = "symmetric"  # whole 2×2 blocks are mirrored: every plane keeps its colour

    height: int
    width: int

    def __post_init__(self) -> None:
        if self.height < BLOCK or self.width < BLOCK:
            raise ValueError(f"image too small: {self.height}×{self.width}")

    @property
    def padding(self) -> tuple[int, int, int, int]:
        return 0, self.height % BLOCK, 0, self.width % BLOCK

    def pack(self, visible: np.ndarray) -> np.ndarray:
        """``(H, W, 3)`` normalised camera RGB → ``(12, h, w)``."""
        _, bottom, _, right = self.padding
        rgb = np.pad(visible, ((0, bottom), (0, right), (0, 0)), mode="reflect") if bottom or right else visible
        h, w = rgb.shape[0] // BLOCK, rgb.shape[1] // BLOCK
        blocks = rgb.reshape(h, BLOCK, w, BLOCK, 3).transpose(4, 1, 3, 0, 2)
        return np.ascontiguousarray(blocks.reshape(self.channels, h, w))

    @classmethod
    def training_patterns(cls) -> tuple[str, ...]:
        return ("RGGB",)  # the Bayer sensor behind the file (its phase does not survive demosaicing)

    @classmethod
    def for_pattern(cls, pattern: str, height: int, width: int) -> "LinearLayout":
        return cls(height, width)

    @classmethod
    def bayer_sites(cls) -> tuple[int, int, int, int]:
        # plane 4·c + 2·i + j: R of pixel (0, 0), G of (0, 1) and (1, 0), B of (1, 1)
        return 0, 5, 6, 11

    @classmethod
    def base_rgb(cls, packed: torch.Tensor) -> torch.Tensor:
        """Bayer's residual base, read from the Bayer sites (:meth:`bayer_sites`): with it a trained
        Bayer network carries over whole, as the Bayer network on those sites, and training
        teaches it to use the other eight planes."""
        from .bayer import BayerLayout

        return BayerLayout.base_rgb(packed[:, list(cls.bayer_sites())])

    @classmethod
    def naive_rgb(cls, packed: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(packed, BLOCK)

    @classmethod
    def clean_rgb(cls, packed: torch.Tensor, wb: np.ndarray) -> torch.Tensor:
        return F.pixel_shuffle(packed, BLOCK)  # the converter's own demosaic, as it is

    @classmethod
    def noise_residual(cls, packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Of the two diagonal pairs of greens in each 2×2 block, the one that differs more: on the
        sensor behind the file those were measured (the other two were interpolated, which hides
        most of their noise: the estimate came out 5× low with them on RGGB-made files)."""
        pairs = ((packed[5], packed[6], True), (packed[4], packed[7], False))  # pixels (0, 1)/(1, 0), (0, 0)/(1, 1)
        spread = [float(np.median(np.abs(g1[::4, ::4] - g2[::4, ::4]))) for g1, g2, _ in pairs]
        centre, diagonal, down_left = pairs[int(np.argmax(spread))]
        return quincunx_residual(centre, diagonal, down_left)

    @classmethod
    def luminance(cls, packed: np.ndarray, wb: np.ndarray) -> np.ndarray:
        per_colour = packed.reshape(3, BLOCK * BLOCK, *packed.shape[1:]).mean(1)
        return (wb[0] * per_colour[0] + per_colour[1] + wb[2] * per_colour[2]) / 3.0

    @staticmethod
    def as_stored(noisy_mosaic: np.ndarray) -> np.ndarray:
        """What a converter stores for a noisy RGGB mosaic ``(H, W)`` (even sides): the bilinear
        demosaic, ``(H, W, 3)`` (how training makes linear raws)."""
        from .bayer import BayerLayout, pack_bayer, simple_demosaic

        packed = torch.from_numpy(pack_bayer(noisy_mosaic, BayerLayout("RGGB", *noisy_mosaic.shape)))[None]
        return simple_demosaic(packed)[0].permute(1, 2, 0).numpy()
