"""Bayer geometry: bring any 2×2 phase to RGGB, pack into four planes, and back.

Every Bayer phase (RGGB, BGGR, GRBG, GBRG) is first *unified* to RGGB by padding one mirrored
row on top and/or one column on the left (the CFA is 2-periodic, so a mirrored row has the
colours the missing row would have had), then padded at the bottom/right to even size (Liu et
al., "Learning Raw Image Denoising with Bayer Pattern Unification", 2019). The network then
always sees R at (0, 0); :class:`BayerLayout` remembers the padding so the full-resolution
result is cropped back to exactly the visible area.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from .layouts import SensorLayout, quincunx_residual, register_layout

PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")
PLANES = ("R", "G1", "G2", "B")  # canonical packed order: G1 shares rows with R, G2 with B


@register_layout
@dataclass(frozen=True)
class BayerLayout(SensorLayout):
    """How a visible mosaic of ``height × width`` with ``pattern`` maps to packed RGGB planes."""

    kind = "bayer"
    label = "Bayer"
    clean_network_share = 0.25  # bench/blend.py: clean 32.05 → 33.38 dB, SSIM 0.943 → 0.952 (0.35: 33.50 / 0.951)
    full_network_sigma = 0.02  # bench/blend.py: ×1–×10 29.27 → 29.87 dB, SSIM 0.826 → 0.835 against 0.01
    scale = 2
    channels = 4
    pad_mode = "symmetric"  # each plane is one colour: any mirroring keeps it right

    pattern: str
    height: int
    width: int

    def __post_init__(self) -> None:
        if self.pattern not in PATTERNS:
            raise ValueError(f"not a Bayer pattern: {self.pattern!r}")
        if self.height < 2 or self.width < 2:
            raise ValueError(f"mosaic too small: {self.height}×{self.width}")

    @property
    def offset(self) -> tuple[int, int]:
        """Rows, columns padded on top/left so that R lands at (0, 0)."""
        r = self.pattern.index("R")
        return r // 2, r % 2

    @property
    def padding(self) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) padding of the visible mosaic."""
        dy, dx = self.offset
        return dy, (self.height + dy) % 2, dx, (self.width + dx) % 2

    def pack(self, visible: np.ndarray) -> np.ndarray:
        return pack_bayer(visible, self)

    @classmethod
    def training_patterns(cls) -> tuple[str, ...]:
        return PATTERNS

    @classmethod
    def for_pattern(cls, pattern: str, height: int, width: int) -> "BayerLayout":
        return cls(pattern, height, width)

    @classmethod
    def base_rgb(cls, packed: torch.Tensor) -> torch.Tensor:
        """RGB at each of the 4 sites: R, the mean of the greens, B (a nearest-neighbour demosaic)."""
        r, g1, g2, b = packed.clamp(0.0, 1.0).unbind(1)
        g = 0.5 * (g1 + g2)
        per_channel = [c.unsqueeze(1).expand(-1, 4, -1, -1) for c in (r, g, b)]
        return torch.cat(per_channel, dim=1)

    @classmethod
    def naive_rgb(cls, packed: torch.Tensor) -> torch.Tensor:
        return simple_demosaic(packed)

    @classmethod
    def clean_rgb(cls, packed: torch.Tensor, wb: np.ndarray) -> torch.Tensor:
        return mhc_demosaic(packed, wb)

    @classmethod
    def noise_residual(cls, packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return quincunx_residual(packed[1], packed[2], down_left=True)  # G at (0, 1), G at (1, 0)

    @classmethod
    def luminance(cls, packed: np.ndarray, wb: np.ndarray) -> np.ndarray:
        r, g1, g2, b = packed
        return 0.25 * (wb[0] * r + g1 + g2 + wb[2] * b)


def pattern_from_colors(colors: np.ndarray, color_desc: str) -> str:
    """The phase string (e.g. ``"GRBG"``) of a 2×2 block of LibRaw colour indices."""
    letters = "".join(color_desc[int(c)] for c in np.asarray(colors)[:2, :2].ravel())
    return letters


def pack_bayer(mosaic: np.ndarray, layout: BayerLayout) -> np.ndarray:
    """``(H, W)`` visible mosaic of any phase → ``(4, h, w)`` planes R, G1, G2, B."""
    top, bottom, left, right = layout.padding
    m = np.pad(mosaic, ((top, bottom), (left, right)), mode="reflect") if any(layout.padding) else mosaic
    return np.stack([m[0::2, 0::2], m[0::2, 1::2], m[1::2, 0::2], m[1::2, 1::2]])


def unpack_bayer(packed: np.ndarray, layout: BayerLayout) -> np.ndarray:
    """Inverse of :func:`pack_bayer`: packed RGGB planes → visible mosaic in its own phase."""
    _, h, w = packed.shape
    m = np.empty((2 * h, 2 * w), dtype=packed.dtype)
    m[0::2, 0::2], m[0::2, 1::2], m[1::2, 0::2], m[1::2, 1::2] = packed
    return layout.crop_to_visible(m)


def simple_demosaic(packed: torch.Tensor) -> torch.Tensor:
    """Bilinear demosaic of packed RGGB planes ``(N, 4, h, w)`` → ``(N, 3, 2h, 2w)``.

    Each colour is interpolated from where its samples really sit on the mosaic (R at (0, 0),
    G at (0, 1) and (1, 0), B at (1, 1) of every 2×2 block), so a linear gradient comes out
    exact and the channels stay registered. What an exposure slider on an un-denoised raw gives:
    the "naive" reference, and the ``strength < 1`` blend partner of the network output.
    """
    r, g1, g2, b = packed.unbind(1)
    zero = torch.zeros_like(r)
    # pixel_shuffle puts input channel 4·c + 2·i + j at position (i, j) of output channel c's blocks
    sparse = F.pixel_shuffle(torch.stack([r, zero, zero, zero, zero, g1, g2, zero, zero, zero, zero, b], dim=1), 2)
    sparse = F.pad(sparse, (1, 1, 1, 1), mode="reflect")  # reflection keeps the 2-periodic CFA
    return F.conv2d(sparse, _BILINEAR_KERNELS.to(sparse), groups=3)


def mhc_demosaic(packed: torch.Tensor, wb: np.ndarray) -> torch.Tensor:
    """High-quality linear demosaic (Malvar, He & Cutler, ICASSP 2004) of packed RGGB planes
    ``(N, 4, h, w)`` → ``(N, 3, 2h, 2w)``: bilinear interpolation corrected by the local gradient
    of the colour that was sampled, with their fixed 5×5 kernels. It assumes the colours' edges
    are alike, which holds after white balance, so it runs on ``wb``-balanced planes (and returns
    unbalanced camera RGB). Sharp on clean raws; noise passes through as it is."""
    gains = torch.tensor([wb[0], 1.0, 1.0, wb[2]], dtype=packed.dtype, device=packed.device).view(1, 4, 1, 1)
    r, g1, g2, b = (packed * gains).unbind(1)
    mosaic = F.pixel_shuffle(packed * gains, 2)  # R at (0, 0), G1 at (0, 1), G2 at (1, 0), B at (1, 1)
    estimates = F.conv2d(F.pad(mosaic, (2, 2, 2, 2), mode="reflect"), _MHC_KERNELS.to(packed))
    green_at_rb, along_row, along_column, across = (F.pixel_unshuffle(e[:, None], 2) for e in estimates.unbind(1))
    # per site (R, G1, G2, B) of each 2×2 block: the colour sampled there, else the kernel's estimate
    red = torch.stack([r, along_row[:, 1], along_column[:, 2], across[:, 3]], dim=1)
    green = torch.stack([green_at_rb[:, 0], g1, g2, green_at_rb[:, 3]], dim=1)
    blue = torch.stack([across[:, 0], along_column[:, 1], along_row[:, 2], b], dim=1)
    balanced = F.pixel_shuffle(torch.cat([red, green, blue], dim=1), 2)
    return balanced / gains[:, [0, 1, 3]]


_MHC_KERNELS = torch.tensor([
    # G at an R or B site
    [[0, 0, -1, 0, 0], [0, 0, 2, 0, 0], [-1, 2, 4, 2, -1], [0, 0, 2, 0, 0], [0, 0, -1, 0, 0]],
    # at a G site, the colour whose samples are its left and right neighbours
    [[0, 0, 0.5, 0, 0], [0, -1, 0, -1, 0], [-1, 4, 5, 4, -1], [0, -1, 0, -1, 0], [0, 0, 0.5, 0, 0]],
    # at a G site, the colour whose samples are above and below it
    [[0, 0, -1, 0, 0], [0, -1, 4, -1, 0], [0.5, 0, 5, 0, 0.5], [0, -1, 4, -1, 0], [0, 0, -1, 0, 0]],
    # at an R site the B estimate, at a B site the R one
    [[0, 0, -1.5, 0, 0], [0, 2, 0, 2, 0], [-1.5, 0, 6, 0, -1.5], [0, 2, 0, 2, 0], [0, 0, -1.5, 0, 0]],
], dtype=torch.float32)[:, None] / 8.0  # (4, 1, 5, 5)


_RB_KERNEL = [[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]]
_G_KERNEL = [[0.0, 0.25, 0.0], [0.25, 1.0, 0.25], [0.0, 0.25, 0.0]]
_BILINEAR_KERNELS = torch.tensor([_RB_KERNEL, _G_KERNEL, _RB_KERNEL])[:, None]  # (3, 1, 3, 3)
