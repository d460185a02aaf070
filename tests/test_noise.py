"""Noise profiles: estimated from the photo, or darktable's measured ones; the sigma planes."""

import functools
import json

import numpy as np
import pytest
import skimage.data
import torch
from scipy.ndimage import gaussian_filter

from lowlight_raw.noise import (ISO_A_SPREAD, NoiseProfile, darktable_profile, estimate_profile, noise_sigma_map,
                                profile_for, read_variance_for, typical_a_at_iso)
from lowlight_raw.training.dataset import packed_shot
from lowlight_raw.training.sensor_noise import SensorModel
from lowlight_raw.training.unprocess import sample_params


OPTICS_BLUR = 0.8  # px: a lens and anti-aliasing filter; a photo resized to the sensor is sharper than any raw
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


@functools.lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    """A clean, detailed photo (scikit-image, public domain / CC0) as the lens draws it on the sensor."""
    photo = getattr(skimage.data, name)()[..., :3].astype(np.float32) / 255.0
    return gaussian_filter(photo, (OPTICS_BLUR, OPTICS_BLUR, 0))


def _shot(name: str, a: float, b: float, ratio: float = 1.0, seed: int = 0) -> np.ndarray:
    """Packed planes of ``name`` shot ``ratio``× too dark on a sensor with ``Var = a·x + b`` (a = 0: clean)."""
    sensor = SensorModel.with_profile(a, b) if a else None
    return packed_shot(_photo(name), ratio, sensor, np.random.default_rng(seed), sample_params(np.random.default_rng(7)))


@pytest.mark.parametrize("photo", PHOTOS)
@pytest.mark.parametrize(("a", "ratio"), [(3e-4, 1.0), (1e-3, 1.0), (8e-5, 100.0), (3e-4, 100.0)])
def test_estimate_is_within_30_percent_on_detailed_photos_at_high_iso(photo, a, ratio):
    b = read_variance_for(a)
    assert estimate_profile(_shot(photo, a, b, ratio)).a == pytest.approx(a, rel=0.3)


@pytest.mark.parametrize("photo", PHOTOS)
def test_a_clean_detailed_photo_is_never_taken_for_a_noisy_one(photo):
    clean = estimate_profile(_shot(photo, 0.0, 0.0))
    assert clean.a < typical_a_at_iso(800)  # below what a typical camera has at ISO 800
    at_iso_200 = estimate_profile(_shot(photo, 0.0, 0.0), iso=200)
    assert at_iso_200.a <= ISO_A_SPREAD[1] * typical_a_at_iso(200) * 1.0001


@pytest.mark.parametrize("photo", PHOTOS)
@pytest.mark.parametrize("a", [2e-5, 8e-5])
def test_well_exposed_low_iso_noise_is_overestimated_at_most_2_5_times(photo, a):
    # At ISO ~1000–3200 and ×1 the photos' own fine texture is as strong as the noise: a known
    # limit, measured by bench/noise_estimate.py
    assert a * 0.7 <= estimate_profile(_shot(photo, a, read_variance_for(a))).a <= 2.5 * a


@pytest.mark.parametrize("ratio", [1.0, 100.0])
def test_masked_pixels_give_the_read_noise(ratio):
    a, b = 3e-4, 5e-6
    est = estimate_profile(_shot("coffee", a, b, ratio), np.random.default_rng(1).normal(0, np.sqrt(b), 5000))
    assert est.b == pytest.approx(b, rel=0.1) and "masked" in est.source
    assert est.a == pytest.approx(a, rel=0.3)


@pytest.fixture
def profiles_json(tmp_path):
    data = {"version": 1, "noiseprofiles": [{"maker": "Nikon", "models": [{"model": "D750", "profiles": [
        {"name": "iso 800", "iso": 800, "a": [1, 1e-5, 1], "b": [1, 1e-8, 1]},
        {"name": "iso 1600", "iso": 1600, "a": [1, 2e-5, 1], "b": [1, 4e-8, 1]}]}]}]}
    path = tmp_path / "noiseprofiles.json"
    path.write_text(json.dumps(data))
    return path


def test_darktable_profile_matches_exif_spelling_and_interpolates(profiles_json):
    p = darktable_profile("NIKON CORPORATION", "NIKON D750", 1200, profiles_json)
    assert p.a == pytest.approx(1.5e-5) and p.b == pytest.approx(2.5e-8)
    above = darktable_profile("NIKON CORPORATION", "NIKON D750", 3200, profiles_json)
    assert above.a == pytest.approx(4e-5) and above.b == pytest.approx(16e-8)
    assert darktable_profile("Canon", "Canon EOS R5", 800, profiles_json) is None


def test_profile_for_prefers_darktable_then_estimates(profiles_json):
    packed = _shot("coffee", 2e-4, 2e-6)
    assert profile_for(packed, "NIKON CORPORATION", "NIKON D750", 800, None, profiles_json).source.startswith("darktable")
    assert profile_for(packed, "Canon", "Canon EOS R5", 800, None, profiles_json).source.startswith("estimated")


def test_sigma_map_scales_with_gain_same_for_numpy_and_torch():
    profile = NoiseProfile(a=1e-4, b=1e-6, source="test")
    x = np.array([[[0.0, 0.5, 2.0]]], dtype=np.float32)
    sigma = noise_sigma_map(x, profile, gain=100.0)
    expected = np.sqrt(100 * 1e-4 * np.clip(x, 0, 1) + 100**2 * 1e-6)
    np.testing.assert_allclose(sigma, expected, rtol=1e-6)
    np.testing.assert_allclose(noise_sigma_map(torch.from_numpy(x), profile, 100.0).numpy(), sigma, rtol=1e-6)
