"""Tiled inference equals one whole-image pass, whatever the tile size."""

import numpy as np
import pytest
import torch

from lowlight_raw.errors import Cancelled
from lowlight_raw.model import SIDUNet, UNetConfig
from lowlight_raw.tiling import choose_device, run_tiled


@pytest.fixture(scope="module")
def random_net():
    torch.manual_seed(0)
    net = SIDUNet(UNetConfig(width=8, depth=4)).eval()
    torch.nn.init.normal_(net.head.weight, std=0.1)  # a zero head would make every pass trivially equal
    return net


@pytest.mark.parametrize("tile,overlap", [(48, 16), (64, 32), (96, 48)])
def test_tiled_matches_untiled(random_net, tile, overlap):
    x = np.random.default_rng(0).random((8, 101, 163), dtype=np.float32)  # not multiples of 8
    whole = run_tiled(random_net, x, torch.device("cpu"), tile=4096)
    tiled = run_tiled(random_net, x, torch.device("cpu"), tile=tile, overlap=overlap)
    assert whole.shape == tiled.shape == (202, 326, 3)
    assert np.abs(tiled - whole).max() < 1e-3


def test_progress_and_cancel(random_net):
    x = np.zeros((8, 64, 64), dtype=np.float32)
    fractions = []
    run_tiled(random_net, x, torch.device("cpu"), tile=32, overlap=8, on_progress=fractions.append)
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) > 1
    with pytest.raises(Cancelled):
        run_tiled(random_net, x, torch.device("cpu"), tile=32, overlap=8, should_cancel=lambda: True)


def test_device_choice():
    assert choose_device("auto").type in {"cpu", "cuda", "mps"}
    assert choose_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            choose_device("cuda")
