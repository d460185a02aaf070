"""The torch batch synthesis (``train --synth device``) against the numpy reference pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lowlight_raw.layouts.bayer import PATTERNS, BayerLayout
from lowlight_raw.pipeline.network_input import network_input, network_input_torch
from lowlight_raw.pipeline.noise import NoiseProfile
from lowlight_raw.training.dataset import Choices, batch_arrays, draw_choices, draw_crop, draw_orientation, make_sample, orient
from lowlight_raw.training.device_synth import SampleDraw, clean_pair, crops, dark_raw_torch, draw_samples, synthesize
from lowlight_raw.training.sensor_noise import SensorModel
from lowlight_raw.training.unprocess import sample_params

# ratio 1, 1e-6 DN per electron (shot noise 0.1 DN), 0.01 DN read noise: ±1 DN of rounding is left
QUIET_SENSOR = SensorModel(bits=14, black=512.0, system_gain=1e-6, read_sigma=0.01, row_fraction=0.0, tukey_lambda=None)


def _draw(pattern: str, seed: int, sensor: SensorModel = QUIET_SENSOR, ratio: float = 1.0) -> SampleDraw:
    """The whole photo, as it is, with a camera drawn from ``seed``."""
    choices = Choices(pattern=pattern, params=sample_params(np.random.default_rng(seed)), sensor=sensor, ratio=ratio)
    return SampleDraw(image=0, y=0, x=0, quarter_turns=0, mirror=False, choices=choices)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_same_choices_give_make_samples_target_packing_and_input(pattern: str) -> None:
    """Every phase: the clean target equals make_sample's, the packing is pack_bayer's phase
    unification, and the whole input (noise, clipping, sigma planes) matches up to rounding."""
    rng = np.random.default_rng(10)
    photo = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    draw = _draw(pattern, seed=11)
    reference = make_sample(photo.astype(np.float32) / 255.0, rng, pattern=pattern, ratio=1.0, sensor=QUIET_SENSOR, params=draw.choices.params)
    images = [torch.from_numpy(photo)]
    target, clean = clean_pair(images, [draw], patch=16)
    np.testing.assert_allclose(target[0].numpy(), reference.target, atol=2e-6)
    np.testing.assert_allclose(clean[0].numpy(), reference.inputs[:4], atol=1e-4)  # the reference is quantised
    batch = synthesize(images, [draw], patch=16, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(batch.inputs[0].numpy(), reference.inputs, atol=1e-4)
    np.testing.assert_allclose(batch.target[0].numpy(), reference.target, atol=2e-6)
    np.testing.assert_allclose(batch.matrices.numpy(), batch_arrays([reference])[2], rtol=1e-6)


def _mirrored_edges(planes: np.ndarray) -> tuple[list[bool], list[bool]]:
    """Which packed planes have row 0 equal to row 1, and column 0 equal to column 1."""
    return [bool((p[0] == p[1]).all()) for p in planes], [bool((p[:, 0] == p[:, 1]).all()) for p in planes]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_noisy_edges_are_mirrored_as_pack_bayer_does(pattern: str) -> None:
    """With real noise, the row/column that phase unification mirrors is a copy of the noisy one."""
    rng = np.random.default_rng(13)
    photo = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    sensor = SensorModel(bits=14, black=1024.0, system_gain=2.0, read_sigma=6.0, row_fraction=0.1, tukey_lambda=None)
    draw = _draw(pattern, seed=14, sensor=sensor, ratio=20.0)
    reference = make_sample(photo.astype(np.float32) / 255.0, rng, pattern=pattern, ratio=20.0, sensor=sensor, params=draw.choices.params)
    batch = synthesize([torch.from_numpy(photo)], [draw], patch=16, generator=torch.Generator().manual_seed(1))
    expected = _mirrored_edges(reference.inputs[:4])
    assert _mirrored_edges(batch.inputs[0, :4].numpy()) == expected
    assert sum(expected[0]) + sum(expected[1]) == 2 * sum(BayerLayout(pattern, 2, 2).offset)


def test_crop_and_orientation_follow_the_numpy_augmentation() -> None:
    """All eight orientations in one batch, each as :func:`.dataset.orient` makes it."""
    photos = [np.random.default_rng(seed).integers(0, 256, size=(40, 50, 3), dtype=np.uint8) for seed in (12, 13)]
    choices = _draw("RGGB", 0).choices
    draws = [SampleDraw(i % 2, 3 + i, 7 + 2 * i, i // 2, bool(i % 2), choices) for i in range(8)]
    got = crops([torch.from_numpy(p) for p in photos], draws, patch=8).permute(0, 2, 3, 1).numpy()
    for d, image in zip(draws, got):
        crop = photos[d.image][d.y : d.y + 16, d.x : d.x + 16]
        np.testing.assert_array_equal(image, orient(crop, d.quarter_turns, d.mirror) / np.float32(255.0))


@pytest.mark.parametrize("tukey", [None, -0.2])
def test_noise_has_the_variance_the_profile_promises(tukey: float | None) -> None:
    """Flat fields at three levels: mean x and variance a·x + b of SensorModel.profile()."""
    sensor = SensorModel(bits=14, black=1024.0, system_gain=2.0, read_sigma=6.0, row_fraction=0.1, tukey_lambda=tukey)
    profile = sensor.profile()
    ratio = 50.0
    generator = torch.Generator().manual_seed(3)
    for level in (0.0, 0.2, 1.0):
        dark = dark_raw_torch(torch.full((2, 4, 256, 256), level), [_draw("RGGB", 0, sensor, ratio)] * 2, generator)
        x = level / ratio
        assert float(dark.mean()) == pytest.approx(x, abs=3e-5)
        assert float(dark.double().var()) == pytest.approx(profile.a * x + profile.b, rel=0.04)


def test_row_noise_is_one_value_per_full_resolution_row() -> None:
    """All read noise in rows: each full-resolution row is constant; R/G1 and G2/B rows differ."""
    sensor = SensorModel(bits=14, black=1024.0, system_gain=1e-5, read_sigma=8.0, row_fraction=1.0, tukey_lambda=None)
    generator = torch.Generator().manual_seed(4)
    dark = dark_raw_torch(torch.full((1, 4, 64, 64), 0.5), [_draw("RGGB", 0, sensor, 100.0)], generator)[0] * sensor.span
    for full_rows in (torch.cat([dark[0], dark[1]], dim=1), torch.cat([dark[2], dark[3]], dim=1)):
        assert float((full_rows.amax(dim=1) - full_rows.amin(dim=1)).max()) <= 1.0 + 1e-3  # rounding only
    assert float((dark[0, :, 0] - dark[2, :, 0]).std()) > 8.0  # two independent rows: std 8·√2


def test_draws_use_the_reference_samplers() -> None:
    """draw_samples takes photo, crop, orientation and the sample's choices from the reference's
    own functions, in make_batch's order."""
    draws = draw_samples([(100, 120, 3), (40, 64, 3)], batch=16, patch=16, rng=np.random.default_rng(5))
    assert {d.image for d in draws} == {0, 1} and all(d.y <= (68, 8)[d.image] and d.x <= (88, 32)[d.image] for d in draws)
    first = draw_samples([(100, 120, 3)], batch=1, patch=16, rng=np.random.default_rng(5))[0]
    rng = np.random.default_rng(5)
    assert int(rng.integers(1)) == first.image
    assert draw_crop((100, 120, 3), 32, 32, rng) == (first.y, first.x)
    assert draw_orientation(rng) == (first.quarter_turns, first.mirror)
    choices = draw_choices(rng)
    assert (choices.pattern, choices.sensor, choices.ratio) == (first.choices.pattern, first.choices.sensor, first.choices.ratio)
    assert choices.params.brightness == first.choices.params.brightness


def test_network_input_torch_matches_the_numpy_one() -> None:
    rng = np.random.default_rng(6)
    packed = rng.normal(0.004, 0.003, size=(2, 4, 8, 8)).astype(np.float32)
    profiles = [NoiseProfile(a=1e-4, b=1e-7, source="a"), NoiseProfile(a=3e-4, b=5e-7, source="b")]
    gains = [100.0, 250.0]
    expected = np.stack([network_input(p, g, prof) for p, g, prof in zip(packed, gains, profiles)])
    column = lambda v: torch.tensor(v, dtype=torch.float32).view(-1, 1, 1, 1)  # noqa: E731
    batched = NoiseProfile(a=column([p.a for p in profiles]), b=column([p.b for p in profiles]), source="batch")
    got = network_input_torch(torch.from_numpy(packed), column(gains), batched)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-7)
