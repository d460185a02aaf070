"""The chroma smoothing of noisy photos, on and off: ``python bench/chroma.py [--weights W]``.

For a photo the network takes alone (its noise above the layout's full-network sigma), the
engine smooths the result's chroma with a colour-guided filter (:func:`lowlight_raw.pipeline.restore.smooth_chroma`).
This scores the shipped setting, the filter off, and other windows and regularisations, the way
``lowlight-raw evaluate`` scores the model (PSNR / SSIM in sRGB), on three sets of photos:
BSDS500's validation photos (JPEGs whose chroma was stored at half resolution, which flatters
any chroma smoothing), scikit-image's ``stereo_motorcycle`` pair (a photo no training set holds)
and every seventh licence-clean training photo (high-resolution photographs downscaled 2–4×,
so their colour detail is real; the network trained on them). ``--conditions x1-10,clean``
shows that clean photos are left alone.
"""

from __future__ import annotations

import argparse

import skimage.data

from lowlight_raw.networks.catalog import shipped_weights
from lowlight_raw.networks.weights import load_model
from lowlight_raw.pipeline import restore
from lowlight_raw.training.evaluate import evaluate
from lowlight_raw.training.sources import cached_images

PHOTO_SETS = {
    "validation": lambda: cached_images("validation"),
    "motorcycle": lambda: list(skimage.data.stereo_motorcycle()[:2]),
    "licence-clean": lambda: cached_images("train", sources="licence-clean")[::7],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="a weight file (default: the shipped Bayer network)")
    parser.add_argument("--count", type=int, default=20, help="crops per condition")
    parser.add_argument("--conditions", default="x100,x300")
    parser.add_argument("--sets", default=",".join(PHOTO_SETS))
    parser.add_argument("--radii", default="1,3", help="other window radii, in block means")
    parser.add_argument("--eps", default="3e-4,3e-3", help="other regularisations")
    args = parser.parse_args()
    model, card = load_model(args.weights or shipped_weights("fast", "bayer"))
    conditions = tuple(args.conditions.split(","))
    shipped = {"radius": restore.CHROMA_RADIUS, "eps": restore.CHROMA_EPS}
    rows = [("shipped", shipped), ("off", None)]
    rows += [(f"radius {r}", {**shipped, "radius": int(r)}) for r in args.radii.split(",") if r]
    rows += [(f"eps {e}", {**shipped, "eps": float(e)}) for e in args.eps.split(",") if e]
    print(f"{card.name}, {args.count} crops per condition; shipped: window radius {shipped['radius']} block means "
          f"of {restore.CHROMA_SUBSAMPLE}² px, eps {shipped['eps']:g}")
    print("| set | chroma smoothing | " + " | ".join(f"{c} PSNR / SSIM" for c in conditions) + " |\n"
          "|---|---|" + "---|" * len(conditions), flush=True)
    smooth = restore.smooth_chroma
    try:
        for name in args.sets.split(","):
            images = PHOTO_SETS[name]()
            for label, setting in rows:
                restore.smooth_chroma = smooth if setting else (lambda rgb, wb: rgb)
                if setting:
                    restore.CHROMA_RADIUS, restore.CHROMA_EPS = setting["radius"], setting["eps"]
                table = evaluate(model, images, count=args.count, tune_count=0, grey_count=0, methods=("model",),
                                 conditions=conditions)
                cells = [f"{table[c]['model']['psnr']:.2f} / {table[c]['model']['ssim']:.3f}" for c in conditions]
                print(f"| {name} | {label} | " + " | ".join(cells) + " |", flush=True)
    finally:
        restore.smooth_chroma = smooth
        restore.CHROMA_RADIUS, restore.CHROMA_EPS = shipped["radius"], shipped["eps"]


if __name__ == "__main__":
    main()
