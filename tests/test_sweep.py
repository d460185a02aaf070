"""The noise sweep (``lowlight-raw evaluate --sweep``): its test scene, its cameras and white
balances, and the shadow and false-colour scores it adds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from lowlight_raw.pipeline.color import srgb_decode, srgb_encode
from lowlight_raw.training import sweep

SCENE = sweep.test_scene()


def test_the_test_scene_holds_small_dark_figures_thin_dark_lines_and_a_chart_on_black() -> None:
    ground = SCENE[: 2 * sweep.CROP // 3]
    dark = ground.max(axis=2) < 0.3
    labels, count = ndimage.label(dark)
    heights = [s[0].stop - s[0].start for s in ndimage.find_objects(labels)]
    figures = [h for h in heights if 10 <= h <= 26]  # a figure, or two that touch
    assert len(figures) >= 15
    widths = {int(dark[:, x].sum()) for x in (sweep.CROP // 2,)}  # down the middle: the kerbs only (2, 3, 2 px)
    assert widths <= {7, 8, 9, 10, 11, 12, 13, 14}  # 7 px of kerbs, plus at most a figure crossing
    kerb_rows = np.flatnonzero(dark[:, -30:-27].all(axis=1))  # between the pole and the right edge
    runs = np.split(kerb_rows, np.flatnonzero(np.diff(kerb_rows) > 1) + 1)
    assert sorted(len(r) for r in runs) == [2, 2, 3]
    bottom = SCENE[2 * sweep.CROP // 3 :]
    assert np.mean(bottom.max(axis=2) < 0.03) > 0.2  # a black surround
    patches = ndimage.label(bottom.max(axis=2) > 0.03)[1]
    assert patches == 24


def test_the_file_white_balance_changes_the_rendering_not_the_mosaic() -> None:
    daylight = sweep.Scene("test", SCENE, "daylight")
    uniwb = sweep.Scene("test", SCENE, "uniwb")
    level = sweep.LEVELS[2]
    one, other = sweep.sweep_case(daylight, level, "bayer"), sweep.sweep_case(uniwb, level, "bayer")
    np.testing.assert_array_equal(one.sample.raw, other.sample.raw)
    assert np.abs(one.reference - other.reference).mean() > 0.05  # UniWB renders green
    np.testing.assert_array_equal(other.sample.color.wb, [1.0, 1.0, 1.0])


def test_each_level_is_the_a7iii_at_its_iso() -> None:
    for level in sweep.LEVELS:
        profile = level.sensor().profile()
        a, b = sweep.A7III_NOISE[level.iso]
        assert profile.a == pytest.approx(a, rel=1e-6) and profile.b == pytest.approx(b, rel=0.01)
    assert [level.ratio for level in sweep.LEVELS] == [1, 3, 10, 30, 100, 300]
    assert sweep.LEVELS[-1].sensor().row_sigma > 0


def test_converter_made_linear_raws_are_clipped_at_zero() -> None:
    scene = sweep.Scene("test", SCENE, "daylight")
    level = sweep.LEVELS[4]  # x100: plenty of negative noise in the black surround
    plain, clipped = sweep.sweep_case(scene, level, "linear"), sweep.sweep_case(scene, level, "linear-clipped")
    assert plain.sample.raw.min() < 0 and clipped.sample.raw.min() == 0.0
    np.testing.assert_array_equal(clipped.sample.raw, np.maximum(plain.sample.raw, 0.0))
    channels = clipped.sample.raw.shape[0]
    np.testing.assert_array_equal(clipped.sample.inputs[channels:], plain.sample.inputs[channels:])  # noise map kept


def test_shadow_delta_l_sees_lifted_blacks_and_forgives_a_gain() -> None:
    assert sweep.shadow_delta_l(SCENE, SCENE) == pytest.approx(0.0, abs=1e-6)
    scaled = srgb_encode(srgb_decode(SCENE) * np.array([1.3, 0.9, 1.1]))
    assert abs(sweep.shadow_delta_l(scaled, SCENE)) < 0.3  # a per-channel gain is fitted away
    lifted = srgb_encode(srgb_decode(SCENE) + 0.01)  # blacks to dark grey
    assert sweep.shadow_delta_l(lifted, SCENE) > 5.0


def test_edge_chroma_sees_halos_at_edges_only() -> None:
    mask = sweep.edge_mask(SCENE)
    assert 0.05 < mask.mean() < 0.6
    linear = srgb_decode(SCENE)
    magenta = np.array([0.02, 0.0, 0.02])
    at_edges = srgb_encode(linear + mask[..., None] * magenta)
    elsewhere = srgb_encode(linear + (~mask)[..., None] * magenta)
    assert sweep.edge_chroma_error(SCENE, SCENE) == pytest.approx(0.0, abs=1e-9)
    assert sweep.edge_chroma_error(at_edges, SCENE) > 3.0
    assert sweep.edge_chroma_error(elsewhere, SCENE) < 1e-3


def test_the_sweep_command_writes_its_table_json_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    json_path, plot = tmp_path / "sweep.json", tmp_path / "sweep.png"
    code = sweep.main(["--sweep", "--scenes", "1", "--levels", "x10,x100", "--layouts", "bayer",
                       "--methods", "naive,classical,model", "--json", str(json_path), "--plot", str(plot)])
    assert code == 0
    table = json.loads(json_path.read_text())["bayer"]
    assert set(table) == {"x10", "x100"} and set(table["x10"]) == {"naive", "classical", "model"}
    assert table["x100"]["naive"]["psnr"] < table["x10"]["naive"]["psnr"]  # darker is noisier
    assert table["x100"]["model"]["psnr"] > table["x100"]["naive"]["psnr"] + 4  # 23.4 against 17.8 on the test scene
    assert "| bayer | x100 (6400) | model |" in capsys.readouterr().out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
