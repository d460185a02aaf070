"""Noise profiles: estimated from the photo, or darktable's measured ones; the sigma planes."""

import json

import numpy as np
import pytest
import torch

from lowlight_raw.noise import NoiseProfile, darktable_profile, estimate_profile, noise_sigma_map, profile_for
from lowlight_raw.synthetic import mosaic_from_rgb, test_scene


def _noisy_packed(a, b, seed=0):
    rng = np.random.default_rng(seed)
    x = mosaic_from_rgb(test_scene(400, 600), "RGGB").astype(np.float64) * 0.3
    y = rng.poisson(x / a) * a + rng.normal(0, np.sqrt(b), x.shape)
    return np.stack([y[0::2, 0::2], y[0::2, 1::2], y[1::2, 0::2], y[1::2, 1::2]]).astype(np.float32), rng


@pytest.mark.parametrize("a,b", [(2e-4, 2e-6), (1e-3, 1e-5)])
def test_estimate_recovers_shot_and_read_noise(a, b):
    packed, rng = _noisy_packed(a, b)
    est = estimate_profile(packed)
    assert est.a == pytest.approx(a, rel=0.15)
    assert est.b == pytest.approx(b, rel=0.3)
    with_masked = estimate_profile(packed, rng.normal(0, np.sqrt(b), 5000))
    assert with_masked.b == pytest.approx(b, rel=0.1)
    assert "masked" in with_masked.source


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
    packed, _ = _noisy_packed(2e-4, 2e-6)
    assert profile_for(packed, "NIKON CORPORATION", "NIKON D750", 800, None, profiles_json).source.startswith("darktable")
    assert profile_for(packed, "Canon", "Canon EOS R5", 800, None, profiles_json).source.startswith("estimated")


def test_sigma_map_scales_with_gain_same_for_numpy_and_torch():
    profile = NoiseProfile(a=1e-4, b=1e-6, source="test")
    x = np.array([[[0.0, 0.5, 2.0]]], dtype=np.float32)
    sigma = noise_sigma_map(x, profile, gain=100.0)
    expected = np.sqrt(100 * 1e-4 * np.clip(x, 0, 1) + 100**2 * 1e-6)
    np.testing.assert_allclose(sigma, expected, rtol=1e-6)
    np.testing.assert_allclose(noise_sigma_map(torch.from_numpy(x), profile, 100.0).numpy(), sigma, rtol=1e-6)
