"""Bayer weight files on a photo that no training set holds: is a gap between them the test set's look?

``python bench/unseen_photos.py WEIGHTS [WEIGHTS ...] [--count N] [--conditions x100,x300]``

The evaluation's held-out photos are BSDS500's ``test/``: JPEGs of one era and look. This scores
weight files on scikit-image's ``stereo_motorcycle`` pair instead, a photo that neither BSDS500
nor the licence-clean training photos hold (it states no licence, so it is used here only, never
trained on). Cases are made as ``lowlight-raw evaluate`` makes them (random crops, cameras and
high-ISO sensors at the condition's ratio); prints sRGB PSNR / SSIM against the truth, naive first.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import skimage.data
import torch

from lowlight_raw.errors import LowlightError
from lowlight_raw.networks.weights import load_model
from lowlight_raw.training import evaluate

SEED = 99


def score(outputs: list[np.ndarray], cases: list[evaluate.TestCase]) -> str:
    """``PSNR / SSIM``, the means of ``outputs`` against their cases' references."""
    return "{:.2f} / {:.3f}".format(*evaluate.mean_scores(outputs, cases))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path, nargs="+", help="Bayer weight files (a .json card beside each)")
    parser.add_argument("--count", type=int, default=16, help="crops per condition")
    parser.add_argument("--conditions", default="x100,x300", help="comma-separated, of " + ",".join(evaluate.CONDITIONS))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    left, right, _ = skimage.data.stereo_motorcycle()
    try:
        models = {path: load_model(path)[0] for path in args.weights}
    except LowlightError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"stereo_motorcycle, {args.count} crops of 256×256 per condition (seed {SEED}): PSNR dB / SSIM")
    print("| condition | naive | " + " | ".join(path.name for path in models) + " |\n|---|---|" + "---|" * len(models))
    for condition in args.conditions.split(","):
        cases = evaluate.build_cases([left, right], condition, args.count, SEED, patch=evaluate.packed_patch("bayer"))
        cells = [score([evaluate.naive_srgb(case) for case in cases], cases)]
        cells += [score([evaluate.render(evaluate.model_camera(model, case.sample), case.sample) for case in cases], cases)
                  for model in models.values()]
        print(f"| {condition} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
