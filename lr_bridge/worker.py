"""The daemon's worker thread: it owns the engine (and so the device) and runs jobs one by one.

It loads the daemon's default :class:`~lowlight_raw.engine.Enhancer` at start, and any other
model a job asks for (option ``model``) the first time it is asked for, keeping each warm; it takes jobs from the
:class:`~lr_bridge.jobs.JobQueue` in order and pushes each job's events (``progress``,
``result``, ``error``, ``done``) to the socket loop over an inproc PUSH socket as
``[job id, *message frames]``. A failing file fails that file only, whatever the failure
(a hostile name, a full temporary disk, a bug): everything done for a file is inside its error
handling. A cancelled job stops between tiles and the engine writes nothing for the file it was
on. :attr:`Worker.last_progress` is when the worker last showed life; the daemon's heartbeats
follow it.

With a Dask cluster (``serve --dask-scheduler``) it loads no engine: it connects to the cluster
and hands each job's files to :meth:`lowlight_raw.backends.dask_client.DaskBackend.outputs`, then writes
path jobs' outputs here and sends bytes jobs' outputs back, as without a cluster.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zmq

from lowlight_raw.backends.spec import ClusterSpec
from lowlight_raw.machine import left_by_dead_processes, release_memory
from lowlight_raw.options import EnhanceOptions
from lr_bridge.jobs import Job, JobQueue
from lr_bridge.protocol import FILE_FAILED, INTERNAL, EnhanceRequest, InputFile, encode

if TYPE_CHECKING:  # the cluster module loads distributed, the engine torch: only when a job needs them
    from lowlight_raw.backends.base import Backend
    from lowlight_raw.backends.dask_client import DaskBackend
    from lowlight_raw.engine import EnginePool

log = logging.getLogger("lr_bridge.worker")


def engine_options(request: EnhanceRequest, output_dir: Path | None = None) -> EnhanceOptions:
    """The engine's options for ``request``, validated (``ValueError`` if refused).

    ``output_dir``: the daemon's scratch folder of a bytes job, where outputs always overwrite.
    """
    options = request.options
    if output_dir is not None:
        options = dataclasses.replace(options, output_dir=output_dir, overwrite=True)
    return options.validate()


def _one_line(text: str) -> str:
    return " ".join(text.split())


SCRATCH_PREFIX = "lr-bridge-job-"  # a bytes job's scratch folder: lr-bridge-job-PID-XXXXXXXX in $TMPDIR
_SCRATCH = re.compile(rf"^{SCRATCH_PREFIX}(?P<pid>\d+)-")


def remove_stale_scratch() -> list[Path]:
    """Remove scratch folders of ours (this user's) left by daemons that died; returns them.

    They hold copies of the files clients sent: a daemon killed mid-job must not leave them.
    """
    removed = []
    for entry in left_by_dead_processes(Path(tempfile.gettempdir()), _SCRATCH):
        if entry.is_dir(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_uid == os.getuid():
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


def source_of(item: InputFile) -> Path:
    """The file a path job's item names (its ``path``, else its ``name``)."""
    return Path(item.path or item.name)


class Worker(threading.Thread):
    """Loads the engine, then runs queued jobs until the queue is closed."""

    def __init__(self, context: zmq.Context, events_endpoint: str, jobs: JobQueue, model: str, device: str,
                 cluster: ClusterSpec | None = None) -> None:
        super().__init__(name="lr-bridge-worker", daemon=True)
        self._context = context
        self._events_endpoint = events_endpoint
        self._jobs = jobs
        self._model_request = model
        self._device_request = device
        self.state = "loading"  # → "ready" | "failed"
        self.load_error: str | None = None
        self.device: str | None = None
        self.model_info: dict[str, Any] | None = None
        self.running: Job | None = None
        self.running_index = 0
        self.last_progress = time.monotonic()  # when the worker last showed life (monotonic clock)
        self._engines: EnginePool | None = None  # the warm engines (made on first use: it loads torch)
        self._push: zmq.Socket | None = None
        self._cluster = cluster
        self._backend: DaskBackend | None = None  # set once connected to the cluster

    def run(self) -> None:
        self._push = self._context.socket(zmq.PUSH)
        self._push.linger = 1000
        self._push.connect(self._events_endpoint)
        try:
            if self._load():
                while (job := self._jobs.take()) is not None:
                    self.running, self.running_index, self.last_progress = job, 0, time.monotonic()
                    try:
                        self._run_job(job)
                    finally:
                        self.running = job = None  # drop the job's file bytes before waiting for the next
                        release_memory()
        except Exception:  # a bug here ends the thread; the daemon sees it and stops (clients notice)
            log.exception("the worker failed")
        finally:
            self._push.close()
            if self._backend is not None:
                self._backend.close()

    def _load(self) -> bool:
        if self._cluster is not None:
            return self._connect()
        try:
            enhancer = self._enhancer_for(None)
        except Exception as exc:  # any failure to load means the same: this daemon cannot serve
            self.load_error = _one_line(str(exc)) or exc.__class__.__name__
            self.state = "failed"
            log.error("cannot load the engine: %s", self.load_error)
            return False
        card = enhancer.card
        self.device = str(enhancer.device)
        self.model_info = {"name": card.name, "sha256": card.sha256}
        self.state = "ready"
        log.info("engine ready on %s (model %s)", self.device, card.name)
        return True

    def _connect(self) -> bool:
        from lowlight_raw.backends.dask_client import connect, describe_workers

        try:
            self._backend = connect(self._cluster, self._model_request, self._device_request)
            self.device, self.model_info = describe_workers(self._backend.client, self._model_request)
        except Exception as exc:  # unreachable, refused, or the workers cannot load the model
            self.load_error = _one_line(str(exc)) or exc.__class__.__name__
            self.state = "failed"
            log.error("cannot use the Dask cluster: %s", self.load_error)
            return False
        self.state = "ready"
        log.info("engine ready on %s (model %s)", self.device, self.model_info["name"])
        return True

    def _enhancer_for(self, model: str | None):
        """The warm engine for ``model`` (None: the daemon's default), loaded on first use."""
        if self._engines is None:
            from lowlight_raw.engine import EnginePool

            self._engines = EnginePool(self._device_request, on_load=lambda name, engine: log.info(
                "model %s ready (%s)", name, engine.card.name))
        return self._engines.engine(model or self._model_request)

    def _emit(self, job: Job, message_type: str, blobs: tuple[bytes, ...] = (), **fields: Any) -> None:
        assert self._push is not None
        frames = encode(message_type, job.request_id, blobs, job=job.id, **fields)
        self._push.send_multipart([job.id.encode(), *frames])
        self.last_progress = time.monotonic()

    def _run_job(self, job: Job) -> None:
        """Run ``job``'s files on the cluster or on the warm engine for its model, one :class:`Backend` either way."""
        if self._backend is not None:
            self._done(job, *self._run_files(job, self._backend))
            return
        try:
            enhancer = self._enhancer_for(job.request.options.model_choice)
        except Exception as exc:  # a model that cannot load fails this job's files, never the daemon
            reason = _one_line(str(exc)) or exc.__class__.__name__
            log.error("job %s: cannot load model %s: %s", job.id, job.request.options.model_choice, reason)
            self._fail_all(job, f"cannot load the model: {reason}")
            return
        try:
            scratch = (tempfile.TemporaryDirectory(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", ignore_cleanup_errors=True)
                       if job.request.as_bytes else nullcontext(None))
        except OSError as exc:  # e.g. the temporary disk is full: every file fails, the worker goes on
            self._fail_all(job, f"the daemon has no temporary space ({exc.strerror or exc})")
            return
        from lowlight_raw.backends.base import LocalBackend

        with scratch as scratch_dir:
            ok, failed = self._run_files(job, LocalBackend(enhancer, Path(scratch_dir) if scratch_dir else None))
        self._done(job, ok, failed)  # after the scratch folder is gone

    def _fail_all(self, job: Job, reason: str) -> None:
        """Every file of ``job`` fails with ``reason`` (the job could not start)."""
        for index, item in enumerate(job.request.files):
            self._emit(job, "error", code=FILE_FAILED, index=index, file=item.name, message=_one_line(f"{item.name}: {reason}"))
        self._emit(job, "done", ok=0, failed=len(job.request.files), cancelled=False)

    def _run_files(self, job: Job, backend: Backend) -> tuple[int, int]:
        """Every file of ``job`` through ``backend``: a ``result`` or an ``error`` each; the numbers done and failed."""
        from lowlight_raw.backends.base import FileInput
        from lowlight_raw.errors import InternalError, LowlightError

        files, total = job.request.files, len(job.request.files)

        def progress(index: int, fraction: float, stage: str) -> None:
            self.running_index = index
            fraction = min(max(float(fraction), 0.0), 1.0)
            self._emit(job, "progress", index=index, total=total, file=files[index].name, fraction=fraction, stage=stage)

        options = engine_options(job.request)
        if job.request.as_bytes:
            outcomes = backend.outputs([FileInput(item.name, data=item.data or b"") for item in files], options, progress,
                                       job.cancel.is_set)
        else:
            outcomes = backend.enhance([source_of(item) for item in files], options, progress, job.cancel.is_set)
        ok = failed = 0
        for index, outcome in outcomes:
            item = files[index]
            if isinstance(outcome, LowlightError):
                failed += 1
                concerns_file = outcome.path in (None, Path(item.name), source_of(item))
                code = INTERNAL if isinstance(outcome, InternalError) else FILE_FAILED
                self._emit(job, "error", code=code, index=index, file=item.name,
                           message=_one_line(f"{item.name}: {outcome.reason if concerns_file else outcome}"))
                continue
            ok += 1
            fields = {"index": index, "total": total, "file": item.name, "ev": outcome.ev,
                      "seconds": outcome.seconds, "noise_source": outcome.noise_source}
            if job.request.as_bytes:
                self._emit(job, "result", (outcome.data,), output=outcome.name, bytes=True, **fields)
            else:
                self._emit(job, "result", output=str(outcome.output), **fields)
        return ok, failed

    def _done(self, job: Job, ok: int, failed: int) -> None:
        """``job`` is over: ``done``, cancelled when files were left."""
        cancelled = job.cancel.is_set() and ok + failed < len(job.request.files)
        log.info("job %s: %d ok, %d failed%s", job.id, ok, failed, ", cancelled" if cancelled else "")
        self._emit(job, "done", ok=ok, failed=failed, cancelled=cancelled)
