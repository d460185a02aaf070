"""Held-out synthetic low-light benchmark (``lowlight-raw evaluate``; ``bench/quality.py``).

Deterministic: crops of BSDS500 ``test/`` photos (never trained on) made dark and noisy by the
training noise model at high ISO (``a`` in 1e-4 … 8.5e-4, i.e. about ISO 3200–25600), for
exposure ratios ×100, ×300 and ×1–×10. Each is rendered to sRGB through the product's colour
pipeline (white balance + camera matrix + sRGB curve) and scored against the clean crop:

* PSNR and SSIM (sRGB);
* flat-patch noise: the std of the error inside the flattest 16×16 blocks of the reference,
  and its reduction relative to naive;
* grey-patch colour error: a neutral grey card pasted into extra crops; the largest
  per-channel deviation of its mean linear-sRGB colour from the reference, in percent. The
  **card average** row is the noise floor of that score: the mean of every raw sample on the
  whole card (nearly four times the scored area), i.e. what perfect flat-field averaging gives.

Methods: **naive** (bilinear demosaic × gain: what an exposure slider gives), **nlm** (naive +
OpenCV ``fastNlMeansDenoisingColored``, strength ``h`` tuned per condition for the best PSNR
on a separate tuning subset of the test photos) and **model** (the network, run exactly as the
engine runs it: :func:`~lowlight_raw.tiling.run_tiled`, mirrored borders included).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage.metrics import structural_similarity

from ..bayer import simple_demosaic
from ..color import camera_to_linear, srgb_decode, srgb_encode
from ..errors import LowlightError
from torch import nn

from ..model import load_model, save_weights
from ..registry import SHIPPED_MODELS
from ..tiling import run_tiled
from .dataset import Sample, make_sample, random_crop
from .sensor_noise import A_RANGE, sample_sensor
from .sources import DEFAULT_CACHE, cached_images

HIGH_ISO_A = (1e-4, A_RANGE[1])
CONDITIONS = {"x100": (100.0, 100.0), "x300": (300.0, 300.0), "x1-10": (1.0, 10.0)}
NLM_STRENGTHS = (3, 6, 10, 15, 20, 28, 36, 48, 64, 80, 100, 128)
FLAT_BLOCK = 16
FLAT_STD = 0.02  # a reference block whose sRGB std is below this counts as flat
SEED = 20240


@dataclass(frozen=True)
class TestCase:
    """One benchmark sample, and where (if anywhere) its grey card is."""

    sample: Sample
    reference: np.ndarray  # (H, W, 3) sRGB of the clean target
    grey_box: tuple[int, int, int, int] | None  # y0, y1, x0, x1 of the card's inner region (scored)
    card_box: tuple[int, int, int, int] | None  # y0, y1, x0, x1 of the whole card


def build_cases(images: list[np.ndarray], condition: str, count: int, seed: int, grey: bool = False, patch: int = 128) -> list[TestCase]:
    """``count`` deterministic cases of ``condition`` from ``images`` (``grey``: paste a grey card)."""
    lo, hi = CONDITIONS[condition]
    rng = np.random.default_rng([seed, list(CONDITIONS).index(condition), int(grey)])
    cases = []
    for i in range(count):
        crop = random_crop(images[i % len(images)], 2 * patch, 2 * patch, rng).astype(np.float32) / 255.0
        box = card = None
        if grey:  # a card of 3/8 of the crop's side, scored on its inner half
            size = 3 * patch // 4
            crop = crop.copy()
            y, x = (int(v) for v in rng.integers(0, 2 * patch - size, size=2))
            crop[y : y + size, x : x + size] = rng.uniform(0.3, 0.7)
            m = size // 4
            box, card = (y + m, y + size - m, x + m, x + size - m), (y, y + size, x, x + size)
        ratio = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        sample = make_sample(crop, rng, ratio=ratio, sensor=sample_sensor(rng, a_range=HIGH_ISO_A))
        reference = srgb_encode(camera_to_linear(sample.target.transpose(1, 2, 0), sample.color))
        cases.append(TestCase(sample, reference, box, card))
    return cases


def naive_camera(sample: Sample) -> np.ndarray:
    """Bilinear demosaic of the amplified planes: ``(H, W, 3)`` camera RGB."""
    packed = torch.from_numpy(sample.inputs[None, :4])
    return simple_demosaic(packed)[0].numpy().transpose(1, 2, 0)


def render(camera: np.ndarray, sample: Sample) -> np.ndarray:
    return srgb_encode(camera_to_linear(camera, sample.color))


def nlm(srgb: np.ndarray, strength: float) -> np.ndarray:
    """OpenCV non-local means on an sRGB float image (via 8-bit, as a user's tool would)."""
    bgr = np.round(np.clip(srgb[..., ::-1], 0, 1) * 255).astype(np.uint8)
    out = cv2.fastNlMeansDenoisingColored(bgr, None, strength, strength, 7, 21)
    return out[..., ::-1].astype(np.float32) / 255.0


def model_camera(model: nn.Module, sample: Sample) -> np.ndarray:
    """The network's ``(H, W, 3)`` camera RGB, computed the way the engine computes it."""
    return np.clip(run_tiled(model, sample.inputs, torch.device("cpu")), 0.0, 1.0)


def psnr(out: np.ndarray, ref: np.ndarray) -> float:
    mse = float(np.mean((out.astype(np.float64) - ref) ** 2))
    return 10.0 * np.log10(1.0 / max(mse, 1e-12))


def flat_error_variances(out: np.ndarray, ref: np.ndarray) -> list[float]:
    """Error variance inside each flat ``FLAT_BLOCK²`` block of ``ref``."""
    h, w = (s // FLAT_BLOCK * FLAT_BLOCK for s in ref.shape[:2])
    def blocks(a: np.ndarray) -> np.ndarray:
        return a[:h, :w].reshape(h // FLAT_BLOCK, FLAT_BLOCK, w // FLAT_BLOCK, FLAT_BLOCK, 3).swapaxes(1, 2).reshape(-1, FLAT_BLOCK**2, 3)
    ref_b, err_b = blocks(ref), blocks(out - ref)
    flat = ref_b.std(axis=1).max(axis=1) < FLAT_STD
    return err_b[flat].var(axis=1).mean(axis=1).tolist()


def _mean_linear(srgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Mean linear colour of ``srgb`` (sRGB-encoded) inside ``box`` (y0, y1, x0, x1)."""
    y0, y1, x0, x1 = box
    return srgb_decode(srgb[y0:y1, x0:x1].reshape(-1, 3).astype(np.float64)).mean(axis=0)


def _colour_error_percent(got: np.ndarray, want: np.ndarray) -> float:
    return float(100.0 * np.max(np.abs(got - want)) / want.mean())


def grey_error_percent(out_srgb: np.ndarray, case: TestCase) -> float:
    """Largest per-channel deviation of the grey card's mean linear colour, in % of its level."""
    return _colour_error_percent(_mean_linear(out_srgb, case.grey_box), _mean_linear(case.reference, case.grey_box))


def card_average_error_percent(case: TestCase) -> float:
    """:func:`grey_error_percent` of the mean of every raw sample on the whole card (the floor)."""
    y0, y1, x0, x1 = case.card_box  # packed, a pixel inside: the Bayer phase crop may shift the card by one
    y0, y1, x0, x1 = (y0 + 1) // 2 + 1, y1 // 2 - 1, (x0 + 1) // 2 + 1, x1 // 2 - 1
    r, g1, g2, b = case.sample.inputs[:4, y0:y1, x0:x1].reshape(4, -1).astype(np.float64).mean(axis=1)
    camera = np.array([[r, (g1 + g2) / 2.0, b]], dtype=np.float32)
    got = camera_to_linear(camera, case.sample.color)[0].astype(np.float64)
    return _colour_error_percent(got, _mean_linear(case.reference, case.grey_box))


def method_outputs(case: TestCase, model: nn.Module, strength: float) -> dict[str, np.ndarray]:
    naive = render(naive_camera(case.sample), case.sample)
    return {"naive": naive, "nlm": nlm(naive, strength), "model": render(model_camera(model, case.sample), case.sample)}


def tune_nlm(cases: list[TestCase]) -> float:
    """The NLM strength with the best mean PSNR on ``cases``."""
    naive = [render(naive_camera(c.sample), c.sample) for c in cases]
    scores = {h: np.mean([psnr(nlm(n, h), c.reference) for n, c in zip(naive, cases)]) for h in NLM_STRENGTHS}
    return float(max(scores, key=scores.get))


def evaluate(
    model: nn.Module,
    test_images: list[np.ndarray],
    count: int = 32,
    tune_count: int = 8,
    grey_count: int = 16,
    seed: int = SEED,
    patch: int = 128,
) -> dict:
    """The benchmark table: ``{condition: {method: {metric: value}}, ...}`` plus NLM strengths.

    ``count`` crops of ``2·patch`` square per condition from the first ``count`` photos of a
    seeded shuffle of ``test_images``; NLM is tuned on the next ``tune_count`` photos.
    """
    order = np.random.default_rng(seed).permutation(len(test_images))
    eval_images = [test_images[i] for i in order[:count]]
    tune_images = [test_images[i] for i in order[count : count + tune_count]]
    table: dict = {}
    for condition in CONDITIONS:
        strength = tune_nlm(build_cases(tune_images, condition, tune_count, seed + 1, patch=patch))
        rows: dict[str, dict[str, list[float]]] = {m: {"psnr": [], "ssim": [], "flat_var": [], "grey": []} for m in ("naive", "nlm", "model")}
        for case in build_cases(eval_images, condition, count, seed, patch=patch):
            for method, out in method_outputs(case, model, strength).items():
                rows[method]["psnr"].append(psnr(out, case.reference))
                rows[method]["ssim"].append(structural_similarity(case.reference, out, channel_axis=2, data_range=1.0))
                rows[method]["flat_var"] += flat_error_variances(out, case.reference)
        floor = []
        for case in build_cases(eval_images, condition, min(grey_count, count), seed, grey=True, patch=patch):
            for method, out in method_outputs(case, model, strength).items():
                rows[method]["grey"].append(grey_error_percent(out, case))
            floor.append(card_average_error_percent(case))
        naive_noise = float(np.sqrt(np.mean(rows["naive"]["flat_var"]))) if rows["naive"]["flat_var"] else float("nan")
        table[condition] = {
            "nlm_h": strength, "cases": count, "grey_cases": min(grey_count, count),
            "card_average": {"grey_error_pct_mean": round(float(np.mean(floor)), 2), "grey_error_pct_max": round(float(np.max(floor)), 2)},
        }
        for method, r in rows.items():
            noise = float(np.sqrt(np.mean(r["flat_var"]))) if r["flat_var"] else float("nan")
            table[condition][method] = {
                "psnr": round(float(np.mean(r["psnr"])), 2),
                "ssim": round(float(np.mean(r["ssim"])), 4),
                "flat_noise": round(noise, 5),
                "flat_noise_reduction_pct": round(100.0 * (1.0 - noise / naive_noise), 1),
                "grey_error_pct_mean": round(float(np.mean(r["grey"])), 2),
                "grey_error_pct_max": round(float(np.max(r["grey"])), 2),
            }
    return table


def format_table(table: dict) -> str:
    """Markdown table of :func:`evaluate`'s result."""
    lines = [
        "| condition | method | PSNR dB | SSIM | flat noise | flat noise vs naive | grey error % (mean / max) |",
        "|---|---|---|---|---|---|---|",
    ]
    for condition, rows in table.items():
        for method in ("naive", "nlm", "model"):
            r = rows[method]
            name = f"nlm (h={rows['nlm_h']:g})" if method == "nlm" else method
            lines.append(
                f"| {condition} | {name} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['flat_noise']:.4f} | "
                f"{-r['flat_noise_reduction_pct']:+.1f}% | {r['grey_error_pct_mean']:.2f} / {r['grey_error_pct_max']:.2f} |"
            )
        floor = rows["card_average"]
        lines.append(
            f"| {condition} | card average (noise floor) | | | | | {floor['grey_error_pct_mean']:.2f} / {floor['grey_error_pct_max']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``lowlight-raw evaluate``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="lowlight-raw evaluate", description="Score naive, NLM and the model on held-out synthetic low light.")
    parser.add_argument("--weights", type=Path, default=SHIPPED_MODELS["fast"])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--bsds", type=Path, default=None, help="BSDS500 folder")
    parser.add_argument("--count", type=int, default=32, help="test crops per condition")
    parser.add_argument("--tune-count", type=int, default=8, help="crops to tune NLM on (other photos)")
    parser.add_argument("--grey-count", type=int, default=16, help="grey-card crops per condition")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the table as JSON here")
    parser.add_argument("--write-card", action="store_true", help="record the table in the weights' model card")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    try:
        model, card = load_model(args.weights)
        test_images = cached_images("test", args.cache, args.bsds)
    except (LowlightError, FileNotFoundError) as exc:
        print(f"lowlight-raw evaluate: {exc}", file=sys.stderr)
        return 1
    start = time.monotonic()
    table = evaluate(model, test_images, args.count, args.tune_count, args.grey_count)
    print(format_table(table))
    print(f"({args.count} crops of 256×256 per condition, BSDS500 test, seed {SEED}; {time.monotonic() - start:.0f} s)")
    if args.json is not None:
        args.json.write_text(json.dumps(table, indent=1) + "\n")
    if args.write_card:
        extra = dict(card.extra)
        extra["evaluation"] = {"table": table, "crops_per_condition": args.count, "seed": SEED, "test_set": "BSDS500 test (held out)"}
        save_weights(model, args.weights, card.name, extra)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
