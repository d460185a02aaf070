"""Synthetic-data pipeline, training loop and evaluation metrics of the low-light network."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import skimage.data
import torch

from lowlight_raw.layouts.base import mosaic_from_rgb
from lowlight_raw.layouts.bayer import PATTERNS
from lowlight_raw.networks.sid_unet import SIDUNet, UNetConfig
from lowlight_raw.networks.weights import load_model
from lowlight_raw.pipeline.network_input import network_input
from lowlight_raw.pipeline.noise import NoiseProfile
from lowlight_raw.training import evaluate, sensor_noise, sources, train
from lowlight_raw.training.dataset import SyntheticBatches, augment, make_sample
from lowlight_raw.training.sensor_noise import SensorModel, simulate_dark_raw
from lowlight_raw.training.unprocess import inverse_smoothstep, render_srgb, sample_params, unprocess

REPO = Path(__file__).resolve().parents[1]
QUIET_SENSOR = SensorModel(bits=14, black=512.0, system_gain=1e-4, read_sigma=0.01, row_fraction=0.0, tukey_lambda=None)


def test_unprocess_then_render_is_identity() -> None:
    rng = np.random.default_rng(0)
    srgb = rng.uniform(0.02, 0.98, size=(16, 16, 3))
    for _ in range(5):
        params = sample_params(rng)
        camera = unprocess(srgb, params, tone_curve=False)
        assert camera.min() >= 0.0 and camera.max() <= 1.0
        back = render_srgb(camera * params.brightness, params.color)
        np.testing.assert_allclose(back, srgb, atol=2e-5)


def test_inverse_smoothstep_inverts_the_tone_curve() -> None:
    x = np.linspace(0.0, 1.0, 101)
    np.testing.assert_allclose(inverse_smoothstep(3 * x**2 - 2 * x**3), x, atol=1e-6)


def test_mosaic_takes_each_site_from_its_colour() -> None:
    rgb = np.stack([np.full((4, 4), v) for v in (1.0, 2.0, 3.0)], axis=-1)
    assert mosaic_from_rgb(rgb, "GRBG")[:2, :2].tolist() == [[2.0, 1.0], [3.0, 2.0]]
    assert mosaic_from_rgb(rgb, "BGGR")[:2, :2].tolist() == [[3.0, 2.0], [2.0, 1.0]]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_packed_planes_line_up_with_the_target_in_every_phase(pattern: str) -> None:
    rng = np.random.default_rng(1)
    crop = rng.uniform(0.1, 0.9, size=(32, 32, 3)).astype(np.float32)
    sample = make_sample(crop, rng, pattern=pattern, ratio=1.0, sensor=QUIET_SENSOR)
    assert sample.inputs.shape == (8, 16, 16) and sample.target.shape == (3, 32, 32)
    planes, t = sample.inputs[:4], sample.target
    for plane, expected in zip(planes, (t[0, 0::2, 0::2], t[1, 0::2, 1::2], t[1, 1::2, 0::2], t[2, 1::2, 1::2])):
        np.testing.assert_allclose(plane, expected, atol=2e-3)


def test_augment_keeps_rgb_and_shape() -> None:
    crop = np.arange(4 * 4 * 3, dtype=np.float32).reshape(4, 4, 3)
    rng = np.random.default_rng(2)
    outs = [augment(crop, rng) for _ in range(16)]
    assert all(o.shape == crop.shape for o in outs)
    assert all(sorted(o[..., 0].ravel()) == sorted(crop[..., 0].ravel()) for o in outs)
    assert len({o.tobytes() for o in outs}) > 4  # several of the 8 orientations occur


@pytest.mark.parametrize("tukey", [None, -0.2])
def test_noise_statistics_match_the_profile_the_network_is_told(tukey: float | None) -> None:
    sensor = SensorModel(bits=14, black=1024.0, system_gain=2.0, read_sigma=6.0, row_fraction=0.1, tukey_lambda=tukey)
    profile = sensor.profile()
    rng = np.random.default_rng(3)
    ratio = 50.0
    for level in (0.0, 0.2, 1.0):
        dark = simulate_dark_raw(np.full((512, 512), level), ratio, sensor, rng)
        x = level / ratio
        assert dark.mean() == pytest.approx(x, abs=3e-5)
        assert dark.var() == pytest.approx(profile.a * x + profile.b, rel=0.04)


def test_sampled_sensors_follow_the_darktable_ranges() -> None:
    rng = np.random.default_rng(4)
    profiles = [sensor_noise.sample_sensor(rng).profile() for _ in range(300)]
    a = np.array([p.a for p in profiles])
    b = np.array([p.b for p in profiles])
    assert a.min() >= sensor_noise.A_RANGE[0] * 0.999 and a.max() <= sensor_noise.A_RANGE[1] * 1.001
    assert b.min() >= sensor_noise.B_RANGE[0] * 0.5 and b.max() <= sensor_noise.B_RANGE[1] * 1.01
    assert np.corrcoef(np.log(a), np.log(b))[0, 1] > 0.5  # read noise grows with the gain
    ratios = np.array([sensor_noise.sample_ratio(rng) for _ in range(2000)])
    assert 1.0 <= ratios.min() and ratios.max() <= 300.0
    for (lo, hi), share in sensor_noise.RATIO_BANDS.items():  # most dark samples at x3-x100, where rescued photos are
        assert np.mean((ratios >= lo) & (ratios < hi)) == pytest.approx(share, abs=0.04)


def test_a_fifth_of_the_samples_are_clean_well_exposed_photos() -> None:
    rng = np.random.default_rng(5)
    draws = [sensor_noise.sample_exposure(rng) for _ in range(2000)]
    clean = [(s, r) for s, r in draws if r == 1.0]
    assert len(clean) / len(draws) == pytest.approx(sensor_noise.CLEAN_SHARE, abs=0.03)
    lo, hi = sensor_noise.CLEAN_A_RANGE
    assert all(lo * 0.999 <= s.profile().a <= hi * 1.001 for s, _ in clean)
    dark = [s.profile().a for s, r in draws if r != 1.0]
    assert min(dark) >= sensor_noise.A_RANGE[0] * 0.999


def test_network_input_amplifies_clips_and_appends_sigma() -> None:
    packed = np.array([-0.02, 0.001, 0.004, 0.02], dtype=np.float32).reshape(4, 1, 1)
    profile = NoiseProfile(a=1e-4, b=1e-7, source="test")
    out = network_input(packed, 100.0, profile)
    assert out.shape == (8, 1, 1) and out.dtype == np.float32
    np.testing.assert_allclose(out[:4, 0, 0], [-1.0, 0.1, 0.4, 1.0], atol=1e-6)
    y = np.clip(out[:4, 0, 0], 0.0, 1.0)
    np.testing.assert_allclose(out[4:, 0, 0], np.sqrt(100 * 1e-4 * y + 100**2 * 1e-7), rtol=1e-5)


def test_blacks_clipped_at_zero_get_back_the_mean_of_their_noise() -> None:
    """A converter's linear DNG clips black's noise at zero: its dark mean is then 0.4 σ too high.
    Each zero is given the mean of a sample at or below zero, so the network sees black as black;
    a raw that kept its negatives is amplified exactly as before."""
    rng = np.random.default_rng(0)
    profile = NoiseProfile(a=1e-4, b=4e-6, source="test")  # σ at black: 0.002
    black = rng.normal(0.0, 0.002, size=(3, 128, 128)).astype(np.float32)
    clipped = np.maximum(black, 0.0)
    assert network_input(clipped, 1.0, profile)[:3].mean() == pytest.approx(0.0, abs=2e-5)
    assert clipped.mean() == pytest.approx(0.002 * np.sqrt(1 / (2 * np.pi)), rel=0.02)  # what it was
    kept = network_input(black, 50.0, profile)
    np.testing.assert_array_equal(kept[:3], np.clip(50.0 * black, -1.0, 1.0))


def test_a_clipped_dark_grey_gets_stand_ins_for_its_level_not_blacks() -> None:
    """Zeros in a dark grey (here ½ σ above black) stand for samples nearer zero than black's: with
    the level around each one, the mended mean is the grey's (measured: within 0.012 σ for greys of
    0 … 2 σ, three seeds), where black's stand-in for every zero puts it 0.04–0.05 σ too low."""
    from lowlight_raw.pipeline.network_input import ZERO_MEAN_IN_SIGMAS, clipped_stand_ins

    rng = np.random.default_rng(1)
    profile = NoiseProfile(a=1e-4, b=4e-6, source="test")
    grey = 0.001  # σ there: sqrt(1e-4 · 0.001 + 4e-6) ≈ 0.00202
    sigma = np.sqrt(profile.a * grey + profile.b)
    clipped = np.maximum(rng.normal(grey, sigma, size=(256, 256)), 0.0).astype(np.float32)
    mended = clipped_stand_ins(clipped, profile)
    assert mended.mean() == pytest.approx(grey, abs=0.02 * sigma)
    np.testing.assert_array_equal(mended[clipped > 0], clipped[clipped > 0])  # the measured samples kept
    blacks = np.where(clipped == 0.0, ZERO_MEAN_IN_SIGMAS * np.sqrt(profile.b), clipped)
    assert blacks.mean() < grey - 0.03 * sigma


def test_a_raw_with_few_zeros_is_not_taken_for_clipped() -> None:
    from lowlight_raw.pipeline.network_input import clipped_at_black

    bright = np.full((3, 100, 100), 0.3, dtype=np.float32)
    bright[0, 0, :50] = 0.0  # 0.17 %: a few dead pixels
    assert not clipped_at_black(bright)
    bright[:, :10] = 0.0
    assert clipped_at_black(bright)


def test_loss_decreases_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(5)
    crops = [image[100:164, 200:264].astype(np.float32) / 255.0 for image in (skimage.data.astronaut(), skimage.data.coffee())]
    samples = [make_sample(crop, rng, 100.0, sensor_noise.sample_sensor(rng)) for crop in crops]
    inputs, target, mats = train.to_tensors(samples, torch.device("cpu"))
    model = SIDUNet(UNetConfig(width=8, depth=3))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(20):
        loss = train.srgb_loss(model, inputs, target, mats)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.95 * losses[0] and min(losses[-5:]) < min(losses[:5])


def test_learning_rate_warms_up_then_decays() -> None:
    assert train.learning_rate(0.0, 1.0) < 0.05
    assert train.learning_rate(0.02, 1.0) == pytest.approx(1.0)
    assert train.learning_rate(0.5, 1.0) == pytest.approx(0.52, abs=0.01)
    assert train.learning_rate(1.0, 1.0) == pytest.approx(0.01)


@pytest.fixture
def photo_cache(tmp_path: Path) -> Path:
    """A training cache of two bundled photos (no BSDS500 needed)."""
    cache = tmp_path / "cache"
    cache.mkdir()
    photos = [skimage.data.astronaut(), skimage.data.coffee()]
    for split in ("train", "validation"):
        np.savez(cache / f"{split}.npz", **{f"{i:04d}": p for i, p in enumerate(photos)})
    entries = [{"name": f"skimage.data.{n}", "source": "skimage", "licence": lic, "attribution": "", "downscale": 1,
                "size": list(p.shape[:2])} for n, lic, p in zip(("astronaut", "coffee"), ("public domain (NASA)", "CC0"), photos)]
    (cache / "sources.json").write_text(json.dumps({"train": entries, "validation": entries, "test": []}))
    return cache


def test_training_runs_exports_and_resumes(tmp_path: Path, photo_cache: Path) -> None:
    run = tmp_path / "run"
    weights = tmp_path / "tiny.pt"
    common = ["--run-dir", str(run), "--cache", str(photo_cache), "--width", "4", "--depth", "2", "--batch", "2",
              "--patch", "32", "--threads", "1", "--log-every", "1", "--export", str(weights)]
    assert train.main(common + ["--steps", "2"]) == 0
    log = (run / "train.log").read_text()
    assert "step 2 loss" in log and "# stop step 2" in log and "ema_psnr" in log
    model, card = load_model(weights)
    assert card.config == UNetConfig(width=4, depth=2, base="naive")  # new runs add their residual to the plain demosaic
    assert card.extra["training"]["steps"] == 2 and card.extra["data"]["train_photos"] == 2
    assert card.extra["data"]["sources"] == "all" and card.extra["data"]["licences"]["CC0"] == 1
    assert card.extra["noise_model"]["ratio_range"] == [1.0, 300.0]
    assert train.main(common + ["--steps", "3", "--resume"]) == 0
    log = (run / "train.log").read_text()
    assert "# start step 2" in log and "# stop step 3" in log
    assert torch.load(run / "checkpoint.pt", weights_only=False)["step"] == 3


def test_worker_processes_make_distinct_batches_and_train(tmp_path: Path, photo_cache: Path) -> None:
    """--workers N: batches come from N processes, each with its own stream, and training runs."""
    photos = [skimage.data.astronaut(), skimage.data.coffee()]
    loader = torch.utils.data.DataLoader(SyntheticBatches(photos, batch=2, patch=32, seed=(0, 0)),
                                         batch_size=None, num_workers=2)
    batches = list(itertools.islice(loader, 4))
    inputs, target, matrices = batches[0]
    assert inputs.shape == (2, 8, 32, 32) and target.shape == (2, 3, 64, 64) and matrices.shape == (2, 3, 3)
    assert not torch.equal(batches[0][1], batches[1][1])  # the two workers do not repeat each other
    run = tmp_path / "run"
    assert train.main(["--run-dir", str(run), "--cache", str(photo_cache), "--width", "4", "--depth", "2",
                       "--batch", "2", "--patch", "32", "--threads", "1", "--log-every", "1",
                       "--workers", "2", "--steps", "3"]) == 0
    assert "step 3 loss" in (run / "train.log").read_text()


def test_psnr_and_flat_patch_noise_measure_known_errors() -> None:
    ref = np.full((32, 32, 3), 0.5, dtype=np.float32)
    assert evaluate.psnr(ref + 0.1, ref) == pytest.approx(20.0, abs=1e-3)
    noisy = ref + np.random.default_rng(6).normal(0, 0.01, ref.shape).astype(np.float32)
    variances = evaluate.flat_error_variances(noisy, ref)
    assert len(variances) == 4 and np.sqrt(np.mean(variances)) == pytest.approx(0.01, rel=0.1)
    edge = ref.copy()
    edge[:, 8:] = 0.9  # the left blocks hold an edge: not flat
    assert len(evaluate.flat_error_variances(edge, edge)) == 2


def test_evaluation_table_on_tiny_inputs() -> None:
    images = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea()]
    grey_case = evaluate.build_cases(images[:1], "x100", 1, seed=1, grey=True, patch=32)[0]
    assert evaluate.grey_error_percent(grey_case.reference, grey_case) == 0.0
    tinted = grey_case.reference * np.array([1.0, 1.0, 0.9], dtype=np.float32)
    assert 5.0 < evaluate.grey_error_percent(tinted, grey_case) < 30.0
    # the noise floor: plain averaging of the card's raw samples is near exact in good light only
    bright, dark = (evaluate.build_cases(images, c, 3, seed=2, grey=True, patch=64) for c in ("x1-10", "x300"))
    bright_floor = [evaluate.card_average_error_percent(c) for c in bright]
    dark_floor = [evaluate.card_average_error_percent(c) for c in dark]
    assert max(bright_floor) < 3.0 and np.mean(dark_floor) > 3 * np.mean(bright_floor)
    model = SIDUNet(UNetConfig(width=4, depth=2)).eval()  # zero head: the model is a nearest demosaic
    table = evaluate.evaluate(model, images, count=2, tune_count=1, grey_count=1, patch=32, methods=("nlm", "model"))
    assert "| x300 | card average (noise floor) |" in evaluate.format_table(table)
    assert set(table) == set(evaluate.CONDITIONS)
    for rows in table.values():
        assert rows["settings"]["nlm"] in evaluate.BASELINES["nlm"].grid
        assert rows["naive"]["flat_noise_reduction_pct"] == 0.0
        assert rows["nlm"]["psnr"] >= rows["naive"]["psnr"] - 1.0  # tuned on other photos, but not worse
        assert 0.0 < rows["model"]["ssim"] <= 1.0
    assert table["x300"]["naive"]["psnr"] < table["x1-10"]["naive"]["psnr"]
    assert "| x100 | naive |" in evaluate.format_table(table)
    # without grey cards (BM3D and darktable are slow): the scores, and no grey error
    quick = evaluate.evaluate(model, images, count=2, tune_count=1, grey_count=0, patch=32, methods=("model",),
                              conditions=("x100",))
    assert quick["x100"]["model"]["psnr"] == table["x100"]["model"]["psnr"]
    assert np.isnan(quick["x100"]["model"]["grey_error_pct_mean"]) and "nan / nan" in evaluate.format_table(quick)


def test_cache_keeps_the_encoded_photos_and_decodes_them(tmp_path: Path, monkeypatch) -> None:
    """The cache holds each JPEG's own bytes (small enough to send to a GPU machine) and
    cached_images gives the decoded pixels; a cache of decoded pixels still loads."""
    monkeypatch.setattr(sources, "debian_training_photos", lambda *args: [])  # tests/test_training_data.py has them
    rng = np.random.default_rng(7)
    root = tmp_path / "bsds"
    for split in ("train", "val", "test"):
        (root / split).mkdir(parents=True)
        for i in range(2):
            iio.imwrite(root / split / f"{i}.jpg", rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8))
    cache = sources.prepare_cache(tmp_path / "cache", root)
    jpeg_bytes = sum(p.stat().st_size for p in (root / "val").glob("*.jpg"))
    assert (cache / "validation.npz").stat().st_size < jpeg_bytes + 1000
    validation = sources.cached_images("validation", cache)
    expected = [iio.imread(p) for p in sorted((root / "val").glob("*.jpg"))]
    assert all(np.array_equal(a, b) and a.dtype == np.uint8 for a, b in zip(validation, expected))
    train_images = sources.cached_images("train", cache)
    assert len(train_images) == 2 + len(sources.SKIMAGE_PHOTOS)
    assert np.array_equal(train_images[2 + list(sources.SKIMAGE_PHOTOS).index("rocket")], skimage.data.rocket())  # PNG: lossless
    np.savez(cache / "validation.npz", **{f"{i:04d}": im for i, im in enumerate(expected)})
    assert all(np.array_equal(a, b) for a, b in zip(sources.cached_images("validation", cache), expected))


def test_gpu_recipe_rehearsed_on_the_cpu(tmp_path: Path, photo_cache: Path) -> None:
    """scripts/gpu_train.sh itself at toy scale on the CPU (later options win): batches made in
    torch on the device, bf16 autocast, channels-last, float16 weights + card exported every
    interval, steps/s and validation PSNR printed and logged; a resume continues the count."""
    out = tmp_path / "out"
    toy = ["--device", "cpu", "--cache", str(photo_cache), "--run-dir", str(tmp_path / "run"), "--width", "4",
           "--depth", "2", "--batch", "2", "--patch", "32", "--threads", "1", "--log-every", "2",
           "--validate-minutes", "0.01", "--export-minutes", "0.01"]
    script, env = [str(REPO / "scripts" / "gpu_train.sh"), str(out)], {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(script + ["0.04"] + toy, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out / "train.log").read_text() == done.stdout
    rates = [float(v) for v in re.findall(r"steps/s ([0-9.]+)", done.stdout)]
    psnrs = [float(v) for v in re.findall(r"ema_psnr ([0-9.]+)", done.stdout)]
    assert rates and min(rates) > 0 and len(psnrs) >= 2 and all(5.0 < p < 60.0 for p in psnrs)
    stop = int(re.search(r"# stop step (\d+)", done.stdout).group(1))
    weights = out / "lowlight-quality.pt"
    model, card = load_model(weights)
    training = card.extra["training"]
    assert training["steps"] == stop and training["batch_synthesis"] == "device" and training["autocast"] == "bf16"
    assert card.config == UNetConfig(width=4, depth=2, base="naive") and card.name == "lowlight-quality"
    assert torch.load(weights, weights_only=True)["head.weight"].dtype == torch.float16
    ema = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["ema"]
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, ema[name].float(), atol=1e-3, rtol=1e-3)  # float16 storage
    done = subprocess.run(script + ["0.08"] + toy + ["--resume"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0 and f"# start step {stop} " in done.stdout, done.stdout + done.stderr
    assert int(re.search(r"# stop step (\d+)", done.stdout).group(1)) > stop


@pytest.mark.parametrize(("layout", "remosaic"), [("xtrans", False), ("xtrans", True), ("linear", False)])
def test_another_layout_trains_from_a_bayer_network(tmp_path: Path, photo_cache: Path, tiny_weights: Path,
                                                    layout: str, remosaic: bool) -> None:
    """``train --layout L [--remosaic] --init bayer.pt``: the network starts from the Bayer one, the
    export's card names the layout and what it started from, and a validation PSNR is logged."""
    out = tmp_path / f"{layout}.pt"
    code = train.main(["--device", "cpu", "--cache", str(photo_cache), "--run-dir", str(tmp_path / "run"),
                       "--layout", layout, "--init", str(tiny_weights), "--width", "4", "--depth", "3", "--batch", "2",
                       "--patch", "32", "--threads", "1", "--steps", "3", "--minutes", "5", "--log-every", "1",
                       "--export", str(out), *(["--remosaic"] if remosaic else [])])
    assert code == 0
    model, card = load_model(out)
    assert card.config == replace(UNetConfig.for_layout(layout, width=4, depth=3, remosaic=remosaic), base="naive")
    assert card.extra["initialised_from"]["layout"] == "bayer" and card.extra["training"]["steps"] == 3
    assert re.search(r"validation step 3 ema_psnr [0-9.]+ clean_psnr [0-9.]+", (tmp_path / "run" / "train.log").read_text())


def test_a_linear_network_starts_as_the_bayer_network_on_the_bayer_sites(tiny_weights: Path) -> None:
    """:func:`train.transfer_weights`: a linear raw whose RGGB sites hold a Bayer raw's samples
    gets exactly the Bayer network's output from the freshly transferred linear network."""
    from lowlight_raw.layouts.bayer import BayerLayout
    from lowlight_raw.layouts.linear import LinearLayout

    bayer, _ = load_model(tiny_weights)
    with torch.no_grad():
        for p in bayer.head.parameters():  # a head that does something
            p.copy_(torch.randn_like(p) * 0.1)
    linear = SIDUNet(UNetConfig.for_layout("linear", width=4, depth=3)).eval()
    assert train.transfer_weights(bayer, linear) == []
    rgb = np.random.default_rng(0).random((32, 32, 3), dtype=np.float32)
    as_bayer = BayerLayout("RGGB", 32, 32).pack(mosaic_from_rgb(rgb, "RGGB"))
    as_linear = LinearLayout(32, 32).pack(rgb)
    run = lambda net, planes: net(torch.from_numpy(np.concatenate([planes, np.full_like(planes, 0.01)]))[None])  # noqa: E731
    with torch.no_grad():
        torch.testing.assert_close(run(linear, as_linear), run(bayer, as_bayer))


def test_ssim_loss_term_is_the_ssim_the_evaluation_reports():
    """train.ssim_torch (the loss's SSIM term) equals scikit-image's structural_similarity as the
    evaluation calls it."""
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    clean = rng.random((2, 3, 40, 52))
    noisy = np.clip(clean + rng.normal(0, 0.1, clean.shape), 0, 1)
    ours = train.ssim_torch(torch.from_numpy(noisy), torch.from_numpy(clean)).numpy()
    theirs = [structural_similarity(c.transpose(1, 2, 0), n.transpose(1, 2, 0), channel_axis=2, data_range=1.0)
              for c, n in zip(clean, noisy)]
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
