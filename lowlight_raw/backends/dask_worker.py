"""The workers' side of a Dask cluster: a warm engine per model, and the task that enhances one file.

Start workers with the engine preloaded (one warm :class:`~lowlight_raw.engine.Enhancer` per
model, loaded once per worker process, on that worker's own device)::

    dask worker tls://SCHEDULER:8786 --nthreads 1 --preload lowlight_raw.cluster

Without the preload a client registers :class:`EnginePlugin` itself when it connects
(:func:`lowlight_raw.backends.dask_client.connect`). Each file is one task, :func:`enhance_task`:
bytes in, the output file's bytes out; a worker runs one file at a time (its engine is locked),
so one worker per GPU.
"""

from __future__ import annotations

import logging
import threading

from distributed import WorkerPlugin, get_worker

from ..engine import EnginePool, Enhancer
from ..errors import LowlightError
from ..options import EnhanceOptions
from .base import EncodedOutput, FileInput, enhance_encoded

log = logging.getLogger(__name__)


PLUGIN_NAME = "lowlight-raw-engine"


_pools: dict[str, EnginePool] = {}  # this worker process's warm engines, by the device asked for


_pools_lock = threading.Lock()


class EnginePlugin(WorkerPlugin):
    """The engine on a worker: warm engines (kept by the worker process, so a plugin registered again
    by the next client, or after ``--preload``, finds them loaded), one per weight file, on the
    worker's own device."""

    idempotent = True  # a client registering it again does not run setup again
    name = PLUGIN_NAME

    def __init__(self, model: str = "auto", device: str = "auto") -> None:
        """``model``: loaded at setup (others on first use); ``device``: auto picks the worker's GPU, else CPU."""
        self.default_model = model
        self.device = device

    def setup(self, worker=None) -> None:
        self.enhancer(self.default_model)

    def enhancer(self, model: str) -> Enhancer:
        """The warm engine for ``model`` (``auto``, a shipped name, or a weight file on the worker)."""
        return self.pool.engine(model)

    @property
    def pool(self) -> EnginePool:
        """This worker process's engines on this plugin's device (kept across plugins and clients)."""
        with _pools_lock:
            if self.device not in _pools:
                _pools[self.device] = EnginePool(self.device, on_load=lambda name, engine: log.info(
                    "lowlight-raw: model %s ready on %s", engine.card.name, engine.device))
            return _pools[self.device]

    def run(self, name: str, data: bytes, options: EnhanceOptions) -> EncodedOutput:
        """Enhance one file given as bytes with the engine for ``options.model_choice``, one file at a time."""
        with self.pool.lock:
            return enhance_encoded(self.enhancer(options.model_choice or self.default_model), FileInput(name, data=data), options)

    def describe(self, model: str) -> dict[str, str]:
        """The device and model card of the engine for ``model``, for ``lr-bridge status``."""
        engine = self.enhancer(model)
        return {"device": str(engine.device), "name": engine.card.name, "sha256": engine.card.sha256}


def warm_engines() -> list[str]:
    """The model names of this worker process's warm engines (each loaded once), sorted."""
    return sorted(name for pool in _pools.values() for name in pool.warm())


def dask_setup(worker) -> None:
    """``dask worker --preload lowlight_raw.cluster``: load the ``auto`` engine when the worker starts."""
    EnginePlugin().setup(worker)


def enhance_task(name: str, data: bytes, options: EnhanceOptions) -> EncodedOutput | str:
    """The Dask task for one file: its output, or the engine's one-line reason it failed.

    Pure: running it twice (after its worker died) gives the same bytes and writes nothing.
    """
    plugin = get_worker().plugins[PLUGIN_NAME]
    try:
        return plugin.run(name, data, options)
    except LowlightError as exc:
        return exc.reason
