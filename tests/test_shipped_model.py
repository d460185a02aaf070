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


def _psnr(a, b):
    return 10 * np.log10(1.0 / np.mean((a - b) ** 2))


@pytest.mark.parametrize("ratio,min_gain_db", [(100, 6.0), (300, 8.0)])
def test_model_beats_naive_amplification(make_dng, shipped, tmp_path, ratio, min_gain_db):
    source = make_dng(height=160, width=240, ratio=ratio)
    ev = float(np.log2(ratio))
    model_out = shipped.enhance(source, EnhanceOptions("tiff", ev=ev, linear_tiff=True, output_dir=tmp_path / "m"))
    naive_out = shipped.enhance(source, EnhanceOptions("tiff", ev=ev, strength=0.0, linear_tiff=True,
                                                       output_dir=tmp_path / "n"))
    spec = DngSpec()
    color = CameraColor(wb=1 / np.asarray(spec.as_shot_neutral), cam_xyz=spec.cam_xyz)
    reference = camera_to_linear(test_scene(160, 240), color)
    crop = (slice(4, -4), slice(4, -4))  # the bilinear baseline is weakest at the border: be fair to it
    model_img = tifffile.imread(model_out.output).astype(np.float32)[crop] / 65535
    naive_img = tifffile.imread(naive_out.output).astype(np.float32)[crop] / 65535
    gain = _psnr(model_img, reference[crop]) - _psnr(naive_img, reference[crop])
    assert gain >= min_gain_db, f"×{ratio}: model is only {gain:.1f} dB better than naive"


@pytest.mark.parametrize("tile", [208, 256])
def test_shipped_model_tiles_invisibly(shipped, make_dng, tile):
    """With the default overlap, the tile size does not change the result (< 1e-3)."""
    photo = read_raw(make_dng(height=480, width=640, ratio=100))
    packed = pack_bayer(photo.mosaic, photo.layout)
    x = network_input(packed, 100.0, estimate_profile(packed))
    whole = run_tiled(shipped.model, x, torch.device("cpu"), tile=4096)
    tiled = run_tiled(shipped.model, x, torch.device("cpu"), tile=tile)
    assert np.abs(whole - tiled).max() < 1e-3
