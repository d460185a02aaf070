"""The evaluation's baselines against what users have: darktable's denoise through a real
``darktable-cli`` on real DNGs with an XMP sidecar, tuned CBM3D, and the clean condition."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
import skimage.data

from lowlight_raw.layouts.base import mosaic_from_rgb
from lowlight_raw.layouts.xtrans import pattern_letters
from lowlight_raw.networks.sid_unet import SIDUNet, UNetConfig
from lowlight_raw.networks.weights import load_model, save_weights
from lowlight_raw.pipeline.color import camera_to_linear
from lowlight_raw.pipeline.noise import NoiseProfile
from lowlight_raw.training import darktable_baseline as dt
from lowlight_raw.training import evaluate
from lowlight_raw.training.unprocess import sample_params

HAVE_DARKTABLE = shutil.which("darktable-cli") is not None and shutil.which("exiftool") is not None
HEIGHT, WIDTH = 64, 96
COLOR = sample_params(np.random.default_rng(1)).color
INNER = (slice(8, -8), slice(8, -8))  # away from the demosaic's borders


def dark_raw(scene_camera: np.ndarray, ratio: float, a: float, b: float, seed: int, pattern: str = "RGGB") -> dt.DarkRaw:
    """A ``pattern`` mosaic of ``scene_camera`` shot ``ratio``× dark on a 14-bit sensor (noise-free when a = b = 0)."""
    clean = mosaic_from_rgb(scene_camera, pattern) / ratio
    rng = np.random.default_rng(seed)
    noisy = rng.poisson(clean / a) * a + rng.normal(0.0, np.sqrt(b), clean.shape) if a > 0 else clean
    return dt.DarkRaw(noisy.astype(np.float32), 1024.0, 16383.0, COLOR, ratio, NoiseProfile(a, b, "test"), pattern)


def exiftool_history(tif: Path) -> dict[str, bytes]:
    """``{operation: params}`` of the darktable history embedded in an exported file.

    darktable writes params as hex, or long ones as ``gz`` + 2 digits + base64 of zlib data.
    """
    out = subprocess.run(
        ["exiftool", "-a", "-s3", "-XMP-darktable:HistoryOperation", "-XMP-darktable:HistoryParams", str(tif)],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    operations, params = out[: len(out) // 2], out[len(out) // 2 :]
    decoded = [zlib.decompress(base64.b64decode(p[4:])) if p.startswith("gz") else bytes.fromhex(p) for p in params]
    return dict(zip(operations, decoded))


def test_params_have_darktable_4_2_struct_sizes_and_fields() -> None:
    assert len(dt.exposure_params(6.64)) == 24
    params = dt.denoise_params(NoiseProfile(3e-4, 1e-6, "t"), dt.DenoiseSetting(0.5, new_vst=False))
    assert len(params) == 412
    fields = dt.DENOISE_STRUCT.unpack(params)
    assert fields[2] == 0.5 and fields[8] == pytest.approx(3e-4) and fields[11] == pytest.approx(1e-6)
    assert fields[14] == dt.NLMEANS_AUTO and fields[-2] == 0  # non-local means auto, classic VST


@pytest.mark.darktable
@pytest.mark.skipif(not HAVE_DARKTABLE, reason="darktable-cli or exiftool not installed")
@pytest.mark.parametrize("pattern", ["RGGB", pattern_letters((0, 0))], ids=["Bayer", "X-Trans"])
def test_darktable_runs_our_exposure_and_renders_our_colours(tmp_path: Path, pattern: str) -> None:
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    scene = np.stack([0.1 + 0.3 * xx / WIDTH, 0.2 + 0.2 * yy / HEIGHT, 0.15 + 0.1 * (xx + yy) / (HEIGHT + WIDTH)], -1)
    (linear,) = dt.render([dark_raw(scene.astype(np.float32), 4.0, 0.0, 0.0, seed=0, pattern=pattern)], None, work=tmp_path)
    # +2 EV of a noise-free raw: darktable's white balance and matrix give our pipeline's colours
    got = linear[INNER].reshape(-1, 3).mean(0)
    want = camera_to_linear(scene, COLOR)[INNER].reshape(-1, 3).mean(0)
    assert np.allclose(got / want, 1.0, atol=0.015), got / want  # measured within 1 %
    history = exiftool_history(tmp_path / "out" / "case0000.tif")
    assert history["exposure"] == dt.exposure_params(2.0) and "denoiseprofile" not in history


@pytest.mark.darktable
@pytest.mark.skipif(not HAVE_DARKTABLE, reason="darktable-cli or exiftool not installed")
def test_darktable_denoise_runs_and_removes_most_of_the_noise(tmp_path: Path) -> None:
    flat = np.full((HEIGHT, WIDTH, 3), 0.3, dtype=np.float32) / COLOR.wb.astype(np.float32)
    raw = dark_raw(flat, 100.0, 3e-4, 1e-6, seed=2)
    setting = dt.DenoiseSetting(1.0, new_vst=False)
    (plain,) = dt.render([raw], None)
    (denoised,) = dt.render([raw], setting, work=tmp_path)
    noise_left = denoised[INNER].reshape(-1, 3).std(0) / plain[INNER].reshape(-1, 3).std(0)
    assert (noise_left < 0.2).all(), noise_left  # measured 0.10–0.11
    assert np.allclose(denoised[INNER].reshape(-1, 3).mean(0), 0.3, rtol=0.1)
    history = exiftool_history(tmp_path / "out" / "case0000.tif")
    assert history["denoiseprofile"] == dt.denoise_params(raw.profile, setting)
    assert history["exposure"] == dt.exposure_params(np.log2(100.0))


@pytest.mark.parametrize("layout", ["bayer", "xtrans"])
def test_the_darktable_baseline_gets_each_cases_mosaic_in_its_canonical_phase(layout: str) -> None:
    (case,) = evaluate.build_cases([skimage.data.astronaut()], "x100", 1, seed=3, patch=16, layout=layout)
    raw = evaluate.dark_raw(case)
    geometry = evaluate.layout_class(layout).for_pattern(raw.pattern, *raw.mosaic.shape)
    np.testing.assert_array_equal(geometry.pack(raw.mosaic), case.sample.raw)
    assert len(raw.pattern) == (4 if layout == "bayer" else 36)


def test_bm3d_sigma_is_tuned_from_the_grid_to_the_noise() -> None:
    images = [skimage.data.astronaut()]
    weak, strong = {"sigma": evaluate.BM3D_SIGMAS[0]}, {"sigma": evaluate.BM3D_SIGMAS[-2]}
    two = evaluate.TunedBaseline((weak, strong), evaluate.BASELINES["bm3d"].run)  # two grid points keep it fast
    assert evaluate.tune(evaluate.build_cases(images, "x300", 1, seed=3, patch=16), two) == strong
    assert evaluate.tune(evaluate.build_cases(images, "clean", 1, seed=3, patch=16), two) == weak


def test_clean_condition_scores_bilinear_against_the_truth() -> None:
    images = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea()]
    clean = evaluate.build_cases(images, "clean", 2, seed=4, patch=32)
    assert all(c.sample.ratio == 1.0 and c.sample.sensor.profile().a < 6e-6 for c in clean)
    model = SIDUNet(UNetConfig(width=4, depth=2)).eval()
    table = evaluate.evaluate(model, images, count=2, tune_count=1, grey_count=1, patch=32,
                              methods=("naive", "model"), conditions=("clean", "x1-10"))
    assert set(table) == {"clean", "x1-10"} and set(table["clean"]["settings"]) == set()
    assert table["clean"]["naive"]["psnr"] > table["x1-10"]["naive"]["psnr"] + 3.0
    assert table["clean"]["naive"]["psnr"] > 28.0  # only the demosaic's error and a little noise
    assert "| clean | naive |" in evaluate.format_table(table)


def test_command_skips_darktable_in_one_line_and_writes_the_card(tmp_path: Path, tiny_weights: Path, monkeypatch, capsys) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    photos = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea()]
    np.savez(cache / "test.npz", **{f"{i:04d}": p for i, p in enumerate(photos)})
    entries = [{"name": f"photo{i}", "source": "skimage", "licence": "CC0", "attribution": "", "downscale": 1,
                "size": list(p.shape[:2])} for i, p in enumerate(photos)]
    (cache / "sources.json").write_text(json.dumps({"train": [], "validation": [], "test": entries}))
    model, card = load_model(tiny_weights)
    weights = tmp_path / "tiny.pt"  # --write-card rewrites the card
    save_weights(model, weights, card.name)
    weight_bytes = weights.read_bytes()
    monkeypatch.setenv("PATH", str(tmp_path))  # no darktable-cli here
    status = evaluate.main(["--weights", str(weights), "--cache", str(cache), "--methods", "darktable,model",
                            "--conditions", "clean", "--count", "1", "--tune-count", "1", "--grey-count", "1",
                            "--threads", "1", "--json", str(tmp_path / "table.json"), "--write-card"])
    out, err = capsys.readouterr()
    assert status == 0
    assert err.strip().splitlines() == ["lowlight-raw evaluate: darktable-cli not found: the darktable rows are skipped"]
    assert "| clean | naive |" in out and "| clean | model |" in out and "darktable" not in out
    table = json.loads((tmp_path / "table.json").read_text())
    assert set(table["clean"]) >= {"naive", "model"} and "darktable" not in table["clean"]
    assert load_model(weights)[1].extra["evaluation"]["table"] == table
    assert weights.read_bytes() == weight_bytes  # the weights (and the sha256 others record) are untouched
