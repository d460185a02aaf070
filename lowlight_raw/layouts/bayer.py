"""Bayer geometry: bring any 2×2 phase to RGGB, pack into four planes, and back.

Every Bayer phase (RGGB, BGGR, GRBG, GBRG) is first *unified* to RGGB by padding one mirrored
row on top and/or one column on the left (the CFA is 2-periodic, so a mirrored row has the
colours the missing row would have had), then padded at the bottom/right to even size (Liu et
al., "Learning Raw Image Denoising with Bayer Pattern Unification", 2019). The network then
always sees R at (0, 0); :class:`BayerLayout` remembers the padding so the full-resolution
result is cropped back to exactly the visible area.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from .base import DIRECTION_EPS, SensorLayout, neighbourhood_sum, quincunx_residual

PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")
PLANES = ("R", "G1", "G2", "B")  # canonical packed order: G1 shares rows with R, G2 with B


@dataclass(frozen=True)
class BayerLayout(SensorLayout):
    """How a visible mosaic of ``height × width`` with ``pattern`` maps to packed RGGB planes."""

    kind = "bayer"
    label = "Bayer"
    clean_network_share = 0.15  # bench/blend.py; its measurements: MODEL_CARD.md, "The clean-photo blend"
    full_network_sigma = 0.03  # bench/blend.py; its measurements: MODEL_CARD.md, "The clean-photo blend"
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

    def unpack(self, packed: np.ndarray) -> np.ndarray:
        return unpack_bayer(packed, self)

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
        return directional_demosaic(packed, wb)

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


def directional_demosaic(packed: torch.Tensor, wb: np.ndarray) -> torch.Tensor:
    """Edge-directed demosaic of packed RGGB planes ``(N, 4, h, w)`` → ``(N, 3, 2h, 2w)``, for a
    clean raw. Green at a red or blue site is interpolated along the row and along the column, each
    corrected by the sampled colour's second difference (Hamilton & Adams, US patent 5,629,734),
    and the two are weighted by the inverse square of their gradients summed over the 3×3
    neighbourhood, so an edge is followed rather than crossed. Red and blue then come from the
    colour differences ``C − G``, which are smooth across edges: at the opposite colour's sites
    the mean of the four diagonal ones, at green sites the mean of the four nearest. It assumes the
    colours' edges are alike, which holds after white balance, so it runs on ``wb``-balanced
    planes (and returns unbalanced camera RGB). Exact on linear gradients; noise passes through.
    On BSDS500's validation raws, clean, it scores 35.74 dB (``bench/blend.py``, clean share 0);
    Malvar–He–Cutler's fixed linear kernels, which it replaced, scored 32.05 there."""
    gains = torch.tensor([wb[0], 1.0, 1.0, wb[2]], dtype=packed.dtype, device=packed.device).view(1, 4, 1, 1)
    mosaic = F.pixel_shuffle(packed * gains, 2)  # R at (0, 0), G1 at (0, 1), G2 at (1, 0), B at (1, 1)
    height, width = mosaic.shape[-2:]
    red_site = mosaic.new_zeros((1, 1, height, width))
    blue_site = mosaic.new_zeros((1, 1, height, width))
    red_site[..., 0::2, 0::2], blue_site[..., 1::2, 1::2] = 1.0, 1.0
    green_site = 1.0 - red_site - blue_site

    def neighbours(plane: torch.Tensor) -> Callable[[int, int], torch.Tensor]:
        """``(dy, dx)`` → ``plane`` moved so that each pixel holds that neighbour (|dy|, |dx| ≤ 2);
        reflected at the border, which keeps the 2-periodic CFA."""
        padded = F.pad(plane, (2, 2, 2, 2), mode="reflect")
        return lambda dy, dx: padded[..., 2 + dy : 2 + dy + height, 2 + dx : 2 + dx + width]

    # along the row and along the column: the green neighbours' mean, corrected by the sampled colour's curvature
    at = neighbours(mosaic)
    left, right, up, down = at(0, -1), at(0, 1), at(-1, 0), at(1, 0)
    curvature_row = 2.0 * mosaic - at(0, -2) - at(0, 2)
    curvature_column = 2.0 * mosaic - at(-2, 0) - at(2, 0)
    weight_row = neighbourhood_sum((left - right).abs_() + curvature_row.abs()).add_(DIRECTION_EPS).pow_(-2)
    weight_column = neighbourhood_sum((up - down).abs_() + curvature_column.abs()).add_(DIRECTION_EPS).pow_(-2)
    along_row = curvature_row.mul_(0.25).add_(left + right, alpha=0.5)
    along_column = curvature_column.mul_(0.25).add_(up + down, alpha=0.5)
    green_estimate = (along_row.mul_(weight_row) + along_column.mul_(weight_column)).div_(weight_row.add_(weight_column))
    green = torch.where(green_site.bool(), mosaic, green_estimate)
    channels = []
    for own_site, opposite_site in ((red_site, blue_site), (blue_site, red_site)):
        difference = own_site * (mosaic - green)
        at = neighbours(difference)
        difference += opposite_site * 0.25 * (at(-1, -1) + at(-1, 1) + at(1, -1) + at(1, 1))
        at = neighbours(difference)
        difference += green_site * 0.25 * (at(0, -1) + at(0, 1) + at(-1, 0) + at(1, 0))
        channels.append(difference.add_(green))
    balanced = torch.cat([channels[0], green, channels[1]], dim=1)
    return balanced / gains[:, [0, 1, 3]]


_RB_KERNEL = [[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]]
_G_KERNEL = [[0.0, 0.25, 0.0], [0.25, 1.0, 0.25], [0.0, 0.25, 0.0]]
_BILINEAR_KERNELS = torch.tensor([_RB_KERNEL, _G_KERNEL, _RB_KERNEL])[:, None]  # (3, 1, 3, 3)
