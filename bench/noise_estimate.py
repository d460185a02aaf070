"""How close the noise estimate comes to the truth: ``python bench/noise_estimate.py``.

High-resolution, licence-clean photographs (the Debian photos of the training set of at least
``--min-mp`` megapixels, ``lowlight_raw/training/debian_photos.json``; fetched into
``cache/photos`` if missing) are downscaled by ``--downscale`` in linear light (which averages
away their JPEG artefacts and most of their own noise, so that even ISO 100 adds more),
cropped to at most ``--size`` pixels a side at the centre, blurred as a lens and an
anti-aliasing filter would (Gaussian, ``--optics-blur`` pixels), and unprocessed into raws of a
camera with the typical noise of each ISO (darktable's cameras, :func:`typical_a_at_iso`), well
exposed (×1) or ×100 too dark. :func:`estimate_profile` is asked for ``a`` without being told the
ISO. Prints estimated ÷ true ``a`` (median, min–max over the photos, and the share within ±30 %),
and the ``a`` the same photos are given without any noise.

The photos are not free of noise and fine texture themselves, which matters only well exposed at
low ISO, where the added noise is as faint. So the ×1 estimates are also given against the added
``a`` plus the photo's own reading (its estimate without added noise): how far the estimate is
from the noise added to what the photo already had. That reading comes from the same estimator,
so this column shows that the two add up, not that the photo's own reading is right. The last
line measures how fine ISO 100 is against the photos' 8 bits: each scene rounded to 8 bits once
more (with a random dither), and how much that one rounding adds to its reading, in ISO 100's ``a``.

What a wrong ×1 estimate costs is the network's share of the result (:func:`network_share`: a
clean photo gets ``BayerLayout.clean_network_share`` of it, blended into a classical demosaic):
the last column gives the largest share over the photos with the ISO not given and given (which
bounds the estimate), beside the share the true noise gives. ``--per-photo`` lists each photo's own reading and ×1 estimates.
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from lowlight_raw.layouts.bayer import BayerLayout
from lowlight_raw.pipeline.color import srgb_encode
from lowlight_raw.pipeline.noise import NoiseProfile, estimate_profile, read_variance_for, typical_a_at_iso
from lowlight_raw.pipeline.restore import network_share
from lowlight_raw.training.dataset import packed_shot
from lowlight_raw.training.debian_photos import downscale_linear, fetch_photos, load_manifest, read_rgb
from lowlight_raw.training.sensor_noise import SensorModel
from lowlight_raw.training.sources import DEFAULT_PHOTOS
from lowlight_raw.training.unprocess import UnprocessParams, sample_params

ISOS = (100, 200, 400, 800, 1600, 6400, 25600)
RATIOS = (1.0, 100.0)
TOLERANCE = 0.3


def photos(count: int, min_mp: float, factor: int, size: int, blur: float) -> list[tuple[str, np.ndarray]]:
    """``count`` manifest photos of at least ``min_mp`` megapixels, spread over the list:
    (name, sRGB float32 ``(H, W, 3)``)."""
    large = []
    for photo, path in fetch_photos(DEFAULT_PHOTOS, load_manifest()):
        with Image.open(path) as image:  # the header only: decode just the photos picked
            width, height = image.size
        if width * height >= min_mp * 1e6:
            large.append((photo, path))
    picked = [large[i * len(large) // count] for i in range(min(count, len(large)))]
    out = []
    for photo, path in picked:
        linear = downscale_linear(read_rgb(path), factor)
        h, w = linear.shape[:2]
        top, left = max(h - size, 0) // 2, max(w - size, 0) // 2
        crop = gaussian_filter(linear[top : top + size, left : left + size], (blur, blur, 0))
        out.append((photo.name, srgb_encode(crop).astype(np.float32)))
    return out


def cell(ratios: np.ndarray) -> str:
    within = np.mean(np.abs(ratios - 1.0) <= TOLERANCE)
    return f"{np.median(ratios):.2f} ({ratios.min():.2f}–{ratios.max():.2f}), {within:.0%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=30, help="photos")
    parser.add_argument("--min-mp", type=float, default=4.0, help="only photos of at least this many megapixels")
    parser.add_argument("--downscale", type=int, default=3, help="area-average factor")
    parser.add_argument("--size", type=int, default=1536, help="crop side, pixels after downscaling")
    parser.add_argument("--optics-blur", type=float, default=0.6, help="Gaussian sigma, pixels")
    parser.add_argument("--per-photo", action="store_true", help="also list each photo's readings")
    args = parser.parse_args()
    scenes = photos(args.count, args.min_mp, args.downscale, args.size, args.optics_blur)
    params = sample_params(np.random.default_rng(7))
    print(f"{len(scenes)} licence-clean photos of ≥{args.min_mp:g} MP, ÷{args.downscale}, ≤{args.size}² px, "
          f"optics blur {args.optics_blur} px; "
          f"estimated a ÷ true a: median (min–max), share within ±{TOLERANCE:.0%}")
    own = np.array([noise_free_reading(scene, params) for _, scene in scenes])
    print("| ISO | true a | " + " | ".join(f"×{r:g}" for r in RATIOS) + " | ×1 against true a + the photo's own "
          "| ×1 network share: true / largest, ISO not given / given |\n"
          "|---|---|" + "---|" * (len(RATIOS) + 2), flush=True)
    well_exposed = {}
    for iso in ISOS:
        a = typical_a_at_iso(iso)
        sensor = SensorModel.with_profile(a, read_variance_for(a))
        shots = {ratio: [packed_shot(scene, ratio, sensor, np.random.default_rng(i), params)
                         for i, (_, scene) in enumerate(scenes)] for ratio in RATIOS}
        estimates = {ratio: np.array([estimate_profile(packed).a for packed in shots[ratio]]) for ratio in RATIOS}
        given_iso = [estimate_profile(packed, iso=iso) for packed in shots[1.0]]
        well_exposed[iso] = estimates[1.0] / a
        shares = (network_share(NoiseProfile(a, read_variance_for(a), "true"), 1.0, BayerLayout),
                  max(network_share(NoiseProfile(e, read_variance_for(e), "estimated"), 1.0, BayerLayout)
                      for e in estimates[1.0]),
                  max(network_share(profile, 1.0, BayerLayout) for profile in given_iso))
        cells = [cell(estimates[ratio] / a) for ratio in RATIOS] + [cell(estimates[1.0] / (a + own))]
        print(f"| {iso} | {a:.2e} | " + " | ".join(cells) + " | " + " / ".join(f"{s:.2f}" for s in shares) + " |",
              flush=True)
    print(f"noise-free photos: a = {np.median(own):.2e} median, {own.max():.2e} max "
          f"(a typical camera at ISO 100: {typical_a_at_iso(100):.2e}, at ISO 800: {typical_a_at_iso(800):.2e})")
    rounded = np.array([noise_free_reading(requantised(scene, np.random.default_rng(i)), params)
                        for i, (_, scene) in enumerate(scenes)])
    added = (rounded - own) / typical_a_at_iso(100)
    print(f"one more rounding of the photos to 8 bits adds {np.median(added):.2f}× ISO 100's a "
          f"(median; {added.min():.2f}–{added.max():.2f})")
    if args.per_photo:
        print("\n| photo | own reading ÷ ISO 100's a | " + " | ".join(f"×1 ISO {iso}" for iso in ISOS) + " |\n"
              "|---|---|" + "---|" * len(ISOS))
        for k, (name, _) in enumerate(scenes):
            print(f"| {name} | {own[k] / typical_a_at_iso(100):.2f} | "
                  + " | ".join(f"{well_exposed[iso][k]:.2f}" for iso in ISOS) + " |")


def noise_free_reading(scene: np.ndarray, params: UnprocessParams) -> float:
    """The ``a`` estimated on ``scene`` unprocessed with ``params`` into a raw with no noise added."""
    return estimate_profile(packed_shot(scene, 1.0, None, np.random.default_rng(0), params)).a


def requantised(srgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``srgb`` rounded to 8 bits with a uniform random dither."""
    return (np.floor(srgb * 255.0 + rng.random(srgb.shape)) / 255.0).astype(np.float32)


if __name__ == "__main__":
    main()
