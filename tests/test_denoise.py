"""The clean rendering's denoiser: unbiased levels (near black too), less noise, edges kept."""

import numpy as np
import pytest
import torch

from lowlight_raw.layouts.base import mosaic_from_rgb
from lowlight_raw.layouts.bayer import BayerLayout
from lowlight_raw.layouts.linear import LinearLayout
from lowlight_raw.layouts.xtrans import XTransLayout
from lowlight_raw.pipeline.denoise import REACH, _bands, _smooth, denoise_planes
from lowlight_raw.pipeline.noise import NoiseProfile

WB = np.array([2.1, 1.0, 1.7])
X10 = NoiseProfile(5.747e-5, 1.727e-7, "A7 III, ISO 6400").amplified(10.0)  # the sweep's ×10: σ 0.011 at mid-grey


def _noisy(truth: np.ndarray, profile: NoiseProfile, seed: int = 0) -> np.ndarray:
    """``truth`` (packed planes) with Poisson-Gaussian noise of ``profile`` (Gaussian, ``Var = a·x + b``)."""
    sigma = np.sqrt(profile.a * np.clip(truth, 0.0, None) + profile.b)
    return (truth + sigma * np.random.default_rng(seed).standard_normal(truth.shape)).astype(np.float32)


@pytest.mark.parametrize("layout", [BayerLayout, XTransLayout, LinearLayout], ids=lambda c: c.kind)
@pytest.mark.parametrize("level", [0.0, 0.002, 0.05, 0.3])
def test_a_flat_patch_keeps_its_mean_and_loses_most_of_its_noise(layout, level):
    grey = np.zeros((layout.channels, 96, 96), dtype=np.float32)
    for colour, planes in enumerate(layout.colour_planes):
        grey[list(planes)] = level / WB[colour]  # grey after the white balance
    noisy = _noisy(grey, X10)
    out = denoise_planes(torch.from_numpy(noisy), layout, WB, X10).numpy()
    for planes in layout.colour_planes:  # unbiased: the mean of noise about black stays black
        noise_of_mean = np.sqrt(X10.a * level + X10.b) / np.sqrt(noisy[list(planes)].size)
        # measured within 1.2 standard errors of the noisy samples' mean (Bayer 0.5)
        assert abs(out[list(planes)].mean() - grey[list(planes)].mean()) < 3.0 * noise_of_mean
    assert (out - grey).std() < 0.25 * (noisy - grey).std()  # measured 4.3–5.0× less noise (6.1–6.4× with FACTOR 1.5)


def test_a_clean_raw_is_kept_and_a_step_edge_stays_sharp():
    planes = np.random.default_rng(1).random((4, 40, 40), dtype=np.float32)
    out = denoise_planes(torch.from_numpy(planes), BayerLayout, WB, NoiseProfile(0.0, 0.0, "none")).numpy()
    np.testing.assert_allclose(out, planes, atol=1e-5)
    height, width = 64, 96
    scene = np.where(np.arange(width)[None, :, None] < width // 2, 0.05, 0.4) * np.ones((height, 1, 3)) / WB
    truth = BayerLayout("RGGB", height, width).pack(mosaic_from_rgb(scene.astype(np.float32), "RGGB"))
    noisy = _noisy(truth, X10, seed=2)
    out = denoise_planes(torch.from_numpy(noisy), BayerLayout, WB, X10).numpy()
    green = out[1:3].mean((0, 1))  # the green planes' profile across the edge (packed columns)
    edge = width // 4
    # measured: 0.2 % and 0.0 % of the step at the packed pixels either side of the edge, 0.0016 at most elsewhere
    assert abs(green[edge - 1] - 0.05) < 0.02 * 0.35 and abs(green[edge] - 0.4) < 0.02 * 0.35
    assert np.abs(green[: edge - 1] - 0.05).max() < 0.005 and np.abs(green[edge + 1 :] - 0.4).max() < 0.005


def test_the_oriented_bands_sum_to_the_detail():
    x = torch.from_numpy(np.random.default_rng(3).random((2, 33, 47), dtype=np.float32))
    smooth, bands = _bands(x, oriented=True)
    np.testing.assert_allclose(smooth.numpy(), _smooth(x).numpy(), atol=1e-6)
    np.testing.assert_allclose(sum(bands).numpy(), (x - smooth).numpy(), atol=1e-5)


@pytest.mark.parametrize("layout", [BayerLayout, XTransLayout], ids=lambda c: c.kind)
def test_an_area_denoised_alone_is_the_whole_images_beyond_the_reach(layout):
    rng = np.random.default_rng(4)
    truth = (0.05 + 0.3 * rng.random((layout.channels, 1, 1)) * np.ones((1, 200, 212))).astype(np.float32)
    truth[:, 60:140, 50:160] *= 2.0  # an edge or two for the blocks to keep
    noisy = torch.from_numpy(_noisy(truth, X10, seed=5))
    whole = denoise_planes(noisy, layout, WB, X10).numpy()
    top, left = 8, 8  # on the decimations' grid (ALIGN); shifted by (2, 2), the block grids would not be the same set
    window = (slice(REACH, 200 - top), slice(REACH, 212 - left))
    area = denoise_planes(noisy[:, top:, left:], layout, WB, X10, origin=(top, left), window=window).numpy()
    np.testing.assert_allclose(area, whole[:, top + REACH :, left + REACH :], rtol=0.0, atol=1e-5)  # float rounding
    misplaced = denoise_planes(noisy[:, top:, left:], layout, WB, X10, window=window).numpy()
    assert np.abs(misplaced - area).max() > 1e-3, "the block grids are the whole image's, not the area's"


@pytest.mark.parametrize("size", [(1, 1), (3, 5), (12, 13)])
def test_planes_too_small_to_mirror_a_block_are_denoised_too(size):
    flat = torch.full((XTransLayout.channels, *size), 0.2)
    out = denoise_planes(flat, XTransLayout, WB, X10)
    np.testing.assert_allclose(out.numpy(), flat.numpy(), atol=1e-6)
