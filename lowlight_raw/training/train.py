"""Train the SID-style U-Net on synthetic low-light raws (``lowlight-raw train``).

CPU by default (CUDA when present). AdamW, warm-up then cosine decay driven by whichever is
further along, steps or wall time (so a run that is given 75 minutes anneals by then), an EMA
of the weights (the exported model), checkpoints every few minutes and on SIGTERM/SIGINT,
``--resume`` after the process died, and ``<run>/train.log`` with loss and validation PSNR.
The loss is L1 in sRGB after the product's colour pipeline (each sample's white balance and
camera matrix), the space the evaluation scores in, plus ``--ssim-weight`` × (1 − SSIM) with the
SSIM the evaluation reports (:func:`ssim_torch`). ``--arch`` picks a registered architecture
(:data:`lowlight_raw.networks.registry.ARCHITECTURES`).

On a GPU, make the synthetic batches there (``--synth device``, :mod:`.device_synth`: the
numpy reference draws each sample's choices, torch does the pixel work on the GPU) with bf16
autocast and channels-last (``--amp bf16 --channels-last``); ``scripts/gpu_train.sh`` is the
prepared command (``docs/gpu.md``). ``--workers N`` instead has N CPU processes make them with
the numpy pipeline (one process makes a batch of 8 in ~0.1 s, far slower than a GPU step).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..files.atomic import write_atomically
from ..layouts.registry import layout_class, layout_kinds
from ..networks.registry import ARCHITECTURES, build_model
from ..networks.sid_unet import RESIDUAL_BASES, ContextUNetConfig, SIDUNet
from ..networks.weights import load_model, read_card, save_weights
from ..pipeline.color import srgb_encode_torch
from . import sensor_noise
from .dataset import Sample, SyntheticBatches, batch_arrays, make_batch, make_sample, random_crop
from .device_synth import draw_samples, synthesize
from .sources import DEFAULT_CACHE, REPO_ROOT, SOURCE_SELECTIONS, cached_images, source_summary

EMA_DECAY = 0.999
AMP_DTYPES = {"none": None, "bf16": torch.bfloat16}
EXPORT_DTYPES = {"float32": torch.float32, "float16": torch.float16}


def render_srgb_torch(camera: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """Differentiable colour pipeline: ``(N, 3, H, W)`` camera RGB → sRGB-encoded in [0, 1]."""
    return srgb_encode_torch(torch.einsum("nij,njhw->nihw", matrices, camera))


def to_tensors(samples: list[Sample], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`~.dataset.batch_arrays` of ``samples`` as tensors on ``device``."""
    return tuple(torch.from_numpy(a).to(device) for a in batch_arrays(samples))


SSIM_WINDOW = 7  # scikit-image's structural_similarity defaults, which the evaluation reports
SSIM_K1, SSIM_K2 = 0.01, 0.03


def ssim_torch(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean SSIM per image of ``(N, C, H, W)`` images in [0, 1], as scikit-image's
    ``structural_similarity(..., channel_axis, data_range=1)`` computes it: a 7×7 uniform window,
    sample covariances, the mean over channels and over the pixels 3 from the border."""
    def mean(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t, SSIM_WINDOW, stride=1)

    n = SSIM_WINDOW**2
    unbias = n / (n - 1.0)
    mx, my = mean(x), mean(y)
    vx = unbias * (mean(x * x) - mx * mx)
    vy = unbias * (mean(y * y) - my * my)
    cxy = unbias * (mean(x * y) - mx * my)
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    ssim = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return ssim.mean(dim=(1, 2, 3))


LOWPASS_BLOCK = 8  # px: the mean-level term compares block means this big


def srgb_loss(
    model: SIDUNet, inputs: torch.Tensor, target: torch.Tensor, matrices: torch.Tensor,
    amp: torch.dtype | None = None, ssim_weight: float = 0.0, lowpass_weight: float = 0.0,
) -> torch.Tensor:
    """L1 between the rendered output and the rendered clean target, plus ``ssim_weight`` ×
    (1 − their :func:`ssim_torch`), plus ``lowpass_weight`` × the L1 between their
    :data:`LOWPASS_BLOCK`² block means (taken in linear light, then encoded): a pixel-wise L1 lets
    a noisy dark area settle above its true level (a positive floor is the safe guess where the
    truth may be 0), the block means pin the level, so blacks stay black.

    ``amp`` (e.g. ``torch.bfloat16``): the network runs under autocast in that type; the
    rendering and the loss stay float32.
    """
    with torch.autocast(inputs.device.type, dtype=amp or torch.float32, enabled=amp is not None):
        output = model(inputs)
    rendered, reference = render_srgb_torch(output.float(), matrices), render_srgb_torch(target, matrices)
    loss = (rendered - reference).abs().mean()
    if lowpass_weight:
        block_means = [srgb_encode_torch(F.avg_pool2d(torch.einsum("nij,njhw->nihw", matrices, c), LOWPASS_BLOCK))
                       for c in (output.float(), target)]
        loss = loss + lowpass_weight * (block_means[0] - block_means[1]).abs().mean()
    if ssim_weight:
        loss = loss + ssim_weight * (1.0 - ssim_torch(rendered.clamp(0.0, 1.0), reference).mean())
    return loss


VALIDATION_CROP = 256  # at most this many full-resolution pixels a side of a validation crop
POOLING_MULTIPLE = 32  # packed validation sizes are a multiple of this (networks of depth ≤ 5 need it, re-mosaicing ones too)


def validation_samples(images: list[np.ndarray], clean: bool = False, count: int = 12,
                       seed: int = 1234, layout: str = "bayer") -> list[Sample]:
    """A fixed validation set of sensor ``layout``: crops of the validation photos at ×100/×300
    on high-ISO sensors, or (``clean``) well-exposed at ×1 on low-ISO ones."""
    rng = np.random.default_rng([seed, int(clean)])
    scale = layout_class(layout).scale
    size = scale * (VALIDATION_CROP // scale // POOLING_MULTIPLE * POOLING_MULTIPLE)
    samples = []
    for i in range(count):
        crop = random_crop(images[i % len(images)], size, size, rng).astype(np.float32) / 255.0
        if clean:
            sensor, ratio = sensor_noise.sample_sensor(rng, a_range=sensor_noise.CLEAN_A_RANGE), 1.0
        else:
            sensor, ratio = sensor_noise.sample_sensor(rng, a_range=(1e-4, sensor_noise.A_RANGE[1])), (100.0, 300.0)[i % 2]
        samples.append(make_sample(crop, rng, ratio, sensor, layout=layout))
    return samples


@torch.no_grad()
def validation_scores(model: SIDUNet, samples: list[Sample], device: torch.device) -> tuple[float, float]:
    """Mean sRGB PSNR (dB) and SSIM (:func:`ssim_torch`) of ``model`` on ``samples``."""
    model.eval()
    psnrs, ssims = [], []
    for i in range(0, len(samples), 4):
        inputs, target, mats = to_tensors(samples[i : i + 4], device)
        out = render_srgb_torch(model(inputs), mats).clamp(0.0, 1.0)
        ref = render_srgb_torch(target, mats)
        mse = ((out - ref) ** 2).mean(dim=(1, 2, 3)).clamp_min(1e-12)
        psnrs += (-10.0 * torch.log10(mse)).tolist()
        ssims += ssim_torch(out, ref).tolist()
    return float(np.mean(psnrs)), float(np.mean(ssims))


def learning_rate(progress: float, base: float, warmup: float = 0.02) -> float:
    """Linear warm-up over the first ``warmup`` of training, then cosine decay to 1% of ``base``."""
    if progress < warmup:
        return base * max(progress / warmup, 0.01)
    t = min((progress - warmup) / (1.0 - warmup), 1.0)
    return base * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * t)))


def noise_ranges() -> dict:
    """The synthetic noise model's ranges, for the model card."""
    return {
        "a_range_normalised": list(sensor_noise.A_RANGE),
        "log_b_fit": {"slope": sensor_noise.LOG_B_FIT[0], "intercept": sensor_noise.LOG_B_FIT[1], "spread": sensor_noise.LOG_B_SPREAD},
        "b_range_normalised": list(sensor_noise.B_RANGE),
        "ratio_range": list(sensor_noise.RATIO_RANGE),
        "ratio_bands": {f"x{lo:g}-x{hi:g}": share for (lo, hi), share in sensor_noise.RATIO_BANDS.items()},
        "clean_share": sensor_noise.CLEAN_SHARE,
        "clean_a_range_normalised": list(sensor_noise.CLEAN_A_RANGE),
        "bit_depths": list(sensor_noise.BIT_DEPTHS),
        "reference": "darktable noiseprofiles.json, ISO 800-25600, green channel",
        "components": "Poisson shot at system gain K, Gaussian or Tukey-lambda read noise, row noise, "
        "black level, ADC rounding, clipping at 0 and white",
    }


def transfer_weights(trained: nn.Module, model: nn.Module) -> list[str]:
    """Copy every tensor of ``trained`` whose name and shape ``model`` shares; returns the names
    left at their fresh initialisation. Another layout's network differs at most in its first
    convolution and its head, so a trained Bayer network is a good start for the rest. Where the
    new layout holds every Bayer site (:meth:`~lowlight_raw.layouts.base.SensorLayout.bayer_sites`),
    the first convolution carries over too, reading those planes as the Bayer network read its
    own and ignoring the rest until trained: for linear RGB (whose residual base is Bayer's, on
    those sites) the whole network then starts as the Bayer one; X-Trans keeps a fresh head."""
    own = model.state_dict()
    shared = {k: v for k, v in trained.state_dict().items() if k in own and own[k].shape == v.shape}
    sites = model.layout.bayer_sites()
    if sites is not None and trained.config.layout == "bayer":
        first = next(k for k in own if k.endswith("weight"))  # the first convolution's weight
        old, planes = trained.state_dict()[first], model.layout.channels
        if first not in shared and old.shape[1] == 8:
            weight = torch.zeros_like(own[first])
            for bayer_plane, plane in enumerate(sites):
                weight[:, plane] = old[:, bayer_plane]  # the value …
                weight[:, planes + plane] = old[:, 4 + bayer_plane]  # … and its noise sigma
            shared[first] = weight
    model.load_state_dict(shared, strict=False)
    return sorted(set(own) - set(shared))


class Trainer:
    """Model, EMA, optimiser and progress of one run, with checkpointing."""

    def __init__(self, args: argparse.Namespace, device: torch.device) -> None:
        self.args = args
        self.device = device
        self.model = build_model(args.arch, model_config(args))
        if args.init is not None:  # fine-tune, or start another layout's network from a trained one
            transfer_weights(load_model(args.init)[0], self.model)
        memory_format = torch.channels_last if args.channels_last else torch.preserve_format
        self.model.to(device, memory_format=memory_format)
        self.ema = copy.deepcopy(self.model).requires_grad_(False)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=args.lr, weight_decay=1e-4)
        self.step = 0
        self.elapsed = 0.0  # training wall time over all resumed sessions, seconds
        self.rng = np.random.default_rng(args.seed)
        self.best_psnr = -1.0
        self.last_ssim = 0.0  # dark-set SSIM of the EMA at the last validation

    @property
    def checkpoint_path(self) -> Path:
        return self.args.run_dir / "checkpoint.pt"

    def progress(self) -> float:
        return max(self.step / self.args.steps, self.elapsed / (60.0 * self.args.minutes))

    def save_checkpoint(self) -> None:
        state = {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "elapsed": self.elapsed,
            "rng": self.rng.bit_generator.state,
            "config": {"width": self.args.width, "depth": self.args.depth},
            "best_psnr": self.best_psnr,
        }
        write_atomically(self.checkpoint_path, lambda temp: torch.save(state, temp))

    def load_checkpoint(self) -> None:
        state = torch.load(self.checkpoint_path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.elapsed = state["step"], state["elapsed"]
        self.rng.bit_generator.state = state["rng"]
        self.best_psnr = state.get("best_psnr", -1.0)

    def update_ema(self) -> None:
        decay = min(EMA_DECAY, (1.0 + self.step) / (10.0 + self.step))
        with torch.no_grad():
            for e, p in zip(self.ema.parameters(), self.model.parameters()):
                e.lerp_(p, 1.0 - decay)

    def train_step(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """One optimiser step on ``(inputs, target, matrices)`` (on the device); returns the loss.

        The loss stays a device tensor: reading it would make the CPU wait for the GPU every step.
        """
        inputs, target, mats = batch
        if self.args.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.progress(), self.args.lr)
        self.model.train()
        loss = srgb_loss(self.model, inputs, target, mats, AMP_DTYPES[self.args.amp], self.args.ssim_weight,
                         self.args.lowpass_weight)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.step += 1
        self.update_ema()
        return loss.detach()

    def export(self, path: Path, extra: dict | None = None) -> None:
        """Write the EMA weights and their card via :func:`lowlight_raw.networks.weights.save_weights`."""
        card_extra = {
            "training": {
                "steps": self.step,
                "wall_time_minutes": round(self.elapsed / 60.0, 1),
                "batch": self.args.batch,
                "patch_packed": self.args.patch,
                "optimizer": f"AdamW lr {self.args.lr} cosine, EMA {EMA_DECAY}",
                "loss": "L1 in sRGB after white balance + camera matrix"
                        + (f" + {self.args.ssim_weight} × (1 − SSIM)" if self.args.ssim_weight else "")
                        + (f" + {self.args.lowpass_weight} × L1 of {LOWPASS_BLOCK}×{LOWPASS_BLOCK} block means"
                           if self.args.lowpass_weight else ""),
                "device": self.device_name(),
                "batch_synthesis": self.args.synth,
                "autocast": self.args.amp,
                "validation_psnr_db": round(self.best_psnr, 2),
                "validation_ssim": round(self.last_ssim, 4),
            },
            **({"initialised_from": _card_summary(self.args.init)} if self.args.init is not None else {}),
            "data": source_summary(self.args.cache, self.args.sources),
            "noise_model": noise_ranges(),
            **(extra or {}),
        }
        save_weights(self.ema, path, name=path.stem, extra=card_extra, dtype=EXPORT_DTYPES[self.args.export_dtype])

    def device_name(self) -> str:
        """The training device, with the card's name on CUDA (e.g. ``cuda (NVIDIA H200)``)."""
        if self.device.type == "cuda":
            return f"cuda ({torch.cuda.get_device_name(self.device)})"
        return str(self.device)


def model_config(args: argparse.Namespace) -> object:
    """The config of the ``--arch`` network the command line describes."""
    config_class = ARCHITECTURES[args.arch].config
    config = config_class.for_layout(args.layout, width=args.width, depth=args.depth, remosaic=args.remosaic)
    fields = {f.name for f in dataclasses.fields(config)}
    return dataclasses.replace(config, **{k: v for k, v in vars(args).items() if k in fields})  # e.g. context_blocks


def _card_summary(weights: Path) -> dict:
    """Name, sensor layout and sha256 of a weight file, from its card (what a run started from)."""
    card = read_card(weights)
    return {"name": card.name, "layout": card.config.layout, "sha256": card.sha256}


def training_batches(images: list[np.ndarray], trainer: Trainer) -> Iterator[tuple[torch.Tensor, ...]]:
    """Endless training batches on the trainer's device.

    ``--synth device`` makes them on the device in torch (:mod:`.device_synth`), with every
    choice drawn from the trainer's own generator (saved in checkpoints) and the noise from a
    device generator seeded from it. Otherwise, ``--workers 0`` makes them here with the numpy
    pipeline from the trainer's own generator (so a resumed CPU run continues the same stream);
    ``--workers N`` has N DataLoader processes make them (seeded by the seed and the step it
    starts from).
    """
    args, device = trainer.args, trainer.device
    if args.synth == "device":
        photos = [torch.from_numpy(im).to(device) for im in images]
        shapes = [im.shape for im in images]
        generator = torch.Generator(device).manual_seed(int(trainer.rng.integers(2**62)))
        while True:
            batch = synthesize(photos, draw_samples(shapes, args.batch, args.patch, trainer.rng), args.patch, generator)
            yield batch.inputs, batch.target, batch.matrices
    if args.workers == 0:
        while True:
            yield to_tensors(make_batch(images, args.batch, args.patch, trainer.rng, args.layout), device)
    stream = SyntheticBatches(images, args.batch, args.patch, seed=(args.seed, trainer.step), layout=args.layout)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=args.workers,
                                         pin_memory=device.type == "cuda", prefetch_factor=4)
    for arrays in loader:
        yield tuple(a.to(device, non_blocking=True) for a in arrays)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lowlight-raw train", description="Train the low-light network on synthetic data.")
    parser.add_argument("--run-dir", type=Path, default=REPO_ROOT / "runs" / "sid12")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="clean-photo cache (built if missing)")
    parser.add_argument("--bsds", type=Path, default=None, help="BSDS500 folder")
    parser.add_argument("--sources", choices=list(SOURCE_SELECTIONS), default="all",
                        help="training photos: all, or licence-clean (all but BSDS500); validation is BSDS500 either way")
    parser.add_argument("--layout", choices=layout_kinds(), default="bayer",
                        help="sensor layout the network is for (lowlight_raw.layouts.base)")
    parser.add_argument("--remosaic", action="store_true",
                        help="the network re-mosaics its input to Bayer planes first (X-Trans; UNetConfig.remosaic)")
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), default="sid-unet",
                        help="network architecture (lowlight_raw.networks.registry.ARCHITECTURES)")
    parser.add_argument("--context-levels", type=int, default=ContextUNetConfig.context_levels,
                        help="sid-unet-ctx: the lowest-resolution levels that get gated blocks")
    parser.add_argument("--context-blocks", type=int, default=ContextUNetConfig.context_blocks,
                        help="sid-unet-ctx: gated blocks per such level")
    parser.add_argument("--base", choices=sorted(RESIDUAL_BASES), default="naive",
                        help="what the network's residual is added to (UNetConfig.base; the v2 networks: nearest)")
    parser.add_argument("--width", type=int, default=12)
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--patch", type=int, default=128,
                        help="packed patch size (full resolution: ×2 for Bayer and linear, ×3 for X-Trans; even)")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--lowpass-weight", type=float, default=1.0,
                        help=f"weight of the L1 between {LOWPASS_BLOCK}×{LOWPASS_BLOCK} block means (the mean level, shadows)")
    parser.add_argument("--ssim-weight", type=float, default=0.2,
                        help="add this × (1 − SSIM) to the L1 loss (the SSIM the evaluation reports)")
    parser.add_argument("--steps", type=int, default=20000, help="schedule length in steps")
    parser.add_argument("--minutes", type=float, default=75.0, help="schedule length in wall minutes; stops then")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=0, help="processes making batches (0: in the training process)")
    parser.add_argument("--synth", choices=("cpu", "device"), default="cpu",
                        help="make batches with the numpy pipeline on the CPU, or in torch on the training device")
    parser.add_argument("--amp", choices=tuple(AMP_DTYPES), default="none", help="autocast the network (bf16 on a GPU)")
    parser.add_argument("--channels-last", action="store_true", help="channels-last weights and inputs (tensor cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--validate-minutes", type=float, default=5.0)
    parser.add_argument("--checkpoint-minutes", type=float, default=5.0)
    parser.add_argument("--export", type=Path, default=None, help="write EMA weights + card here every --export-minutes")
    parser.add_argument("--export-minutes", type=float, default=20.0)
    parser.add_argument("--export-dtype", choices=tuple(EXPORT_DTYPES), default="float32",
                        help="storage type of the exported weights (float16: half the file)")
    parser.add_argument("--resume", action="store_true", help="continue from <run-dir>/checkpoint.pt")
    parser.add_argument("--init", type=Path, default=None, help="start from these trained weights (fine-tuning)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    args = parser.parse_args(argv)
    if args.synth == "device" and args.workers:
        parser.error("--synth device makes the batches on the device: --workers does not apply")
    if args.synth == "device" and args.layout != "bayer":
        parser.error("--synth device makes Bayer batches only: use --synth cpu for other layouts")
    if args.patch % 2:
        parser.error("--patch must be even (X-Trans cells pair up, the network pools by 2)")
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``lowlight-raw train``; returns the exit status."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device))
    args.run_dir.mkdir(parents=True, exist_ok=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed batch shapes: pick the fastest convolutions once
    try:
        crop = layout_class(args.layout).scale * args.patch
        images = [im for im in cached_images("train", args.cache, args.bsds, args.sources) if min(im.shape[:2]) >= crop]
        val_images = cached_images("validation", args.cache, args.bsds)
    except (FileNotFoundError, ValueError) as exc:
        print(f"lowlight-raw train: {exc}")
        return 1
    trainer = Trainer(args, device)
    if args.resume and trainer.checkpoint_path.is_file():
        trainer.load_checkpoint()
    log = open(args.run_dir / "train.log", "a", buffering=1)

    def report(line: str) -> None:
        """One line to ``train.log`` and to stdout (a remote run shows its progress as it goes)."""
        log.write(line + "\n")
        print(line, flush=True)

    def validate() -> float:
        """EMA validation PSNR of the dark set (the run's score); its SSIM and the clean set's are reported too."""
        psnr, trainer.last_ssim = validation_scores(trainer.ema, val_set, device)
        clean, clean_ssim = validation_scores(trainer.ema, clean_val_set, device)
        report(f"validation step {trainer.step} ema_psnr {psnr:.3f} clean_psnr {clean:.3f} "
               f"ema_ssim {trainer.last_ssim:.4f} clean_ssim {clean_ssim:.4f}")
        return psnr

    report(f"# start step {trainer.step} on {trainer.device_name()} {json.dumps({k: str(v) for k, v in vars(args).items()})}")
    val_set = validation_samples(val_images, layout=args.layout)
    clean_val_set = validation_samples(val_images, clean=True, layout=args.layout)
    stop = {"now": False}

    def request_stop(signum, frame):  # noqa: ARG001 - signal handler signature
        stop["now"] = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    last_val = last_ckpt = last_export = time.monotonic()
    session_start, elapsed_at_start = time.monotonic(), trainer.elapsed
    losses: list[torch.Tensor] = []
    last_log = time.monotonic()
    batches = training_batches(images, trainer)
    while not stop["now"] and trainer.progress() < 1.0:
        losses.append(trainer.train_step(next(batches)))
        trainer.elapsed = elapsed_at_start + time.monotonic() - session_start
        if trainer.step % args.log_every == 0:
            loss, now = float(torch.stack(losses).mean()), time.monotonic()
            report(f"step {trainer.step} loss {loss:.5f} lr {learning_rate(trainer.progress(), args.lr):.2e} "
                   f"steps/s {len(losses) / (now - last_log):.2f} minutes {trainer.elapsed / 60:.1f}")
            losses.clear()
            last_log = now
        now = time.monotonic()
        if now - last_val >= 60 * args.validate_minutes:
            trainer.best_psnr = validate()
            if args.export is not None and now - last_export >= 60 * args.export_minutes:
                trainer.export(args.export)
                last_export = now
            last_val = now
        if now - last_ckpt >= 60 * args.checkpoint_minutes:
            trainer.save_checkpoint()
            last_ckpt = now
    trainer.save_checkpoint()
    trainer.best_psnr = validate()
    report(f"# stop step {trainer.step}")
    if args.export is not None:
        trainer.export(args.export)
    log.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
