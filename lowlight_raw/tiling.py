"""Run the network over an image of any size in overlapping tiles, within a memory bound.

Tiles start on multiples of the network's pooling factor, so every tile sees the same pooling
grid as a single whole-image pass; neighbouring tiles overlap, the band next to each tile edge
(where zero padding disturbs the network) is dropped and the rest is blended with raised-cosine
weights, so seams vanish and the result does not depend on the tile size (< 1e-3, tested).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .errors import Cancelled

DEFAULT_TILE = 1024  # packed pixels a side (Bayer and linear: 2048 full-resolution pixels, X-Trans: 3072)
DEFAULT_OVERLAP = 160  # packed pixels: seams of the trained model stay < 1e-3 (≤ 2e-4 measured)
EDGE_BORDER = 16  # packed pixels mirrored around the image (rounded up to the pooling factor)


def choose_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA, then Apple MPS, then CPU; otherwise the named device (must be available)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA GPU is available")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("--device mps: Apple MPS is not available")
    return device


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
        tile = max(tile, 2 * overlap + multiple)  # room for both edge fades and a core
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
) -> np.ndarray:
    """``(C, h, w)`` network input → ``(s·h, s·w, 3)`` float32 output (pixel-interleaved), tile by tile
    (``s``: the packing factor of the model's sensor layout).

    ``tile`` and ``overlap`` are in packed pixels and are rounded to multiples of the network's
    pooling factor. ``should_cancel`` is polled before each tile (raises :class:`Cancelled`);
    ``on_progress`` gets the fraction of tiles done. On CUDA the network runs under bf16
    autocast unless ``bf16`` is false (float32: ``bench/bench_engine.py`` compares the two).
    """
    m, s = model.config.multiple, model.scale
    _, h, w = inputs.shape
    # Mirror the image out by a border on every side (and up to a multiple of ``m``), so the
    # network's zero padding never touches real pixels: without it the outermost pixels on the
    # top and left edges came out with several times the error of the interior.
    border = m * math.ceil(EDGE_BORDER / m)
    pad_h, pad_w = border + (-h) % m, border + (-w) % m
    # (The layout says how packed planes may be mirrored; the border is even, so tiles start on
    # even packed positions, which X-Trans cells need.)
    inputs = np.pad(inputs, ((0, 0), (border, pad_h), (border, pad_w)), mode=model.layout.pad_mode)
    H, W = inputs.shape[1:]
    overlap = max(m, (overlap // m) * m)
    tile = max((tile // m) * m, 2 * overlap + m)
    th, ys = _split(H, tile, overlap, m)
    tw, xs = _split(W, tile, overlap, m)
    out = np.zeros((s * H, s * W, 3), dtype=np.float32)
    weight_sum = np.zeros((s * H, s * W), dtype=np.float32)
    autocast = bf16 and device.type == "cuda"
    done, total = 0, len(ys) * len(xs)
    with torch.inference_mode():
        for y in ys:
            wy = _ramp(s * th, s * overlap, y > 0, y + th < H)
            for x in xs:
                if should_cancel is not None and should_cancel():
                    raise Cancelled(None, "cancelled")
                wx = _ramp(s * tw, s * overlap, x > 0, x + tw < W)
                patch = torch.from_numpy(np.ascontiguousarray(inputs[:, y : y + th, x : x + tw]))[None]
                patch = patch.to(device, memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    result = model(patch)
                result = result.float()[0].permute(1, 2, 0).cpu().numpy()
                blend = wy[:, None] * wx[None, :]
                out[s * y : s * (y + th), s * x : s * (x + tw)] += result * blend[..., None]
                weight_sum[s * y : s * (y + th), s * x : s * (x + tw)] += blend
                done += 1
                if on_progress is not None:
                    on_progress(done / total)
    out /= weight_sum[..., None]
    return out[s * border : s * (border + h), s * border : s * (border + w)]
