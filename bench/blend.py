"""Choose the clean-photo blend on the validation photos: ``python bench/blend.py [--weights W]``.

The engine gives the network a share of the result that follows the noise of the amplified
photo (:func:`lowlight_raw.pipeline.restore.network_share`): the layout's ``clean_network_share`` for a
clean photo, rising log-linearly from the layout's ``network_from_sigma`` (:func:`~lowlight_raw.pipeline.restore.network_from_sigma`) to all of
it at the layout's ``full_network_sigma``. This changes one of the three at a time from the
shipped setting and scores each the way ``lowlight-raw evaluate`` scores the model (×1–×10 and
clean raws, PSNR / SSIM in sRGB), on BSDS500's *validation* photos, so that the settings are
chosen on photos the evaluation's test set does not hold. Dark raws (×100, ×300) are far above
any of these sigmas and never change. The weights' layout is the one tuned (``--weights
lowlight_raw/weights/lowlight-xtrans12.pt`` for X-Trans).
"""

from __future__ import annotations

import argparse

from lowlight_raw.layouts.registry import layout_class
from lowlight_raw.networks.catalog import shipped_weights
from lowlight_raw.networks.weights import load_model
from lowlight_raw.pipeline import restore
from lowlight_raw.training.evaluate import evaluate
from lowlight_raw.training.sources import cached_images

CONDITIONS = ("x1-10", "clean")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="a weight file (default: the shipped Bayer network)")
    parser.add_argument("--count", type=int, default=20, help="validation crops per condition (one per photo; there are 20)")
    parser.add_argument("--clean-shares", default="0,0.1,0.25,0.35")
    parser.add_argument("--from-sigmas", default="0.002,0.004,0.006")
    parser.add_argument("--full-sigmas", default="0.015,0.020,0.040")
    args = parser.parse_args()
    model, card = load_model(args.weights or shipped_weights("fast", "bayer"))
    layout = layout_class(model.config.layout)
    images = cached_images("validation")
    shipped = {"clean share": layout.clean_network_share, "network from σ": restore.network_from_sigma(layout),
               "full network from σ": layout.full_network_sigma}
    print(f"{card.name} ({layout.label}) on {args.count} BSDS500 validation crops per condition; shipped: "
          + ", ".join(f"{name} {value:g}" for name, value in shipped.items()))
    print("| changed | to | " + " | ".join(f"{c} PSNR / SSIM" for c in CONDITIONS) + " |\n"
          "|---|---|" + "---|" * len(CONDITIONS), flush=True)
    sweeps = {"clean share": args.clean_shares, "network from σ": args.from_sigmas, "full network from σ": args.full_sigmas}
    rows = [("nothing", "(shipped)", shipped)] + [(name, f"{value:g}", {**shipped, name: value})
                                                   for name, values in sweeps.items()
                                                   for value in map(float, values.split(",")) if value != shipped[name]]
    try:
        for name, value, setting in rows:
            apply(layout, setting)
            table = evaluate(model, images, count=args.count, tune_count=0, grey_count=0, methods=("model",),
                             conditions=CONDITIONS)
            cells = [f"{table[c]['model']['psnr']:.2f} / {table[c]['model']['ssim']:.3f}" for c in CONDITIONS]
            print(f"| {name} | {value} | " + " | ".join(cells) + " |", flush=True)
    finally:
        apply(layout, shipped)


def apply(layout, setting: dict[str, float]) -> None:
    """Make ``setting`` the one :func:`lowlight_raw.pipeline.restore.network_share` uses for ``layout``."""
    layout.clean_network_share, layout.full_network_sigma = setting["clean share"], setting["full network from σ"]
    layout.network_from_sigma = setting["network from σ"]


if __name__ == "__main__":
    main()
