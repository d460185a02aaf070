"""Synthetic low-light batches made on the training device, in torch (``train --synth device``).

The numpy pipeline (:func:`.dataset.make_sample`) is the reference, and this module holds none
of its facts: every random *choice* of a sample (photo, crop, orientation, Bayer phase, camera
colour and brightness, sensor, exposure ratio) is drawn on the CPU by the reference's own
functions (:func:`.dataset.draw_choices` & co.) from the trainer's numpy generator
(:func:`draw_samples`; they are a few scalars), so a change to how samples are chosen reaches
both pipelines.

Only the pixel work runs on the device, batched: crop and orient, unify the Bayer phase to
RGGB, unprocess (inverse tone curve, sRGB decode, camera matrix, white balance, brightness),
mosaic and pack, Poisson shot / read / row noise, black level, quantisation, clipping, and the
noise-sigma planes. A GPU then makes its own batches instead of waiting for CPU workers.

``tests/test_device_synth.py`` checks it against the reference: the same clean target and
packing for the same choices, and the noise variance that :meth:`SensorModel.profile` promises.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..layouts.bayer import BayerLayout
from ..pipeline.color import srgb_decode_torch
from ..pipeline.network_input import network_input_torch
from ..pipeline.noise import NoiseProfile
from .dataset import Choices, draw_choices, draw_crop, draw_orientation, render_matrix
from .sensor_noise import TUKEY_U_MARGIN, tukey_lambda_from_uniform
from .unprocess import camera_matrix_from_srgb


@dataclass(frozen=True)
class SampleDraw:
    """Every random choice of one training sample (what :func:`.dataset.make_batch` draws)."""

    image: int  # index into the photos
    y: int  # top-left corner of the 2·patch crop
    x: int
    quarter_turns: int  # orientation, as :func:`.dataset.orient`
    mirror: bool
    choices: Choices  # phase, camera, sensor, ratio


def draw_samples(shapes: list[tuple[int, ...]], batch: int, patch: int, rng: np.random.Generator) -> list[SampleDraw]:
    """``batch`` sets of choices for photos of ``shapes``, in :func:`.dataset.make_batch`'s order."""
    draws = []
    for _ in range(batch):
        image = int(rng.integers(len(shapes)))
        y, x = draw_crop(shapes[image], 2 * patch, 2 * patch, rng)
        turns, mirror = draw_orientation(rng)
        draws.append(SampleDraw(image, y, x, turns, mirror, draw_choices(rng)))
    return draws


def _upload(values, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A small CPU array onto ``device`` without waiting for the GPU's queue (pinned, asynchronous
    copy), so the CPU draws the next batch while the GPU still trains on this one."""
    tensor = torch.as_tensor(np.asarray(values), dtype=dtype)
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def _per_sample(values: list[float], device: torch.device) -> torch.Tensor:
    """Per-sample scalars as an ``(N, 1, 1, 1)`` float32 tensor on ``device``."""
    return _upload(values, device).view(-1, 1, 1, 1)


def crops(images: list[torch.Tensor], draws: list[SampleDraw], patch: int) -> torch.Tensor:
    """``(N, 3, 2p, 2p)`` sRGB in [0, 1]: each draw's crop of its ``(H, W, 3)`` uint8 photo, oriented.

    Samples with the same turn (or mirror) are turned together: a few operations per batch, not
    a few per sample (each is a kernel launch on a GPU).
    """
    device = images[0].device
    batch = torch.stack([images[d.image][d.y : d.y + 2 * patch, d.x : d.x + 2 * patch] for d in draws])
    for turns in (1, 2, 3):
        chosen = [i for i, d in enumerate(draws) if d.quarter_turns == turns]
        if chosen:
            index = _upload(chosen, device, torch.long)
            batch[index] = torch.rot90(batch[index], turns, dims=(1, 2))  # square crops keep their shape
    mirrored = [i for i, d in enumerate(draws) if d.mirror]
    if mirrored:
        index = _upload(mirrored, device, torch.long)
        batch[index] = batch[index].flip(2)
    return batch.permute(0, 3, 1, 2).float() / 255.0


def unify_phase(full: torch.Tensor, draws: list[SampleDraw]) -> torch.Tensor:
    """Full-resolution ``(N, C, 2p, 2p)`` → the same in unified RGGB coordinates.

    :func:`.dataset.make_sample` keeps the visible mosaic ``crop[dy:, dx:]`` of each phase and
    :func:`lowlight_raw.layouts.bayer.pack_bayer` mirrors one row/column back on top/left: row 0
    becomes a copy of row 2 (and column 0 of column 2), the rest stays where it is.
    """
    offsets = _upload([BayerLayout(d.choices.pattern, 2, 2).offset for d in draws], full.device, torch.bool)
    top, left = offsets[:, 0, None, None], offsets[:, 1, None, None]
    full = torch.cat([torch.where(top, full[:, :, 2], full[:, :, 0])[:, :, None], full[:, :, 1:]], dim=2)
    return torch.cat([torch.where(left, full[..., 2], full[..., 0])[..., None], full[..., 1:]], dim=3)


def unify_phase_packed(packed: torch.Tensor, draws: list[SampleDraw]) -> torch.Tensor:
    """:func:`unify_phase` on packed RGGB planes ``(N, 4, h, w)``: full row 0 is row 0 of planes
    R and G1 (copied from their row 1, full row 2); full column 0 is column 0 of planes R and G2
    (copied from their column 1)."""
    offsets = np.array([BayerLayout(d.choices.pattern, 2, 2).offset for d in draws], dtype=bool)
    rows = _upload(offsets[:, :1] & np.array([True, True, False, False]), packed.device, torch.bool)[..., None]
    cols = _upload(offsets[:, 1:] & np.array([True, False, True, False]), packed.device, torch.bool)[..., None]
    packed = torch.cat([torch.where(rows, packed[:, :, 1], packed[:, :, 0])[:, :, None], packed[:, :, 1:]], dim=2)
    return torch.cat([torch.where(cols, packed[..., 1], packed[..., 0])[..., None], packed[..., 1:]], dim=3)


def inverse_smoothstep_torch(y: torch.Tensor) -> torch.Tensor:
    """:func:`.unprocess.inverse_smoothstep` for tensors."""
    return 0.5 - torch.sin(torch.asin(1.0 - 2.0 * y.clamp(0.0, 1.0)) / 3.0)


def unprocess_torch(srgb: torch.Tensor, draws: list[SampleDraw]) -> torch.Tensor:
    """:func:`.unprocess.unprocess` of ``(N, 3, H, W)`` sRGB with each draw's camera → camera RGB."""
    device = srgb.device
    to_camera = _upload(np.stack([camera_matrix_from_srgb(d.choices.params.color) for d in draws]), device)
    wb = _upload(np.stack([d.choices.params.color.wb for d in draws]), device).view(-1, 3, 1, 1)
    brightness = _per_sample([d.choices.params.brightness for d in draws], device)
    linear = srgb_decode_torch(inverse_smoothstep_torch(srgb)) / brightness
    camera = torch.einsum("nij,njhw->nihw", to_camera, linear) / wb
    return camera.clamp(0.0, 1.0)


def pack_rggb(full: torch.Tensor) -> torch.Tensor:
    """Mosaic ``(N, 3, 2h, 2w)`` RGB in RGGB and pack it: ``(N, 4, h, w)`` planes R, G1, G2, B."""
    r, g1, g2, b = full[:, 0, 0::2, 0::2], full[:, 1, 0::2, 1::2], full[:, 1, 1::2, 0::2], full[:, 2, 1::2, 1::2]
    return torch.stack([r, g1, g2, b], dim=1)


def dark_raw_torch(clean: torch.Tensor, draws: list[SampleDraw], generator: torch.Generator | None = None) -> torch.Tensor:
    """:func:`.sensor_noise.simulate_dark_raw` of packed RGGB planes ``(N, 4, h, w)``, each with
    its draw's sensor and ratio: Poisson shot noise, Gaussian or Tukey-lambda read noise, row
    noise (one value per full-resolution row: rows of R/G1 and of G2/B differ), black level,
    rounding, clipping at 0 and white, normalised back."""
    device = clean.device
    sensors = [d.choices.sensor for d in draws]
    gain = _per_sample([s.system_gain for s in sensors], device)
    black = _per_sample([s.black for s in sensors], device)
    span = _per_sample([s.span for s in sensors], device)
    white = _per_sample([s.white for s in sensors], device)
    electrons_at_white = _per_sample([s.electrons_at_white(d.choices.ratio) for s, d in zip(sensors, draws)], device)
    point_sigma = _per_sample([s.point_sigma for s in sensors], device)
    row_sigma = _per_sample([s.row_sigma for s in sensors], device)

    signal = torch.poisson(clean.clamp(0.0, 1.0) * electrons_at_white, generator=generator) * gain
    read = torch.randn(clean.shape, generator=generator, device=device)
    for i, s in enumerate(sensors):
        if s.tukey_lambda is not None:
            u = torch.rand(clean.shape[1:], generator=generator, device=device)
            u = u.clamp(TUKEY_U_MARGIN, 1.0 - TUKEY_U_MARGIN)
            read[i] = tukey_lambda_from_uniform(u, s.tukey_lambda)
    n, _, h, _ = clean.shape
    rows = torch.randn((n, 2, h), generator=generator, device=device)  # even and odd full-resolution rows
    rows = rows.repeat_interleave(2, dim=1)[..., None]  # → planes R, G1 (even rows) and G2, B (odd rows)
    raw = torch.round(signal + point_sigma * read + row_sigma * rows + black)
    raw = torch.minimum(raw.clamp_min(0.0), white)
    return (raw - black) / span


@dataclass(frozen=True)
class DeviceBatch:
    """A training batch on the device, as :func:`.dataset.batch_arrays` makes on the CPU."""

    inputs: torch.Tensor  # (N, 8, p, p) network input
    target: torch.Tensor  # (N, 3, 2p, 2p) clean camera RGB in [0, 1]
    matrices: torch.Tensor  # (N, 3, 3) camera → linear sRGB, white balance folded in


def clean_pair(images: list[torch.Tensor], draws: list[SampleDraw], patch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The noise-free part: clean full-resolution target ``(N, 3, 2p, 2p)`` and its packed
    mosaic ``(N, 4, p, p)``, both in unified RGGB coordinates."""
    target = unprocess_torch(unify_phase(crops(images, draws, patch), draws), draws)
    return target, pack_rggb(target)


def synthesize(images: list[torch.Tensor], draws: list[SampleDraw], patch: int, generator: torch.Generator | None = None) -> DeviceBatch:
    """One batch made on the photos' device: :func:`.dataset.make_batch` + ``batch_arrays``."""
    device = images[0].device
    target, clean = clean_pair(images, draws, patch)
    dark = unify_phase_packed(dark_raw_torch(clean, draws, generator), draws)
    profiles = [d.choices.sensor.profile() for d in draws]
    a, b = _per_sample([p.a for p in profiles], device), _per_sample([p.b for p in profiles], device)
    profile = NoiseProfile(a=a, b=b, source="synthetic")  # one a, b per sample
    inputs = network_input_torch(dark, _per_sample([d.choices.ratio for d in draws], device), profile)
    matrices = _upload(np.stack([render_matrix(d.choices.params.color) for d in draws]), device)
    return DeviceBatch(inputs=inputs, target=target, matrices=matrices)
