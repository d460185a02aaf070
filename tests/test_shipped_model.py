"""The weights we ship: they load by default, really denoise, and tile invisibly."""

import numpy as np
import pytest
import tifffile
import torch

from lowlight_raw.engine import EnhanceOptions, Enhancer
from lowlight_raw.files.raw import read_raw
from lowlight_raw.networks.catalog import SHIPPED_MODELS
from lowlight_raw.networks.weights import load_model
from lowlight_raw.pipeline.network_input import network_input
from lowlight_raw.pipeline.noise import estimate_profile
from lowlight_raw.pipeline.tiling import run_tiled
from lowlight_raw.testing.synthetic import DngSpec, dark_exposure, write_cfa_dng


@pytest.fixture(scope="module")
def shipped():
    return Enhancer(device="cpu")


def test_default_weights_are_shipped_with_a_card():
    model, card = load_model(SHIPPED_MODELS["fast"]["bayer"])
    assert SHIPPED_MODELS["fast"]["bayer"].stat().st_size < 50 * 2**20
    assert card.extra.get("training", {}).get("steps", 0) > 0 or card.extra.get("steps", 0) > 0
    assert sum(p.numel() for p in model.parameters()) > 100_000


def _enhance_grey(shipped, tmp_path, ratio, strength):
    spec = DngSpec()
    scene = np.full((200, 300, 3), 0.3, np.float32) * np.asarray(spec.as_shot_neutral, np.float32)
    source = write_cfa_dng(tmp_path / f"grey{ratio}.dng", dark_exposure(scene, spec, ratio, 2e-4, 2e-7,
                                                                          np.random.default_rng(0)), spec)
    options = EnhanceOptions("tiff", ev=float(np.log2(ratio)), strength=strength, linear_tiff=True,
                             output_dir=tmp_path / f"s{strength}")
    return tifffile.imread(shipped.enhance(source, options).output).astype(np.float32) / 65535


def _card(image):
    return image[20:-20, 20:-20].reshape(-1, 3)  # a neutral card: linear sRGB 0.3 after white balance


@pytest.fixture(scope="module")
def licence_clean():
    return Enhancer("fast-licence-clean", device="cpu")


@pytest.mark.parametrize("model_name", ["fast", "fast-licence-clean"])
@pytest.mark.parametrize("ratio", [100, 300])
def test_grey_card_is_denoised_and_stays_neutral(request, tmp_path, ratio, model_name):
    """A flat grey card, through each shipped Bayer network: far less noise than plain
    amplification, and no colour cast."""
    enhancer = request.getfixturevalue("shipped" if model_name == "fast" else "licence_clean")
    model = _card(_enhance_grey(enhancer, tmp_path, ratio, 1.0))
    naive = _card(_enhance_grey(enhancer, tmp_path, ratio, 0.0))
    reduction = 1 - model.std(0).mean() / naive.std(0).mean()
    assert reduction >= 0.8, f"×{ratio}: noise only reduced by {reduction:.0%}"
    cast = np.abs(model.mean(0) / 0.3 - 1).max()
    assert cast <= 0.06, f"×{ratio}: grey is off by {cast:.1%} ({model.mean(0)})"


def test_licence_clean_weights_are_shipped_and_trained_without_bsds500():
    """The second shipped Bayer network: its card says it saw no BSDS500 photo."""
    _, card = load_model(SHIPPED_MODELS["fast-licence-clean"]["bayer"])
    assert card.extra["data"]["sources"] == "licence-clean"
    assert "bsds500" not in card.extra["data"]["photos_per_source"]


@pytest.mark.parametrize("tile", [352, 416])
def test_shipped_model_tiles_invisibly(shipped, make_dng, tile):
    """With the default overlap, the tile size does not change the result (< 1e-3), in float32 (in
    bf16 the rounding itself depends on a tile's shape, by up to 5e-3 here, seams or not)."""
    photo = read_raw(make_dng(height=640, width=960, ratio=100))
    packed = photo.layout.pack(photo.visible)
    x = network_input(packed, 100.0, estimate_profile(packed))
    whole = run_tiled(shipped.network, x, torch.device("cpu"), tile=4096, bf16=False)
    tiled = run_tiled(shipped.network, x, torch.device("cpu"), tile=tile, bf16=False)
    assert np.abs(whole - tiled).max() < 1e-3


def test_image_edges_are_as_clean_as_the_interior(shipped, tmp_path):
    """The outermost pixels on every side are no worse than the middle of the frame."""
    error = np.abs(_enhance_grey(shipped, tmp_path, 100, 1.0) - 0.3).mean(axis=2)
    interior = error[20:-20, 20:-20].mean()
    sides = {"top": error[:2], "bottom": error[-2:], "left": error[:, :2], "right": error[:, -2:]}
    for side, band in sides.items():
        assert band.mean() <= 1.5 * interior, f"{side} edge: error {band.mean():.4f} vs {interior:.4f} inside"


@pytest.mark.parametrize("ev", [-2.0, -4.0])
def test_negative_ev_darkens_evenly(shipped, tmp_path, ev):
    """A bright shot taken down by --ev: the right level, no cast, no dark band or edge."""
    spec = DngSpec()
    scene = np.full((200, 300, 3), 0.5, np.float32) * np.asarray(spec.as_shot_neutral, np.float32)
    source = write_cfa_dng(tmp_path / "bright.dng", dark_exposure(scene, spec, 1.0, 2e-4, 2e-7,
                                                                    np.random.default_rng(0)), spec)
    options = EnhanceOptions("tiff", ev=ev, linear_tiff=True, output_dir=tmp_path)
    out = tifffile.imread(shipped.enhance(source, options).output).astype(np.float64) / 65535
    expected = 0.5 * 2.0**ev
    np.testing.assert_allclose(out.mean(axis=(0, 1)), expected, rtol=0.06)
    for profile in (out.mean(axis=(1, 2)), out.mean(axis=(0, 2))):  # every row, every column
        np.testing.assert_allclose(profile, expected, rtol=0.06)
