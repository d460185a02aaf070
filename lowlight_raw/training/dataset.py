"""Synthetic low-light training pairs, made on the fly from clean sRGB photos.

One sample: a random crop of a clean photo, a random flip/rotation (applied to the RGB crop
*before* mosaicing, so the CFA stays right), unprocessed into a random camera, mosaiced in a
random Bayer phase, made dark and noisy by :mod:`.sensor_noise`, then packed exactly as the
engine packs a real raw (:func:`lowlight_raw.bayer.pack_bayer` unifies the phase to RGGB)
and turned into network input by :func:`lowlight_raw.network_input.network_input`.
The target is the clean linear camera RGB, padded the same way, in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..bayer import PATTERNS, BayerLayout, pack_bayer
from ..color import CameraColor
from ..network_input import network_input
from .sensor_noise import SensorModel, sample_ratio, sample_sensor, simulate_dark_raw
from .unprocess import UnprocessParams, mosaic, sample_params, unprocess


@dataclass(frozen=True)
class Sample:
    """One training/evaluation pair and how it was made."""

    inputs: np.ndarray  # (8, h, w) float32 network input
    raw: np.ndarray  # (4, h, w) float32 packed normalised dark raw (before the gain and clipping)
    target: np.ndarray  # (3, 2h, 2w) float32 clean linear camera RGB in [0, 1]
    color: CameraColor  # renders camera RGB to sRGB
    ratio: float
    sensor: SensorModel


def augment(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random flips and 90° rotations of an ``(H, W, 3)`` RGB crop (done before mosaicing)."""
    crop = np.rot90(crop, k=int(rng.integers(4)))
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop)


def random_crop(image: np.ndarray, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``height × width`` window of ``image`` (which must be at least that big)."""
    y = int(rng.integers(image.shape[0] - height + 1))
    x = int(rng.integers(image.shape[1] - width + 1))
    return image[y : y + height, x : x + width]


def make_sample(
    srgb_crop: np.ndarray,
    rng: np.random.Generator,
    pattern: str | None = None,
    ratio: float | None = None,
    sensor: SensorModel | None = None,
    params: UnprocessParams | None = None,
) -> Sample:
    """Synthetic dark raw + clean target from an sRGB crop of ``2h × 2w`` (values in [0, 1]).

    Unset choices (Bayer ``pattern``, exposure ``ratio``, ``sensor``, camera ``params``) are
    sampled from ``rng``. The visible mosaic is cropped by the phase's padding so the packed
    planes are exactly ``h × w``.
    """
    pattern = pattern or str(rng.choice(PATTERNS))
    params = params or sample_params(rng)
    sensor = sensor or sample_sensor(rng)
    ratio = ratio if ratio is not None else sample_ratio(rng)
    full_h, full_w = srgb_crop.shape[:2]
    probe = BayerLayout(pattern, full_h, full_w)
    dy, dx = probe.offset
    visible = unprocess(srgb_crop[dy:, dx:], params)  # visible mosaic of (2h - dy) × (2w - dx)
    layout = BayerLayout(pattern, visible.shape[0], visible.shape[1])
    dark = simulate_dark_raw(mosaic(visible, pattern), ratio, sensor, rng)
    packed = pack_bayer(dark, layout)
    top, bottom, left, right = layout.padding
    target = np.pad(visible, ((top, bottom), (left, right), (0, 0)), mode="reflect")
    return Sample(
        inputs=network_input(packed, ratio, sensor.profile()),
        raw=packed,
        target=np.ascontiguousarray(target.transpose(2, 0, 1)),
        color=params.color,
        ratio=ratio,
        sensor=sensor,
    )


def make_batch(images: list[np.ndarray], batch: int, patch: int, rng: np.random.Generator) -> list[Sample]:
    """``batch`` random training samples of ``patch × patch`` packed pixels from ``images``.

    ``images`` are ``(H, W, 3)`` uint8 sRGB photos at least ``2·patch`` on each side.
    """
    samples = []
    for _ in range(batch):
        image = images[int(rng.integers(len(images)))]
        crop = augment(random_crop(image, 2 * patch, 2 * patch, rng), rng)
        samples.append(make_sample(crop.astype(np.float32) / 255.0, rng))
    return samples


def batch_arrays(samples: list[Sample]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stacked ``inputs`` (N, 8, h, w), ``target`` (N, 3, 2h, 2w) and camera → linear sRGB
    matrices (N, 3, 3, white balance folded in), all float32."""
    matrices = [s.color.matrix_to("srgb") * s.color.wb[None, :] for s in samples]
    return (
        np.stack([s.inputs for s in samples]),
        np.stack([s.target for s in samples]),
        np.stack(matrices).astype(np.float32),
    )


class SyntheticBatches(torch.utils.data.IterableDataset):
    """An endless stream of :func:`make_batch` batches as :func:`batch_arrays`.

    For ``torch.utils.data.DataLoader(..., batch_size=None, num_workers=N)``: each worker draws
    from its own generator, seeded by ``(seed, worker id)``, so N CPU workers keep a GPU fed
    (making one batch of 8 takes ~0.1 s of numpy on one core; a GPU step takes milliseconds).
    """

    def __init__(self, images: list[np.ndarray], batch: int, patch: int, seed: tuple[int, ...]) -> None:
        super().__init__()
        self.images, self.batch, self.patch, self.seed = images, batch, patch, seed

    def __iter__(self):
        worker = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([*self.seed, worker.id if worker is not None else 0])
        while True:
            yield batch_arrays(make_batch(self.images, self.batch, self.patch, rng))
