"""Rebuild ``examples/coffee_dark.dng``: a real photo turned into a ×100 underexposed, noisy RAW.

The photo is scikit-image's ``coffee`` (Rachel Michetti, CC0). Its sRGB values are linearised,
taken into the camera space of :data:`lowlight_raw.synthetic.DEFAULT_CAM_XYZ` (undoing the
white balance), sampled on an RGGB mosaic, darkened 100× and given ISO-12800-like shot and read
noise (Var = a·x + b with a = 2e-4, b = 4e-7), then written as a CFA DNG with EXIF.

    .venv/bin/python examples/make_example.py
"""

from pathlib import Path

import numpy as np
import skimage.data

from lowlight_raw.color import CameraColor
from lowlight_raw.synthetic import DngSpec, dark_exposure, write_cfa_dng

OUT = Path(__file__).resolve().parent / "coffee_dark.dng"


def main() -> None:
    spec = DngSpec(exif={
        "Exif.Photo.ISOSpeedRatings": "12800",
        "Exif.Photo.ExposureTime": "1/250",
        "Exif.Photo.FNumber": "4/1",
        "Exif.Image.ImageDescription": "scikit-image coffee (CC0, Rachel Michetti), synthetically underexposed 100x",
    })
    srgb = skimage.data.coffee().astype(np.float64) / 255.0
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    color = CameraColor(wb=1.0 / np.asarray(spec.as_shot_neutral), cam_xyz=spec.cam_xyz)
    to_camera = np.linalg.inv(color.matrix_to("srgb") * color.wb[None, :])
    camera = np.clip(linear @ to_camera.T, 0.0, 1.0)
    active = dark_exposure(camera, spec, ratio=100.0, a=2e-4, b=4e-7, rng=np.random.default_rng(2026))
    write_cfa_dng(OUT, active, spec)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
