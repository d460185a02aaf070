"""Does the engine harm a good photo? ``python bench/no_harm.py [--model fast|PATH] [--layout bayer|xtrans] [--iso N]``.

Four detailed scikit-image photos and three of its textures with no flat area at all (grass,
gravel, brick; public domain / CC0), blurred as a lens would (0.5 px), are written as clean,
well-exposed Bayer (or X-Trans) DNGs with a typical camera's noise at ``--iso`` (200 unless
given; :func:`typical_a_at_iso`; the ISO is in the EXIF, the camera unknown to darktable, so the
noise is estimated from the photo) and enhanced at 0 EV through the engine, once as users get
it (``--strength 1``: for such a clean raw, :mod:`lowlight_raw.pipeline.restore` blends the layout's
clean share of the network, or more where the estimate reads texture as noise, into an
edge-directed Bayer demosaic, or X-Trans's colour-difference demosaic) and once as the plain demosaic
(``--strength 0``: bilinear, or its X-Trans analogue). Both are scored in sRGB against the true
scene. The target: the enhanced photo at least as good as the plain demosaic on every photo.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import skimage.data
import tifffile
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity

from lowlight_raw.engine import EnhanceOptions, Enhancer
from lowlight_raw.files.raw import read_raw
from lowlight_raw.layouts.xtrans import pattern_letters
from lowlight_raw.pipeline.color import camera_to_linear, srgb_encode
from lowlight_raw.pipeline.noise import read_variance_for, typical_a_at_iso
from lowlight_raw.testing.synthetic import DngSpec, dark_exposure, write_cfa_dng
from lowlight_raw.training.unprocess import sample_params, unprocess

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "grass", "gravel", "brick")  # the last three: grey textures
BORDER = 4  # pixels left out of the score on every side


def score(out: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    out, ref = out[BORDER:-BORDER, BORDER:-BORDER], ref[BORDER:-BORDER, BORDER:-BORDER]
    psnr = 10 * np.log10(1.0 / np.mean((out.astype(np.float64) - ref) ** 2))
    return psnr, structural_similarity(ref, out, channel_axis=2, data_range=1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fast")
    parser.add_argument("--layout", choices=("bayer", "xtrans"), default="bayer")
    parser.add_argument("--iso", type=int, default=200, help="the noise of a typical camera at this ISO")
    args = parser.parse_args()
    a = typical_a_at_iso(args.iso)
    pattern = pattern_letters() if args.layout == "xtrans" else "RGGB"
    spec = DngSpec(pattern=pattern, exif={"Exif.Photo.ISOSpeedRatings": str(args.iso)})
    print(f"{args.layout} raws at ISO {args.iso}, model {args.model}; PSNR dB / SSIM in sRGB against the true scene")
    print("| photo | enhanced | enhanced, told the true noise | plain demosaic | enhanced − plain |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        estimating = Enhancer(args.model, device="cpu")
        told = Enhancer(args.model, device="cpu", noiseprofiles=true_profile(folder / "true.json", spec, args.iso, a))
        for name in PHOTOS:
            image = getattr(skimage.data, name)()
            image = image[..., :3] if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
            photo = gaussian_filter(image.astype(np.float32) / 255, (0.5, 0.5, 0))
            h, w = photo.shape[0] // 2 * 2, photo.shape[1] // 2 * 2
            camera = unprocess(photo[:h, :w], sample_params(np.random.default_rng(0)))
            scene = camera / camera.max() * 0.9  # well exposed
            raw = dark_exposure(scene, spec, 1.0, a, read_variance_for(a), np.random.default_rng(1))
            source = write_cfa_dng(folder / f"{name}.dng", raw, spec)
            reference = srgb_encode(camera_to_linear(scene, read_raw(source).color))
            scores = []
            for enhancer, strength, label in ((estimating, 1.0, "estimated"), (told, 1.0, "told"), (estimating, 0.0, "plain")):
                options = EnhanceOptions("tiff", ev=0.0, strength=strength, linear_tiff=True,
                                         output_dir=folder / label, overwrite=True)
                out = tifffile.imread(enhancer.enhance(source, options).output).astype(np.float32) / 65535
                scores.append(score(srgb_encode(out), reference))
            (p1, s1), (pt, st), (p0, s0) = scores
            print(f"| {name} | {p1:.2f} / {s1:.3f} | {pt:.2f} / {st:.3f} | {p0:.2f} / {s0:.3f} "
                  f"| {p1 - p0:+.2f} dB / {s1 - s0:+.3f} |")


def true_profile(path: Path, spec: DngSpec, iso: int, a: float) -> Path:
    """A ``noiseprofiles.json`` (darktable's format) that gives the engine the raws' true noise."""
    b = read_variance_for(a)
    profile = {"iso": iso, "a": [a, a, a], "b": [b, b, b]}
    path.write_text(json.dumps({"noiseprofiles": [{"maker": spec.make, "models": [{"model": spec.camera_model,
                                                                                     "profiles": [profile]}]}]}))
    return path


if __name__ == "__main__":
    main()
