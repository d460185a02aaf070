"""The same scenes as Bayer, X-Trans and linear raws: how far each shipped network lands above naive,
tuned NLM and tuned CBM3D.

``python bench/layouts.py [--count N] [--tune-count N] [--conditions x100,x300] [--methods naive,nlm,bm3d,model]
[--layouts bayer,xtrans,linear] [--weights LAYOUT=PATH ...]``

Each case is the centre crop of a held-out BSDS500 test photo, unprocessed into one random camera
and shot on one random high-ISO sensor at the condition's ratio; only the sensor layout differs
between the three rows of a case (the Bayer phase, the X-Trans phase and the noise realisation
are drawn per layout: :func:`lowlight_raw.training.evaluate.same_scene_cases`). Crops are
240×240 so every layout packs them whole (X-Trans: 80 packed pixels a side, Bayer and linear 120). The tuned baselines are tuned per layout and condition
on other photos, as ``lowlight-raw evaluate`` does; scores are sRGB PSNR / SSIM against the truth.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from lowlight_raw.networks.catalog import SHIPPED_MODELS
from lowlight_raw.networks.weights import load_model
from lowlight_raw.training import evaluate
from lowlight_raw.training.sources import DEFAULT_CACHE, cached_images

CROP = 240


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=16, help="test crops per condition")
    parser.add_argument("--tune-count", type=int, default=4, help="crops (other photos) to tune NLM and BM3D on")
    parser.add_argument("--conditions", default="x100,x300")
    parser.add_argument("--methods", default="naive,nlm,bm3d,model")
    parser.add_argument("--layouts", default=",".join(evaluate.SAME_SCENE_LAYOUTS))
    parser.add_argument("--weights", action="append", default=[], metavar="LAYOUT=PATH",
                        help="score these weights for LAYOUT instead of the shipped fast network")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    weights = {layout: SHIPPED_MODELS["fast"][layout] for layout in evaluate.SAME_SCENE_LAYOUTS}
    weights.update(dict(item.split("=", 1) for item in args.weights))
    torch.set_num_threads(args.threads)
    methods = tuple(args.methods.split(","))
    photos = [im for im in cached_images("test", DEFAULT_CACHE, None) if min(im.shape[:2]) >= CROP]
    order = np.random.default_rng(evaluate.SEED).permutation(len(photos))
    test = [photos[i] for i in order[: args.count]]
    tune = [photos[i] for i in order[args.count : args.count + args.tune_count]]
    print(f"{args.count} crops of {CROP}×{CROP} per condition (BSDS500 test); sRGB PSNR dB / SSIM; "
          "margin = model − naive / model − NLM in dB")
    print("| condition | layout | " + " | ".join(methods) + " | margin over naive | margin over NLM |")
    print("|---|---|" + "---|" * (len(methods) + 2))
    start = time.monotonic()
    for condition in args.conditions.split(","):
        for layout in args.layouts.split(","):
            model, card = load_model(weights[layout])
            assert card.config.layout == layout, f"{weights[layout]} is not a {layout} network"
            cases = evaluate.same_scene_cases(test, condition, layout, evaluate.SEED, CROP)
            tune_cases = evaluate.same_scene_cases(tune, condition, layout, evaluate.SEED + 1, CROP)
            settings = {m: evaluate.tune(tune_cases, evaluate.BASELINES[m]) for m in methods if m in evaluate.BASELINES}
            outputs = evaluate.method_outputs(cases, model, methods, settings)
            row = {m: evaluate.mean_scores(outputs[m], cases) for m in methods}
            cells = " | ".join(f"{p:.2f} / {s:.3f}" for p, s in row.values())
            over = lambda m: f"{row['model'][0] - row[m][0]:+.2f}" if "model" in row and m in row else "–"  # noqa: E731
            print(f"| {condition} | {layout} | {cells} | {over('naive')} | {over('nlm')} |", flush=True)
    print(f"({time.monotonic() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
