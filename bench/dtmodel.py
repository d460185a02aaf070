"""Our networks as a darktable 5.6+ ``.dtmodel`` (lowlight_raw/darktable_ai), measured.

``python bench/dtmodel.py [--count N] [--tune-count N] [--conditions x1-10,x100,x300] [--skip-quality]
[--skip-timing] [--package FILE]``

**Quality** on the project's evaluation (``lowlight-raw evaluate``'s held-out BSDS500 crops, seed and
conditions; :mod:`lowlight_raw.training.evaluate`), sRGB PSNR / SSIM against the truth:

* *naive*: the plain demosaic × the ratio;
* *darktable denoise (tuned)*: darktable's denoise (profiled), told the true noise profile, its
  strength and transform tuned per condition on other photos, then exposure, in darktable-cli;
* *lowlight-raw*: our own pipeline (the engine's :func:`~lowlight_raw.pipeline.restore.restore`);
* *emulated .dtmodel → darktable*: the package's Bayer graph through the emulation of darktable's
  raw denoise (:func:`lowlight_raw.darktable_ai.emulate.restore_bayer`: tiles, ramps, re-mosaic, uint16
  CFA), the written CFA then rendered by darktable-cli with exposure ``+log2(ratio)`` only;
* the same with ``output_scale: match_gain`` instead of the package's ``absolute``;
* *uint16 limit*: our own pipeline's result re-mosaiced and rounded to the sensor's integers, as
  darktable's path writes it, rendered by the plain demosaic (the cost of the contract's uint16 CFA).

X-Trans through the linear graph (after a demosaic: here our iterated colour-difference one, as a
stand-in for darktable's Markesteijn) against our own X-Trans pipeline, both rendered in Python, with
``input_colorspace`` camRGB (the package's) and linear Rec.2020 (darktable's default).

**Time**: onnxruntime on the CPU, one thread, seconds per 24 MP (6000 × 4000: 7 × 5 of darktable's
512-packed-pixel tiles) for our Bayer graph and a RawNIND-shaped graph (a SID U-Net of widths 32–512,
4 packed planes in, random weights: timing only), the same tile, taking turns, the fastest of 7 runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from lowlight_raw.darktable_ai.emulate import Graph, open_graphs, restore_bayer, restore_linear
from lowlight_raw.darktable_ai.package import OPSET, TILE, write_package
from lowlight_raw.layouts.base import mosaic_from_rgb
from lowlight_raw.layouts.registry import layout_class
from lowlight_raw.networks.catalog import shipped_weights
from lowlight_raw.networks.sid_unet import SIDUNet, UNetConfig
from lowlight_raw.networks.weights import load_model
from lowlight_raw.pipeline.color import srgb_encode
from lowlight_raw.training import darktable_baseline, evaluate
from lowlight_raw.training.sources import DEFAULT_CACHE, cached_images

MEGAPIXELS_24 = (4000, 6000)  # sensor rows, columns
OVERLAP = 32  # darktable's OVERLAP_PACKED


def emulated_raws(graph: Graph, cases: list[evaluate.TestCase]) -> list[darktable_baseline.DarkRaw]:
    """Each case's dark raw after darktable's Bayer raw denoise with ``graph`` (its written CFA)."""
    raws = []
    for case in cases:
        raw = evaluate.dark_raw(case)
        span = raw.white - raw.black
        adc = np.clip(np.rint(raw.mosaic.astype(np.float64) * span + raw.black), 0, raw.white)
        cfa = restore_bayer(graph, adc, raw.pattern, (raw.black,) * 4, raw.white, raw.color)
        raws.append(dataclasses.replace(raw, mosaic=((cfa.astype(np.float64) - raw.black) / span).astype(np.float32)))
    return raws


def quantised_ours(model: torch.nn.Module, case: evaluate.TestCase) -> np.ndarray:
    """Our pipeline's result as darktable's path would store it (re-mosaiced, the sensor's integers), sRGB."""
    raw, ratio = evaluate.dark_raw(case), case.sample.ratio
    span = raw.white - raw.black
    mosaic = mosaic_from_rgb(evaluate.model_camera(model, case.sample), raw.pattern)[: raw.mosaic.shape[0], : raw.mosaic.shape[1]]
    stored = (np.clip(np.rint(mosaic / ratio * span + raw.black), 0, raw.white) - raw.black) / span
    layout = layout_class("bayer").for_pattern(raw.pattern, *stored.shape)
    packed = torch.from_numpy(np.clip(layout.pack(stored.astype(np.float32)) * ratio, 0.0, 1.0))[None]
    return evaluate.render(layout.naive_rgb(packed)[0].permute(1, 2, 0).numpy(), case.sample)


def quality(package: Path, images: list[np.ndarray], conditions: tuple[str, ...], count: int, tune_count: int) -> list[str]:
    """The Bayer quality table's rows (markdown)."""
    graphs = open_graphs(package, threads=1)
    matched = dataclasses.replace(graphs["bayer"], attributes={**graphs["bayer"].attributes, "output_scale": "match_gain"})
    model, _ = load_model(shipped_weights("fast"))
    order = np.random.default_rng(evaluate.SEED).permutation(len(images))
    eval_images, tune_images = [images[i] for i in order[:count]], [images[i] for i in order[count : count + tune_count]]
    patch = evaluate.packed_patch("bayer")
    rows: dict[str, dict[str, tuple[float, float]]] = {}
    tuned = []
    for condition in conditions:
        cases = evaluate.build_cases(eval_images, condition, count, evaluate.SEED, patch=patch)
        tune_cases = evaluate.build_cases(tune_images, condition, tune_count, evaluate.SEED + 1, patch=patch)
        setting = evaluate.tune(tune_cases, evaluate.BASELINES["darktable"])
        tuned.append(f"{condition} {evaluate.describe(setting)}")
        outputs = {
            "naive": [evaluate.naive_srgb(c) for c in cases],
            "darktable denoise (profiled), tuned": evaluate.BASELINES["darktable"].run(cases, **setting),
            "lowlight-raw (own pipeline)": [evaluate.render(evaluate.model_camera(model, c.sample), c.sample) for c in cases],
            "emulated .dtmodel → darktable-cli": [srgb_encode(o) for o in darktable_baseline.render(emulated_raws(graphs["bayer"], cases), None)],
            "same, match_gain": [srgb_encode(o) for o in darktable_baseline.render(emulated_raws(matched, cases), None)],
            "own pipeline, stored as uint16 CFA": [quantised_ours(model, c) for c in cases],
        }
        for method, outs in outputs.items():
            rows.setdefault(method, {})[condition] = evaluate.mean_scores(outs, cases)
        print(f"  {condition} done", file=sys.stderr)
    lines = [f"| Bayer, {count} crops | " + " | ".join(conditions) + " |", "|---" * (len(conditions) + 1) + "|"]
    lines += [f"| {m} | " + " | ".join(f"{s[c][0]:.2f} / {s[c][1]:.3f}" for c in conditions) + " |" for m, s in rows.items()]
    return lines + [f"(darktable tuned on {tune_count} other crops: {'; '.join(tuned)})"]


def xtrans_quality(package: Path, images: list[np.ndarray], conditions: tuple[str, ...], count: int) -> list[str]:
    """X-Trans through the linear graph (after a demosaic) vs our X-Trans pipeline, rows (markdown)."""
    graph = open_graphs(package, threads=1)["linear"]
    rec2020 = dataclasses.replace(graph, attributes={**graph.attributes, "input_colorspace": "lin_rec2020"})
    model, _ = load_model(shipped_weights("fast", "xtrans"))
    layout = layout_class("xtrans")
    order = np.random.default_rng(evaluate.SEED).permutation(len(images))
    eval_images = [images[i] for i in order[:count]]
    rows: dict[str, dict[str, tuple[float, float]]] = {}
    for condition in conditions:
        cases = evaluate.build_cases(eval_images, condition, count, evaluate.SEED, patch=evaluate.packed_patch("xtrans"), layout="xtrans")
        outputs: dict[str, list[np.ndarray]] = {"naive": [evaluate.naive_srgb(c) for c in cases]}
        for case in cases:
            sample = case.sample
            demosaiced = layout.clean_rgb(torch.from_numpy(np.minimum(sample.raw, 1.0)[None]), np.ones(3))[0].permute(1, 2, 0).numpy()
            for name, g in (("linear graph, camRGB (the package)", graph), ("linear graph, linear Rec.2020", rec2020)):
                restored = restore_linear(g, demosaiced, sample.color) * sample.ratio
                outputs.setdefault(name, []).append(evaluate.render(np.clip(restored, 0.0, 1.0), sample))
            outputs.setdefault("lowlight-raw X-Trans (own pipeline)", []).append(
                evaluate.render(evaluate.model_camera(model, sample), sample))
        for method, outs in outputs.items():
            rows.setdefault(method, {})[condition] = evaluate.mean_scores(outs, cases)
    lines = [f"| X-Trans, {count} crops | " + " | ".join(conditions) + " |", "|---" * (len(conditions) + 1) + "|"]
    lines += [f"| {m} | " + " | ".join(f"{s[c][0]:.2f} / {s[c][1]:.3f}" for c in conditions) + " |" for m, s in rows.items()]
    return lines


class RawNINDShaped(torch.nn.Module):
    """A RawNIND-shaped Bayer graph for timing: 4 packed planes → a SID U-Net of widths 32–512 → RGB at 2×."""

    def __init__(self) -> None:
        super().__init__()
        self.unet = SIDUNet(UNetConfig(in_channels=8, width=32, depth=5))
        torch.nn.init.normal_(self.unet.head.weight, std=0.01)

    def forward(self, planes: torch.Tensor) -> torch.Tensor:
        return self.unet(torch.cat([planes, planes], dim=1))


def seconds_per_tile(sessions: list, tile: np.ndarray, repeats: int = 7) -> list[float]:
    """Each session's fastest of ``repeats`` runs on ``tile`` (after a warm-up run), the sessions
    taking turns, so that load from other processes on a shared machine reaches both alike and
    the fastest run is the least disturbed one."""
    times: list[list[float]] = [[] for _ in sessions]
    for attempt in range(repeats + 1):
        for session, spent in zip(sessions, times):
            name = session.get_inputs()[0].name
            start = time.perf_counter()
            session.run(None, {name: tile})
            if attempt:
                spent.append(time.perf_counter() - start)
    return [min(spent) for spent in times]


def timing(package: Path) -> list[str]:
    """The timing table's rows (markdown)."""
    import onnxruntime

    tiles = math.ceil(MEGAPIXELS_24[0] / 2 / (TILE - 2 * OVERLAP)) * math.ceil(MEGAPIXELS_24[1] / 2 / (TILE - 2 * OVERLAP))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    ours = open_graphs(package, threads=1)["bayer"].session
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "rawnind_shaped.onnx"
        torch.manual_seed(0)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's notice that it is the TorchScript one
            torch.onnx.export(RawNINDShaped().eval(), (torch.zeros(1, 4, TILE, TILE),), str(path), opset_version=OPSET, dynamo=False)
        rawnind = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    tile = np.random.default_rng(0).uniform(0.0, 0.01, size=(1, 4, TILE, TILE)).astype(np.float32)
    lines = ["| graph (onnxruntime CPU, 1 thread) | parameters | s per 512² tile | s per 24 MP |", "|---|---|---|---|"]
    ours_params = sum(p.numel() for p in load_model(shipped_weights("fast"))[0].parameters())
    ours_tile, rawnind_tile = seconds_per_tile([ours, rawnind], tile)
    for name, per_tile, params in (("lowlight-raw Bayer (blind, width 12)", ours_tile, ours_params),
                                   ("RawNIND-shaped (widths 32–512)", rawnind_tile, sum(p.numel() for p in RawNINDShaped().parameters()))):
        lines.append(f"| {name} | {params / 1e6:.2f} M | {per_tile:.2f} | {per_tile * tiles:.1f} |")
    lines.append(f"| RawNIND-shaped ÷ ours | | | {rawnind_tile / ours_tile:.1f}× |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=16, help="test crops per condition")
    parser.add_argument("--tune-count", type=int, default=4, help="crops darktable's denoise is tuned on (other photos)")
    parser.add_argument("--conditions", type=evaluate.comma_separated(evaluate.CONDITIONS), default=("x1-10", "x100", "x300"))
    parser.add_argument("--package", type=Path, default=None, help="a .dtmodel (default: exported from the shipped fast model)")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-timing", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as work:
        package = args.package or write_package(Path(work) / "bench.dtmodel", "fast").path
        if not args.skip_timing:
            print("\n".join(timing(package)) + "\n")
        if not args.skip_quality:
            start = time.monotonic()
            images = cached_images("test", DEFAULT_CACHE)
            print("\n".join(quality(package, images, args.conditions, args.count, args.tune_count)) + "\n")
            print("\n".join(xtrans_quality(package, images, ("x100", "x300"), args.count)))
            print(f"(sRGB PSNR / SSIM; BSDS500 test crops, seed {evaluate.SEED}; {time.monotonic() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
