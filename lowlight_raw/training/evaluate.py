"""Held-out synthetic low-light benchmark (``lowlight-raw evaluate``; ``bench/quality.py``).

Deterministic: crops of BSDS500 ``test/`` photos (never trained on) made dark and noisy by the
training noise model at high ISO (``a`` in 1e-4 … 8.5e-4, i.e. about ISO 3200–25600), for
exposure ratios ×100, ×300 and ×1–×10, and a **clean** condition: ISO 100–400-like noise at ×1.
Each is rendered to sRGB through the product's colour pipeline (white balance + camera matrix +
sRGB curve) and scored against the clean crop:

* PSNR and SSIM (sRGB);
* flat-patch noise: the std of the error inside the flattest 16×16 blocks of the reference,
  and its reduction relative to naive;
* grey-patch colour error: a neutral grey card pasted into extra crops; the largest
  per-channel deviation of its mean linear-sRGB colour from the reference, in percent. The
  **card average** row is the noise floor of that score: the mean of every raw sample on the
  whole card (nearly four times the scored area), i.e. what perfect flat-field averaging gives.

The raws are of the sensor layout the model's card names (Bayer, X-Trans or linear RGB; the
darktable baseline is Bayer-only). ``bench/layouts.py`` scores all three on the same scenes
(:func:`same_scene_cases`).

Methods: **naive** (the layout's plain demosaic × gain, bilinear for Bayer: what an exposure
slider gives), the tuned classical baselines, and **model** (the product, run exactly as the
engine runs it: :func:`~lowlight_raw.pipeline.restore.restore`, the network tiled with mirrored borders,
blended with a clean demosaic where the raw is clean). Each tuned baseline has one
setting chosen per condition from its grid for the best mean PSNR on a separate tuning subset
of the test photos (:func:`tune`):

* **nlm**: naive + OpenCV ``fastNlMeansDenoisingColored`` (8-bit, as a user's tool would), ``h``;
* **bm3d**: naive + CBM3D (the ``bm3d`` package, its default profile, opponent colour space), ``σ``
  in sRGB units. It runs on the sRGB rendering, like NLM: the sRGB curve roughly stabilises the
  signal-dependent noise, which BM3D's single ``σ`` assumes;
* **darktable**: darktable's own "denoise (profiled)" through ``darktable-cli`` on a real DNG of
  the dark mosaic, told the true noise profile (:mod:`.darktable_baseline`), its strength and VST.
  Its exposure-only rendering of a noise-free raw matches our reference colours within 1 % per
  channel, so no gain is aligned. darktable clips the raw at its black level before denoising
  (zero-mean noise comes out at +0.4 σ): at ×300 and high ISO that bias, scaled by the white
  balance, is what a darktable user gets, and it is scored as such.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage.metrics import structural_similarity
from torch import nn

from ..errors import LowlightError
from ..files.atomic import write_atomically
from ..layouts.base import SensorLayout
from ..layouts.registry import layout_class
from ..networks.catalog import SHIPPED_MODELS
from ..networks.weights import load_model, write_card
from ..pipeline.color import camera_to_linear, srgb_decode, srgb_encode
from ..pipeline.network_input import clipped_at_black
from ..pipeline.restore import restore
from . import darktable_baseline
from .dataset import Sample, make_sample, random_crop
from .sensor_noise import A_RANGE, sample_sensor
from .sources import DEFAULT_CACHE, cached_images
from .unprocess import sample_params

HIGH_ISO_A = (1e-4, A_RANGE[1])
# ISO 100–400-like shot noise on the normalised scale (darktable's profiles); sensor_noise's
# A_RANGE starts at ISO 800, so the clean condition's range is stated here.
LOW_ISO_A = (1e-6, 5e-6)


@dataclass(frozen=True)
class Condition:
    """Exposure ratios (log-uniform between the two) and the shot-noise slope ``a`` range."""

    ratio: tuple[float, float]
    a_range: tuple[float, float]


CONDITIONS = {
    "x100": Condition((100.0, 100.0), HIGH_ISO_A),
    "x300": Condition((300.0, 300.0), HIGH_ISO_A),
    "x1-10": Condition((1.0, 10.0), HIGH_ISO_A),
    "clean": Condition((1.0, 1.0), LOW_ISO_A),
}
NLM_STRENGTHS = (3, 6, 10, 15, 20, 28, 36, 48, 64, 80, 100, 128)
BM3D_SIGMAS = (0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4)  # sRGB units, doubling (×300 on the clipped sRGB wants σ > 1)
DARKTABLE_STRENGTHS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0)
FLAT_BLOCK = 16
FLAT_STD = 0.02  # a reference block whose sRGB std is below this counts as flat
SEED = 20240
EVAL_CROP = 256  # at most this many full-resolution pixels a side per crop (Bayer, linear: 256; X-Trans: 240)
POOLING_MULTIPLE = 16  # packed crop sizes are a multiple of this (the network's pooling factor)


def packed_patch(layout: str) -> int:
    """Packed side of the evaluation crops for ``layout``."""
    return EVAL_CROP // layout_class(layout).scale // POOLING_MULTIPLE * POOLING_MULTIPLE


@dataclass(frozen=True)
class TestCase:
    """One benchmark sample, and where (if anywhere) its grey card is."""

    sample: Sample
    reference: np.ndarray  # (H, W, 3) sRGB of the clean target
    grey_box: tuple[int, int, int, int] | None  # y0, y1, x0, x1 of the card's inner region (scored)
    card_box: tuple[int, int, int, int] | None  # y0, y1, x0, x1 of the whole card


def build_cases(images: list[np.ndarray], condition: str, count: int, seed: int, grey: bool = False,
                patch: int = 128, layout: str = "bayer") -> list[TestCase]:
    """``count`` deterministic cases of ``condition`` from ``images`` (``grey``: paste a grey card),
    raws of sensor ``layout`` packed to ``patch × patch``."""
    lo, hi = CONDITIONS[condition].ratio
    rng = np.random.default_rng([seed, list(CONDITIONS).index(condition), int(grey)])
    side = layout_class(layout).scale * patch
    cases = []
    for i in range(count):
        crop = random_crop(images[i % len(images)], side, side, rng).astype(np.float32) / 255.0
        box = card = None
        if grey:  # a card of 3/8 of the crop's side, scored on its inner half
            size = 3 * side // 8
            crop = crop.copy()
            y, x = (int(v) for v in rng.integers(0, side - size, size=2))
            crop[y : y + size, x : x + size] = rng.uniform(0.3, 0.7)
            m = size // 4
            box, card = (y + m, y + size - m, x + m, x + size - m), (y, y + size, x, x + size)
        ratio = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        sample = make_sample(crop, rng, ratio=ratio, sensor=sample_sensor(rng, a_range=CONDITIONS[condition].a_range),
                             layout=layout)
        cases.append(case_of(sample, box, card))
    return cases


SAME_SCENE_LAYOUTS = ("bayer", "xtrans", "linear")


def same_scene_cases(images: list[np.ndarray], condition: str, layout: str, seed: int, crop: int = 240) -> list[TestCase]:
    """One case per photo, the same scene whatever the sensor ``layout``: the photo's centre
    ``crop`` (a multiple of 12 packs whole for every layout), the camera, sensor and ratio drawn
    from ``(seed, i)``; only the CFA phase and the noise realisation come from ``(seed, i, layout)``."""
    lo, hi = CONDITIONS[condition].ratio
    cases = []
    for i, image in enumerate(images):
        y, x = (image.shape[0] - crop) // 2, (image.shape[1] - crop) // 2
        pixels = image[y : y + crop, x : x + crop].astype(np.float32) / 255.0
        shared = np.random.default_rng([seed, i])
        sensor = sample_sensor(shared, a_range=CONDITIONS[condition].a_range)
        params = sample_params(shared)
        ratio = float(np.exp(shared.uniform(np.log(lo), np.log(hi))))
        own = np.random.default_rng([seed, i, SAME_SCENE_LAYOUTS.index(layout)])
        cases.append(case_of(make_sample(pixels, own, ratio, sensor, params=params, layout=layout)))
    return cases


def case_of(sample: Sample, grey_box: tuple[int, int, int, int] | None = None,
            card_box: tuple[int, int, int, int] | None = None) -> TestCase:
    """A test case of ``sample``: its clean target rendered to sRGB is the reference."""
    reference = srgb_encode(camera_to_linear(sample.target.transpose(1, 2, 0), sample.color))
    return TestCase(sample, reference, grey_box, card_box)


def naive_camera(sample: Sample) -> np.ndarray:
    """The layout's plain demosaic of the amplified planes as the file has them (Bayer: bilinear):
    ``(H, W, 3)`` camera RGB. From the raw, not the network's input: what a classical tool starts
    from, blacks clipped at zero included (the network's input mends those)."""
    layout = layout_class(sample.layout)
    amplified = np.clip(sample.raw * np.float32(sample.ratio), -1.0, 1.0)
    return layout.naive_rgb(torch.from_numpy(amplified[None]))[0].numpy().transpose(1, 2, 0)


def render(camera: np.ndarray, sample: Sample) -> np.ndarray:
    return srgb_encode(camera_to_linear(camera, sample.color))


def naive_srgb(case: TestCase) -> np.ndarray:
    """The naive method's sRGB output (what NLM and BM3D start from)."""
    return render(naive_camera(case.sample), case.sample)


def nlm(srgb: np.ndarray, strength: float) -> np.ndarray:
    """OpenCV non-local means on an sRGB float image (via 8-bit, as a user's tool would)."""
    bgr = np.round(np.clip(srgb[..., ::-1], 0, 1) * 255).astype(np.uint8)
    out = cv2.fastNlMeansDenoisingColored(bgr, None, strength, strength, 7, 21)
    return out[..., ::-1].astype(np.float32) / 255.0


def cbm3d(srgb: np.ndarray, sigma: float) -> np.ndarray:
    """CBM3D (``bm3d.bm3d_rgb``, default profile, opponent colours) on an sRGB float image.

    Single-threaded: the package's own threading makes the result vary slightly run to run.
    """
    import bm3d

    profile = bm3d.BM3DProfile()
    profile.num_threads = 1
    return np.clip(bm3d.bm3d_rgb(srgb.astype(np.float64), sigma, profile), 0.0, 1.0).astype(np.float32)


def dark_raw(case: TestCase) -> darktable_baseline.DarkRaw:
    """The case's dark mosaic (unamplified, unclipped) in the canonical phase it was packed in,
    with its sensor levels, colour and noise."""
    raw, sensor, layout = case.sample.raw, case.sample.sensor, layout_class(case.sample.layout)
    pattern = layout.training_patterns()[0]
    mosaic = layout.for_pattern(pattern, layout.scale * raw.shape[1], layout.scale * raw.shape[2]).unpack(raw)
    return darktable_baseline.DarkRaw(mosaic, sensor.black, sensor.white, case.sample.color, case.sample.ratio,
                                      sensor.profile(), pattern)


def darktable_srgb(cases: list[TestCase], strength: float, vst: str) -> list[np.ndarray]:
    """darktable's denoised renderings of ``cases`` (one darktable start), sRGB-encoded."""
    setting = darktable_baseline.DenoiseSetting(strength, new_vst=vst == "new")
    return [srgb_encode(out) for out in darktable_baseline.render([dark_raw(c) for c in cases], setting)]


Setting = dict[str, float | str]


@dataclass(frozen=True)
class TunedBaseline:
    """A classical denoiser whose setting is tuned per condition (:func:`tune`)."""

    grid: tuple[Setting, ...]
    run: Callable[..., list[np.ndarray]]  # run(cases, **setting) → sRGB outputs


BASELINES = {
    "nlm": TunedBaseline(tuple({"h": h} for h in NLM_STRENGTHS), lambda cases, h: [nlm(naive_srgb(c), h) for c in cases]),
    "bm3d": TunedBaseline(tuple({"sigma": s} for s in BM3D_SIGMAS), lambda cases, sigma: [cbm3d(naive_srgb(c), sigma) for c in cases]),
    "darktable": TunedBaseline(
        tuple({"strength": s, "vst": v} for v in ("old", "new") for s in DARKTABLE_STRENGTHS), darktable_srgb
    ),
}
METHODS = ("naive", "nlm", "bm3d", "darktable", "model")


def tune(cases: list[TestCase], baseline: TunedBaseline) -> Setting:
    """The setting of ``baseline``'s grid with the best mean PSNR on ``cases``."""
    scores = [np.mean([psnr(out, c.reference) for out, c in zip(baseline.run(cases, **s), cases)]) for s in baseline.grid]
    return baseline.grid[int(np.argmax(scores))]


def describe(setting: Setting) -> str:
    """``h=64`` / ``strength=1, vst=old``: a setting as the table shows it."""
    return ", ".join(f"{k}={v:g}" if isinstance(v, float | int) else f"{k}={v}" for k, v in setting.items())


def model_camera(model: nn.Module, sample: Sample) -> np.ndarray:
    """The product's ``(H, W, 3)`` camera RGB, computed the way the engine computes it: the network,
    or for a clean raw the clean rendering it is blended with (:func:`lowlight_raw.pipeline.restore.restore`)."""
    layout = layout_class(sample.layout)
    full, _ = restore(model, sample.inputs[: layout.channels], layout, sample.sensor.profile(), sample.ratio,
                      sample.color.wb, torch.device("cpu"), blacks_clipped=clipped_at_black(sample.raw))
    return np.clip(full.astype(np.float32), 0.0, 1.0)  # scored in float32: the half floats' values exactly


def psnr(out: np.ndarray, ref: np.ndarray) -> float:
    mse = float(np.mean((out.astype(np.float64) - ref) ** 2))
    return 10.0 * np.log10(1.0 / max(mse, 1e-12))


def mean_scores(outputs: list[np.ndarray], cases: list[TestCase]) -> tuple[float, float]:
    """Mean sRGB PSNR and SSIM of ``outputs`` against their ``cases``' references."""
    mean_psnr = float(np.mean([psnr(out, case.reference) for out, case in zip(outputs, cases)]))
    mean_ssim = float(np.mean([structural_similarity(case.reference, out, channel_axis=2, data_range=1.0)
                               for out, case in zip(outputs, cases)]))
    return mean_psnr, mean_ssim


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
    """:func:`grey_error_percent` of the mean of (nearly) every raw sample on the whole card (the
    floor): the unclipped plain demosaic averaged over the card less a few pixels at its edge
    (the phase crop may shift the card by up to five pixels)."""
    y0, y1, x0, x1 = case.card_box
    inset = 2 * layout_class(case.sample.layout).scale
    naive = naive_camera(case.sample)[y0 + inset : y1 - inset, x0 + inset : x1 - inset]
    camera = naive.reshape(-1, 3).astype(np.float64).mean(axis=0)[None].astype(np.float32)
    got = camera_to_linear(camera, case.sample.color)[0].astype(np.float64)
    return _colour_error_percent(got, _mean_linear(case.reference, case.grey_box))


def method_outputs(cases: list[TestCase], model: nn.Module, methods: tuple[str, ...], settings: dict[str, Setting]) -> dict[str, list[np.ndarray]]:
    """Every method's sRGB output for each of ``cases`` (tuned baselines with their ``settings``)."""
    outputs = {}
    for method in methods:
        if method == "naive":
            outputs[method] = [naive_srgb(c) for c in cases]
        elif method == "model":
            outputs[method] = [render(model_camera(model, c.sample), c.sample) for c in cases]
        else:
            outputs[method] = BASELINES[method].run(cases, **settings[method])
    return outputs


def evaluate(
    model: nn.Module,
    test_images: list[np.ndarray],
    count: int = 32,
    tune_count: int = 8,
    grey_count: int = 16,
    seed: int = SEED,
    patch: int | None = None,
    methods: tuple[str, ...] = METHODS,
    conditions: tuple[str, ...] = tuple(CONDITIONS),
) -> dict:
    """The benchmark table: ``{condition: {method: {metric: value}, "settings": …}, ...}``.

    Raws of the model's sensor layout: ``count`` crops (``patch`` packed pixels a side, by
    default :func:`packed_patch`) per condition from
    the first ``count`` photos of a seeded shuffle of ``test_images``; the tuned baselines among
    ``methods`` are tuned on the next ``tune_count`` photos. ``naive`` is always scored (the
    flat-noise reference).
    """
    layout = model.config.layout
    patch = patch or packed_patch(layout)
    methods = ("naive", *(m for m in METHODS if m in methods and m != "naive"))
    order = np.random.default_rng(seed).permutation(len(test_images))
    eval_images = [test_images[i] for i in order[:count]]
    tune_images = [test_images[i] for i in order[count : count + tune_count]]
    grey_count = min(grey_count, count)
    table: dict = {}
    for condition in conditions:
        tune_cases = build_cases(tune_images, condition, tune_count, seed + 1, patch=patch, layout=layout)
        settings = {m: tune(tune_cases, BASELINES[m]) for m in methods if m in BASELINES}
        cases = build_cases(eval_images, condition, count, seed, patch=patch, layout=layout)
        grey_cases = build_cases(eval_images, condition, grey_count, seed, grey=True, patch=patch, layout=layout)
        seconds = {}
        outputs = {}
        for method in methods:
            start = time.monotonic()
            outputs[method] = method_outputs(cases + grey_cases, model, (method,), settings)[method]
            seconds[method] = (time.monotonic() - start) / len(cases + grey_cases)
        naive_noise = float("nan")
        table[condition] = {
            "settings": settings, "cases": count, "grey_cases": grey_count,
            "card_average": _summary([card_average_error_percent(c) for c in grey_cases]),
        }
        for method in methods:
            outs, grey_outs = outputs[method][:count], outputs[method][count:]
            flat_var = [v for out, c in zip(outs, cases) for v in flat_error_variances(out, c.reference)]
            noise = float(np.sqrt(np.mean(flat_var))) if flat_var else float("nan")
            if method == "naive":
                naive_noise = noise
            mean_psnr, mean_ssim = mean_scores(outs, cases)
            table[condition][method] = {
                "psnr": round(mean_psnr, 2),
                "ssim": round(mean_ssim, 4),
                "flat_noise": round(noise, 5),
                "flat_noise_reduction_pct": round(100.0 * (1.0 - noise / naive_noise), 1),
                **_summary([grey_error_percent(o, c) for o, c in zip(grey_outs, grey_cases)]),
                "seconds_per_image": round(seconds[method], 3),
            }
    return table


def _summary(grey_errors: list[float]) -> dict[str, float]:
    if not grey_errors:  # --grey-count 0
        return {"grey_error_pct_mean": float("nan"), "grey_error_pct_max": float("nan")}
    return {"grey_error_pct_mean": round(float(np.mean(grey_errors)), 2), "grey_error_pct_max": round(float(np.max(grey_errors)), 2)}


def format_table(table: dict) -> str:
    """Markdown table of :func:`evaluate`'s result (the tuned settings in the method's name)."""
    lines = [
        "| condition | method | PSNR dB | SSIM | flat noise | flat noise vs naive | grey error % (mean / max) | s / image |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for condition, rows in table.items():
        for method in (m for m in METHODS if m in rows):
            r = rows[method]
            name = f"{method} ({describe(rows['settings'][method])})" if method in rows["settings"] else method
            lines.append(
                f"| {condition} | {name} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['flat_noise']:.4f} | "
                f"{-r['flat_noise_reduction_pct']:+.1f}% | {r['grey_error_pct_mean']:.2f} / {r['grey_error_pct_max']:.2f} | "
                f"{r['seconds_per_image']:.2f} |"
            )
        floor = rows["card_average"]
        lines.append(
            f"| {condition} | card average (noise floor) | | | | | {floor['grey_error_pct_mean']:.2f} / {floor['grey_error_pct_max']:.2f} | |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``lowlight-raw evaluate``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="lowlight-raw evaluate", description="Score naive, tuned NLM, BM3D, darktable and the model on held-out synthetic low light.")
    parser.add_argument("--weights", type=Path, default=SHIPPED_MODELS["fast"]["bayer"])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--bsds", type=Path, default=None, help="BSDS500 folder")
    parser.add_argument("--count", type=int, default=32, help="test crops per condition")
    parser.add_argument("--tune-count", type=int, default=8, help="crops to tune the baselines on (other photos)")
    parser.add_argument("--grey-count", type=int, default=16, help="grey-card crops per condition")
    parser.add_argument("--methods", type=comma_separated(METHODS), default=METHODS,
                        help=f"comma-separated subset of {','.join(METHODS)} (naive is always scored; darktable and bm3d are slow)")
    parser.add_argument("--conditions", type=comma_separated(CONDITIONS), default=tuple(CONDITIONS),
                        help=f"comma-separated subset of {','.join(CONDITIONS)}")
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
    methods = tuple(m for m in args.methods if _usable(m, card.config.layout))
    start = time.monotonic()
    try:
        table = evaluate(model, test_images, args.count, args.tune_count, args.grey_count, methods=methods, conditions=args.conditions)
    except LowlightError as exc:
        print(f"lowlight-raw evaluate: {exc}", file=sys.stderr)
        return 1
    print(format_table(table))
    side = layout_class(card.config.layout).scale * packed_patch(card.config.layout)
    print(f"({card.config.layout} raws: {args.count} crops of {side}×{side} per condition, BSDS500 test, seed {SEED}; "
          f"{time.monotonic() - start:.0f} s)")
    if args.json is not None:
        write_atomically(args.json, json.dumps(table, indent=1) + "\n")
    if args.write_card:
        evaluation = {"table": table, "crops_per_condition": args.count, "seed": SEED, "test_set": "BSDS500 test (held out)"}
        write_card(replace(card, extra={**card.extra, "evaluation": evaluation}), args.weights)
    return 0


def comma_separated(allowed) -> Callable[[str], tuple[str, ...]]:
    """An argparse type: a comma-separated subset of ``allowed``."""

    def parse(text: str) -> tuple[str, ...]:
        chosen = tuple(m.strip() for m in text.split(",") if m.strip())
        unknown = [m for m in chosen if m not in allowed]
        if unknown or not chosen:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(unknown) or 'empty list'} (choose from {', '.join(allowed)})")
        return chosen

    return parse


def _usable(method: str, layout: str) -> bool:
    """Whether ``method`` can run here on ``layout`` raws; when not, says so in one line (its rows are skipped)."""
    if method == "darktable" and layout_class(layout).unpack is SensorLayout.unpack:  # no mosaic to write
        print(f"lowlight-raw evaluate: the darktable baseline writes mosaic DNGs only: its rows are skipped for {layout} raws",
              file=sys.stderr)
        return False
    if method == "darktable" and not darktable_baseline.available():
        print(f"lowlight-raw evaluate: {darktable_baseline.DARKTABLE_CLI} not found: the darktable rows are skipped", file=sys.stderr)
        return False
    if method == "bm3d":
        try:
            import bm3d  # noqa: F401
        except ImportError:
            print("lowlight-raw evaluate: bm3d not installed (pip install 'lowlight-raw[train]'): the bm3d rows are skipped", file=sys.stderr)
            return False
    return True


if __name__ == "__main__":
    raise SystemExit(main())
