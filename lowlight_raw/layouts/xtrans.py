"""Fujifilm X-Trans geometry: bring any 6×6 phase to the canonical one, pack 3×3 cells into 9 planes.

The X-Trans CFA repeats every 6×6 pixels and is made of two kinds of 3×3 cell that differ only
by red and blue trading places (:data:`CANONICAL`: cell A at the top left, its right and lower
neighbours are cell B). A visible area at any offset is brought to the canonical phase by padding
up to five rows on top and columns on the left with the rows and columns six pixels further in
(the same colours), then to a multiple of six at the bottom/right the same way. Packing puts
each 3×3 cell into nine planes at a third of the resolution, as the Fuji model of Chen et al.
("Learning to See in the Dark", CVPR 2018) does: plane ``3·i + j`` holds the cell's pixel
``(i, j)``, except that in B cells the red and blue pixels trade planes, so every plane holds one
colour: planes 0, 1, 3, 4 and 8 green, 2 and 7 red, 5 and 6 blue (a Bayer network's planes map
onto them: :meth:`XTransLayout.bayer_sites`). Where in the cell a red or blue plane's pixel sits
then depends on the cell's kind, the parity of its packed position (A where ``row + column`` is
even), which the network gets as an extra plane; the tiler and the training crops start on even
packed positions, and mirroring packed planes about an edge cell (``reflect``) keeps every
cell's kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch.nn import functional as F

from .base import SensorLayout, four_neighbours, normalised_convolution, sample_density, separable_filter

# 0 = R, 1 = G, 2 = B (LibRaw's colour indices for an RGB CFA), the X-Trans I–V pattern.
CANONICAL = np.array(
    [
        [1, 1, 0, 1, 1, 2],
        [1, 1, 2, 1, 1, 0],
        [2, 0, 1, 0, 2, 1],
        [1, 1, 2, 1, 1, 0],
        [1, 1, 0, 1, 1, 2],
        [0, 2, 1, 2, 0, 1],
    ],
    dtype=np.uint8,
)
PERIOD = 6
CELL = 3
GREEN_PLANES = (0, 1, 3, 4, 8)
RED_PLANES = (2, 7)  # cell pixels (0, 2) and (2, 1) of A cells, (1, 2) and (2, 0) of B cells
BLUE_PLANES = (5, 6)  # cell pixels (1, 2) and (2, 0) of A cells, (0, 2) and (2, 1) of B cells
_B_CELL_SWAP = [0, 1, 5, 3, 4, 2, 7, 6, 8]  # plane order of a B cell's pixels (an involution)


def phase_of(colors: np.ndarray) -> tuple[int, int] | None:
    """``(dy, dx)`` such that visible pixel ``(y, x)`` has the colour of canonical ``(y + dy, x + dx)``;
    ``None`` if the 6×6 colour map (LibRaw's indices, 0 = R, 1 = G, 2 = B) is no X-Trans phase."""
    colors = np.asarray(colors)[:PERIOD, :PERIOD]
    if colors.shape != (PERIOD, PERIOD):
        return None
    for dy in range(PERIOD):
        for dx in range(PERIOD):
            if np.array_equal(np.roll(CANONICAL, (-dy, -dx), axis=(0, 1)), colors):
                return dy, dx
    return None


def cfa_colors(height: int, width: int, phase: tuple[int, int] = (0, 0)) -> np.ndarray:
    """The ``(height, width)`` colour-index map of an X-Trans area whose phase is ``phase``."""
    dy, dx = phase
    rows = (np.arange(height) + dy) % PERIOD
    cols = (np.arange(width) + dx) % PERIOD
    return CANONICAL[rows[:, None], cols[None, :]]


def pattern_letters(phase: tuple[int, int] = (0, 0)) -> str:
    """The 36 letters (row-major) of the 6×6 X-Trans CFA at ``phase``, as a DNG's CFAPattern holds them."""
    return "".join("RGB"[c] for c in cfa_colors(PERIOD, PERIOD, phase).ravel())


@dataclass(frozen=True)
class XTransLayout(SensorLayout):
    """A visible X-Trans mosaic of ``height × width`` whose top-left pixel is canonical ``phase``."""

    kind = "xtrans"
    label = "X-Trans"
    clean_network_share = 0.04  # bench/blend.py; its measurements: MODEL_CARD.md, "The clean-photo blend"
    scale = CELL
    channels = CELL * CELL
    colour_planes = (RED_PLANES, GREEN_PLANES, BLUE_PLANES)
    pad_mode = "reflect"  # mirrors about an edge cell: cells keep their kind (row + column parity)
    extra_plane_count = 1

    phase: tuple[int, int]
    height: int
    width: int

    def __post_init__(self) -> None:
        if not all(0 <= p < PERIOD for p in self.phase):
            raise ValueError(f"not an X-Trans phase: {self.phase}")
        if self.height < PERIOD or self.width < PERIOD:
            raise ValueError(f"mosaic too small: {self.height}×{self.width} (X-Trans needs 6×6)")

    @property
    def padding(self) -> tuple[int, int, int, int]:
        dy, dx = self.phase
        return dy, (-(self.height + dy)) % PERIOD, dx, (-(self.width + dx)) % PERIOD

    def pack(self, visible: np.ndarray) -> np.ndarray:
        """Plane by plane from the mosaic's sites (padded periodically by index): memory holds the
        mosaic, the planes and one plane's sites (a 100 MP raw peaked at 1.5 GB more when the padded
        mosaic, its planes by position and their swap were whole copies)."""
        top, bottom, left, right = self.padding
        rows = _periodic_indices(visible.shape[0], top, bottom)
        columns = _periodic_indices(visible.shape[1], left, right)
        h, w = len(rows) // CELL, len(columns) // CELL
        is_b = _b_cells(h, w)
        packed = np.empty((CELL * CELL, h, w), visible.dtype)

        def sites(position: int) -> np.ndarray:  # strided views where no padding interrupts the period
            return _take_2d(visible, rows[position // CELL :: CELL], columns[position % CELL :: CELL])

        for position, in_b_cells in enumerate(_B_CELL_SWAP):  # the B cells' red and blue trade planes (_by_colour)
            np.copyto(packed[position], sites(position))
            if in_b_cells != position:
                np.copyto(packed[position], sites(in_b_cells), where=is_b)
        return packed

    def pad_like_pack(self, rgb: np.ndarray) -> np.ndarray:
        top, bottom, left, right = self.padding
        return _pad_periodic(_pad_periodic(rgb, top, bottom, axis=0), left, right, axis=1)

    @classmethod
    def training_patterns(cls) -> tuple[str, ...]:
        return tuple(pattern_letters((dy, dx)) for dy in range(PERIOD) for dx in range(PERIOD))

    @classmethod
    def for_pattern(cls, pattern: str, height: int, width: int) -> "XTransLayout":
        phase = phase_of(np.array(["RGB".index(c) for c in pattern]).reshape(PERIOD, PERIOD))
        if phase is None:
            raise ValueError(f"not an X-Trans pattern: {pattern!r}")
        return cls(phase, height, width)

    def unpack(self, packed: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`pack`: packed planes → the visible mosaic in its own phase."""
        _, h, w = packed.shape
        by_position = _by_colour(packed)
        full = by_position.reshape(CELL, CELL, h, w).transpose(2, 0, 3, 1).reshape(CELL * h, CELL * w)
        return self.crop_to_visible(full)

    @classmethod
    def with_extra_planes(cls, inputs: torch.Tensor) -> torch.Tensor:
        return torch.cat([inputs, cell_b_plane(inputs)], dim=1)

    @classmethod
    def to_bayer(cls, inputs: torch.Tensor) -> torch.Tensor:
        """The plain demosaic (:meth:`naive_rgb`) of the values and of their noise sigma, sampled at
        the sites of an RGGB mosaic and packed: ``(N, 18, h, w)`` → ``(N, 8, 3h/2, 3w/2)`` (``h``, ``w``
        even). A Bayer network on it scored 20.4 / 16.3 dB at ×100 / ×300 where a 9-plane network
        trained for 6,000 steps scored 16.6 / 12.2 (three photos, same scenes).

        Computed in float32 on 6×6 blocks, as a convolution's (:func:`_to_bayer_weights`) 126 nonzero
        weights (of 11,664), each a multiply-add of a shifted block plane, normalised by the same
        convolution of ones so that the image's borders weigh only the samples they have, as
        :meth:`naive_rgb` does: equal to sampling :meth:`naive_rgb` to float rounding (tested); on the
        CPU 9× faster than computing every colour at every pixel first, and the whole convolution
        took 10× as long again (24 MP: 0.59 s)."""
        n, _, h, w = inputs.shape
        rows, columns, channels = h // 2, w // 2, cls.channels
        with torch.autocast(inputs.device.type, enabled=False):
            # each half's 2 × 2 blocks of planes as channels (pixel_unshuffle's order: plane, row, column), in one
            # copy from the planes however they are laid out, into a border of zeros
            planes = inputs[:, : 2 * channels].float().view(n, 2, channels, rows, 2, columns, 2)
            padded = torch.zeros(2 * n, 4 * channels, rows + 2, columns + 2, device=inputs.device)
            padded[:, :, 1:-1, 1:-1].view(n, 2, channels, 2, 2, rows, columns).copy_(planes.permute(0, 1, 2, 4, 6, 3, 5))
            weighed = torch.empty(2 * n, 4 * channels, rows, columns, device=inputs.device)
            for output, ((plane, y, x, weight), *others) in enumerate(_to_bayer_taps()):
                total = torch.mul(padded[:, plane, y : y + rows, x : x + columns], weight, out=weighed[:, output])
                for plane, y, x, weight in others:
                    total.add_(padded[:, plane, y : y + rows, x : x + columns], alpha=weight)
            weighed /= _to_bayer_density(h, w, inputs.device)
            return F.pixel_shuffle(weighed, CELL).reshape(n, 8, CELL * h // 2, CELL * w // 2)

    @classmethod
    def bayer_sites(cls) -> tuple[int, int, int, int]:
        return RED_PLANES[0], GREEN_PLANES[1], GREEN_PLANES[2], BLUE_PLANES[0]  # one plane of each colour

    @classmethod
    def base_rgb(cls, packed: torch.Tensor) -> torch.Tensor:
        """Per cell: the mean of its two reds, five greens and two blues, at all nine sites."""
        p = packed.clamp(0.0, 1.0)
        means = [p[:, planes].mean(1, keepdim=True) for planes in (RED_PLANES, GREEN_PLANES, BLUE_PLANES)]
        return torch.cat([c.expand(-1, CELL * CELL, -1, -1) for c in means], dim=1)

    @classmethod
    def naive_rgb(cls, packed: torch.Tensor) -> torch.Tensor:
        """Each colour: the mean of its samples in the 3×3 neighbourhood, weighted as bilinear
        interpolation weighs them (1 in the centre, ½ at the sides, ¼ at the corners; every 3×3
        window of X-Trans has all three colours): Bayer's bilinear demosaic, for any CFA."""
        _, _, h, w = packed.shape
        mosaic = F.pixel_shuffle(_by_colour(packed), CELL)  # plane 3·i + j lands at (i, j) of each cell
        masks, density = _sampled(h, w, packed.device, packed.dtype), _density(h, w, packed.device, packed.dtype)
        return normalised_convolution(mosaic, masks, _TENT_TAPS, density=density)

    @classmethod
    def clean_rgb(cls, packed: torch.Tensor, wb: np.ndarray) -> torch.Tensor:
        """A demosaic for a clean raw, on white-balanced samples: Markesteijn's for X-Trans (as dcraw,
        LibRaw and darktable have it) along the rows and along the columns, and per pixel the mean
        of the renderings that are the most homogeneous around it (:func:`_most_homogeneous`).

        In the rendering along an axis (:func:`_markesteijn_rendering`), green at red and blue
        sites is first Markesteijn's estimate from the greens along the axis, within the range of
        the six greens of the hexagon around (:func:`_markesteijn_taps`); then :data:`GREEN_REFINEMENT`
        of the way to the sample minus its colour's difference to green (red − green or blue − green,
        interpolated from that colour's sites around by a Gaussian, σ = 1 px) taken at the greens
        on either side along the axis, within the same range. Red and blue follow from their
        differences to green, as Markesteijn has them: at the solitary greens from the nearest
        samples of each colour along the axis; red at blue sites and blue at red ones from the
        adjacent pixels (a sample and a solitary green) or, where green changes less that way, from
        the samples 3 px away along the axis; at the 2×2 blocks of greens from the nearest known
        pixels on either side along the axis, weighted by distance. The blended red and blue are
        never below the least of their own samples within 3 px: where colours are not smooth (a
        dark edge of a saturated colour) the differences undershoot, which dark tones show most.
        Measured samples are kept as they are. The planes are first mirrored outwards by
        :data:`CLEAN_PAD_CELLS` cells, so that the image's border is rendered like its inside; the
        reach is :data:`CLEAN_REACH`.

        Measured against the demosaic before it (green linear along the axis, then refined from the
        colour differences in full; red and blue from Gaussian colour differences): on the sweep's
        X-Trans photos (``lowlight-raw evaluate --sweep --layouts xtrans``, the demosaic alone)
        39.43 / 0.972 at ×1 where it scored 37.26 / 0.965 (darktable's: 39.81), edge chroma 3.56
        where 4.67; on BSDS500's validation raws, clean (``bench/blend.py --weights
        lowlight_raw/weights/lowlight-xtrans12.pt``, clean share 0), 35.33 where 35.77. Those photos
        were JPEGs, whose colours are smoothed, and they reward green from the colour differences:
        all of the refinement scored 38.32 and 36.10, 0.7 of it 39.18 and 35.57, 0.5 39.63 and
        35.07, none 39.99 and 33.51. Without the refinement, the floor under red and blue is worth
        0.63 dB on the sweep (39.36 without); the green range 0.19 dB; Markesteijn's red and blue
        1.6–2.0 dB over Gaussian colour differences; the homogeneity judged by the centre's threshold
        0.09 dB over each pixel's own. Markesteijn's four directions (the two diagonals as well)
        scored 0.01–0.03 dB more than the two axes, and took 1.4× the old time where the two take
        1.2× (a 24 MP raw on one core: 8.4 s where 6.9 s); its 3-pass variant (green refined from
        the colour differences along each direction, the refined renderings as more candidates)
        0.01–0.03 dB more on the sweep and 0.3 on BSDS500, with twice the renderings."""
        _, _, h, w = packed.shape
        gains = torch.tensor([wb[0], 1.0, wb[2]], dtype=packed.dtype, device=packed.device)
        plane_gains = torch.ones(cls.channels, dtype=packed.dtype, device=packed.device)
        plane_gains[list(RED_PLANES)], plane_gains[list(BLUE_PLANES)] = gains[0], gains[2]
        balanced = _mirror_cells(packed * plane_gains.view(1, cls.channels, 1, 1), CLEAN_PAD_CELLS)
        balanced = F.pad(balanced, (0, balanced.shape[-1] % 2, 0, balanced.shape[-2] % 2), mode="reflect")  # whole 6×6 periods
        mosaic = F.pixel_shuffle(_by_colour(balanced), CELL)[:, 0]  # plane 3·i + j lands at (i, j) of each cell
        sites = _sampled(*balanced.shape[-2:], packed.device, packed.dtype)[0]  # (3, H, W): 1 where sampled
        sampled = sites.bool()
        taps = _markesteijn_taps(mosaic.shape[-1], packed.dtype, packed.device)
        padded = _padded(mosaic)
        low, high = _least_sample(mosaic[:, None], sampled[1], 3)[:, 0], _least_sample(-mosaic[:, None], sampled[1], 3)[:, 0]
        green_range = {phase: (torch.minimum(_phase(low, *phase), far), torch.maximum(_phase(high, *phase).neg(), far))
                       for phase, far in _stencil(padded, taps["far_green"]).items()}
        rgb = _most_homogeneous([_markesteijn_rendering(padded, green_range, sites, taps, axis) for axis in (0, 1)])
        for c in (0, 2):
            rgb[:, c].clamp_(min=_least_sample(mosaic[:, None], sampled[c], 7)[:, 0])
        rgb = torch.where(sampled, mosaic[:, None], rgb)
        margin = CELL * CLEAN_PAD_CELLS
        return rgb[..., margin : margin + CELL * h, margin : margin + CELL * w] / gains.view(1, 3, 1, 1)

    @classmethod
    def noise_residual(cls, packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # Cell pixel (1, 1), green in both kinds of cell, against the green pairs symmetric about it
        # (offsets in pixels, row first): ±(1, 1) (planes 0 and 8 of its cell), ±(2, −1), ±(1, −2)
        # (planes 0 and 8 of the cells around) and ±(3, 0), ±(0, 3) (plane 4 of the cells around).
        # Weights 1, ¼, ¼, −¼, −¼ on the pairs' means cancel every quadratic scene; noise variance
        # 1 + ½ + 4 · 2/64 = 13/8.
        p0, centre, p8 = (packed[k].astype(np.float32, copy=False) for k in (0, 4, 8))
        inner = (slice(1, -1), slice(1, -1))
        middle = centre[inner]
        diagonal = 0.5 * (p0[inner] + p8[inner])
        knight = 0.125 * (p0[2:, 1:-1] + p8[:-2, 1:-1] + p8[1:-1, :-2] + p0[1:-1, 2:])
        axis = 0.125 * four_neighbours(centre)
        return (middle - diagonal - knight + axis) / np.float32(np.sqrt(13.0 / 8.0)), 0.5 * (middle + diagonal)

    @classmethod
    def luminance(cls, packed: np.ndarray, wb: np.ndarray) -> np.ndarray:
        green = packed[list(GREEN_PLANES)].sum(0)
        red, blue = packed[list(RED_PLANES)].sum(0), packed[list(BLUE_PLANES)].sum(0)
        return (wb[0] * red + green + wb[2] * blue) / 9.0


@lru_cache(maxsize=2)
def _sampled(h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``(1, 3, 3h, 3w)``: 1 where the canonical X-Trans CFA of ``h × w`` packed cells sampled R, G, B
    (cached: every tile of an image has the same size)."""
    colors = torch.from_numpy(cfa_colors(CELL * h, CELL * w)).to(device)
    return (colors[None] == torch.arange(3, device=device)[:, None, None]).to(dtype)[None]


@lru_cache(maxsize=4)
def _density(h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``(1, 3, 3h, 3w)``: :func:`~lowlight_raw.layouts.base.sample_density` of each colour's sites of
    :func:`_sampled` under the bilinear weights (cached like the sites: every tile of an image has the same size)."""
    return sample_density(_sampled(h, w, device, dtype), _TENT_TAPS)


def _mirror_cells(packed: torch.Tensor, cells: int) -> torch.Tensor:
    """Packed planes mirrored outwards by an even number of ``cells`` about their edge cells on every
    side (a few steps where the area is smaller): the cells keep their kind, the area its phase."""
    while cells:
        step = min(cells, packed.shape[-2] - 1, packed.shape[-1] - 1)
        packed = F.pad(packed, (step, step, step, step), mode="reflect")
        cells -= step
    return packed


def _least_sample(mosaic: torch.Tensor, sampled: torch.Tensor, size: int) -> torch.Tensor:
    """The least of the ``sampled`` colour's samples in each pixel's ``size × size`` neighbourhood
    (``inf`` where there is none): a minimum along the rows, then along the columns, each over
    windows of doubling length (the 7 of a row in 3 steps where one at a time took 6)."""
    least = torch.where(sampled.bool(), mosaic, torch.inf)
    radius = size // 2
    for axis in (-1, -2):
        length = least.shape[axis]
        window = F.pad(least, (radius, radius, 0, 0) if axis == -1 else (0, 0, radius, radius), value=torch.inf)
        span = 1  # window[i]: the least over [i, i + span) of the padded values
        while 2 * span <= size:
            reach = window.shape[axis] - span
            window, span = torch.minimum(window.narrow(axis, 0, reach), window.narrow(axis, span, reach)), 2 * span
        least = torch.minimum(window.narrow(axis, 0, length), window.narrow(axis, size - span, length))
    return least


@lru_cache(maxsize=1)
def _to_bayer_weights() -> torch.Tensor:
    """``(36, 36, 3, 3)``: :meth:`XTransLayout.to_bayer` of one kind of plane as a convolution from
    6×6 blocks of packed planes (2×2 packed positions × 9 planes) to 6×6 blocks of RGGB planes (3×3
    packed Bayer positions × 4 planes), read off :meth:`XTransLayout.naive_rgb` itself: the response
    to an impulse on each input channel in the middle of a 5 × 5-block area, far from its borders."""
    inputs = 2 * 2 * CELL * CELL  # a block's packed planes: 2 × 2 positions of 9
    impulses = torch.zeros(inputs, inputs, 5, 5)
    impulses[range(inputs), range(inputs), 2, 2] = 1.0
    responses = F.pixel_unshuffle(_rggb(XTransLayout.naive_rgb(F.pixel_shuffle(impulses, 2))), CELL)
    return responses[:, :, 1:4, 1:4].flip(-2, -1).transpose(0, 1).contiguous()


@lru_cache(maxsize=1)
def _to_bayer_taps() -> tuple[tuple[tuple[int, int, int, float], ...], ...]:
    """Per output channel of :func:`_to_bayer_weights`, its nonzero weights: (input channel, row and
    column in the 3 × 3 blocks around, from the top left, weight)."""
    weights = _to_bayer_weights()
    return tuple(tuple((int(plane), int(y), int(x), float(weights[output, plane, y, x]))
                       for plane, y, x in weights[output].nonzero().tolist()) for output in range(len(weights)))


@lru_cache(maxsize=2)
def _to_bayer_density(h: int, w: int, device: torch.device) -> torch.Tensor:
    """What :meth:`XTransLayout.to_bayer`'s convolution gives a block of ``h × w`` packed planes of
    ones (the weight of the samples each output has: less at the borders), ``(1, 36, h/2, w/2)``, at
    least 1e-6 (as :func:`~lowlight_raw.layouts.base.sample_density`); cached: every tile of an image has the same size."""
    ones = torch.ones((1, 4 * CELL * CELL, h // 2, w // 2), device=device)
    return F.conv2d(ones, _to_bayer_weights().to(device), padding=1).clamp_min_(1e-6)


def _rggb(rgb: torch.Tensor) -> torch.Tensor:
    """Full-resolution RGB ``(N, 3, H, W)`` sampled at RGGB sites and packed: ``(N, 4, H/2, W/2)``."""
    return torch.stack([rgb[:, 0, 0::2, 0::2], rgb[:, 1, 0::2, 1::2], rgb[:, 1, 1::2, 0::2], rgb[:, 2, 1::2, 1::2]], dim=1)


def _by_colour(planes):
    """Planes by cell position ↔ planes by colour (numpy or torch, ``(..., 9, h, w)``): in B cells
    (odd row + column) the red and blue pixels trade planes. Its own inverse."""
    is_b = _b_cells(*planes.shape[-2:])
    if isinstance(planes, torch.Tensor):
        return torch.where(torch.from_numpy(is_b).to(planes.device), planes[..., _B_CELL_SWAP, :, :], planes)
    return np.where(is_b, planes[..., _B_CELL_SWAP, :, :], planes)


def _b_cells(h: int, w: int) -> np.ndarray:
    """``(h, w)`` bool: the B cells of a canonical packed X-Trans area (odd row + column)."""
    return (np.add.outer(np.arange(h), np.arange(w)) % 2).astype(bool)


def cell_b_plane(packed: torch.Tensor) -> torch.Tensor:
    """``(N, 1, h, w)``: 1 where the packed cell is a B cell (odd row + column), 0 for A cells."""
    n, _, h, w = packed.shape
    return torch.from_numpy(_b_cells(h, w)).to(packed.device, packed.dtype).expand(n, 1, h, w)


def _take_2d(values: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``values[np.ix_(rows, columns)]``, by slicing along an axis whose indices are evenly spaced (a
    24 MP X-Trans raw without padding packed in 0.08 s where 0.2), so that only the other is gathered."""
    def as_slice(indices: np.ndarray) -> slice | None:
        step = int(indices[1] - indices[0]) if len(indices) > 1 else 1
        evenly = step > 0 and np.array_equal(indices, np.arange(indices[0], indices[0] + step * len(indices), step))
        return slice(int(indices[0]), int(indices[0]) + step * len(indices), step) if evenly else None

    row_slice, column_slice = as_slice(rows), as_slice(columns)
    if row_slice is not None:
        return values[row_slice][:, columns if column_slice is None else column_slice]
    if column_slice is not None:
        return values[:, column_slice][rows]
    return values[np.ix_(rows, columns)]


def _pad_periodic(a: np.ndarray, before: int, after: int, axis: int) -> np.ndarray:
    """Pad ``a`` along ``axis`` with its own rows/columns one period further in (same CFA colours)."""
    if not before and not after:
        return a
    return np.take(a, _periodic_indices(a.shape[axis], before, after), axis=axis)


def _periodic_indices(n: int, before: int, after: int) -> np.ndarray:
    """The indices of ``n`` rows (or columns) padded with ``before`` and ``after`` of their own one
    period further in (same CFA colours)."""
    return np.concatenate([np.arange(PERIOD - before, PERIOD), np.arange(n), np.arange(n - PERIOD, n - PERIOD + after)])


_TENT_TAPS = torch.tensor([0.5, 1.0, 0.5])  # bilinear interpolation's weights, as 3×3: 1, ½ at the sides, ¼ at the corners
_GAUSS = np.exp(-0.5 * np.arange(-2.0, 3.0) ** 2)  # σ = 1 px, 5 taps: the refinement's colour differences (5 × 5)
_BOX5_TAPS = torch.ones(5, dtype=torch.uint8)  # a 5×5 sum, in the counts' own type
HOMOGENEITY_THRESHOLD = 8.0  # Markesteijn's
CLEAN_REACH = 15  # px the clean rendering reads around a pixel: each rendering's 11, the homogeneity's 4 more
CLEAN_PAD_CELLS = 6  # even (the mirrored area keeps its phase), at least CLEAN_REACH
GREEN_REFINEMENT = 0.6  # measured: XTransLayout.clean_rgb


AXES = ((0, 1), (1, 0))  # a step along the row, along the column
_REACH = 4  # the farthest any step of :func:`_markesteijn_rendering` reads, in px (the refinement's)
PhaseTaps = dict[tuple[int, int], list[tuple[tuple[int, int], torch.Tensor]]]  # cell pixel → its (offset, weights)


def _cfa(y: int, x: int) -> int:
    """The colour of canonical pixel ``(y, x)``, any integers."""
    return int(CANONICAL[y % PERIOD, x % PERIOD])


def _solitary(y: int, x: int) -> bool:
    """Whether canonical pixel ``(y, x)`` is a green whose four neighbours are red and blue."""
    return _cfa(y, x) == 1 and all(_cfa(y + dy, x + dx) != 1 for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)))


@lru_cache(maxsize=2)
def _markesteijn_taps(width: int, dtype: torch.dtype, device: torch.device) -> dict:
    """The weights of each step of :func:`_markesteijn_rendering` over an area ``width`` pixels wide,
    worked out from the canonical CFA, each as :data:`PhaseTaps`: per cell pixel that the step
    writes, its offsets and their ``(2, width / 3)`` weights (by the kind of cell, then the packed
    column: :func:`_phase`). Along an axis, a red or blue pixel has either greens on both sides (then
    its green is 0.6796875 × theirs − 0.1796875 × the next ones') or a green on one side and one
    2 px away on the other (223/256 of the near one, 33/256 of the far one, and 92/256 of the change
    of its own colour over 2 px towards the near one; ``far_green``: the far one); its hexagon is its
    adjacent greens and that far one. ``refine``: the weights of the colour differences to green
    (sample − green) at its own colour's sites up to 4 px away that its refinement subtracts: at the
    nearest greens on either side along the axis, linearly between them, the Gaussian (σ = 1 px,
    5 × 5) mean of the differences at that colour's sites around each (one stencil where a
    normalised convolution of the whole plane, then a linear interpolation, took 3× as long)."""
    steps: dict = {"green": {}, "far_green": {}, "refine": {}, "solitary": {}, "adjacent": {}, "distant": {}, "block": {}}

    def put(step: tuple, site: tuple[int, int], offset: tuple[int, int], weight: float) -> None:
        table = steps[step[0]].setdefault(step[1:], {}).setdefault(offset, np.zeros((PERIOD, PERIOD), np.float32))
        table[site] += weight

    adjacent_axis = {}
    for y in range(PERIOD):
        for x in range(PERIOD):
            colour, site = _cfa(y, x), (y, x)
            for axis, (uy, ux) in enumerate(AXES):
                green = [k for k in (-2, -1, 1, 2) if _cfa(y + k * uy, x + k * ux) == 1]
                if colour != 1:
                    if {-1, 1} <= set(green):
                        for k, weight in ((1, 174 / 256), (-1, 174 / 256), (2, -46 / 256), (-2, -46 / 256)):
                            put(("green", axis), site, (k * uy, k * ux), weight)
                    else:
                        s = 1 if 1 in green else -1
                        assert -2 * s in green and _cfa(y + 2 * s * uy, x + 2 * s * ux) == colour
                        for k, weight in ((s, 223 / 256), (-2 * s, 33 / 256), (0, 92 / 256), (2 * s, -92 / 256)):
                            put(("green", axis), site, (k * uy, k * ux), weight)
                        put(("far_green",), site, (-2 * s * uy, -2 * s * ux), 1.0)
                    # the refinement's colour difference: at the nearest greens on either side along the
                    # axis (linearly between them), each the Gaussian mean of the differences at the
                    # colour's own sites around it
                    ahead, behind = (next(k for k in (1, 2) if _cfa(y + sign * k * uy, x + sign * k * ux) == 1) for sign in (1, -1))
                    for k, share in ((ahead, behind / (ahead + behind)), (-behind, ahead / (ahead + behind))):
                        qy, qx = y + k * uy, x + k * ux
                        around = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if _cfa(qy + dy, qx + dx) == colour]
                        density = sum(_GAUSS[dy + 2] * _GAUSS[dx + 2] for dy, dx in around)
                        for dy, dx in around:
                            put(("refine", axis), site, (qy + dy - y, qx + dx - x), share * _GAUSS[dy + 2] * _GAUSS[dx + 2] / density)
                    other = 2 - colour  # the adjacent pixels: a sample of it and a solitary green; or its samples 3 px away
                    k = 1 if {_cfa(y + uy, x + ux), _cfa(y - uy, x - ux)} == {other, 1} else 3
                    assert _cfa(y + k * uy, x + k * ux) in (other, 1) and _cfa(y - k * uy, x - k * ux) in (other, 1)
                    if k == 1:
                        adjacent_axis[y % CELL, x % CELL] = axis
                    for sign in (1, -1):
                        put(("adjacent" if k == 1 else "distant", other), site, (sign * k * uy, sign * k * ux), 0.5)
                elif _solitary(y, x):
                    for c in (0, 2):
                        k = next(k for k in (1, 2) if _cfa(y + k * uy, x + k * ux) == c)
                        assert _cfa(y - k * uy, x - k * ux) == c
                        for sign in (1, -1):
                            put(("solitary", c, axis), site, (sign * k * uy, sign * k * ux), 0.5)
                else:  # the nearest pixels on either side that are not in the 2×2 block, by distance
                    ahead, behind = (next(k for k in (1, 2) if _cfa(y + sign * k * uy, x + sign * k * ux) != 1
                                          or _solitary(y + sign * k * uy, x + sign * k * ux)) for sign in (1, -1))
                    put(("block", axis), site, (ahead * uy, ahead * ux), behind / (ahead + behind))
                    put(("block", axis), site, (-behind * uy, -behind * ux), ahead / (ahead + behind))

    def by_phase(taps: dict[tuple[int, int], np.ndarray]) -> PhaseTaps:
        phases: PhaseTaps = {}
        for offset, table in taps.items():
            for i in range(CELL):
                for j in range(CELL):
                    if table[i::CELL, j::CELL].any():
                        weights = np.tile(table[i::CELL, j::CELL], (1, width // PERIOD))
                        phases.setdefault((i, j), []).append((offset, torch.from_numpy(weights).to(device, dtype)))
        return phases

    taps = {name: {key: by_phase(t) for key, t in step.items()} for name, step in steps.items()}
    taps["far_green"] = taps["far_green"][()]
    taps["adjacent_axis"] = adjacent_axis
    return taps


def _padded(values: torch.Tensor) -> torch.Tensor:
    """``values (N, H, W)`` with :data:`_REACH` zeros around, which the steps read (the rendered area
    lies farther in: :data:`CLEAN_PAD_CELLS`) and whose :func:`_inside` they write."""
    return F.pad(values, (_REACH,) * 4)


def _inside(padded: torch.Tensor) -> torch.Tensor:
    """The area within :func:`_padded` values' zeros, a view."""
    return padded[:, _REACH:-_REACH, _REACH:-_REACH]


def _phase(values: torch.Tensor, i: int, j: int) -> torch.Tensor:
    """The pixels ``(i, j)`` of every cell of a canonical ``values (N, H, W)``, a view
    ``(N, H/6, 2, W/3)`` (2: a cell row of A cells first, then one of B cells first)."""
    n, height, width = values.shape
    return values.view(n, height // PERIOD, 2, CELL, width // CELL, CELL)[:, :, :, i, :, j]


def _at(padded: torch.Tensor, offset: tuple[int, int], phase: tuple[int, int]) -> torch.Tensor:
    """From :func:`_padded` values, the values at ``offset`` from the pixels of ``phase`` (:func:`_phase`)."""
    dy, dx = offset
    height, width = padded.shape[-2] - 2 * _REACH, padded.shape[-1] - 2 * _REACH
    return _phase(padded[:, _REACH + dy : _REACH + dy + height, _REACH + dx : _REACH + dx + width], *phase)


def _stencil(padded: torch.Tensor, taps: PhaseTaps) -> dict[tuple[int, int], torch.Tensor]:
    """Per cell pixel that ``taps`` write, the sum over their offsets of the weights × the :func:`_padded` values there."""
    estimates = {}
    for phase, ((offset, weights), *others) in taps.items():
        estimates[phase] = _at(padded, offset, phase) * weights
        for offset, weights in others:
            estimates[phase].addcmul_(_at(padded, offset, phase), weights)
    return estimates


def _markesteijn_rendering(padded_mosaic: torch.Tensor, green_range: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]],
                           sampled: torch.Tensor, taps: dict, axis: int) -> torch.Tensor:
    """``(N, 3, H, W)``: the rendering along ``AXES[axis]`` (:meth:`XTransLayout.clean_rgb`) of a
    canonical white-balanced :func:`_padded` mosaic, ``sampled (3, H, W)`` its colours' sites,
    ``green_range``: per red and blue cell pixel (:func:`_phase`), the least and the most green of its hexagon."""
    mosaic = _inside(padded_mosaic)
    height, width = mosaic.shape[-2:]
    padded_green = padded_mosaic.clone()
    green = _inside(padded_green)
    for phase, estimate in _stencil(padded_mosaic, taps["green"][axis,]).items():
        _phase(green, *phase).copy_(estimate.clamp_(*green_range[phase]))
    # the sample minus its colour's difference to green at the greens along the axis, within the range
    for phase, difference in _stencil(padded_mosaic - padded_green, taps["refine"][axis,]).items():
        _phase(green, *phase).lerp_(torch.sub(_phase(mosaic, *phase), difference).clamp_(*green_range[phase]), GREEN_REFINEMENT)
    padded = {c: torch.zeros_like(padded_mosaic) for c in (0, 2)}  # red − green and blue − green, filled in below
    differences = {c: _inside(padded[c]) for c in (0, 2)}
    for c in (0, 2):
        torch.sub(mosaic, green, out=differences[c]).mul_(sampled[c])
        for phase, estimate in _stencil(padded[c], taps["solitary"][c, axis]).items():
            _phase(differences[c], *phase).add_(estimate)

    def change(phase: tuple[int, int], k: int, a: int) -> torch.Tensor:  # of green, k px either way along AXES[a]
        centre, (uy, ux) = _phase(green, *phase), AXES[a]
        return ((centre - _at(padded_green, (k * uy, k * ux), phase)).abs_()
                + (centre - _at(padded_green, (-k * uy, -k * ux), phase)).abs_())

    # from the samples 3 px away along the axis, unless green changes less across: where it does (per
    # cell pixel; the same for red at blue sites as for blue at red ones)
    across = {phase: across for phase, across in taps["adjacent_axis"].items() if across != axis}
    nearer = {phase: change(phase, 1, across[phase]) < 2 * change(phase, 3, axis) for phase in across}
    for c in (0, 2):  # red at blue sites and blue at red ones
        distant = _stencil(padded[c], {phase: t for phase, t in taps["distant"][c,].items() if phase in across})
        for phase, estimate in _stencil(padded[c], taps["adjacent"][c,]).items():
            if phase in across:
                estimate = torch.where(nearer[phase], estimate, distant[phase])
            _phase(differences[c], *phase).add_(estimate)
    for c in (0, 2):
        for phase, estimate in _stencil(padded[c], taps["block"][axis,]).items():
            _phase(differences[c], *phase).add_(estimate)
    return torch.stack([differences[0] + green, green, differences[2] + green], dim=1)


def _most_homogeneous(renderings: list[torch.Tensor]) -> torch.Tensor:
    """Per pixel, the mean of the renderings along :data:`AXES`, ``(N, 3, H, W)`` each, that are the
    most homogeneous around it, as Markesteijn's demosaic judges them: how much a rendering's
    colour bends along its own axis, the squared second differences of its BT.2020 Y, Pb and Pr
    (as darktable has it); where that is within :data:`HOMOGENEITY_THRESHOLD` × the least of all
    at a pixel, the 3×3 pixels around are smooth where theirs is too, their number summed over
    5×5 is the rendering's homogeneity, and the renderings taken are those within 1/8 of the best."""
    n, _, height, width = renderings[0].shape
    bends = renderings[0].new_zeros(n, len(renderings), height, width)
    for a, ((uy, ux), rgb) in enumerate(zip(AXES, renderings)):
        red, green, blue = rgb.unbind(1)
        luma = 0.2627 * red + 0.6780 * green + 0.0593 * blue
        inside = bends[:, a, 1:-1, 1:-1]
        for channel in (luma, (blue - luma).mul_(0.56433), (red - luma).mul_(0.67815)):
            second = channel[:, 1:-1, 1:-1] * 2.0
            second -= channel[:, 1 + uy : height - 1 + uy, 1 + ux : width - 1 + ux]
            second -= channel[:, 1 - uy : height - 1 - uy, 1 - ux : width - 1 - ux]
            inside.addcmul_(second, second)
    threshold = HOMOGENEITY_THRESHOLD * bends[..., 1:-1, 1:-1].amin(1, keepdim=True)
    smooth = torch.zeros(bends.shape, dtype=torch.uint8, device=bends.device)
    inside = smooth[..., 1:-1, 1:-1]
    for dy in range(3):
        for dx in range(3):
            inside += bends[..., dy : dy + height - 2, dx : dx + width - 2] <= threshold
    homogeneity = separable_filter(smooth, _BOX5_TAPS)  # at most 225: summed in bytes
    best = homogeneity.amax(1, keepdim=True)
    taken = homogeneity >= best - best // 8
    first, second = renderings  # the mean of those taken: the second's weight 0, ½ or 1
    return first.lerp_(second, taken[:, 1:].to(bends.dtype).div_(taken.sum(1, keepdim=True)))
