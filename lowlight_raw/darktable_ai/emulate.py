"""darktable's raw-denoise pre- and post-processing, re-implemented from its contract, around
onnxruntime: what darktable 5.6's neural restore does with a package's graphs.

Written from darktable's ``src/common/ai/restore.h`` (the contracts), ``restore_raw_bayer.c``,
``restore_raw_linear.c`` and ``restore_common.h`` (read, not copied):

* **Bayer** (:func:`restore_bayer`): the sensor's ADC values, each site normalised by its own black
  level and ``white − black``, times the slot's white-balance normalisation; tiles of ``T × T``
  packed pixels whose cores step by ``T − 2·32`` and that read 32 packed pixels around their core,
  mirrored at the image's edge within the RGGB-cropped rectangle (``edge_pad: mirror_cropped``) or
  the whole buffer (``mirror``); the output optionally scaled to the tile input's mean
  (``match_gain``: 3 output planes against 4 input planes); each site keeps its own colour of the
  output (re-mosaic), un-normalised; blended with the source by the strength slider, the
  neighbouring tiles' results crossfaded with linear ramps over 64 sensor pixels centred on each
  core boundary, clipped to ``[0, white]`` and rounded to uint16. Rows and columns outside the
  working region (the 0–1 before the red origin, an odd last one) keep their source values.
* **Linear** (:func:`restore_linear`): darktable's demosaiced camera RGB (rawprepare, highlight
  clipping, demosaic), white-balance normalised, converted to the slot's colour space (default
  linear Rec.2020), optionally boosted to ``target_mean``; tiles of ``T × T`` pixels stepping by
  ``T − 64`` with 32 mirrored pixels around, ``match_gain`` over the three planes; blended, ramps
  over 64 pixels; then back to camera RGB (un-boost, inverse matrix, un-white-balance) for a
  LinearRaw DNG (:func:`write_linear_dng`; we assume darktable clips to ``[0, 1]`` and writes 16 bits).

The ramps sum to one across every seam, so accumulating ``weight · value`` here equals darktable's
strip buffers.
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..layouts.base import COLOR_CODES
from ..pipeline.color import CameraColor
from ..testing.synthetic import DngSpec, write_cfa_dng
from ..testing.synthetic import write_linear_dng as write_linear_raw_dng
from .package import SLOTS

OVERLAP = 32  # darktable's OVERLAP_PACKED (Bayer, packed pixels) and OVERLAP_LINEAR (pixels)
D65_WHITE_XYZ = np.array([0.9504, 1.0, 1.0889])
XYZ_TO_REC2020 = np.array([[1.7166512, -0.3556708, -0.2533663],
                           [-0.6666844, 1.6164812, 0.0157685],
                           [0.0176399, -0.0427706, 0.9421031]])  # linear Rec.2020, D65
XYZ_TO_SRGB = np.array([[3.2404542, -1.5371385, -0.4985314],
                        [-0.9692660, 1.8760108, 0.0415560],
                        [0.0556434, -0.2040259, 1.0572252]])


@dataclass
class Graph:
    """One slot's graph of a package, ready to run, and its config attributes."""

    slot: str  # model_bayer | model_linear
    session: object  # onnxruntime.InferenceSession
    attributes: dict
    tile: int

    def run(self, tile_in: np.ndarray) -> np.ndarray:
        """``(1, C, T, T)`` float32 → the graph's ``(1, 3, …)`` float32 output."""
        name = self.session.get_inputs()[0].name
        return self.session.run(None, {name: np.ascontiguousarray(tile_in, dtype=np.float32)})[0]


def open_graphs(package: Path, threads: int = 1) -> dict[str, Graph]:
    """Every slot's graph of ``package`` (``bayer``/``linear`` → :class:`Graph`), on onnxruntime's CPU
    provider with ``threads`` intra-op threads."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    graphs = {}
    with zipfile.ZipFile(package) as archive:
        config_name = next(n for n in archive.namelist() if n.endswith("/config.json"))
        config = json.loads(archive.read(config_name))
        folder = config_name.rsplit("/", 1)[0]
        for layout, slot in SLOTS.items():
            if slot in config["attributes"]:
                session = onnxruntime.InferenceSession(archive.read(f"{folder}/{slot}.onnx"), options,
                                                       providers=["CPUExecutionProvider"])
                graphs[layout] = Graph(slot, session, config["attributes"][slot], session.get_inputs()[0].shape[-1])
    return graphs


def wb_normalisation(mode: str, color: CameraColor) -> np.ndarray:
    """darktable's ``wb_norm`` multipliers (G = 1) for ``mode``: ``none``, ``daylight`` (D65 through
    the camera matrix; as-shot where that fails) or ``as_shot`` (daylight where there is none)."""
    daylight = color.cam_xyz @ D65_WHITE_XYZ
    daylight = daylight[1] / daylight if (daylight > 0).all() else None
    as_shot = np.asarray(color.wb, dtype=np.float64) / color.wb[1] if (np.asarray(color.wb) > 0).all() else None
    if mode == "daylight":
        chosen = daylight if daylight is not None else as_shot
    elif mode == "as_shot":
        chosen = as_shot if as_shot is not None else daylight
    else:
        chosen = None
    return np.ones(3) if chosen is None else chosen


def mirror(index: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """darktable's periodic mirror of indices into ``[lo, hi)`` (the edge pixel not repeated)."""
    n = hi - lo
    if n <= 1:
        return np.full_like(index, lo)
    period = 2 * (n - 1)
    i = np.abs(index - lo) % period
    return lo + np.where(i >= n, period - i, i)


def seam_weights(coords: np.ndarray, base: int, end: int, seam: int, before: bool, after: bool) -> np.ndarray:
    """The linear ramp weight of each of ``coords`` for the tile whose core is ``[base, end)``: over
    ``2·seam`` pixels centred on a core boundary shared with a neighbour (``before``/``after``), 1 elsewhere."""
    weight = np.ones(coords.shape, dtype=np.float64)
    if before:
        rising = coords < base + seam
        weight[rising] = (coords[rising] - (base - seam) + 0.5) / (2 * seam)
    if after:
        falling = coords >= end - seam
        weight[falling] = 1.0 - (coords[falling] - (end - seam) + 0.5) / (2 * seam)
    return weight


def match_gain(tile_in: np.ndarray, tile_out: np.ndarray) -> float:
    """darktable's scalar ``match_gain`` factor: the tile input's mean over its planes ÷ the output's
    (1 when the output's mean is within 1e-6 of zero relative to the input's)."""
    in_mean, out_mean = float(tile_in.mean(dtype=np.float64)), float(tile_out.mean(dtype=np.float64))
    return in_mean / out_mean if abs(out_mean) > 1e-6 * abs(in_mean) else 1.0


def restore_bayer(graph: Graph, cfa: np.ndarray, pattern: str, black: tuple[float, float, float, float], white: float,
                  color: CameraColor, strength: float = 1.0) -> np.ndarray:
    """darktable's batch Bayer raw denoise of a whole sensor buffer → the uint16 CFA it writes.

    ``cfa``: ``(H, W)`` ADC values; ``pattern``: its 2×2 CFA from the top-left (``"GRBG"``);
    ``black``: per site ``((row & 1) << 1) | (col & 1)``; ``strength``: the slider (1: the model alone).
    """
    attributes = graph.attributes
    codes = np.array([COLOR_CODES[c] for c in pattern]).reshape(2, 2)
    (y0,), (x0,) = np.nonzero(codes == COLOR_CODES["R"])
    height, width = cfa.shape
    rows, cols = np.arange(height), np.arange(width)
    colour = codes[(rows % 2)[:, None], (cols % 2)[None, :]]
    site = ((rows & 1) << 1)[:, None] | (cols & 1)[None, :]
    black_map = np.asarray(black, dtype=np.float64)[site]
    span = np.asarray([white - b if white - b > 0 else 1.0 for b in black])[site]
    wb = wb_normalisation(attributes.get("wb_norm", "daylight"), color)
    alpha = float(np.clip(strength, 0.0, 1.0))
    result = np.clip(cfa, 0.0, white).astype(np.float64)
    normalised = (cfa - black_map) / span * wb[colour]

    forced = attributes.get("bayer_orientation", "force_rggb") == "force_rggb"
    oy, ox = (int(y0), int(x0)) if forced else (0, 0)
    lo_y, hi_y, lo_x, hi_x = 0, height, 0, width
    if forced and attributes.get("edge_pad", "mirror_cropped") == "mirror_cropped":
        lo_y, lo_x = oy, ox
        hi_y -= (hi_y - lo_y) & 1
        hi_x -= (hi_x - lo_x) & 1
    packed_h, packed_w = (height - int(y0)) // 2, (width - int(x0)) // 2
    tile, seam = graph.tile, 2 * OVERLAP
    step = tile - 2 * OVERLAP
    if tile < 4 * OVERLAP:
        raise ValueError(f"darktable refuses tile {tile} (< {4 * OVERLAP})")
    tiles_y, tiles_x = math.ceil(packed_h / step), math.ceil(packed_w / step)
    accumulated = np.zeros_like(result)
    for ty in range(tiles_y):
        py, py_end = ty * step, min(ty * step + step, packed_h)
        sensor_rows = mirror(oy + 2 * (py - OVERLAP) + np.arange(2 * tile), lo_y, hi_y)
        top, bottom = y0 + 2 * py, y0 + 2 * py_end
        out_rows = np.arange(max(0, top - seam if ty > 0 else top), min(height, bottom + seam if ty < tiles_y - 1 else bottom))
        ay = seam_weights(out_rows, top, bottom, seam, ty > 0, ty < tiles_y - 1)
        for tx in range(tiles_x):
            px, px_end = tx * step, min(tx * step + step, packed_w)
            sensor_cols = mirror(ox + 2 * (px - OVERLAP) + np.arange(2 * tile), lo_x, hi_x)
            block = normalised[np.ix_(sensor_rows, sensor_cols)]
            tile_in = np.stack([block[0::2, 0::2], block[0::2, 1::2], block[1::2, 0::2], block[1::2, 1::2]])[None]
            tile_out = graph.run(tile_in)[0].astype(np.float64)
            if attributes.get("output_scale", "match_gain") == "match_gain":
                tile_out *= match_gain(tile_in, tile_out)
            left, right = x0 + 2 * px, x0 + 2 * px_end
            out_cols = np.arange(max(0, left - seam if tx > 0 else left), min(width, right + seam if tx < tiles_x - 1 else right))
            ax = seam_weights(out_cols, left, right, seam, tx > 0, tx < tiles_x - 1)
            window = np.ix_(out_rows, out_cols)
            channel = colour[window]
            model = tile_out[channel, (2 * OVERLAP + out_rows - top)[:, None], (2 * OVERLAP + out_cols - left)[None, :]]
            raw = model / wb[channel] * span[window] + black_map[window]
            accumulated[window] += ay[:, None] * ax[None, :] * (alpha * raw + (1.0 - alpha) * cfa[window])
    working = (slice(int(y0), int(y0) + 2 * packed_h), slice(int(x0), int(x0) + 2 * packed_w))
    result[working] = np.clip(accumulated[working], 0.0, white)
    return (result + 0.5).astype(np.uint16)


def restore_linear(graph: Graph, camera_rgb: np.ndarray, color: CameraColor, strength: float = 1.0) -> np.ndarray:
    """darktable's batch linear raw denoise of demosaiced, normalised camera RGB ``(H, W, 3)`` (what
    its rawprepare + highlights + demosaic pipe gives) → the camera RGB it writes, ``(H, W, 3)`` float."""
    attributes = graph.attributes
    wb = wb_normalisation(attributes.get("wb_norm", "as_shot"), color)
    space = attributes.get("input_colorspace", "lin_rec2020")
    if space == "camRGB":
        cam_to_input = input_to_cam = np.eye(3)
    else:
        xyz_to_input = XYZ_TO_SRGB if space == "srgb_linear" else XYZ_TO_REC2020
        cam_to_input = xyz_to_input @ np.linalg.inv(color.cam_xyz)
        input_to_cam = color.cam_xyz @ np.linalg.inv(xyz_to_input)
    source = np.einsum("ij,hwj->ihw", cam_to_input, camera_rgb.astype(np.float64) * wb)  # planar, input space
    boost = 1.0
    target = attributes.get("target_mean", 0.30)
    scene_mean = float(source.mean())
    if target is not None and target > 0 and scene_mean > 1e-4:
        boost = float(np.clip(target / scene_mean, 1.0, 100.0))
    source *= boost
    _, height, width = source.shape
    alpha = float(np.clip(strength, 0.0, 1.0))
    tile, seam = graph.tile, OVERLAP
    step = tile - 2 * OVERLAP
    if tile <= 2 * OVERLAP:
        raise ValueError(f"darktable refuses tile {tile} (≤ {2 * OVERLAP})")
    tiles_y, tiles_x = math.ceil(height / step), math.ceil(width / step)
    accumulated = np.zeros_like(source)
    for ty in range(tiles_y):
        top, bottom = ty * step, min(ty * step + step, height)
        rows = mirror(top - OVERLAP + np.arange(tile), 0, height)
        out_rows = np.arange(top - seam if ty > 0 else top, bottom + seam if ty < tiles_y - 1 else bottom)
        ay = seam_weights(out_rows, top, bottom, seam, ty > 0, ty < tiles_y - 1)
        for tx in range(tiles_x):
            left, right = tx * step, min(tx * step + step, width)
            cols = mirror(left - OVERLAP + np.arange(tile), 0, width)
            tile_in = source[:, rows][:, :, cols][None]
            tile_out = graph.run(tile_in)[0].astype(np.float64)
            if attributes.get("output_scale", "match_gain") == "match_gain":
                tile_out *= match_gain(tile_in, tile_out)
            out_cols = np.arange(left - seam if tx > 0 else left, right + seam if tx < tiles_x - 1 else right)
            ax = seam_weights(out_cols, left, right, seam, tx > 0, tx < tiles_x - 1)
            model = tile_out[:, (OVERLAP + out_rows - top)[:, None], (OVERLAP + out_cols - left)[None, :]]
            blended = alpha * model + (1.0 - alpha) * source[:, out_rows[:, None], out_cols[None, :]]
            accumulated[:, out_rows[:, None], out_cols[None, :]] += ay[:, None] * ax[None, :] * blended
    to_camera = input_to_cam / boost / wb[:, None]
    return np.einsum("ij,jhw->hwi", to_camera, accumulated).astype(np.float32)


def write_bayer_dng(path: Path, cfa: np.ndarray, pattern: str, black: tuple[float, float, float, float], white: float,
                    color: CameraColor, make: str = "Lowlight", camera_model: str = "Synthetic Bayer") -> Path:
    """The uint16 CFA darktable writes, as a DNG of the source's CFA, levels, matrix and white balance
    (:func:`lowlight_raw.testing.synthetic.write_cfa_dng`: under a temporary name, then renamed)."""
    spec = DngSpec(pattern=pattern, black=tuple(int(round(b)) for b in black), white=int(white), cam_xyz=color.cam_xyz,
                   as_shot_neutral=tuple(float(v) for v in color.as_shot_neutral), make=make, camera_model=camera_model)
    return write_cfa_dng(Path(path), cfa, spec)


def write_linear_dng(path: Path, camera_rgb: np.ndarray, color: CameraColor, make: str = "Lowlight",
                     camera_model: str = "Synthetic linear") -> Path:
    """Camera RGB from :func:`restore_linear` as a 16-bit LinearRaw DNG (clipped to ``[0, 1]``, black 0,
    white 65535) with the source's matrix and white balance."""
    codes = np.rint(np.clip(camera_rgb, 0.0, 1.0) * 65535.0).astype(np.uint16)
    spec = DngSpec(black=(0, 0, 0, 0), white=65535, cam_xyz=color.cam_xyz,
                   as_shot_neutral=tuple(float(v) for v in color.as_shot_neutral), make=make, camera_model=camera_model)
    return write_linear_raw_dng(Path(path), codes, spec)
