"""Shared fixtures: real DNG files made from synthetic scenes, and a tiny real model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lowlight_raw.layouts.xtrans import pattern_letters
from lowlight_raw.networks.sid_unet import SIDUNet, UNetConfig
from lowlight_raw.networks.weights import save_weights
from lowlight_raw.testing.synthetic import DngSpec, dark_exposure, dark_linear_exposure, test_scene, write_cfa_dng, write_linear_dng

torch.set_num_threads(1)

FIXTURE_EXIF = {
    "Exif.Photo.ISOSpeedRatings": "6400",
    "Exif.Photo.ExposureTime": "1/60",
    "Exif.Photo.FNumber": "28/10",
    "Exif.Photo.FocalLength": "35/1",
    "Exif.Photo.DateTimeOriginal": "2026:11:01 21:14:05",
    "Exif.Photo.LensModel": "FE 35mm F2.8 ZA",
    "Exif.Photo.LensMake": "Zeiss",
    "Exif.GPSInfo.GPSVersionID": "2 3 0 0",
    "Exif.GPSInfo.GPSLatitudeRef": "N",
    "Exif.GPSInfo.GPSLatitude": "48/1 51/1 2400/100",
    "Exif.GPSInfo.GPSLongitudeRef": "E",
    "Exif.GPSInfo.GPSLongitude": "2/1 21/1 700/100",
    "Exif.Image.Artist": "Test Photographer",
}


@pytest.fixture
def make_dng(tmp_path: Path):
    """Factory: ``make_dng(name, height=…, width=…, pattern=…, ratio=…, margins=…, exif=…)`` → Path.

    Writes a dark (``ratio`` × underexposed), noisy CFA DNG of :func:`test_scene` with EXIF/GPS
    (``pattern``: a Bayer phase or 36 X-Trans letters); ``linear=True``: a LinearRaw DNG instead
    (the noisy RGGB mosaic demosaiced; even sizes, no margins).
    """

    def make(
        name: str = "dark.dng",
        height: int = 90,
        width: int = 122,
        pattern: str = "RGGB",
        ratio: float = 100.0,
        margins: tuple[int, int, int, int] = (0, 0, 0, 0),
        exif: dict[str, str] | None = None,
        noise: tuple[float, float] = (2e-4, 2e-7),
        seed: int = 0,
        directory: Path | None = None,
        linear: bool = False,
    ) -> Path:
        spec = DngSpec(pattern=pattern, margins=margins, exif=dict(FIXTURE_EXIF if exif is None else exif))
        scene = test_scene(height, width)
        rng = np.random.default_rng(seed)
        out_dir = directory or tmp_path
        out_dir.mkdir(parents=True, exist_ok=True)
        if linear:
            return write_linear_dng(out_dir / name, dark_linear_exposure(scene, spec, ratio, *noise, rng), spec)
        return write_cfa_dng(out_dir / name, dark_exposure(scene, spec, ratio, *noise, rng), spec)

    return make


@pytest.fixture
def xtrans_dng(make_dng) -> Path:
    """A dark X-Trans DNG (odd phase and margins) of :func:`test_scene`, with EXIF/GPS."""
    return make_dng("xt_dark.dng", height=91, width=125, pattern=pattern_letters((2, 5)), margins=(1, 3, 0, 2), ratio=50)


@pytest.fixture
def linear_dng(make_dng) -> Path:
    """A dark LinearRaw DNG of :func:`test_scene`, with EXIF/GPS."""
    return make_dng("linear_dark.dng", height=90, width=122, linear=True, ratio=50)


@pytest.fixture
def long_job(make_dng) -> list[Path]:
    """A 2 MP dark DNG listed 40 times: a job still running when a test cancels, kills or stops it.

    One copy takes ~0.2 s through the tiny model on this 2-core machine, so even a machine many
    times faster is still busy; the tests only ever wait for the first file to start.
    """
    return [make_dng("big.dng", height=1200, width=1600)] * 40


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """A real but tiny, untrained model (width 4, depth 3) with its card: fast plumbing tests."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    save_weights(SIDUNet(UNetConfig(width=4, depth=3)), path, name="tiny-test")
    return path
