"""The whole job for one file: decode → pack → amplify → noise map → network (blended with a clean
demosaic for a clean photo, :mod:`.restore`) → colour → write.

:class:`Enhancer` loads the model once (the daemon keeps one warm) and the network for another
sensor layout (X-Trans, linear) when the first such file comes; :meth:`Enhancer.enhance` turns
one RAW into one output file and never touches the source.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import Cancelled, LowlightError
from .files.raw import read_raw
from .files.writers import OutputImage, make_output_dir, output_path_for, write_output
from .layouts.registry import layout_class
from .networks.catalog import is_named, resolve_model
from .networks.weights import ModelCard, load_model
from .options import EnhanceOptions
from .pipeline.device import choose_device, cpu_threads, freed_memory_reused, release_freed_memory
from .pipeline.exposure import auto_ev
from .pipeline.network_input import amplified_planes, clipped_at_black
from .pipeline.noise import profile_for
from .pipeline.restore import restore

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class EnhanceResult:
    """What one finished file produced."""

    source: Path
    output: Path
    ev: float
    noise_source: str
    seconds: dict[str, float]


class Enhancer:
    """A loaded model on a device, ready to enhance files one after another."""

    def __init__(
        self,
        model: str | Path = "auto",
        device: str = "auto",
        tile: int | None = None,
        noiseprofiles: Path | None = None,
        bf16: bool = True,
    ) -> None:
        """``model``: ``auto``, a shipped model's name or a weight file (see :mod:`.registry`);
        ``tile``: packed pixels a side of the network's tiles (``None``: :func:`.tiling.automatic_tile`);
        ``bf16``: run the network in bf16 where the device computes it natively (CUDA, a CPU with
        AVX512-BF16 or AMX; :func:`.tiling.use_bf16`), else float32.

        ``self.network``/``self.card``: the network loaded now (a name: its Bayer network; a file:
        that file's), the one status reports."""
        self.device = choose_device(device)
        self.choice = model
        self.network, self.card = load_model(resolve_model(model, self.device), self.device)
        self._networks: dict[str, tuple[torch.nn.Module, ModelCard]] = {self.network.config.layout: (self.network, self.card)}
        self.tile = tile
        self.noiseprofiles = noiseprofiles
        self.bf16 = bf16

    def network_for(self, source: Path, layout: str) -> tuple[torch.nn.Module, ModelCard]:
        """The network for a file of sensor ``layout``: loaded on first use for a named model; a
        weight file serves only the layout its card names (else :class:`LowlightError`)."""
        if layout not in self._networks:
            if not is_named(self.choice):
                raise LowlightError(source, f"{layout_class(layout).label} sensor, but the model {self.choice} is for "
                                            f"{self.network.layout.label} sensors")
            try:
                weights = resolve_model(self.choice, self.device, layout)
            except LowlightError as exc:  # the user chose the model for a batch: name the photo
                raise LowlightError(source, exc.reason) from exc
            self._networks[layout] = load_model(weights, self.device)
        return self._networks[layout]

    def enhance(
        self,
        source: Path,
        options: EnhanceOptions,
        progress: Progress | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> EnhanceResult:
        """Enhance ``source`` into a new file; raises :class:`LowlightError` naming the file on failure.

        ``options.model_choice`` is not read here: it chose which :class:`Enhancer` the caller uses.
        """
        report = progress or (lambda fraction, stage: None)
        source = Path(source)
        options.validate()
        t0 = time.perf_counter()
        seconds: dict[str, float] = {}
        if options.output_dir is not None:
            make_output_dir(options.output_dir)
        output = output_path_for(source, options.output_format, options.output_dir, options.overwrite)
        if self.device.type == "cpu":
            torch.set_num_threads(cpu_threads())  # per file: the machine's load changes
        report(0.0, "decode")
        photo = read_raw(source)
        network, _ = self.network_for(source, photo.layout.kind)
        packed, photo = photo.packed()
        with freed_memory_reused(packed.shape[-2] * packed.shape[-1] * photo.layout.scale**2):
            ev = options.ev if options.ev is not None else auto_ev(packed, photo.color, photo.layout)
            gain = 2.0**ev
            profile = profile_for(packed, photo.make, photo.camera_model, photo.iso or 0.0, photo.masked, self.noiseprofiles,
                                  layout=photo.layout)
            blacks_clipped = clipped_at_black(packed)
            planes = amplified_planes(packed, gain, profile, in_place=True, blacks_clipped=blacks_clipped)  # noise channels: per tile
            del packed
            seconds["decode"] = time.perf_counter() - t0

            t1 = time.perf_counter()
            report(0.1, "network")
            try:
                full, _ = restore(
                    network,
                    planes,
                    photo.layout,
                    profile,
                    gain,
                    photo.color.wb,
                    self.device,
                    tile=self.tile,
                    should_cancel=should_cancel,
                    on_progress=lambda f: report(0.1 + 0.8 * f, "network"),
                    bf16=self.bf16,
                    blacks_clipped=blacks_clipped,
                )
            except torch.OutOfMemoryError as exc:
                raise LowlightError(source, f"out of memory on {self.device} (try a smaller --tile)") from exc
            if options.strength < 1.0:  # in place: no full-size temporaries beside the two renderings
                naive = photo.layout.naive_rgb(torch.from_numpy(np.clip(planes[None], 0.0, 1.0, dtype=np.float32)))[0].permute(1, 2, 0).numpy()
                full *= np.float32(options.strength)
                naive *= np.float32(1.0 - options.strength)
                full += naive
                del naive
            del planes  # not needed to write: memory holds the result alone from here on
            release_freed_memory(full.shape[0] * full.shape[1])
            camera_rgb = photo.layout.crop_to_visible(full)  # a view: no copy of the full-resolution result
            torch.from_numpy(camera_rgb).clamp_(0.0, 1.0)  # in place, by torch's threads (24 MP: 0.02 s, np.clip 0.045)
            seconds["network"] = time.perf_counter() - t1

            if should_cancel is not None and should_cancel():  # last chance before anything is written
                raise Cancelled(source, "cancelled")
            t2 = time.perf_counter()
            report(0.9, "write")
            image = OutputImage(
                camera_rgb=camera_rgb,
                color=photo.color,
                orientation=photo.orientation,
                make=photo.make,
                camera_model=photo.camera_model,
                source=source,
                ev=ev,
                strength=options.strength,
                linear_source=photo.layout.kind == "linear",
            )
            del full, camera_rgb  # the image holds the result alone: it is released once written
            written = write_output(
                image,
                output,
                options.output_format,
                linear_tiff=options.linear_tiff,
                overwrite=options.overwrite,
                release_pixels=True,
            )
            seconds["write"] = time.perf_counter() - t2
            seconds["total"] = time.perf_counter() - t0
            report(1.0, "done")
            return EnhanceResult(source=source, output=written, ev=ev, noise_source=profile.source, seconds=seconds)


class EnginePool:
    """Warm engines, one per weight file, all on one device: what the daemon and each Dask worker
    process keep loaded. The first engine resolves the device (``auto``: CUDA, then MPS, then the
    CPU); later ones load on that same device. ``lock`` (re-entrant) serialises loads; a caller may
    also hold it around a file to run one at a time (one engine's worth of device memory)."""

    def __init__(self, device: str = "auto", on_load: Callable[[str | Path, Enhancer], None] | None = None) -> None:
        """``on_load(model, engine)`` is called after each engine loads (e.g. to log it)."""
        self.device_request = device
        self.on_load = on_load
        self.device: torch.device | None = None  # resolved by the first engine
        self.lock = threading.RLock()
        self._engines: dict[Path, Enhancer] = {}

    def engine(self, model: str | Path) -> Enhancer:
        """The warm engine for ``model`` (``auto``, a shipped name or a weight file), loaded on first use."""
        with self.lock:
            device = self.device or choose_device(self.device_request)
            weights = resolve_model(model, device)
            if weights not in self._engines:
                self._engines[weights] = Enhancer(model, device=str(device))
                self.device = self._engines[weights].device
                if self.on_load is not None:
                    self.on_load(model, self._engines[weights])
            return self._engines[weights]

    def warm(self) -> list[str]:
        """The model names of the engines loaded so far."""
        with self.lock:
            return [engine.card.name for engine in self._engines.values()]
