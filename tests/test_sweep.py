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


def test_the_optics_blur_to_an_mtf50_of_a_real_camera_in_linear_light() -> None:
    size = 128
    linear = np.full((size, size, 3), 0.2, np.float32)
    linear[size // 2, size // 2] = 0.9  # an impulse: its response is the point-spread function
    psf = srgb_decode(sweep.optical_blur(srgb_encode(linear))).astype(np.float64) - 0.2
    assert psf.sum(axis=(0, 1)) == pytest.approx([0.7] * 3, rel=1e-3)  # blur keeps the light
    mtf = np.abs(np.fft.rfft(psf[:, :, 1].sum(axis=0)))  # the line-spread function's spectrum
    mtf /= mtf[0]
    frequencies = np.fft.rfftfreq(size)
    mtf50 = float(np.interp(0.5, mtf[::-1], frequencies[::-1]))
    assert 0.27 <= mtf50 <= 0.33  # cycles/px; 0.300 measured
    assert mtf50 == pytest.approx(sweep.OPTICAL_MTF50, abs=0.005)


def test_the_blurred_test_scene_keeps_its_kerbs_and_figures() -> None:
    blurred = sweep.optical_blur(SCENE)
    column = srgb_decode(blurred[:, sweep.CROP // 2]).mean(axis=1)
    ground = np.median(srgb_decode(SCENE[: 2 * sweep.CROP // 3, sweep.CROP // 2]).mean(axis=1))
    for width, row in ((2, sweep.CROP // 6), (3, sweep.CROP // 3), (2, sweep.CROP // 2)):
        kerb = srgb_decode(SCENE[row, sweep.CROP // 2]).mean()
        kept = (ground - column[row : row + width].min()) / (ground - kerb)
        assert kept > (0.9 if width == 3 else 0.7)  # 0.97, 0.79, 0.85 measured
    dark = blurred[: 2 * sweep.CROP // 3].max(axis=2) < 0.35
    heights = [s[0].stop - s[0].start for s in ndimage.find_objects(ndimage.label(dark)[0])]
    assert len([h for h in heights if 10 <= h <= 26]) >= 15
    assert np.abs(blurred - SCENE).max() > 0.3  # edges did soften


def test_the_sweep_scenes_are_seen_through_the_optics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweep.debian_photos, "fetch_photos", lambda folder, manifest: [])
    (scene,) = sweep.sweep_scenes(count=0)
    np.testing.assert_allclose(scene.srgb, sweep.optical_blur(SCENE), atol=1e-6)


def test_the_bm3d_oracle_denoises_the_classical_rendering_over_a_wide_sigma_grid(monkeypatch: pytest.MonkeyPatch) -> None:
    case = sweep.sweep_case(sweep.Scene("test", SCENE, "daylight"), sweep.LEVELS[2], "bayer")
    classical = sweep.classical_srgb(case)
    error = float(np.sqrt(np.mean((classical.astype(np.float64) - case.reference) ** 2)))
    calls = []

    def fake_cbm3d(srgb: np.ndarray, sigma: float) -> np.ndarray:
        calls.append((srgb.shape, sigma))
        assert srgb.shape[0] in (sweep.CROP // 2, sweep.CROP)
        expected = sweep.centre(classical) if srgb.shape[0] == sweep.CROP // 2 else classical
        np.testing.assert_array_equal(srgb, expected)  # the classical rendering, not the naive one
        if sigma != pytest.approx(2.0 * error):
            return srgb
        return sweep.centre(case.reference) if srgb.shape[0] == sweep.CROP // 2 else case.reference

    monkeypatch.setattr(sweep, "cbm3d", fake_cbm3d)
    out = sweep.oracle(case, "bm3d")
    factors = [sigma / error for shape, sigma in calls[:-1]]
    assert len(factors) >= 5 and min(factors) <= 0.35 and max(factors) >= 2.0
    assert calls[-1] == ((sweep.CROP, sweep.CROP, 3), pytest.approx(2.0 * error))  # the best σ, on the whole image
    assert out.shape == case.reference.shape


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
    assert table["x100"]["model"]["psnr"] > table["x100"]["naive"]["psnr"] + 4  # 25.7 against 18.5 on the (blurred) test scene
    assert "| bayer | x100 (6400) | model |" in capsys.readouterr().out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
