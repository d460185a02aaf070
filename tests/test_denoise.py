"""The clean rendering's denoiser: unbiased levels (near black too), less noise, edges kept."""

import numpy as np
import pytest
import torch

from lowlight_raw.layouts.base import mosaic_from_rgb
from lowlight_raw.layouts.bayer import BayerLayout
from lowlight_raw.layouts.linear import LinearLayout
from lowlight_raw.layouts.xtrans import XTransLayout
from lowlight_raw.pipeline.denoise import _bands, _smooth, denoise_planes
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
    out = denoise_planes(torch.from_numpy(noisy), layout.colour_planes, WB, X10).numpy()
    for planes in layout.colour_planes:  # unbiased: the mean of noise about black stays black
        noise_of_mean = np.sqrt(X10.a * level + X10.b) / np.sqrt(noisy[list(planes)].size)
        # measured within 1.2 standard errors of the noisy samples' mean (Bayer 0.5)
        assert abs(out[list(planes)].mean() - grey[list(planes)].mean()) < 3.0 * noise_of_mean
    assert (out - grey).std() < 0.2 * (noisy - grey).std()  # measured 6.1–6.4× less noise


def test_a_clean_raw_is_kept_and_a_step_edge_stays_sharp():
    planes = np.random.default_rng(1).random((4, 40, 40), dtype=np.float32)
    out = denoise_planes(torch.from_numpy(planes), BayerLayout.colour_planes, WB, NoiseProfile(0.0, 0.0, "none")).numpy()
    np.testing.assert_allclose(out, planes, atol=1e-5)
    height, width = 64, 96
    scene = np.where(np.arange(width)[None, :, None] < width // 2, 0.05, 0.4) * np.ones((height, 1, 3)) / WB
    truth = BayerLayout("RGGB", height, width).pack(mosaic_from_rgb(scene.astype(np.float32), "RGGB"))
    noisy = _noisy(truth, X10, seed=2)
    out = denoise_planes(torch.from_numpy(noisy), BayerLayout.colour_planes, WB, X10).numpy()
    green = out[1:3].mean((0, 1))  # the green planes' profile across the edge (packed columns)
    edge = width // 4
    # measured: 0.2 % and 0.0 % of the step at the packed pixels either side of the edge, 0.0016 at most elsewhere
    assert abs(green[edge - 1] - 0.05) < 0.02 * 0.35 and abs(green[edge] - 0.4) < 0.02 * 0.35
    assert np.abs(green[: edge - 1] - 0.05).max() < 0.005 and np.abs(green[edge + 1 :] - 0.4).max() < 0.005


def test_the_oriented_bands_sum_to_the_detail():
    x = torch.from_numpy(np.random.default_rng(3).random((2, 33, 47), dtype=np.float32))
    smooth, bands = _bands(x.clone(), oriented=True)
    np.testing.assert_allclose(smooth.numpy(), _smooth(x).numpy(), atol=1e-6)
    np.testing.assert_allclose(sum(bands).numpy(), (x - smooth).numpy(), atol=1e-5)
