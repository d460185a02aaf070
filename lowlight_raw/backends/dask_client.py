"""The requesting side of a Dask cluster: connecting safely, and :class:`DaskBackend`.

:func:`connect` reaches the scheduler a :class:`~lowlight_raw.backends.spec.ClusterSpec` names
and registers the workers' engine plugin (:mod:`.dask_worker`) where a worker was not started
with it preloaded. :class:`DaskBackend` sends each file as one task and writes every output here,
atomically, with the engine's naming rule. Results are reported in the order of the sources (so
outputs are named exactly as the local engine names them), with at most ``2 × workers + 2`` files
in flight, which bounds memory for archives of any size. The ``lr-bridge`` daemon uses
:meth:`DaskBackend.outputs` for its jobs (``lr_bridge/worker.py``).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import dask
from distributed import Client, Future, LocalCluster, wait

from ..engine import EnhanceResult
from ..errors import LowlightError
from ..files.writers import make_output_dir, output_path_for, write_encoded
from ..options import EnhanceOptions
from .base import EncodedOutput, FileInput, FileProgress, Outcome
from .dask_worker import PLUGIN_NAME, EnginePlugin, enhance_task
from .spec import ClusterError, ClusterSpec

CONNECT_TIMEOUT_S = 5.0  # an unreachable scheduler fails within this


POLL_S = 0.2  # how often a wait for a cluster result checks for cancellation


def describe_workers(client: Client, model: str) -> tuple[str, dict[str, str]]:
    """``("dask tcp://… (N workers: cuda, cpu)", {name, sha256})`` of the workers' engines for ``model``."""
    engines = client.run(lambda dask_worker: dask_worker.plugins[PLUGIN_NAME].describe(model))
    devices = ", ".join(sorted({engine["device"] for engine in engines.values()})) or "none yet"
    first = next(iter(engines.values()), {"name": "-", "sha256": ""})
    device = f"dask {client.scheduler.address} ({len(engines)} workers: {devices})"
    return device, {"name": first["name"], "sha256": first["sha256"]}


# Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536, which stops glibc from adapting
# its mmap threshold: the engine's large numpy temporaries are then mapped and unmapped on every
# allocation, ~1.6x slower per file (measured). Unset (null) it, here and in remote workers' config.
NANNY_ENVIRON = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


def start_local_cluster(workers: int, preload: list[str] | None = None) -> LocalCluster:
    """A LocalCluster of ``workers`` one-thread worker processes, everything bound to 127.0.0.1."""
    with dask.config.set(NANNY_ENVIRON):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                            dashboard_address="127.0.0.1:0", preload=preload or [])


def connect(spec: ClusterSpec, model: str = "auto", device: str = "auto") -> DaskBackend:
    """A :class:`DaskBackend` on ``spec``'s cluster, its workers' engines warm for ``model``.

    Raises :class:`ClusterError` (one line) when the scheduler cannot be reached within
    :data:`CONNECT_TIMEOUT_S` or the address is refused.
    """
    cluster = None
    if spec.local_workers is not None:
        cluster = start_local_cluster(spec.local_workers)
        client = Client(cluster)
    else:
        security = spec.security()
        try:
            client = Client(spec.scheduler, timeout=CONNECT_TIMEOUT_S, security=security)
        except (OSError, TimeoutError, ValueError) as exc:
            reason = " ".join(str(exc).split()) or exc.__class__.__name__
            raise ClusterError(f"cannot reach the Dask scheduler at {spec.scheduler}: {reason}") from None
    try:
        client.register_plugin(EnginePlugin(model, device), name=PLUGIN_NAME)
    except BaseException:
        client.close()
        if cluster is not None:
            cluster.close()
        raise
    return DaskBackend(client, model, cluster)


class DaskBackend:
    """Each file is one Dask task on the cluster behind ``client``; outputs are written here."""

    def __init__(self, client: Client, model: str, cluster: LocalCluster | None = None) -> None:
        """``model``: the default model for options without one; ``cluster``: a LocalCluster to close with this."""
        self.client = client
        self.default_model = model
        self._cluster = cluster

    def outputs(
        self,
        files: Sequence[FileInput],
        options: EnhanceOptions,
        progress: FileProgress | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> Iterator[tuple[int, EncodedOutput | LowlightError]]:
        """Each file's encoded output (or its error, naming ``FileInput.name``), in order of ``files``.

        Stops early, cancelling what is in flight, once ``should_cancel`` returns true.
        """
        report = progress or (lambda index, fraction, stage: None)
        cancelled = should_cancel or (lambda: False)
        model = options.model_choice or self.default_model
        wire_options = dataclasses.replace(options, output_dir=None, overwrite=True, model_choice=model)
        in_flight: deque[tuple[int, Future | LowlightError]] = deque()
        upcoming = iter(enumerate(files))
        try:
            while True:
                window = 2 * max(len(self.client.nthreads()), 1) + 2
                while len(in_flight) < window and (item := next(upcoming, None)) is not None:
                    index, file = item
                    in_flight.append((index, self._submit(enhance_task, file, wire_options)))
                if not in_flight:
                    return
                index, future = in_flight[0]
                report(index, 0.0, "cluster")  # files are reported in order: this one is next
                while not isinstance(future, LowlightError) and not future.done():
                    if cancelled():
                        return
                    try:
                        wait([future], timeout=POLL_S)
                    except TimeoutError:
                        pass
                in_flight.popleft()
                yield index, self._outcome(files[index].name, future)
        finally:
            pending = [future for _, future in in_flight if not isinstance(future, LowlightError)]
            if pending:
                self.client.cancel(pending)

    def _submit(self, task: Callable[..., Any], file: FileInput, options: EnhanceOptions) -> Future | LowlightError:
        """Send one file as a task (its bytes travel inside it, so Dask can rerun it anywhere)."""
        try:
            data = file.read()
        except LowlightError as exc:
            return exc
        with warnings.catch_warnings():  # a raw file is a "large graph" to Dask; that is the point
            warnings.filterwarnings("ignore", message=".*[Ll]arge graph.*")
            return self.client.submit(task, Path(file.name).name, data, options, pure=False)

    @staticmethod
    def _outcome(name: str, future: Future | LowlightError) -> EncodedOutput | LowlightError:
        if isinstance(future, LowlightError):
            return future
        try:
            value = future.result()
        except Exception as exc:  # the worker died too often (KilledWorker), or a fault outside the engine
            text = " ".join(str(exc).split()) or exc.__class__.__name__
            return LowlightError(name, f"failed on the cluster ({exc.__class__.__name__}: {text})")
        if isinstance(value, str):  # the engine's own one-line reason
            return LowlightError(name, value)
        return value

    def enhance(
        self,
        sources: Sequence[Path],
        options: EnhanceOptions,
        progress: FileProgress | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> Iterator[Outcome]:
        options.validate()
        files = [FileInput(str(source), path=Path(source)) for source in sources]
        for index, output in self.outputs(files, options, progress, should_cancel):
            if isinstance(output, LowlightError):
                yield index, output
                continue
            source = Path(sources[index])
            try:
                if options.output_dir is not None:
                    make_output_dir(options.output_dir)
                target = output_path_for(source, options.output_format, options.output_dir, options.overwrite)
                written = write_encoded(output.data, target, source, options.overwrite)
            except LowlightError as exc:
                yield index, exc
                continue
            yield index, EnhanceResult(source, written, output.ev, output.noise_source, output.seconds)

    def close(self) -> None:
        """Disconnect from the scheduler; stop the LocalCluster if this backend started it."""
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()
