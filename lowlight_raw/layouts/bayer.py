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

from .base import DIRECTION_EPS, SensorLayout, quincunx_residual

PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")
PLANES = ("R", "G1", "G2", "B")  # canonical packed order: G1 shares rows with R, G2 with B


@dataclass(frozen=True)
class BayerLayout(SensorLayout):
    """How a visible mosaic of ``height × width`` with ``pattern`` maps to packed RGGB planes."""

    kind = "bayer"
    label = "Bayer"
    clean_network_share = 0.08  # bench/blend.py; its measurements: MODEL_CARD.md, "The clean-photo blend"
    scale = 2
    channels = 4
    colour_planes = ((0,), (1, 2), (3,))
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
        return rcd_demosaic(packed, wb)

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
    planes = np.empty((4, m.shape[0] // 2, m.shape[1] // 2), m.dtype)
    for plane, (row, column) in zip(torch.from_numpy(planes), _PHASES):  # torch's threads copy (24 MP: 0.02 s, np.stack 0.04)
        plane.copy_(torch.from_numpy(m[row::2, column::2]))
    return planes


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


_RB_KERNEL = [[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]]
_G_KERNEL = [[0.0, 0.25, 0.0], [0.25, 1.0, 0.25], [0.0, 0.25, 0.0]]
_BILINEAR_KERNELS = torch.tensor([_RB_KERNEL, _G_KERNEL, _RB_KERNEL])[:, None]  # (3, 1, 3, 3)


RCD_REACH = 10  # px: how far from a pixel :func:`rcd_demosaic` reads (green 5, red/blue 7 at their opposite sites, 10 at green ones)


_PHASES = ((0, 0), (0, 1), (1, 0), (1, 1))  # (row, column parity) of the R, G1, G2 and B sites: packed plane 2 · row + column


class _Phases:
    """Packed planes ``(N, 1, h + margin, w + margin)`` of CFA phases (plane ``2 · row + column``
    parity: R, G1, G2, B sites) over an image of ``h × w`` packed pixels and an even ``margin`` of
    full-resolution pixels around it, read at full-resolution offsets: :meth:`at` the sites of
    one phase, each with its neighbour ``(dy, dx)`` away. Only the phases to be read need be there."""

    def __init__(self, planes: dict[int, torch.Tensor], margin: int) -> None:
        self.planes = planes
        self.margin = margin
        self.height, self.width = (size - margin for size in next(iter(planes.values())).shape[-2:])

    @classmethod
    def reflected(cls, planes: list[torch.Tensor], margin: int) -> "_Phases":
        """All four ``(N, 1, h, w)`` planes of a mosaic reflected at its border (again and again where
        the mosaic is narrower; reflection keeps the 2-periodic CFA): copied once, the margins
        filled from the copy."""
        count, _, height, width = planes[0].shape
        half = margin // 2
        padded = planes[0].new_empty(count, 4, height + margin, width + margin)
        for index, plane in enumerate(planes):
            padded[:, index : index + 1, half : half + height, half : half + width] = plane
        for phase in (0, 1):  # the rows above and below, then the columns left and right of all
            rows = half + _reflected_indices(height, phase, margin).to(padded.device)
            same_rows = padded[:, 2 * phase : 2 * phase + 2, :, half : half + width]
            for border in (slice(0, half), slice(half + height, None)):
                same_rows[..., border, :] = same_rows.index_select(-2, rows[border])
        for phase in (0, 1):
            columns = half + _reflected_indices(width, phase, margin).to(padded.device)
            same_columns = padded[:, phase::2]
            for border in (slice(0, half), slice(half + width, None)):
                same_columns[..., border] = same_columns.index_select(-1, columns[border])
        return cls({index: padded[:, index : index + 1] for index in range(4)}, margin)

    def at(self, phase: tuple[int, int], dy: int, dx: int, grow: int = 0) -> torch.Tensor:
        """At the sites of ``phase`` (row, column parity), the neighbour ``(dy, dx)`` away; over the
        image and ``grow`` packed pixels around it."""
        y, x = phase[0] + dy, phase[1] + dx
        top, left = self.margin // 2 + y // 2 - grow, self.margin // 2 + x // 2 - grow
        plane = self.planes[2 * (y % 2) + x % 2]
        return plane[..., top : top + self.height + 2 * grow, left : left + self.width + 2 * grow]


def _reflected_indices(size: int, phase: int, margin: int) -> torch.Tensor:
    """The packed indices, along an axis of ``size`` packed pixels, of the sites of ``phase`` from
    ``margin`` full-resolution pixels before the mosaic to as many after it, reflected into it."""
    full = 2 * size
    position = np.arange(-margin, full + margin, 2) + phase
    position = np.mod(position, max(2 * (full - 1), 1))
    position = np.where(position >= full, 2 * (full - 1) - position, position)
    return torch.from_numpy(position // 2)


def _discrimination(mosaic: _Phases, along: tuple[int, int], across: tuple[int, int],
                    sites: tuple[tuple[int, int], ...]) -> dict[int, torch.Tensor]:
    """How much of a pixel's estimate to take from the direction ``across`` rather than ``along``, at
    the sites of each phase of ``sites`` (packed ``(N, 1, h, w)`` by plane; the phases a step along
    either direction leads to must be among them): the energy of a 6th-order high-pass of the
    mosaic along ``along`` (zero on any CFA of flat or linearly varying colours), summed over 3
    pixels that way, over that and the same along ``across`` (RCD's statistic); where the mean of
    the 4 diagonal neighbours' shares is more decided (further from ½), that mean."""

    def energy(dy: int, dx: int) -> dict[int, torch.Tensor]:  # over the image and 1 packed px around
        def high_pass(site: tuple[int, int]) -> torch.Tensor:
            def m(k: int) -> torch.Tensor:
                return mosaic.at(site, k * dy, k * dx, grow=2)

            return ((m(-3) + m(3)) - (m(-1) + m(1))).sub_(m(-2) + m(2), alpha=3.0).add_(m(0), alpha=6.0).square_()

        squared = _Phases({2 * y + x: high_pass((y, x)) for y, x in sites}, 4)
        return {2 * y + x: (squared.at((y, x), -dy, -dx, grow=1) + squared.at((y, x), 0, 0, grow=1))
                .add_(squared.at((y, x), dy, dx, grow=1)).clamp_(min=DIRECTION_EPS**2) for y, x in sites}

    energy_along, energy_across = energy(*along), energy(*across)
    share = _Phases({index: energy.div_(energy + energy_across[index]) for index, energy in energy_along.items()}, 2)
    decided = {}
    for site in sites:
        neighbours = (share.at(site, -1, -1) + share.at(site, -1, 1)).add_(share.at(site, 1, -1)).add_(share.at(site, 1, 1)).mul_(0.25)
        own = share.at(site, 0, 0)
        # 1 where the neighbours are more decided, else 0 (a difference of floats is 0 only where they are equal):
        # lerp by it selects exactly, several times faster than torch.where on the CPU
        neighbours_decide = (neighbours - 0.5).abs_().sub_((own - 0.5).abs_()).sign_().clamp_(min=0.0)
        decided[2 * site[0] + site[1]] = own.lerp(neighbours, neighbours_decide)
    return decided


def _weighted(before: torch.Tensor, after: torch.Tensor, estimate_before: torch.Tensor,
              estimate_after: torch.Tensor) -> torch.Tensor:
    """The two one-sided estimates, each weighted by the *other* side's gradient: the smoother side counts more."""
    return (after * estimate_before + before * estimate_after).div_(before + after)


def _difference_along(colour: _Phases, green: _Phases, site: tuple[int, int], dy: int, dx: int) -> torch.Tensor:
    """At the sites of ``site``'s phase, the colour difference ``C − G`` along ``(dy, dx)``: the two
    neighbours' (which have ``colour``), each weighted by the other side's gradient of ``colour``
    (1 and 3 px away) and of ``green`` (2 px away)."""

    def c(k: int) -> torch.Tensor:
        return colour.at(site, k * dy, k * dx)

    def gradient(k: int) -> torch.Tensor:
        return (c(k) - c(3 * k)).abs_().add_((green.at(site, 0, 0) - green.at(site, 2 * k * dy, 2 * k * dx)).abs_())

    common = (c(-1) - c(1)).abs_().add_(DIRECTION_EPS)
    return _weighted(gradient(-1).add_(common), gradient(1).add_(common), c(-1) - green.at(site, -dy, -dx), c(1) - green.at(site, dy, dx))


def rcd_demosaic(packed: torch.Tensor, wb: np.ndarray) -> torch.Tensor:
    """Ratio-corrected demosaic (RCD, after Luis Sanz Rodríguez's, as in RawTherapee and darktable)
    of packed RGGB planes ``(N, 4, h, w)`` → ``(N, 3, 2h, 2w)``, for a clean raw. Which way to
    interpolate is judged from the energy of a 6th-order high-pass of the mosaic along the column,
    the row and the two diagonals (:func:`_discrimination`), blended continuously, not switched.
    Green at a red or blue site: on each side along the column and the row, the green neighbour
    corrected by the step of a low-pass of the mosaic (all three colours: less noisy than one
    colour's curvature), the two sides weighted by the other side's gradient. Red and blue at the
    opposite colour's sites from the colour differences ``C − G`` of the diagonal neighbours (the
    diagonals judged the same way), then at green sites from those of the row and column
    neighbours. Corrections are differences, not RCD's ratios, so values near 0 or below it (the
    dark-level calibration's unclamped planes) are as safe as any; nothing is clipped. It assumes
    the colours' edges are alike, which holds after white balance, so it runs on ``wb``-balanced
    planes (and returns unbalanced camera RGB). Keeps the measured samples; exact on linear
    gradients; reads :data:`RCD_REACH` px around. On the sweep's clean Bayer raws (×1, ISO 400) it
    scores 41.00 dB / 0.981, edge chroma 2.65 (darktable 40.86 dB); Hamilton–Adams green with
    bilinear colour differences, which it replaced, scored 38.29 dB / 0.971, edge chroma 3.87 (×3:
    39.15 against 37.33), at 1.2–1.4× its time (24 MP on one core: 7.2–8.5 s against 5.7–6.2 s)."""
    eps = DIRECTION_EPS
    gains = torch.tensor([wb[0], 1.0, 1.0, wb[2]], dtype=packed.dtype, device=packed.device).view(1, 4, 1, 1)
    balanced = packed * gains
    mosaic = _Phases.reflected(list(balanced.split(1, dim=1)), 8)
    across_rows = _discrimination(mosaic, (1, 0), (0, 1), _PHASES)  # the share of the estimate along the row
    across_diagonals = _discrimination(mosaic, (1, 1), (1, -1), ((0, 0), (1, 1)))  # the share of the one along ↙↗

    def green_at(phase: tuple[int, int]) -> torch.Tensor:
        index = 2 * phase[0] + phase[1]
        low = mosaic.at(phase, -1, -1, grow=1) * _RCD_LOW_PASS[0][2]  # of a same-colour site 2 px around too
        for dy, dx, weight in _RCD_LOW_PASS[1:]:
            low.add_(mosaic.at(phase, dy, dx, grow=1), alpha=weight)
        height, width = mosaic.height, mosaic.width

        def along(dy: int, dx: int) -> torch.Tensor:
            def m(k: int) -> torch.Tensor:
                return mosaic.at(phase, k * dy, k * dx)

            def gradient(k: int) -> torch.Tensor:  # k = ±1: the side
                return (m(k) - m(3 * k)).abs_().add_((m(0) - m(2 * k)).abs_()).add_((m(2 * k) - m(4 * k)).abs_())

            def estimate(k: int) -> torch.Tensor:
                return m(k) + 0.125 * (low[..., 1:-1, 1:-1] - low[..., 1 + k * dy : 1 + k * dy + height, 1 + k * dx : 1 + k * dx + width])

            common = (m(-1) - m(1)).abs_().add_(eps)
            return _weighted(gradient(-1).add_(common), gradient(1).add_(common), estimate(-1), estimate(1))

        vertical = along(1, 0)
        return vertical.add_(across_rows[index] * (along(0, 1) - vertical))

    green = _Phases.reflected([green_at((0, 0)), balanced[:, 1:2], balanced[:, 2:3], green_at((1, 1))], 2)
    green_planes = [green.at(site, 0, 0) for site in _PHASES]
    count, _, height, width = packed.shape
    rgb = packed.new_empty(count, 3, 2 * height, 2 * width)
    sites = rgb.view(count, 3, height, 2, width, 2)  # [:, channel, :, row parity, :, column parity]: one phase's sites
    for index, (y, x) in enumerate(_PHASES):
        sites[:, 1:2, :, y, :, x] = green_planes[index]
    for channel, own, opposite in ((0, 0, 3), (2, 3, 0)):  # red, blue: the planes of its sites and of the opposite colour's
        site = _PHASES[opposite]
        diagonal = [_difference_along(mosaic, green, site, dy, dx) for dy, dx in ((1, 1), (1, -1))]
        share = across_diagonals[opposite]
        at_opposite = diagonal[0].add_(share * (diagonal[1] - diagonal[0])).add_(green_planes[opposite])
        planes = [balanced[:, own : own + 1], green_planes[1], green_planes[2], at_opposite]
        if own == 3:
            planes = planes[::-1]  # blue: at red sites first, its own last (the greens' order does not matter here)
        colour = _Phases.reflected(planes, 4)
        for index in (1, 2):
            site = _PHASES[index]
            vertical = _difference_along(colour, green, site, 1, 0)
            planes[index] = (vertical.add_(across_rows[index] * (_difference_along(colour, green, site, 0, 1) - vertical))
                             .add_(green_planes[index]))
        for (y, x), plane in zip(_PHASES, planes):
            torch.div(plane, gains[:, own : own + 1], out=sites[:, channel : channel + 1, :, y, :, x])
    return rgb


_RCD_LOW_PASS = [(dy, dx, (1.0 if dy == dx == 0 else 0.5 if dy == 0 or dx == 0 else 0.25)) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
