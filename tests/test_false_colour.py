"""The demosaic's fine false colour is taken out; luminance, flat colours and real colour edges stay."""

import numpy as np
import pytest
import torch

from lowlight_raw.layouts.base import mosaic_from_rgb
from lowlight_raw.layouts.bayer import BayerLayout
from lowlight_raw.pipeline import false_colour
from lowlight_raw.pipeline.false_colour import (
    CLEAN_DETAIL_KEEP,
    CLEAN_ORDER,
    NOISY_DETAIL_KEEP,
    NOISY_ORDER,
    FalseColourFilter,
    false_colour_filter,
    suppress_false_colour,
)
from lowlight_raw.pipeline.restore import blend_clean_rendering

WB = np.array([2.1, 1.0, 1.7])
CLEAN, NOISY = false_colour_filter(0.0), false_colour_filter(1.0)


def luminance(rgb: np.ndarray) -> np.ndarray:
    return (rgb.astype(np.float64) * WB).mean(-1)


def colour(rgb: np.ndarray) -> np.ndarray:
    """Each white-balanced channel over luminance: (1, 1, 1) for grey."""
    return rgb.astype(np.float64) * WB / luminance(rgb)[..., None]


def test_a_clean_photo_gets_the_narrow_filter_that_keeps_colour_detail_and_a_noisy_one_the_wide_one():
    assert CLEAN == FalseColourFilter(CLEAN_ORDER, CLEAN_DETAIL_KEEP) and (CLEAN.order, CLEAN.reach) == (2, 1)
    assert false_colour_filter(0.99) == CLEAN  # an estimate that reads texture as noise does not widen it
    assert NOISY == FalseColourFilter(NOISY_ORDER, NOISY_DETAIL_KEEP) and NOISY.reach == 3 and NOISY_DETAIL_KEEP > CLEAN_DETAIL_KEEP
    assert CLEAN.taps().tolist() == [1.0, 2.0, 1.0]
    taps = NOISY.taps()
    offsets = torch.arange(-NOISY.reach, NOISY.reach + 1, dtype=torch.float32)
    assert float((taps * offsets**2).sum() / taps.sum()) == pytest.approx(NOISY_ORDER / 4)  # a Gaussian's σ² = order / 4


@pytest.mark.parametrize("colour_filter", [CLEAN, NOISY], ids=["clean", "noisy"])
def test_luminance_and_a_flat_colour_stay_and_an_isolated_false_colour_goes(colour_filter):
    rgb = np.empty((40, 56, 3), np.float32)
    rgb[:] = np.array([0.3, 0.25, 0.1], np.float32) / WB.astype(np.float32)  # a flat orange
    rgb[20, 28] *= np.array([1.15, 0.85, 1.1], np.float32)  # one pixel's colour off by 10–15 %: a demosaic's guess
    out = suppress_false_colour(rgb.copy(), WB, colour_filter)
    np.testing.assert_allclose(luminance(out), luminance(rgb), rtol=1e-5)
    flat = np.ones(rgb.shape[:2], bool)
    reach = colour_filter.reach
    flat[20 - reach : 21 + reach, 28 - reach : 29 + reach] = False  # what the off pixel's neighbourhood holds
    np.testing.assert_allclose(out[flat], rgb[flat], rtol=1e-5)  # up to the photo's borders
    before, after = np.abs(colour(rgb)[20, 28] - colour(rgb)[0, 0]).max(), np.abs(colour(out)[20, 28] - colour(rgb)[0, 0]).max()
    assert after < 0.75 * before  # the off pixel is brought most of the way to its neighbours' colour


def test_a_clean_photos_saturated_colour_edge_bleeds_by_less_than_a_tenth_into_one_pixel():
    rgb = np.empty((24, 48, 3), np.float32)
    rgb[:, :24] = np.array([0.6, 0.08, 0.05], np.float32) / WB.astype(np.float32)  # saturated red …
    rgb[:, 24:] = np.array([0.5, 0.5, 0.5], np.float32) / WB.astype(np.float32)  # … against white
    out = suppress_false_colour(rgb.copy(), WB, CLEAN)
    np.testing.assert_allclose(luminance(out), luminance(rgb), rtol=1e-5)
    np.testing.assert_allclose(out[:, :23], rgb[:, :23], rtol=1e-6)  # from 2 px away on either side: untouched
    np.testing.assert_allclose(out[:, 25:], rgb[:, 25:], rtol=1e-6)
    bleed = np.abs(colour(out)[:, 23:25] - colour(rgb)[:, 23:25]).max(axis=(0, 2))
    assert (bleed < 0.1).all(), bleed  # of colours 1, 1, 1 and 2.47, 0.33, 0.21 (measured 0.04 and 0.08)


def test_the_demosaics_false_colour_at_fine_detail_is_reduced_and_the_scene_comes_closer():
    """A clean Bayer mosaic of fine grey and coloured stripes: the clean demosaic's colour error drops."""
    height, width = 64, 96
    y, x = np.mgrid[:height, :width]
    grey = 0.3 + 0.2 * np.sin(2 * np.pi * 0.23 * x + 0.7 * y)  # fine luminance detail: the demosaic guesses colour
    scene = np.stack([grey * 0.9, grey, grey * 1.1 + 0.02 * (x > 48)], -1).astype(np.float32) / WB.astype(np.float32)
    layout = BayerLayout("RGGB", height, width)
    planes = layout.pack(mosaic_from_rgb(scene, "RGGB"))
    rendered = blend_clean_rendering(None, 0.0, planes, layout, WB)
    filtered = suppress_false_colour(rendered.copy(), WB, CLEAN)
    inside = (slice(4, -4), slice(4, -4))
    error = lambda rgb: np.abs(colour(rgb)[inside] - colour(scene)[inside]).mean()  # noqa: E731
    assert error(filtered) < 0.6 * error(rendered), (error(filtered), error(rendered))
    mse = lambda rgb: np.mean((rgb[inside] - scene[inside]) ** 2)  # noqa: E731
    assert mse(filtered) < mse(rendered)


def test_dark_and_negative_pixels_are_left_as_they_are_and_nothing_is_lifted():
    rgb = np.zeros((16, 20, 3), np.float32)
    rgb[:, 10:] = np.array([0.2, 0.1, 0.05], np.float32)
    rgb[3, 3] = [-1e-3, 2e-5, -4e-5]  # below black, where the neighbourhood is black too
    out = suppress_false_colour(rgb.copy(), WB, NOISY)
    np.testing.assert_array_equal(out[:, :7], rgb[:, :7])
    np.testing.assert_allclose(luminance(out), luminance(rgb), atol=1e-7)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("colour_filter", [CLEAN, NOISY], ids=["clean", "noisy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_the_filter_made_in_blocks_is_the_whole_images(colour_filter, dtype, monkeypatch):
    rgb = (np.random.default_rng(2).random((45, 70, 3)) * 0.8).astype(dtype)
    whole = suppress_false_colour(rgb.copy(), WB, colour_filter)
    monkeypatch.setattr(false_colour, "BAND", 7)
    monkeypatch.setattr(false_colour, "COLUMNS", 9)
    in_blocks = suppress_false_colour(rgb.copy(), WB, colour_filter)
    assert in_blocks.dtype == dtype
    np.testing.assert_allclose(in_blocks.astype(np.float32), whole.astype(np.float32), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("colour_filter", [CLEAN, NOISY], ids=["clean", "noisy"])
def test_a_black_speck_in_a_lit_neighbourhood_keeps_its_luminance(colour_filter):
    rgb = np.full((12, 12, 3), 0.2, np.float32)
    rgb[6, 6] = [2e-5, 1e-5, 3e-5]  # far below DARKEST, its neighbourhood bright
    out = suppress_false_colour(rgb.copy(), WB, colour_filter)
    np.testing.assert_allclose(luminance(out)[6, 6], luminance(rgb)[6, 6], rtol=1e-5)
    assert (out[6, 6] > 0).all()
