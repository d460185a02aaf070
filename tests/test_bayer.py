"""Bayer unification and packing: every phase, odd sizes, exact round trips."""

import numpy as np
import pytest
import torch

from lowlight_raw.layouts.base import mosaic_from_rgb
from lowlight_raw.layouts.bayer import PATTERNS, BayerLayout, pack_bayer, simple_demosaic, unpack_bayer


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("shape", [(8, 10), (7, 9), (33, 50), (2, 3)])
def test_pack_puts_each_colour_in_its_plane(pattern, shape):
    h, w = shape
    rgb = np.zeros((h, w, 3), np.float32)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 0.7, 0.4, 0.1
    layout = BayerLayout(pattern, h, w)
    packed = pack_bayer(mosaic_from_rgb(rgb, pattern), layout)
    assert packed.shape == (4, *layout.packed_shape)
    np.testing.assert_allclose(packed[0], 0.7, rtol=1e-6)
    np.testing.assert_allclose(packed[1], 0.4, rtol=1e-6)
    np.testing.assert_allclose(packed[2], 0.4, rtol=1e-6)
    np.testing.assert_allclose(packed[3], 0.1, rtol=1e-6)


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("shape", [(8, 10), (7, 9), (31, 17)])
def test_unpack_inverts_pack(pattern, shape):
    mosaic = np.random.default_rng(1).random(shape, dtype=np.float32)
    layout = BayerLayout(pattern, *shape)
    np.testing.assert_array_equal(unpack_bayer(pack_bayer(mosaic, layout), layout), mosaic)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_crop_to_visible_aligns_full_resolution_output(pattern):
    h, w = 9, 12
    layout = BayerLayout(pattern, h, w)
    ph, pw = layout.packed_shape
    rows = np.arange(2 * ph)[:, None] * np.ones((1, 2 * pw))
    cropped = layout.crop_to_visible(rows)
    assert cropped.shape == (h, w)
    assert cropped[0, 0] == layout.offset[0]


def test_simple_demosaic_of_flat_colour_is_flat():
    packed = torch.tensor([0.5, 0.2, 0.2, 0.1]).reshape(1, 4, 1, 1).expand(1, 4, 6, 8)
    rgb = simple_demosaic(packed)
    assert rgb.shape == (1, 3, 12, 16)
    torch.testing.assert_close(rgb[0, :, 3, 3], torch.tensor([0.5, 0.2, 0.1]))
    torch.testing.assert_close(rgb, torch.tensor([0.5, 0.2, 0.1]).reshape(1, 3, 1, 1).expand(1, 3, 12, 16))


def test_simple_demosaic_keeps_the_channels_registered():
    """Every colour of a linear gradient is reproduced exactly where it is sampled and between."""
    yy, xx = np.mgrid[0:12, 0:16].astype(np.float32)
    scene = np.stack([0.01 * yy + 0.02 * xx, 0.03 * yy + 0.01 * xx + 0.1, 0.02 * yy + 0.03 * xx + 0.2])
    mosaic = np.where((yy % 2 == 0) & (xx % 2 == 0), scene[0], np.where((yy % 2 == 1) & (xx % 2 == 1), scene[2], scene[1]))
    packed = torch.from_numpy(pack_bayer(mosaic, BayerLayout("RGGB", 12, 16)))[None]
    rgb = simple_demosaic(packed)[0].numpy()
    np.testing.assert_allclose(rgb[:, 1:-1, 1:-1], scene[:, 1:-1, 1:-1], atol=1e-6)


def test_layout_rejects_non_bayer():
    with pytest.raises(ValueError):
        BayerLayout("RGBG", 4, 4)
