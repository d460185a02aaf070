"""Run the network over an image of any size in overlapping tiles, within a memory bound.

Tiles start on multiples of the network's pooling factor, so every tile sees the same pooling
grid as a single whole-image pass; neighbouring tiles overlap, the band next to each tile edge
(where zero padding disturbs the network) is dropped and the rest is blended with raised-cosine
weights, so seams vanish and the result does not depend on the tile size (< 1e-3, tested).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from ..errors import Cancelled
from .device import HALF_FLOATS_FROM_PIXELS, use_bf16
from .network_input import NoiseConditioning

DEFAULT_TILE = 1024  # packed pixels a side (Bayer and linear: 2048 full-resolution pixels, X-Trans: 3072)
# A large photo (one held in half floats) gets smaller tiles: a tile's activations (~0.35 GB at 1024) are then a
# fifth of what the engine holds. 100 MP linear on two idle cores, peak: 1.97 GB at 1024, 1.79 at 768, as fast;
# 24 MP Bayer took 0.15 s longer at 768, so smaller photos keep DEFAULT_TILE.
LARGE_PHOTO_TILE = 768


def automatic_tile(pixels: int) -> int:
    """The tile for a photo of ``pixels`` (full resolution) when none is asked for:
    :data:`DEFAULT_TILE`, or :data:`LARGE_PHOTO_TILE` from :data:`~.device.HALF_FLOATS_FROM_PIXELS`."""
    return LARGE_PHOTO_TILE if pixels >= HALF_FLOATS_FROM_PIXELS else DEFAULT_TILE


DEFAULT_OVERLAP = 160  # packed pixels: seams of the trained model stay < 1e-3 (≤ 2e-4 measured)


EDGE_BORDER = 16  # packed pixels mirrored around the image (rounded up to the pooling factor)


def _split(size: int, max_tile: int, overlap: int, multiple: int) -> tuple[int, list[int]]:
    """Tile length and start positions covering ``size`` with as little overlap as allowed.

    Uses the fewest tiles of at most ``max_tile`` (≥ ``2·overlap + multiple``) that overlap by
    at least ``overlap``, all of one length (a multiple of ``multiple``) and spread evenly.
    """
    if size <= max_tile:
        return size, [0]
    count = math.ceil((size - overlap) / (max_tile - overlap))
    while True:
        tile = math.ceil((size + (count - 1) * overlap) / count / multiple) * multiple
        tile = max(tile, math.ceil((2 * overlap + multiple) / multiple) * multiple)  # room for both edge fades and a core
        while tile <= max_tile:
            last = size - tile
            starts = [round(i * last / (count - 1) / multiple) * multiple for i in range(count)]
            if all(b - a <= tile - overlap for a, b in zip(starts, starts[1:])):
                return tile, starts
            tile += multiple
        count += 1


def _ramp(length: int, overlap: int, fade_in: bool, fade_out: bool) -> np.ndarray:
    """1-D blend weight of a tile along one axis.

    At an edge shared with a neighbour, the outer quarter of the overlap gets weight 0 (that is
    where zero padding disturbs the network most), the middle half fades in with a raised
    cosine, and the rest is 1; the neighbour's weights mirror these, so they sum to 1.
    """
    w = np.ones(length, dtype=np.float32)
    margin, fade_len = overlap // 4, overlap - 2 * (overlap // 4)
    fade = np.zeros(overlap, dtype=np.float32)
    fade[margin : margin + fade_len] = 0.5 - 0.5 * np.cos(np.pi * (np.arange(fade_len) + 0.5) / fade_len)
    fade[margin + fade_len :] = 1.0
    if fade_in:
        w[:overlap] = fade
    if fade_out:
        w[length - overlap :] = fade[::-1]
    return w


def run_tiled(
    model: nn.Module,
    inputs: np.ndarray,
    device: torch.device,
    tile: int = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    should_cancel: Callable[[], bool] | None = None,
    on_progress: Callable[[float], None] | None = None,
    bf16: bool = True,
    conditioning: NoiseConditioning | None = None,
    dtype: np.dtype = np.float32,
) -> np.ndarray:
    """``(C, h, w)`` network input → ``(s·h, s·w, 3)`` output of ``dtype`` (pixel-interleaved), tile by tile
    (``s``: the packing factor of the model's sensor layout). With ``conditioning``,
    ``inputs`` holds only the amplified planes, and each tile of them is made the network's input
    by it (their noise sigma added).

    ``tile`` and ``overlap`` are in the network's own packed pixels (Bayer planes: an X-Trans
    network re-mosaics ⅔ as many cells a side into them, so that a tile costs every layout the
    same memory); the tile is rounded to a multiple of the network's pooling factor. ``should_cancel``
    is polled before each tile (raises :class:`Cancelled`); ``on_progress`` gets the fraction of
    tiles done. The network runs in bf16 where :func:`use_bf16` says so (``bf16`` false: float32).
    Besides the output (and ``inputs``), memory holds one tile's input and activations: the mirrored border is
    made per tile, and the blend weights are normalised per axis instead of summed per pixel.
    """
    m, s = model.config.multiple, model.scale
    _, h, w = inputs.shape
    # Mirror the image out by a border on every side (and up to a multiple of ``m``), so the
    # network's zero padding never touches real pixels: without it the outermost pixels on the
    # top and left edges came out with several times the error of the interior.
    # (The layout says how packed planes may be mirrored; the border is even, so tiles start on
    # even packed positions, which X-Trans cells need.)
    border = m * math.ceil(EDGE_BORDER / m)
    rows = np.pad(np.arange(h), (border, border + (-h) % m), mode=model.layout.pad_mode)
    columns = np.pad(np.arange(w), (border, border + (-w) % m), mode=model.layout.pad_mode)
    per_side = model.layout.scale / model.core.scale  # network pixels per packed pixel along each axis
    overlap = max(m, math.ceil(overlap / per_side))  # at least the requested reach, in network pixels
    tile = max(round(tile / per_side) // m * m, math.ceil((2 * overlap + m) / m) * m)
    th, ys = _split(len(rows), tile, overlap, m)
    tw, xs = _split(len(columns), tile, overlap, m)
    # What each tile contributes along each axis, already divided by what all tiles there add up to.
    weights_y = _blend_weights(len(rows), th, ys, s * overlap, s)
    weights_x = _blend_weights(len(columns), tw, xs, s * overlap, s)
    out = np.zeros((s * h, s * w, 3), dtype)
    accumulated = torch.from_numpy(out)  # the tiles are added into ``out`` through this view
    precision = torch.bfloat16 if use_bf16(device, bf16) else None
    done, total = 0, len(ys) * len(xs)
    with torch.inference_mode(), _float32_levels(model, device, enabled=precision is not None):
        for y, wy in zip(ys, weights_y):
            for x, wx in zip(xs, weights_x):
                if should_cancel is not None and should_cancel():
                    raise Cancelled(None, "cancelled")
                patch = _take(inputs, rows[y : y + th], columns[x : x + tw])
                if conditioning is None:  # float32 however the planes are held (a large linear raw's: half floats)
                    patch = patch.to(device, torch.float32, memory_format=model.input_memory_format)
                else:
                    patch = conditioning(patch.to(device, torch.float32), memory_format=model.input_memory_format)
                with torch.autocast(device.type, dtype=precision or torch.float32, enabled=precision is not None):
                    result = model(patch)
                result = result[0].to("cpu", torch.float32).permute(1, 2, 0)  # (s·th, s·tw, 3), a view
                # the part of the tile inside the image (the mirrored border is dropped here)
                top, bottom = max(y, border), min(y + th, border + h)
                left, right = max(x, border), min(x + tw, border + w)
                if top < bottom and left < right:
                    blend = wy[s * (top - y) : s * (bottom - y), None] * wx[None, s * (left - x) : s * (right - x)]
                    target = accumulated[s * (top - border) : s * (bottom - border), s * (left - border) : s * (right - border)]
                    contribution = result[s * (top - y) : s * (bottom - y), s * (left - x) : s * (right - x)]
                    # summed in float32: in place where ``out`` is float32, else in a float32 copy of the block written
                    # back (a third of the time of a mixed-type sum into half floats)
                    summed = target.float().addcmul_(contribution, blend[..., None])
                    if summed is not target:
                        target.copy_(summed)
                done += 1
                if on_progress is not None:
                    on_progress(done / total)
    return out


@contextmanager
def _float32_levels(model: nn.Module, device: torch.device, enabled: bool) -> Iterator[None]:
    """While it lasts, and where ``enabled``: the network's first encoder and the last convolution
    of its last decoder (the full-resolution features its output is made from) run in float32
    under bf16 autocast, the rest in bf16. Evaluation PSNR against all-float32 (three photos ×100,
    ``tests/test_tiling.py``): bf16 throughout lost 0.08 dB (Bayer) and 0.12 dB (X-Trans); with
    these in float32 (13 % of the FLOPs) +0.01 and −0.03 dB (the last convolution alone: +0.005,
    −0.04; the whole last decoder instead of its last convolution: no better).
    The first encoder's features are handed on in bf16: all that reads them (a max-pooling and the
    last decoder's convolution after a concatenation, which autocast feeds bf16; no context blocks
    at that level in the shipped networks) computes the same from them rounded first, and a
    concatenation of bf16 with float32 features cost 24 MP Bayer 0.2 s."""
    if not enabled:
        yield
        return

    def to_float32(module: nn.Module, args: tuple) -> tuple:
        torch.set_autocast_enabled(device.type, False)
        return tuple(a.float() for a in args)

    def back_to_bf16(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        torch.set_autocast_enabled(device.type, True)

    def features_in_bf16(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        back_to_bf16(module, args, output)
        return output.to(torch.bfloat16)

    last_convolution = [m for m in model.decoders[-1].modules() if isinstance(m, nn.Conv2d)][-1]
    handles = [model.encoders[0].register_forward_pre_hook(to_float32),
               model.encoders[0].register_forward_hook(features_in_bf16),
               last_convolution.register_forward_pre_hook(to_float32),
               last_convolution.register_forward_hook(back_to_bf16)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _take(inputs: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> torch.Tensor:
    """``inputs[:, rows][:, :, columns]`` as a ``(1, C, len(rows), len(columns))`` tensor: a view where
    both index runs are contiguous (the copy into channels-last is then the only one), else the
    tile gathered in one step (never whole rows or columns of the image)."""
    def runs_on(positions: np.ndarray) -> bool:
        return positions[-1] - positions[0] == len(positions) - 1 and bool(np.all(np.diff(positions) == 1))

    if runs_on(rows) and runs_on(columns):
        return torch.from_numpy(inputs)[None, :, rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    return torch.from_numpy(inputs[:, rows[:, None], columns[None, :]])[None]


def _blend_weights(size: int, tile: int, starts: list[int], overlap: int, scale: int) -> list[torch.Tensor]:
    """Each tile's full-resolution blend weight along one axis of ``size`` packed pixels (tiles of
    ``tile`` at ``starts``; ``overlap`` and the weights in full-resolution pixels), normalised so
    that the tiles' weights add up to 1 at every pixel (where neighbours overlap by more than
    ``overlap``, their plateaus would otherwise add up to more)."""
    ramps = [_ramp(scale * tile, overlap, start > 0, start + tile < size) for start in starts]
    total = np.zeros(scale * size, dtype=np.float32)
    for start, ramp in zip(starts, ramps):
        total[scale * start : scale * (start + tile)] += ramp
    return [torch.from_numpy(ramp / total[scale * start : scale * (start + tile)]) for start, ramp in zip(starts, ramps)]
