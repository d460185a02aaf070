"""The weights we ship: they load by default, really denoise, and tile invisibly."""

import numpy as np
import pytest
import tifffile
import torch

from lowlight_raw.color import CameraColor, camera_to_linear
from lowlight_raw.engine import EnhanceOptions, Enhancer
from lowlight_raw.model import DEFAULT_WEIGHTS, load_model
from lowlight_raw.synthetic import DngSpec, test_scene
from lowlight_raw.bayer import pack_bayer
from lowlight_raw.network_input import network_input
from lowlight_raw.noise import estimate_profile
from lowlight_raw.raw import read_raw
from lowlight_raw.tiling import run_tiled


@pytest.fixture(scope="module")
def shipped():
    return Enhancer(device="cpu")


def test_default_weights_are_shipped_with_a_card():
    model, card = load_model()
    assert DEFAULT_WEIGHTS.is_file() and DEFAULT_WEIGHTS.stat().st_size < 50 * 2**20
    assert card.extra.get("training", {}).get("steps", 0) > 0 or card.extra.get("steps", 0) > 0
    assert sum(p.numel() for p in model.parameters()) > 100_000


def _enhance_chart(shipped, make_dng, tmp_path, ratio, strength):
    source = make_dng(f"chart{ratio}.dng", height=160, width=240, ratio=ratio)
    options = EnhanceOptions("tiff", ev=float(np.log2(ratio)), strength=strength, linear_tiff=True,
                             output_dir=tmp_path / f"s{strength}")
    return tifffile.imread(shipped.enhance(source, options).output).astype(np.float32) / 65535


@pytest.mark.parametrize("ratio,min_reduction", [(100, 0.75), (300, 0.75)])
def test_flat_grey_is_denoised_without_a_colour_cast(make_dng, shipped, tmp_path, ratio, min_reduction):
    """On the chart's grey patch: far less noise than plain amplification, and still neutral."""
    model = _enhance_chart(shipped, make_dng, tmp_path, ratio, 1.0)[20:53, 190:230].reshape(-1, 3)
    naive = _enhance_chart(shipped, make_dng, tmp_path, ratio, 0.0)[20:53, 190:230].reshape(-1, 3)
    reduction = 1 - model.std(0).mean() / naive.std(0).mean()
    assert reduction >= min_reduction, f"×{ratio}: noise only reduced by {reduction:.0%}"
    spec = DngSpec()
    color = CameraColor(wb=1 / np.asarray(spec.as_shot_neutral), cam_xyz=spec.cam_xyz)
    grey = camera_to_linear(test_scene(160, 240), color)[30, 200]
    cast = np.abs(model.mean(0) / grey - 1).max()
    assert cast <= 0.05, f"×{ratio}: grey is off by {cast:.1%} ({model.mean(0)} vs {grey})"


@pytest.mark.parametrize("tile", [352, 416])
def test_shipped_model_tiles_invisibly(shipped, make_dng, tile):
    """With the default overlap, the tile size does not change the result (< 1e-3)."""
    photo = read_raw(make_dng(height=640, width=960, ratio=100))
    packed = pack_bayer(photo.mosaic, photo.layout)
    x = network_input(packed, 100.0, estimate_profile(packed))
    whole = run_tiled(shipped.model, x, torch.device("cpu"), tile=4096)
    tiled = run_tiled(shipped.model, x, torch.device("cpu"), tile=tile)
    assert np.abs(whole - tiled).max() < 1e-3
