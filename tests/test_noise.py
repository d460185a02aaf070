"""Noise profiles: estimated from the photo, or darktable's measured ones; the sigma planes."""

import functools
import json

import numpy as np
import pytest
import skimage.data
import torch
from scipy.ndimage import gaussian_filter

from lowlight_raw.layouts.base import mosaic_from_rgb
from lowlight_raw.layouts.bayer import BayerLayout
from lowlight_raw.layouts.linear import LinearLayout
from lowlight_raw.layouts.registry import layout_class
from lowlight_raw.layouts.xtrans import XTransLayout, pattern_letters
from lowlight_raw.pipeline.noise import (
    ESTIMATE_MAX_BLOCKS,
    ISO_A_SPREAD,
    NoiseProfile,
    darktable_profile,
    estimate_profile,
    noise_sigma_map,
    profile_for,
    read_variance_for,
    typical_a_at_iso,
)
from lowlight_raw.pipeline.restore import network_share
from lowlight_raw.training.dataset import packed_shot
from lowlight_raw.training.sensor_noise import SensorModel, simulate_dark_raw
from lowlight_raw.training.unprocess import sample_params, unprocess

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


def test_a_large_photo_is_measured_in_a_spread_of_its_blocks_and_reads_as_measured_whole(monkeypatch):
    # four shots side by side: 4 × 200 × 1,200 packed pixels, 3,750 blocks, measured in every third
    a = 3e-4
    packed = np.concatenate([_shot("coffee", a, read_variance_for(a), 100.0, seed) for seed in range(4)], axis=2)
    blocks = (packed.shape[1] // 8) * (packed.shape[2] // 8)
    monkeypatch.setattr("lowlight_raw.pipeline.noise.ESTIMATE_MAX_BLOCKS", blocks // 3)
    spread = estimate_profile(packed).a
    monkeypatch.setattr("lowlight_raw.pipeline.noise.ESTIMATE_MAX_BLOCKS", blocks)
    whole = estimate_profile(packed).a
    assert spread == pytest.approx(whole, rel=0.03) and whole == pytest.approx(a, rel=0.3)
    assert ESTIMATE_MAX_BLOCKS >= 1024 * 1024 // 64, "the sweep's 1 MP photos are measured whole"


def test_planes_smaller_than_a_block_get_the_default_or_their_isos_profile():
    tiny = np.zeros((4, 3, 3), dtype=np.float32)
    assert estimate_profile(tiny).source.startswith("default")
    assert estimate_profile(tiny, iso=800).a == pytest.approx(typical_a_at_iso(800))


@pytest.mark.parametrize("photo", PHOTOS)
def test_a_clean_detailed_photo_is_never_taken_for_a_noisy_one(photo):
    clean = estimate_profile(_shot(photo, 0.0, 0.0))
    assert clean.a < 0.5 * typical_a_at_iso(100)  # below half of what a typical camera has at ISO 100
    at_iso_200 = estimate_profile(_shot(photo, 0.0, 0.0), iso=200)
    assert at_iso_200.a <= ISO_A_SPREAD[1] * typical_a_at_iso(200) * 1.0001


@pytest.mark.parametrize("texture", ["grass", "gravel"])
@pytest.mark.parametrize("iso", [100, 400, 1600])
@pytest.mark.parametrize("iso_known", [True, False])
def test_a_well_exposed_texture_without_flat_areas_gets_what_any_clean_photo_gets(texture, iso, iso_known):
    # With no flat area the estimate reads the texture as noise (grass at ISO 100, ISO not given:
    # 31× the true a), yet not enough to change the network's share at ISO ≤ 400: the clean share
    # any clean photo gets (bench/noise_estimate.py, last column). At ISO 1600 grass, read about 4×
    # too noisy, just reaches the ramp (0.157 for 0.15), which changes its score by 0.04 dB
    # (bench/no_harm.py --iso 1600 scores textures through the engine).
    grey = gaussian_filter(getattr(skimage.data, texture)().astype(np.float32) / 255.0, OPTICS_BLUR)
    a = typical_a_at_iso(iso)
    shot = packed_shot(np.repeat(grey[..., None], 3, axis=2), 1.0, SensorModel.with_profile(a, read_variance_for(a)),
                       np.random.default_rng(0), sample_params(np.random.default_rng(7)))
    profile = estimate_profile(shot, iso=iso if iso_known else None)
    tolerance = 0.0 if iso <= 400 else 0.01
    assert network_share(profile, 1.0, BayerLayout) == pytest.approx(BayerLayout.clean_network_share, abs=tolerance)


@pytest.mark.parametrize("photo", PHOTOS)
@pytest.mark.parametrize("iso", [100, 400, 1600])
def test_low_iso_noise_of_a_dark_raw_is_within_30_percent(photo, iso):
    a = typical_a_at_iso(iso)
    assert estimate_profile(_shot(photo, a, read_variance_for(a), 100.0)).a == pytest.approx(a, rel=0.3)


@pytest.mark.parametrize("photo", PHOTOS)
@pytest.mark.parametrize(("iso", "most"), [(100, 1.4), (400, 1.3), (1600, 1.3)])
def test_well_exposed_low_iso_noise_is_overestimated_at_most(photo, iso, most):
    # At ISO 100 and ×1 the photos' own finest texture is nearly as strong as the noise: a known
    # limit, measured by bench/noise_estimate.py
    a = typical_a_at_iso(iso)
    assert a * 0.7 <= estimate_profile(_shot(photo, a, read_variance_for(a))).a <= most * a


@pytest.mark.parametrize("photo", PHOTOS)
@pytest.mark.parametrize(("iso", "ratio"), [(400, 100.0), (6400, 100.0), (6400, 1.0)])
def test_xtrans_noise_is_within_30_percent(photo, iso, ratio):
    # ×1 at ISO 6400: the astronaut's dark bins span ×4 in brightness, and were read 45 % low
    a = typical_a_at_iso(iso)
    rgb = _photo(photo)
    h, w = rgb.shape[0] // 6 * 6, rgb.shape[1] // 6 * 6
    clean = mosaic_from_rgb(unprocess(rgb[:h, :w], sample_params(np.random.default_rng(7))), pattern_letters())
    raw = simulate_dark_raw(clean, ratio, SensorModel.with_profile(a, read_variance_for(a)), np.random.default_rng(0))
    layout = XTransLayout((0, 0), h, w)
    assert estimate_profile(layout.pack(raw), layout=layout).a == pytest.approx(a, rel=0.3)


@pytest.mark.parametrize("kind", ["bayer", "xtrans", "linear"])
def test_the_noise_residual_cancels_every_quadratic_scene(kind):
    """What the estimate measures holds no scene wherever the scene is flat or changes linearly
    or quadratically (any direction, curvature or colour): only noise is left there."""
    h, w = 48, 60
    y, x = np.mgrid[0:h, 0:w].astype(np.float64) / 100.0
    layout = layout_class(kind)
    for scene in (0.2 + 0.4 * y + 0.3 * x, 0.2 + 0.3 * x * x + 0.2 * y * y - 0.25 * x * y + 0.1 * x):
        packed = layout_packed(kind, scene, h, w)
        residual, level = layout.noise_residual(packed)
        assert np.abs(residual).max() < 1e-6  # float32 rounding; ISO-100 noise is ~1e-3
        assert scene.min() <= level.min() and level.max() <= scene.max()
    noisy = packed + np.random.default_rng(0).normal(0.0, 0.01, packed.shape)
    assert np.std(layout.noise_residual(noisy)[0]) == pytest.approx(0.01, rel=0.05)  # one pixel's sigma


def layout_packed(kind: str, plane: np.ndarray, h: int, w: int) -> np.ndarray:
    """Packed planes of a grey scene ``plane`` ``(h, w)`` in ``kind``'s layout (noise-free)."""
    rgb = np.repeat(plane[..., None], 3, axis=2)
    if kind == "bayer":
        return BayerLayout("RGGB", h, w).pack(mosaic_from_rgb(rgb, "RGGB"))
    if kind == "xtrans":
        return XTransLayout((0, 0), h, w).pack(mosaic_from_rgb(rgb, pattern_letters()))
    return LinearLayout(h, w).pack(rgb)


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
