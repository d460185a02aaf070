"""How close the noise estimate comes to the truth: ``python bench/noise_estimate.py``.

Detailed scikit-image photos (public domain / CC0), blurred as a lens would, are unprocessed into
raws of a camera with the typical noise of each ISO (darktable's cameras, :func:`typical_a_at_iso`),
well exposed (×1) or ×100 too dark, and :func:`estimate_profile` is asked for ``a`` without being
told the ISO. Prints estimated ÷ true ``a`` (median, min, max over the photos), and the ``a`` a
clean photo is given.
"""

from __future__ import annotations

import numpy as np
import skimage.data
from scipy.ndimage import gaussian_filter

from lowlight_raw.noise import estimate_profile, read_variance_for, typical_a_at_iso
from lowlight_raw.training.dataset import packed_shot
from lowlight_raw.training.sensor_noise import SensorModel
from lowlight_raw.training.unprocess import sample_params

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "retina")  # not hubble_deep_field: its sky is noisy itself
ISOS = (100, 400, 1600, 6400, 25600)
OPTICS_BLUR = 0.8


def main() -> None:
    photos = [gaussian_filter(getattr(skimage.data, n)()[..., :3].astype(np.float32) / 255.0, (OPTICS_BLUR, OPTICS_BLUR, 0))
              for n in PHOTOS]
    params = sample_params(np.random.default_rng(7))
    print(f"{len(PHOTOS)} photos ({', '.join(PHOTOS)}), optics blur {OPTICS_BLUR} px; estimated a ÷ true a")
    print("| ISO | true a | ×1 median (min–max) | ×100 median (min–max) |\n|---|---|---|---|")
    for iso in ISOS:
        a = typical_a_at_iso(iso)
        sensor = SensorModel.with_profile(a, read_variance_for(a))
        cells = []
        for ratio in (1.0, 100.0):
            r = np.array([estimate_profile(packed_shot(p, ratio, sensor, np.random.default_rng(i), params)).a / a
                          for i, p in enumerate(photos)])
            cells.append(f"{np.median(r):.2f} ({r.min():.2f}–{r.max():.2f})")
        print(f"| {iso} | {a:.2e} | {cells[0]} | {cells[1]} |")
    clean = [estimate_profile(packed_shot(p, 1.0, None, np.random.default_rng(0), params)).a for p in photos]
    print(f"clean photos: a = {np.median(clean):.2e} median, {max(clean):.2e} max "
          f"(a typical camera at ISO 800: {typical_a_at_iso(800):.2e})")


if __name__ == "__main__":
    main()
