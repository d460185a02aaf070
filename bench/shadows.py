"""Why dark detail turns magenta: ``python bench/shadows.py [WEIGHTS ...]`` (Bayer weight files).

Two measurements per weight file, on the noise sweep's scenes (``lowlight_raw/training/sweep.py``):

1. **Fine detail with no noise to remove.** Each scene as an almost noiseless raw (×1, ISO 100-like):
   camera-RGB PSNR per channel of the network alone and of the classical rendering (the layout's
   edge-directed demosaic) against the truth. A network that cannot reproduce a clean mosaic
   blurs every photo it takes, at any darkness.
2. **What a black surround next to bright patches becomes.** The test scene's black gaps between its
   colour-chart patches (4 px wide), per level: the mean camera RGB of the network alone against the
   truth, and the lift after the file's white balance (daylight: R × 2.1, B × 1.6) as a "magenta
   index", ``(R + B) / 2 − G`` of the white-balanced lift: > 0 is magenta.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from lowlight_raw.errors import LowlightError
from lowlight_raw.layouts.registry import layout_class
from lowlight_raw.networks.catalog import SHIPPED_MODELS
from lowlight_raw.networks.weights import load_model
from lowlight_raw.pipeline.restore import blend_clean_rendering
from lowlight_raw.pipeline.tiling import run_tiled
from lowlight_raw.training import sweep

NEAR_NOISELESS = sweep.LEVELS[0]  # the sweep's ×1 at ISO 400: a fraction of a DN of noise at mid-grey


def channel_psnr(out: np.ndarray, truth: np.ndarray) -> list[float]:
    """Camera-RGB PSNR of each channel (12 px of border left out)."""
    inner = (slice(12, -12), slice(12, -12))
    return [float(10 * np.log10(1 / np.mean((out[inner][..., c] - truth[inner][..., c]) ** 2))) for c in range(3)]


def black_gaps(size: int = sweep.CROP) -> np.ndarray:
    """Mask of the test scene's black surround between and beside its chart patches."""
    scene = sweep.test_scene(size)
    mask = scene.max(axis=2) < 0.03
    mask[: 2 * size // 3 + 2] = False
    return mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path, nargs="*", default=[SHIPPED_MODELS["fast"]["bayer"]])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scenes = sweep.sweep_scenes()
    bayer = layout_class("bayer")
    gaps = black_gaps()
    for weights in args.weights:
        try:
            network, _ = load_model(weights)
        except LowlightError as exc:
            raise SystemExit(f"bench/shadows.py: {exc}") from None
        print(f"\n{weights.name} ({network.config.base} residual base)")
        print("| scene, near noiseless | network R / G / B dB | classical R / G / B dB |\n|---|---|---|")
        for scene in scenes:
            sample = sweep.sweep_case(scene, NEAR_NOISELESS, "bayer").sample
            truth = sample.target.transpose(1, 2, 0)
            alone = run_tiled(network, sample.inputs, torch.device("cpu"))
            classical = blend_clean_rendering(None, 0.0, sample.inputs, bayer, sample.color.wb)
            print(f"| {scene.name} | {' / '.join(f'{v:.1f}' for v in channel_psnr(alone, truth))} | "
                  f"{' / '.join(f'{v:.1f}' for v in channel_psnr(classical, truth))} |")
        print("\n| level | truth R, G, B (camera) | network alone | lift after daylight WB | magenta index |\n|---|---|---|---|---|")
        test = sweep.Scene("test scene", sweep.test_scene(), "daylight")
        for level in sweep.LEVELS[1:]:
            sample = sweep.sweep_case(test, level, "bayer").sample
            truth = sample.target.transpose(1, 2, 0)[gaps].mean(axis=0)
            alone = run_tiled(network, sample.inputs, torch.device("cpu"))[gaps].mean(axis=0)
            lift = (alone - truth) * sweep.DAYLIGHT_WB
            magenta = (lift[0] + lift[2]) / 2 - lift[1]
            print(f"| {level.name} | {', '.join(f'{v:.4f}' for v in truth)} | {', '.join(f'{v:.4f}' for v in alone)} | "
                  f"{', '.join(f'{v:+.4f}' for v in lift)} | {magenta:+.4f} |")


if __name__ == "__main__":
    main()
