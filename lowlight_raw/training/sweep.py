"""The noise sweep: ×1 … ×300, each at the ISO a camera would use, on high-resolution photographs
and a test scene, with shadow fidelity and false colour next to PSNR / SSIM.

``lowlight-raw evaluate --sweep`` (and ``bench/sweep.py`` for the plot). What it adds to the
BSDS500 evaluation (:mod:`.evaluate`), whose 256-pixel crops of downscaled JPEGs hold few deep
shadows and little fine dark detail:

* **Scenes**: crops of the licence-clean photographs (:mod:`.debian_photos`) with buildings, people,
  bridges and paths, at ½ scale (an area average in linear light: the pixel's aperture;
  full size where ½ would be smaller than the crop),
  and a synthetic **test scene** (:func:`test_scene`): small dark figures and 2–3 px dark lines on a
  bright textured ground, and a colour chart on a black surround. Every scene is then seen through
  the camera's **optics** (:func:`optical_blur`: lens and anti-aliasing filter, MTF50 ≈ 0.3
  cycles/px) before it is mosaicked, and the reference is that blurred scene, as a real raw's clean
  long exposure is seen through the same lens. The photographs are among the
  training photos (at ½–¼ scale, other windows): no held-out photograph of this kind ships in
  Debian, so the sweep measures behaviour, not generalisation; the test scene is seen by no one.
* **One camera**: the Sony A7 III's colour matrix and its measured noise (darktable's
  ``noiseprofiles.json``, green channel), 14 bits; each exposure at an ISO that camera would use
  (:data:`LEVELS`), row noise at ISO 25600. The as-shot white balance in the file's metadata varies
  over the range real files carry (:data:`WHITE_BALANCES`, UniWB included) while the mosaic is
  always the daylight response; the reference is rendered with the file's white balance, as the
  product renders.
* **Layouts**: Bayer, X-Trans, and linear DNGs as a converter writes them: demosaiced, then
  ``linear-clipped``, negatives clipped at zero.
* **Metrics** (:func:`score`): sRGB PSNR and SSIM; **shadow ΔL\\***: after a per-channel gain fit
  of the output to the reference (linear, least squares), the mean CIELAB L\\* of the darkest 10 %
  of the reference's pixels, output minus reference; **edge chroma**: the mean a\\*b\\* distance to
  the reference within 3 px of strong luminance edges (where false colour and halos sit).

Methods: naive (the layout's plain demosaic × gain), classical (the layout's clean demosaic alone,
no denoising; the product blends the network with it made of denoised planes:
:mod:`~lowlight_raw.pipeline.denoise`), NLM (of the naive rendering), CBM3D (of the classical
rendering, :func:`oracle`) and darktable's denoise (profiled), each **tuned per image against the
truth** (the best a patient user could reach), and the model (the
product's :func:`~lowlight_raw.pipeline.restore.restore`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from ..errors import LowlightError
from ..files.atomic import write_atomically
from ..layouts.base import SensorLayout
from ..layouts.registry import layout_class
from ..networks.catalog import SHIPPED_MODELS
from ..networks.weights import load_model
from ..pipeline.color import XYZ_FROM_SRGB, CameraColor, srgb_decode, srgb_encode
from ..pipeline.network_input import network_input
from ..pipeline.restore import blend_clean_rendering
from . import darktable_baseline, debian_photos
from .dataset import Sample, make_sample
from .evaluate import BASELINES, TestCase, case_of, cbm3d, comma_separated, mean_scores, method_outputs, psnr, render
from .sensor_noise import SensorModel
from .sources import DEFAULT_PHOTOS
from .unprocess import UnprocessParams

# The Sony A7 III (ILCE-7M3): Adobe's XYZ → camera ColorMatrix (D65), and darktable's measured
# noise profile (green channel, Var = a·x + b on the normalised scale) at the ISOs the sweep uses.
A7III_CAM_XYZ = np.array([[0.7374, -0.2389, -0.0551], [-0.5435, 1.3162, 0.2519], [-0.1006, 0.1795, 0.6552]])
A7III_NOISE = {400: (3.90e-6, 6.1e-9), 1600: (1.482e-5, 3.51e-8), 3200: (2.900e-5, 7.95e-8),
               6400: (5.747e-5, 1.727e-7), 25600: (2.162e-4, 5.067e-7)}
DAYLIGHT_WB = np.array([2.1, 1.0, 1.6])  # the mosaic's response to the scene's (daylight) light


@dataclass(frozen=True)
class Level:
    """One step of the sweep: how much darker than a good exposure, at which ISO."""

    ratio: float
    iso: int
    row_fraction: float = 0.0  # share of the read noise that is per-row banding

    @property
    def name(self) -> str:
        return f"x{self.ratio:g}"

    def sensor(self) -> SensorModel:
        """The A7 III at this ISO (14 bits, black 512 DN)."""
        a, b = A7III_NOISE[self.iso]
        return replace(SensorModel.with_profile(a, b, bits=14, black=512.0), row_fraction=self.row_fraction)


LEVELS = (Level(1, 400), Level(3, 1600), Level(10, 6400), Level(30, 6400), Level(100, 6400),
          Level(300, 25600, row_fraction=0.1))
WHITE_BALANCES = {  # as-shot white balances in the file's metadata (R, G, B multipliers)
    "daylight": DAYLIGHT_WB,
    "tungsten": np.array([1.45, 1.0, 2.7]),
    "shade": np.array([2.5, 1.0, 1.35]),
    "uniwb": np.array([1.0, 1.0, 1.0]),
}
SWEEP_LAYOUTS = ("bayer", "xtrans", "linear", "linear-clipped")
SWEEP_PHOTOS = (  # buildings with dark windows, people on a path, bridges, a dark-shadowed street
    "debian/palapeli-data/usr/share/palapeli/collection/castle-maintenon.jpg",
    "debian/palapeli-data/usr/share/palapeli/collection/cincinnati-bridge.jpg",
    "debian/lomiri-wallpapers-16.04/usr/share/backgrounds/friends_by_Aitzol_Berasategi.jpg",
    "debian/plasma-workspace-wallpapers/usr/share/wallpapers/Path/contents/images/2560x1600.jpg",
)
CROP = 384  # full-resolution pixels a side: packs whole for every layout (a multiple of 2·16 and 3·16)
PHOTO_SCALE = 2  # the photographs enter at ½ scale
OPTICAL_MTF50 = 0.3  # cycles/px: a real camera's lens + anti-aliasing filter (0.25–0.35 measured)
OPTICAL_SIGMA = 0.64  # px: the sampled Gaussian whose MTF50 is OPTICAL_MTF50 (see optical_blur)
BM3D_FACTORS = (0.3, 0.5, 0.8, 1.25, 2.0, 3.2)  # the oracle's CBM3D σ, in units of its input's error
SHADOW_SHARE = 0.10  # the darkest 10 % of the reference's pixels
EDGE_REACH = 3  # px: edge chroma is scored this close to a strong luminance edge
EDGE_STRENGTH = 8.0  # L* per px: what counts as a strong edge (Sobel magnitude / 8)


@dataclass(frozen=True)
class Scene:
    """A clean sRGB crop and the as-shot white balance its file carries."""

    name: str
    srgb: np.ndarray  # (CROP, CROP, 3) float32 in [0, 1]
    white_balance: str  # a key of WHITE_BALANCES


def test_scene(size: int = CROP, seed: int = 7) -> np.ndarray:
    """``(size, size, 3)`` float32 sRGB: the false-colour and shadow test scene.

    The top two thirds: bright textured ground (a warm grey with multi-scale texture), 24 small dark
    figures (10–20 px tall, body and head, dark colours of every hue) and dark lines 2 and 3 px wide
    (kerbs). The bottom third: a 4 × 6 colour chart (the ColorChecker's sRGB values) on a black
    surround, its darkest patches close to black.
    """
    rng = np.random.default_rng(seed)
    ground_rows = 2 * size // 3
    texture = sum(ndimage.zoom(rng.normal(size=(size // s + 1, size // s + 1)), s, order=1)[:size, :size] * w
                  for s, w in ((2, 0.03), (8, 0.05), (32, 0.06)))
    image = np.empty((size, size, 3), np.float32)
    image[...] = np.array([0.72, 0.66, 0.58], np.float32) + texture[..., None].astype(np.float32)
    for width, row in ((2, size // 6), (3, size // 3), (2, size // 2)):  # horizontal kerbs
        image[row : row + width, 8 : size - 8] = (0.10, 0.10, 0.11)
    image[8 : ground_rows - 8, size - 40 : size - 37] = (0.09, 0.09, 0.10)  # a 3 px vertical pole
    for _ in range(24):  # figures: a body and a head
        height = int(rng.integers(10, 21))
        y = int(rng.integers(8, ground_rows - height - 8))
        x = int(rng.integers(8, size - 60))
        colour = np.clip(rng.uniform(0.02, 0.22, 3), 0, 1).astype(np.float32)
        head = max(height // 5, 2)
        image[y + head : y + height, x : x + max(height // 3, 3)] = colour
        image[y : y + head, x + max(height // 3, 3) // 2 - head // 2 : x + max(height // 3, 3) // 2 + (head + 1) // 2] = colour * 1.3
    image[ground_rows:] = 0.02  # the black surround
    chart = np.array([  # ColorChecker Classic, sRGB (D65), row by row
        [115, 82, 68], [194, 150, 130], [98, 122, 157], [87, 108, 67], [133, 128, 177], [103, 189, 170],
        [214, 126, 44], [80, 91, 166], [193, 90, 99], [94, 60, 108], [157, 188, 64], [224, 163, 46],
        [56, 61, 150], [70, 148, 73], [175, 54, 60], [231, 199, 31], [187, 86, 149], [8, 133, 161],
        [243, 243, 242], [200, 200, 200], [160, 160, 160], [122, 122, 121], [85, 85, 85], [52, 52, 52]],
        np.float32) / 255.0
    patch = (size - 16) // 6 - 4
    rows = (size - ground_rows - 8) // 4
    for i, colour in enumerate(chart):
        y, x = ground_rows + 4 + (i // 6) * rows, 8 + (i % 6) * (patch + 4)
        image[y : y + rows - 4, x : x + patch] = colour
    return np.clip(image, 0.0, 1.0)


def optical_blur(srgb: np.ndarray, sigma: float = OPTICAL_SIGMA) -> np.ndarray:
    """``srgb`` seen through a camera's lens and optical low-pass (anti-aliasing) filter: a Gaussian
    of ``sigma`` pixels applied in linear light (optics blur light, not encoded values), borders
    mirrored; sRGB-encoded float32 in and out.

    Why: the photographs are JPEGs downscaled 2× by an area average, sharp at the pixel level; behind
    a real lens and OLPF, a camera's system MTF50 is about 0.25–0.35 cycles/px. Without the blur every
    demosaic aliases on detail no real raw holds, and the demosaic error, not noise, dominates the
    scores at mild darkness.

    σ: a continuous Gaussian PSF of σ px has the MTF ``exp(−2π²σ²f²)``, which is ½ at
    ``f₅₀ = √(ln 2 / 2) / (πσ) ≈ 0.1874 / σ``; f₅₀ = :data:`OPTICAL_MTF50` (0.3 c/px) gives
    σ = 0.625 px. The kernel :func:`scipy.ndimage.gaussian_filter` applies is that Gaussian sampled at
    whole pixels, whose spectrum is the continuous one plus its aliases (σ = 0.6 measures 0.331 c/px):
    :data:`OPTICAL_SIGMA` = 0.64 px is the σ whose sampled kernel measures f₅₀ = 0.300 c/px (its
    DFT; ``tests/test_sweep.py`` checks it). The photographs' area downscale adds a 1-px pixel
    aperture (MTF ``sinc f``, 0.86 at 0.3 c/px): with it 0.27 c/px, still within what real cameras
    measure.

    It applies to the test scene too: a real kerb or figure reaches the sensor through the same
    lens, and a scene left pixel-sharp would keep the alias-dominated demosaic error the blur is
    there to remove (one scene in five, it would still dominate the mild levels' means). Its lines
    and figures stay: in linear light a 3 px kerb keeps ~97 % of its contrast against the ground and
    a 2 px kerb ~80 % (its centre at sRGB ≈ 0.35 on a 0.73 ground, from 0.10), the figures stay dark
    blobs of their size; what goes is the pixel-sharp edge no camera records.
    """
    linear = srgb_decode(np.clip(srgb, 0.0, 1.0)).astype(np.float32)
    blurred = ndimage.gaussian_filter(linear, sigma=(sigma, sigma, 0.0), mode="mirror")
    return srgb_encode(blurred)


def sweep_scenes(photo_dir: Path = DEFAULT_PHOTOS, count: int = len(SWEEP_PHOTOS)) -> list[Scene]:
    """The test scene and the first ``count`` of :data:`SWEEP_PHOTOS` (fetched when missing), each
    seen through the camera's optics (:func:`optical_blur`) and with the next white balance of
    :data:`WHITE_BALANCES` in turn."""
    manifest = debian_photos.load_manifest()
    wanted = [p for p in manifest.photos if p.name in SWEEP_PHOTOS[:count]]
    needed = replace(manifest, packages={p.package: manifest.packages[p.package] for p in wanted}, photos=wanted)
    crops = [("test scene", optical_blur(test_scene()))]
    for entry, path in sorted(debian_photos.fetch_photos(Path(photo_dir), needed), key=lambda item: SWEEP_PHOTOS.index(item[0].name)):
        pixels = debian_photos.read_rgb(path)
        scale = PHOTO_SCALE if min(pixels.shape[:2]) >= PHOTO_SCALE * CROP else 1  # a small photo at full size
        pixels = optical_blur(srgb_encode(debian_photos.downscale_linear(pixels, scale)))  # whole, then cropped
        y, x = (pixels.shape[0] - CROP) // 2, (pixels.shape[1] - CROP) // 2
        crops.append((scene_name(entry.path), pixels[y : y + CROP, x : x + CROP]))
    balances = list(WHITE_BALANCES)
    return [Scene(name, srgb, balances[i % len(balances)]) for i, (name, srgb) in enumerate(crops)]


def scene_name(path: str) -> str:
    """A photo's short name: its file's stem, or its folder's where the file is named by its size
    (``…/wallpapers/Path/contents/images/2560x1600.jpg`` → ``Path``)."""
    parts = Path(path).parts
    return parts[parts.index("contents") - 1] if "contents" in parts else Path(path).stem


def sweep_case(scene: Scene, level: Level, layout: str, seed: int = 0) -> TestCase:
    """The scene shot ``level.ratio``× too dark at ``level.iso`` on the A7 III, as a raw of ``layout``."""
    kind = "linear" if layout.startswith("linear") else layout
    rng = np.random.default_rng([seed, LEVELS.index(level), SWEEP_LAYOUTS.index(kind)])  # linear-clipped: linear's noise
    physical = UnprocessParams(CameraColor(wb=DAYLIGHT_WB, cam_xyz=A7III_CAM_XYZ), brightness=1.0)
    sample = make_sample(scene.srgb, rng, ratio=level.ratio, sensor=level.sensor(),
                         pattern=layout_class(kind).training_patterns()[0], params=physical, layout=kind)
    if layout == "linear-clipped":  # the converter clipped its demosaic's negatives at zero; the engine's input of that
        raw = np.maximum(sample.raw, 0.0)
        sample = replace(sample, raw=raw, inputs=network_input(raw, sample.ratio, sample.sensor.profile()))
    as_shot = CameraColor(wb=WHITE_BALANCES[scene.white_balance], cam_xyz=A7III_CAM_XYZ)
    return case_of(replace(sample, color=as_shot))


def classical_srgb(case: TestCase) -> np.ndarray:
    """The layout's clean demosaic alone (no denoising: the product's partner is denoised), sRGB."""
    sample: Sample = case.sample
    camera = blend_clean_rendering(None, 0.0, sample.inputs, layout_class(sample.layout), sample.color.wb)
    return render(np.clip(camera, 0.0, 1.0), sample)


def lab(srgb: np.ndarray) -> np.ndarray:
    """sRGB-encoded ``(..., 3)`` → CIELAB (D65 white)."""
    xyz = srgb_decode(np.clip(srgb, 0.0, 1.0)).astype(np.float64) @ XYZ_FROM_SRGB.T
    xyz = xyz / (XYZ_FROM_SRGB @ np.ones(3))
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def gain_fitted(out_srgb: np.ndarray, ref_srgb: np.ndarray) -> np.ndarray:
    """``out`` with each linear channel scaled by its least-squares gain onto ``ref`` (sRGB in and out)."""
    out, ref = srgb_decode(np.clip(out_srgb, 0, 1)).astype(np.float64), srgb_decode(ref_srgb).astype(np.float64)
    gains = (out * ref).sum(axis=(0, 1)) / np.maximum((out * out).sum(axis=(0, 1)), 1e-12)
    return srgb_encode(np.clip(out * gains, 0.0, 1.0))


def shadow_delta_l(out_srgb: np.ndarray, ref_srgb: np.ndarray) -> float:
    """Mean L\\* of the darkest :data:`SHADOW_SHARE` of the reference's pixels, output (gain-fitted)
    minus reference: > 0 lifted shadows, < 0 crushed."""
    ref_l, out_l = lab(ref_srgb)[..., 0], lab(gain_fitted(out_srgb, ref_srgb))[..., 0]
    dark = ref_l <= np.quantile(ref_l, SHADOW_SHARE)
    return float(out_l[dark].mean() - ref_l[dark].mean())


def edge_mask(ref_srgb: np.ndarray) -> np.ndarray:
    """Pixels within :data:`EDGE_REACH` px of a strong luminance edge of the reference."""
    lightness = lab(ref_srgb)[..., 0]
    magnitude = np.hypot(ndimage.sobel(lightness, 0), ndimage.sobel(lightness, 1)) / 8.0
    return ndimage.binary_dilation(magnitude > EDGE_STRENGTH, iterations=EDGE_REACH)


def edge_chroma_error(out_srgb: np.ndarray, ref_srgb: np.ndarray) -> float:
    """Mean a\\*b\\* distance to the reference near strong luminance edges (:func:`edge_mask`)."""
    mask = edge_mask(ref_srgb)
    if not mask.any():
        return float("nan")
    difference = lab(out_srgb)[..., 1:] - lab(ref_srgb)[..., 1:]
    return float(np.hypot(difference[..., 0], difference[..., 1])[mask].mean())


def score(outputs: list[np.ndarray], cases: list[TestCase]) -> dict[str, float]:
    """PSNR, SSIM (means), shadow ΔL\\* (mean and the largest magnitude) and edge chroma (mean)."""
    mean_psnr, mean_ssim = mean_scores(outputs, cases)
    shadows = [shadow_delta_l(o, c.reference) for o, c in zip(outputs, cases)]
    return {"psnr": round(mean_psnr, 2), "ssim": round(mean_ssim, 4),
            "shadow_dl": round(float(np.mean(shadows)), 2),
            "shadow_dl_worst": round(float(max(shadows, key=abs)), 2),
            "edge_chroma": round(float(np.nanmean([edge_chroma_error(o, c.reference) for o, c in zip(outputs, cases)])), 2)}


SWEEP_METHODS = ("naive", "classical", "nlm", "bm3d", "darktable", "model")


def oracle(case: TestCase, method: str) -> np.ndarray:
    """``method``'s output for ``case`` at the setting of its grid that scores best against the truth.

    bm3d: CBM3D (:func:`~.evaluate.cbm3d`) of the classical rendering (:func:`classical_srgb`, the
    layout's good demosaic, as a user would denoise a raw converter's output), not of the naive
    bilinear one, whose zipper and false colour BM3D would have to remove too. σ: the rendering's
    own RMS error against the truth (noise and demosaic error) times each of :data:`BM3D_FACTORS`
    (0.3× … 3.2×: at ×10 the best σ lies near 2×, the demosaic's correlated noise needing more than
    its RMS), chosen on the central quarter of the image (:func:`centre`) and then run on the whole:
    a quarter of the cost a setting (~20 s a whole 384² scene and setting on one core)."""
    if method == "bm3d":
        start = classical_srgb(case)
        error = float(np.sqrt(np.mean((start.astype(np.float64) - case.reference) ** 2)))
        best = max(BM3D_FACTORS, key=lambda f: psnr(cbm3d(centre(start), error * f), centre(case.reference)))
        return cbm3d(start, error * best)
    outputs = [BASELINES[method].run([case], **setting)[0] for setting in BASELINES[method].grid]
    return max(outputs, key=lambda out: psnr(out, case.reference))


def centre(image: np.ndarray) -> np.ndarray:
    """The central ``(H/2, W/2)`` of ``image``: where the bm3d oracle chooses its σ."""
    h, w = image.shape[0] // 4, image.shape[1] // 4
    return image[h : h + image.shape[0] // 2, w : w + image.shape[1] // 2]


def sweep(network: nn.Module | None, scenes: list[Scene], layout: str, methods: tuple[str, ...] = SWEEP_METHODS,
          levels: tuple[Level, ...] = LEVELS, seed: int = 0) -> dict:
    """``{level name: {method: score(...)}}`` for raws of ``layout`` made from ``scenes``."""
    table: dict = {}
    for level in levels:
        cases = [sweep_case(scene, level, layout, seed) for scene in scenes]
        row = {}
        for method in methods:
            if method == "darktable" and (layout_class(cases[0].sample.layout).unpack is SensorLayout.unpack
                                          or not darktable_baseline.available()):
                continue  # darktable's baseline writes mosaic DNGs only
            if method in ("naive", "model"):
                outputs = method_outputs(cases, network, (method,), {})[method]
            elif method == "classical":
                outputs = [classical_srgb(c) for c in cases]
            else:
                outputs = [oracle(c, method) for c in cases]
            row[method] = score(outputs, cases)
        table[level.name] = row
    return table


def format_sweep(tables: dict[str, dict]) -> str:
    """Markdown: one row per layout, level and method: PSNR / SSIM, shadow ΔL\\* (mean, worst), edge chroma."""
    lines = ["| layout | level (ISO) | method | PSNR / SSIM | shadow ΔL* (mean, worst) | edge chroma a*b* |",
             "|---|---|---|---|---|---|"]
    iso = {level.name: level.iso for level in LEVELS}
    for layout, table in tables.items():
        for level, rows in table.items():
            for method, r in rows.items():
                lines.append(f"| {layout} | {level} ({iso.get(level, '?')}) | {method} | {r['psnr']:.2f} / {r['ssim']:.3f} | "
                             f"{r['shadow_dl']:+.1f}, {r['shadow_dl_worst']:+.1f} | {r['edge_chroma']:.2f} |")
    return "\n".join(lines)


def plot_sweep(tables: dict[str, dict], path: Path) -> Path:
    """PSNR against the darkness ratio, one line per method, one panel per layout, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    columns = min(2, len(tables))
    rows = math.ceil(len(tables) / columns)
    figure, axes = pyplot.subplots(rows, columns, figsize=(6.0 * columns, 4.0 * rows), squeeze=False, sharey=True)
    colours = dict(zip(SWEEP_METHODS, pyplot.rcParams["axes.prop_cycle"].by_key()["color"]))  # one colour a method
    for axis, (layout, table) in zip(axes.flat, tables.items()):
        ratios = [float(name[1:]) for name in table]
        for method in SWEEP_METHODS:
            if any(method in rows_ for rows_ in table.values()):
                axis.plot(ratios, [rows_.get(method, {}).get("psnr", math.nan) for rows_ in table.values()], marker="o",
                          label=method, color=colours[method], linewidth=2.6 if method == "model" else 1.2)
        axis.set_xscale("log")
        axis.set_title(layout)
        axis.set_xlabel("darker by (×)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    for axis in axes[:, 0]:
        axis.set_ylabel("sRGB PSNR (dB)")
    for axis in axes.flat[len(tables):]:
        axis.set_visible(False)
    figure.tight_layout()
    try:
        return write_atomically(Path(path), lambda temp: figure.savefig(temp, dpi=110, format="png"))
    finally:
        pyplot.close(figure)


def main(argv: list[str] | None = None) -> int:
    """``lowlight-raw evaluate --sweep``: the sweep's table (and JSON, and the plot); returns the exit status."""
    parser = argparse.ArgumentParser(prog="lowlight-raw evaluate --sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", action="store_true", help="(the switch that chose this tool)")
    parser.add_argument("--model", default="fast", choices=[m for m in SHIPPED_MODELS if "xtrans" in SHIPPED_MODELS[m]],
                        help="shipped model whose network of each layout is scored")
    parser.add_argument("--layouts", type=comma_separated(SWEEP_LAYOUTS), default=SWEEP_LAYOUTS,
                        help=f"comma-separated subset of {','.join(SWEEP_LAYOUTS)}")
    parser.add_argument("--methods", type=comma_separated(SWEEP_METHODS), default=SWEEP_METHODS,
                        help=f"comma-separated subset of {','.join(SWEEP_METHODS)} (bm3d: ~50 s a scene and level)")
    parser.add_argument("--levels", type=comma_separated(tuple(level.name for level in LEVELS)), default=tuple(l.name for l in LEVELS))
    parser.add_argument("--scenes", type=int, default=len(SWEEP_PHOTOS) + 1, help="the test scene and this many − 1 photos")
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help="where the Debian photos are fetched")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the tables as JSON here")
    parser.add_argument("--plot", type=Path, help="also draw PSNR against darkness as a PNG here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    levels = tuple(level for level in LEVELS if level.name in args.levels)
    try:
        scenes = sweep_scenes(args.photos, args.scenes - 1)
        tables = {}
        for layout in args.layouts:
            kind = "linear" if layout.startswith("linear") else layout
            network, _ = load_model(SHIPPED_MODELS[args.model][kind])
            start = time.monotonic()
            tables[layout] = sweep(network, scenes, layout, args.methods, levels)
            print(f"({layout}: {len(scenes)} scenes, {time.monotonic() - start:.0f} s)", file=sys.stderr)
    except (LowlightError, debian_photos.ArchiveUnavailable, debian_photos.ManifestMismatch) as exc:
        print(f"lowlight-raw evaluate --sweep: {exc}", file=sys.stderr)
        return 1
    print(format_sweep(tables))
    if args.json is not None:
        write_atomically(args.json, json.dumps(tables, indent=1) + "\n")
    if args.plot is not None:
        plot_sweep(tables, args.plot)
    return 0
