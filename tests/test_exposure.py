"""Automatic exposure: dark scenes are brought up, bright ones left alone, lights not blown."""

import math

import numpy as np
import pytest

from lowlight_raw.layouts.bayer import BayerLayout
from lowlight_raw.options import check_manual_ev
from lowlight_raw.pipeline.color import CameraColor
from lowlight_raw.pipeline.exposure import auto_ev

NEUTRAL = CameraColor(wb=np.ones(3), cam_xyz=np.eye(3))


def _packed(level, h=200, w=300, seed=0):
    rng = np.random.default_rng(seed)
    return (level * rng.uniform(0.2, 1.8, (4, h, w))).astype(np.float32)


@pytest.mark.parametrize("ratio", [10, 100, 300])
def test_dark_scene_is_brought_to_target(ratio):
    ev = auto_ev(_packed(0.15 / ratio), NEUTRAL, BayerLayout)
    assert ev == pytest.approx(math.log2(ratio), abs=0.3)


def test_bright_scene_gets_zero_ev():
    assert auto_ev(_packed(0.2), NEUTRAL, BayerLayout) == 0.0


def test_light_sources_are_not_blown_when_they_cover_much_of_the_frame():
    packed = _packed(0.15 / 100)
    packed[:, :, :30] = 0.02  # 10 % of the frame is a lamp 20× brighter than the mean
    ev = auto_ev(packed, NEUTRAL, BayerLayout)
    assert 0.02 * 2**ev <= 1.0 + 1e-6


def test_manual_ev_range():
    assert check_manual_ev(6) == 6.0
    for bad in (13, -5, float("nan")):
        with pytest.raises(ValueError):
            check_manual_ev(bad)
