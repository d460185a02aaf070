"""Synthetic low-light training pairs, made on the fly from clean sRGB photos.

One sample: a random crop of a clean photo, a random flip/rotation (applied to the RGB crop
*before* mosaicing, so the CFA stays right), unprocessed into a random camera, mosaiced in a
random phase of the sensor layout's CFA (:mod:`lowlight_raw.layouts.base`; a linear raw is a Bayer
mosaic the converter demosaiced), made dark and noisy by :mod:`.sensor_noise`, then packed
exactly as the engine packs a real raw (the layout unifies the phase) and turned into network
input by :func:`lowlight_raw.pipeline.network_input.network_input`. The target is the clean linear
camera RGB, padded the same way, in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..layouts.base import mosaic_from_rgb
from ..layouts.bayer import BayerLayout, pack_bayer
from ..layouts.registry import layout_class
from ..pipeline.color import CameraColor
from ..pipeline.network_input import network_input
from .sensor_noise import SensorModel, sample_exposure, simulate_dark_raw
from .unprocess import UnprocessParams, sample_params, unprocess


@dataclass(frozen=True)
class Sample:
    """One training/evaluation pair and how it was made."""

    inputs: np.ndarray  # (2C, h, w) float32 network input (Bayer: C = 4)
    raw: np.ndarray  # (C, h, w) float32 packed normalised dark raw (before the gain and clipping)
    target: np.ndarray  # (3, s·h, s·w) float32 clean linear camera RGB in [0, 1] (Bayer: s = 2)
    color: CameraColor  # renders camera RGB to sRGB
    ratio: float
    sensor: SensorModel
    layout: str = "bayer"  # the sensor layout it was made for (lowlight_raw.layouts.base)


def draw_orientation(rng: np.random.Generator) -> tuple[int, bool]:
    """A random orientation: quarter turns (0–3) and whether to mirror left-right after them."""
    return int(rng.integers(4)), bool(rng.random() < 0.5)


def orient(crop: np.ndarray, quarter_turns: int, mirror: bool) -> np.ndarray:
    """``np.rot90(crop, quarter_turns)``, then mirrored left-right if ``mirror``."""
    crop = np.rot90(crop, k=quarter_turns)
    return np.ascontiguousarray(crop[:, ::-1] if mirror else crop)


def augment(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random flips and 90° rotations of an ``(H, W, 3)`` RGB crop (done before mosaicing)."""
    return orient(crop, *draw_orientation(rng))


def draw_crop(shape: tuple[int, ...], height: int, width: int, rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner of a random ``height × width`` window of an image of ``shape`` (H, W, ...)."""
    return int(rng.integers(shape[0] - height + 1)), int(rng.integers(shape[1] - width + 1))


def random_crop(image: np.ndarray, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``height × width`` window of ``image`` (which must be at least that big)."""
    y, x = draw_crop(image.shape, height, width, rng)
    return image[y : y + height, x : x + width]


@dataclass(frozen=True)
class Choices:
    """The random choices that make one sample from a crop (besides the noise itself)."""

    pattern: str  # CFA phase of the simulated sensor (see lowlight_raw.layouts.base.mosaic_from_rgb)
    params: UnprocessParams  # camera colour and brightness
    sensor: SensorModel
    ratio: float  # exposure ratio: how much darker than the clean crop


def draw_choices(
    rng: np.random.Generator,
    pattern: str | None = None,
    ratio: float | None = None,
    sensor: SensorModel | None = None,
    params: UnprocessParams | None = None,
    layout: str = "bayer",
) -> Choices:
    """A sample's choices: the given ones kept, the rest drawn from ``rng`` (phase of the
    ``layout``'s CFA, camera, sensor, ratio, in that order). The one place that says how a
    training sample is chosen: :func:`make_sample` and the GPU's :mod:`.device_synth` both draw
    through it."""
    pattern = pattern or str(rng.choice(layout_class(layout).training_patterns()))
    params = params or sample_params(rng)
    if sensor is None or ratio is None:
        drawn_sensor, drawn_ratio = sample_exposure(rng)
        sensor, ratio = sensor or drawn_sensor, drawn_ratio if ratio is None else ratio
    return Choices(pattern=pattern, params=params, sensor=sensor, ratio=ratio)


def make_sample(
    srgb_crop: np.ndarray,
    rng: np.random.Generator,
    ratio: float | None = None,
    sensor: SensorModel | None = None,
    pattern: str | None = None,
    params: UnprocessParams | None = None,
    layout: str = "bayer",
) -> Sample:
    """Synthetic raw of sensor ``layout`` shot ``ratio``× too dark on ``sensor`` + clean target,
    from an sRGB crop of ``s·h × s·w`` (values in [0, 1]; ``s`` the layout's packing factor).

    Unset choices are drawn by :func:`draw_choices`. The visible area is cropped by the
    phase's padding so the packed planes are exactly ``h × w`` (X-Trans: ``h``, ``w`` even).
    """
    choices = draw_choices(rng, pattern, ratio, sensor, params, layout)
    pattern, params, sensor, ratio = choices.pattern, choices.params, choices.sensor, choices.ratio
    kind = layout_class(layout)
    full_h, full_w = srgb_crop.shape[:2]
    top, _, left, _ = kind.for_pattern(pattern, full_h, full_w).padding
    visible = unprocess(srgb_crop[top:, left:], params)  # the visible area, (s·h - top) × (s·w - left)
    geometry = kind.for_pattern(pattern, visible.shape[0], visible.shape[1])
    dark = geometry.as_stored(simulate_dark_raw(mosaic_from_rgb(visible, pattern), ratio, sensor, rng))
    packed = geometry.pack(dark)
    target = geometry.pad_like_pack(visible)
    return Sample(
        inputs=network_input(packed, ratio, sensor.profile()),
        raw=packed,
        target=np.ascontiguousarray(target.transpose(2, 0, 1)),
        color=params.color,
        ratio=ratio,
        sensor=sensor,
        layout=layout,
    )


def packed_shot(srgb: np.ndarray, ratio: float, sensor: SensorModel | None, rng: np.random.Generator,
                params: UnprocessParams | None = None) -> np.ndarray:
    """Packed RGGB planes of an ``(H, W, 3)`` sRGB photo (values in [0, 1]) as a raw shot ``ratio``×
    too dark on ``sensor`` (``None``: noise-free), unprocessed with ``params`` (sampled if unset)."""
    h, w = srgb.shape[0] // 2 * 2, srgb.shape[1] // 2 * 2
    clean = mosaic_from_rgb(unprocess(srgb[:h, :w], params or sample_params(rng)), "RGGB")
    raw = clean / ratio if sensor is None else simulate_dark_raw(clean, ratio, sensor, rng)
    return pack_bayer(raw, BayerLayout("RGGB", h, w))


def make_batch(images: list[np.ndarray], batch: int, patch: int, rng: np.random.Generator,
               layout: str = "bayer") -> list[Sample]:
    """``batch`` random training samples of ``patch × patch`` packed pixels from ``images``.

    ``images`` are ``(H, W, 3)`` uint8 sRGB photos at least ``s·patch`` on each side (``s``: the
    ``layout``'s packing factor).
    """
    size = layout_class(layout).scale * patch
    samples = []
    for _ in range(batch):
        image = images[int(rng.integers(len(images)))]
        crop = augment(random_crop(image, size, size, rng), rng)
        samples.append(make_sample(crop.astype(np.float32) / 255.0, rng, layout=layout))
    return samples


def batch_arrays(samples: list[Sample]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stacked ``inputs`` (N, 8, h, w), ``target`` (N, 3, 2h, 2w) and camera → linear sRGB
    matrices (N, 3, 3, white balance folded in), all float32."""
    return (
        np.stack([s.inputs for s in samples]),
        np.stack([s.target for s in samples]),
        np.stack([render_matrix(s.color) for s in samples]),
    )


def render_matrix(color: CameraColor) -> np.ndarray:
    """(3, 3) float32 camera RGB → linear sRGB with the white balance folded in (the loss renders with it)."""
    return (color.matrix_to("srgb") * color.wb[None, :]).astype(np.float32)


class SyntheticBatches(torch.utils.data.IterableDataset):
    """An endless stream of :func:`make_batch` batches as :func:`batch_arrays`.

    For ``torch.utils.data.DataLoader(..., batch_size=None, num_workers=N)``: each worker draws
    from its own generator, seeded by ``(seed, worker id)``, so N CPU workers keep a GPU fed
    (making one batch of 8 takes ~0.1 s of numpy on one core; a GPU step takes milliseconds).
    """

    def __init__(self, images: list[np.ndarray], batch: int, patch: int, seed: tuple[int, ...], layout: str = "bayer") -> None:
        super().__init__()
        self.images, self.batch, self.patch, self.seed, self.layout = images, batch, patch, seed, layout

    def __iter__(self):
        worker = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([*self.seed, worker.id if worker is not None else 0])
        while True:
            yield batch_arrays(make_batch(self.images, self.batch, self.patch, rng, self.layout))
