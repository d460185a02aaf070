"""The sensor-layout seam: how a decoded raw becomes packed planes for the network, and back.

A layout describes one visible raw of ``height × width`` pixels of one kind of sensor:

=========  ============================  =======  ========  ==========================
kind       what the file holds            period   packing   packed channels
=========  ============================  =======  ========  ==========================
bayer      2×2 CFA mosaic, any phase      2        ÷2        4 (R, G1, G2, B)
xtrans     Fujifilm 6×6 CFA, any phase    6        ÷3        9 (one per 3×3 cell site)
linear     demosaiced RGB (LinearRaw)     1        ÷2        12 (RGB × 2×2 sites)
=========  ============================  =======  ========  ==========================

Every layout brings its phase to a canonical one by padding, packs into planes at
``1 / scale`` resolution (:meth:`SensorLayout.pack`), and crops the network's full-resolution
result back to exactly the visible area (:meth:`SensorLayout.crop_to_visible`). The class-level
functions work on packed data alone: the network's residual base (:meth:`base_rgb`), the plain
demosaic (:meth:`naive_rgb`), what the noise estimate and the auto exposure measure. The one
dispatch point from a file to a layout is :func:`lowlight_raw.files.raw.read_raw`; a model's card
names the layout it was trained for (:data:`LAYOUTS` keys).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
import torch


class SensorLayout(ABC):
    """One visible raw of ``height × width`` pixels of one sensor layout (see the module docs)."""

    kind: ClassVar[str]  # the name cards and messages use
    label: ClassVar[str]  # for people: "Bayer", "X-Trans", "linear RGB"
    scale: ClassVar[int]  # full-resolution pixels per packed pixel along each axis
    channels: ClassVar[int]  # packed planes
    pad_mode: ClassVar[str]  # np.pad mode that keeps packed planes consistent when mirrored outwards
    height: int
    width: int

    @property
    @abstractmethod
    def padding(self) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) full-resolution pixels padded around the visible area."""

    @property
    def packed_shape(self) -> tuple[int, int]:
        top, bottom, left, right = self.padding
        return (self.height + top + bottom) // self.scale, (self.width + left + right) // self.scale

    @abstractmethod
    def pack(self, visible: np.ndarray) -> np.ndarray:
        """Visible raw data (normalised) → ``(channels, h, w)`` packed planes in canonical phase."""

    def unpack(self, packed: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`pack` for a mosaic: packed planes → the visible mosaic in its own phase."""
        raise NotImplementedError(f"{self.label} raws are not a mosaic")

    def pad_like_pack(self, rgb: np.ndarray) -> np.ndarray:
        """A full-resolution ``(H, W, 3)`` image of the visible area padded the way :meth:`pack`
        pads the raw (training targets: pixel for pixel what the network is asked to output)."""
        top, bottom, left, right = self.padding
        return np.pad(rgb, ((top, bottom), (left, right), (0, 0)), mode="reflect")

    # Training: how a sensor of this layout records a scene, and what its file then holds.
    @classmethod
    @abstractmethod
    def training_patterns(cls) -> tuple[str, ...]:
        """The CFA phases training draws from (:func:`mosaic_from_rgb` patterns); the first is the
        canonical phase that packing brings every raw to."""

    @classmethod
    @abstractmethod
    def for_pattern(cls, pattern: str, height: int, width: int) -> "SensorLayout":
        """The layout of a ``height × width`` visible area recorded through CFA ``pattern``."""

    @classmethod
    def bayer_sites(cls) -> tuple[int, int, int, int] | None:
        """For Bayer's packed planes R, G1, G2, B: a packed plane of this layout that holds the same
        colour (at the same place, where the layout allows), if there is one for each. A Bayer
        network's first convolution then carries over (:func:`lowlight_raw.training.train.transfer_weights`):
        exactly for linear RGB, as a good start for X-Trans."""
        return None

    @staticmethod
    def as_stored(noisy_mosaic: np.ndarray) -> np.ndarray:
        """What the file holds for the sensor's noisy mosaic: the mosaic itself, for a CFA raw."""
        return noisy_mosaic

    def crop_to_visible(self, full: np.ndarray) -> np.ndarray:
        """A ``(scale·h, scale·w[, C])`` full-resolution array of the packed area → the visible area."""
        top, _, left, _ = self.padding
        return full[top : top + self.height, left : left + self.width]

    @classmethod
    def network_channels(cls) -> int:
        """Input channels of a network for this layout: the planes, their noise sigma, any extras."""
        return 2 * cls.channels + cls.extra_plane_count

    extra_plane_count: ClassVar[int] = 0

    @classmethod
    def with_extra_planes(cls, inputs: torch.Tensor) -> torch.Tensor:
        """The network input ``(N, 2·channels, h, w)`` plus planes the layout adds (none by default)."""
        return inputs

    @classmethod
    def to_bayer(cls, inputs: torch.Tensor) -> torch.Tensor:
        """Network input ``(N, 2·channels, h, w)`` → Bayer network input ``(N, 8, h', w')`` of the
        same full-resolution area (``UNetConfig.remosaic``); only layouts that need it have one."""
        raise ValueError(f"no Bayer re-mosaic for {cls.label} raws")

    @classmethod
    @abstractmethod
    def base_rgb(cls, packed: torch.Tensor) -> torch.Tensor:
        """``(N, channels, h, w)`` → ``(N, 3·scale², h, w)``: a crude RGB per site in pixel-shuffle
        order, which the network refines (it predicts a residual on top of it)."""

    @classmethod
    @abstractmethod
    def naive_rgb(cls, packed: torch.Tensor) -> torch.Tensor:
        """``(N, channels, h, w)`` → ``(N, 3, scale·h, scale·w)``: a plain demosaic, what an exposure
        slider on the un-denoised raw shows (the ``strength < 1`` blend partner, the "naive" score)."""

    @classmethod
    @abstractmethod
    def clean_rgb(cls, packed: torch.Tensor, wb: np.ndarray) -> torch.Tensor:
        """``(N, channels, h, w)`` → ``(N, 3, scale·h, scale·w)``: a sharp classical rendering (white
        balance ``wb``), for a photo too clean to need the network (:mod:`lowlight_raw.pipeline.restore`)."""

    # How much of the network a photo gets (restore.network_share, restore.pixel_shares). The clean
    # rendering's errors (a demosaic's aliasing, the pixels' own noise) and the network's (softness)
    # differ, so even a clean photo is better with ``clean_network_share`` of the network blended in
    # (chosen per layout by bench/blend.py on the validation photos); from ``full_network_sigma`` of
    # noise (at mid-grey, or its equivalent at a pixel's own level) on, the network alone: 0.1 for
    # every layout since the share follows each pixel's level (`lowlight-raw evaluate --sweep`; 0.08
    # and 0.14 scored up to 0.06 dB lower, 0.05 0.1–0.2 dB lower at ×10–×100).
    clean_network_share: ClassVar[float]
    full_network_sigma: ClassVar[float] = 0.1
    # where the ramp starts, when not at restore.NETWORK_FROM_SIGMA
    network_from_sigma: ClassVar[float | None] = None
    # the packed planes holding red, green and blue samples (the clean rendering's denoiser groups them)
    colour_planes: ClassVar[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]
    # whether the planes' noise is white (a mosaic's samples), which the denoiser's second stage assumes
    white_noise: ClassVar[bool] = True

    @classmethod
    @abstractmethod
    def noise_residual(cls, packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """What the noise estimate measures (:func:`lowlight_raw.pipeline.noise.estimate_profile`): a green
        pixel against its green neighbours, weighted so that every quadratic scene (flat, linearly
        or quadratically changing) cancels and only noise is left there, scaled so that its
        variance is one pixel's; and the green level there. Two float32 ``(h', w')`` arrays."""

    @classmethod
    @abstractmethod
    def luminance(cls, packed: np.ndarray, wb: np.ndarray) -> np.ndarray:
        """A white-balanced luminance proxy ``(h, w)`` of (subsampled) packed planes (auto exposure)."""


COLOR_CODES = {"R": 0, "G": 1, "B": 2}  # LibRaw's colour indices of an RGB CFA


def mosaic_from_rgb(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """Sample ``(H, W, 3)`` camera RGB at the sites of a CFA → ``(H, W)`` mosaic.

    ``pattern``: the CFA's colours at the top-left, row-major, ``"GRBG"`` for a 2×2 Bayer phase or
    36 letters for a 6×6 X-Trans phase (the one RGB → mosaic function: fixtures and training).
    """
    n = int(round(len(pattern) ** 0.5))
    if n * n != len(pattern) or set(pattern) - set(COLOR_CODES):
        raise ValueError(f"not a square RGB CFA pattern: {pattern!r}")
    codes = np.array([COLOR_CODES[c] for c in pattern]).reshape(n, n)
    h, w, _ = rgb.shape
    channel = codes[np.arange(h)[:, None] % n, np.arange(w)[None, :] % n]
    return np.take_along_axis(rgb, channel[..., None], axis=2)[..., 0]


def four_neighbours(plane: np.ndarray) -> np.ndarray:
    """The sum of each inner pixel's four neighbours in ``plane`` (up, down, left, right): ``(h − 2, w − 2)``."""
    total = plane[:-2, 1:-1] + plane[2:, 1:-1]
    total += plane[1:-1, :-2]
    total += plane[1:-1, 2:]
    return total


def quincunx_residual(centre: np.ndarray, diagonal: np.ndarray, down_left: bool) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`SensorLayout.noise_residual` of two green planes on a quincunx: ``diagonal[i, j]`` is
    the pixel one down and one left (``down_left``) or right of ``centre[i, j]``.

    Each centre pixel ``c`` is compared with its four diagonal neighbours (distance √2, sum ``D``)
    and its four same-plane neighbours (distance 2, sum ``A``): ``c − D/2 + A/4``. To second order
    ``c − D/4 ≈ −½∇²`` and ``c − A/4 ≈ −∇²`` of the scene, so this, twice the first minus the
    second, cancels every quadratic as well as flat and linear areas; noise variance × 9/4.
    """
    centre, diagonal = centre.astype(np.float32, copy=False), diagonal.astype(np.float32, copy=False)
    h, w = centre.shape[0] - 2, centre.shape[1] - 2
    left = 1 if down_left else 0  # column of diagonal[i, ·] one down and one left/right of centre[i + 1, 1]
    box = diagonal[:h, left : left + w] + diagonal[:h, left + 1 : left + w + 1]  # rows i, i + 1 …
    box += diagonal[1 : h + 1, left : left + w]
    box += diagonal[1 : h + 1, left + 1 : left + w + 1]
    box *= 0.25  # … of the diagonal plane: box[i, j] belongs to centre[i + 1, j + 1]
    middle = centre[1:-1, 1:-1]
    residual = four_neighbours(centre)
    residual *= 0.25
    residual += middle
    residual -= 2.0 * box
    residual /= 1.5
    box += middle
    box *= 0.5
    return residual, box


def normalised_convolution(sparse: torch.Tensor, mask: torch.Tensor, taps: torch.Tensor,
                           axis: int | None = None, density: torch.Tensor | None = None) -> torch.Tensor:
    """Fill the gaps of sparse planes ``(N, C, H, W)`` (``mask``, broadcastable to them: 1 where
    sampled) with the weighted mean of the samples around, the weights the odd-length 1-D ``taps``
    along ``axis`` (-1: the row, -2: the column), or by default their outer product with themselves:
    a plain demosaic for any CFA. Zero padding of both is exact here (it adds neither samples nor
    weight). ``density``: :func:`sample_density` of the same mask, taps and axis, where it is reused."""
    num = separable_filter(sparse * mask, taps, axis)
    return num.div_(sample_density(mask, taps, axis) if density is None else density)


def sample_density(mask: torch.Tensor, taps: torch.Tensor, axis: int | None = None) -> torch.Tensor:
    """The weight of the samples around each pixel, as :func:`normalised_convolution` divides by it."""
    return separable_filter(mask, taps, axis).clamp_min_(1e-6)


def separable_filter(planes: torch.Tensor, taps: torch.Tensor, axis: int | None = None) -> torch.Tensor:
    """``planes (..., H, W)`` correlated with the odd-length, symmetric 1-D ``taps`` along ``axis``
    (-1, -2), or by default with ``outer(taps, taps)``, zero outside, in the planes' own type where the
    taps are integers: sums of shifted slices,
    several times faster on the CPU than a depthwise ``conv2d`` and the same to float rounding."""
    if axis is None:
        return separable_filter(separable_filter(planes, taps, -1), taps, -2)
    radius, length = len(taps) // 2, planes.shape[axis]
    weights = taps.tolist()  # Python numbers: integer taps keep integer planes integer
    result = planes * weights[radius]
    for offset in range(1, min(radius, length - 1) + 1):
        result.narrow(axis, 0, length - offset).add_(planes.narrow(axis, offset, length - offset), alpha=weights[radius + offset])
        result.narrow(axis, offset, length - offset).add_(planes.narrow(axis, 0, length - offset), alpha=weights[radius - offset])
    return result


DIRECTION_EPS = 1e-4  # keeps edge-directed demosaics' direction weights finite on flat areas (signal 0…1)


def neighbourhood_sum(plane: torch.Tensor) -> torch.Tensor:
    """Each pixel's 3×3 neighbourhood summed (reflected at the border)."""
    return 9.0 * torch.nn.functional.avg_pool2d(torch.nn.functional.pad(plane, (1, 1, 1, 1), mode="reflect"), 3, stride=1)
