"""Where files are enhanced: the one seam (:class:`Backend`) and the backend in this process.

A :class:`Backend` turns a batch of source files into outputs and reports each file as it
finishes: ``(index, EnhanceResult)`` or ``(index, LowlightError)`` (a failing file fails only
itself). ``lowlight-raw enhance`` and the ``lr-bridge`` daemon drive either one the same way.

- :class:`LocalBackend` runs a warm :class:`~lowlight_raw.engine.Enhancer` here, file by file.
- :class:`lowlight_raw.backends.dask_client.DaskBackend` (made by
  :func:`lowlight_raw.backends.dask_client.connect`) sends each file as a task to a Dask cluster
  (``bytes in → output bytes out``, :func:`lowlight_raw.backends.dask_worker.enhance_task`, which
  runs :func:`enhance_encoded`) and writes every output here, atomically, with the engine's
  naming rule; the workers never see the requesting side's folders.

Tasks are pure, so when Dask reruns one (its worker died) nothing is written twice: only the
requesting side writes, once per finished file.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Protocol, TypeVar

from ..errors import Cancelled, InternalError, LowlightError
from ..options import EnhanceOptions

if TYPE_CHECKING:  # the engine loads torch; the cluster module loads distributed

    from ..engine import Enhancer, EnhanceResult


FileProgress = Callable[[int, float, str], None]  # (index of the file, fraction of it, stage)


Outcome = tuple[int, "EnhanceResult | LowlightError"]
Result = TypeVar("Result")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileInput:
    """One file to enhance remotely: its name (the last component names the output) and where its bytes are."""

    name: str
    path: Path | None = None  # read when the file is sent …
    data: bytes | None = None  # … or its bytes already

    def read(self) -> bytes:
        """The file's bytes; raises :class:`LowlightError` naming it when they cannot be read."""
        if self.data is not None:
            return self.data
        try:
            return Path(self.path or self.name).read_bytes()
        except OSError as exc:
            raise LowlightError(self.name, f"cannot read ({exc.strerror or exc})") from exc


@dataclass(frozen=True)
class EncodedOutput:
    """One finished file as a worker returns it: the output file's name and bytes, and how it was made."""

    name: str
    data: bytes
    ev: float
    noise_source: str
    seconds: dict[str, float]


class Backend(Protocol):
    """Enhances batches of files; :meth:`close` releases what it holds (engines, cluster connections)."""

    def enhance(
        self,
        sources: Sequence[Path],
        options: EnhanceOptions,
        progress: FileProgress | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> Iterator[Outcome]:
        """Enhance every source; yields each file's outcome once, in the order of ``sources``."""
        ...

    def outputs(
        self,
        files: Sequence[FileInput],
        options: EnhanceOptions,
        progress: FileProgress | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> Iterator[tuple[int, EncodedOutput | LowlightError]]:
        """Each file's output as bytes (or its error, naming ``FileInput.name``), in the order of ``files``;
        nothing is written on this side."""
        ...

    def close(self) -> None: ...


class LocalBackend:
    """A warm :class:`~lowlight_raw.engine.Enhancer` in this process, one file after another.

    ``scratch``: where files given as bytes are put while they are enhanced (a private temporary
    folder is made in it for each; default: the system's temporary folder).
    """

    def __init__(self, enhancer: Enhancer, scratch: Path | None = None) -> None:
        self.enhancer = enhancer
        self.scratch = scratch

    def enhance(
        self,
        sources: Sequence[Path],
        options: EnhanceOptions,
        progress: FileProgress | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> Iterator[Outcome]:
        report = progress or _no_progress
        return each_file(sources, lambda index: self.enhancer.enhance(
            sources[index], options, _of_file(report, index), should_cancel), should_cancel)

    def outputs(
        self,
        files: Sequence[FileInput],
        options: EnhanceOptions,
        progress: FileProgress | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> Iterator[tuple[int, EncodedOutput | LowlightError]]:
        report = progress or _no_progress
        return each_file([file.name for file in files], lambda index: enhance_encoded(
            self.enhancer, files[index], options, _of_file(report, index), should_cancel, self.scratch), should_cancel)

    def close(self) -> None:
        """Nothing to release: the engine goes with the process."""


def each_file(names: Sequence[str | Path], enhance_one: Callable[[int], Result],
              should_cancel: Callable[[], bool] | None = None) -> Iterator[tuple[int, Result | LowlightError]]:
    """The one per-file loop of every backend here: ``enhance_one(index)`` for each file, in order.

    A failing file fails only itself, as one line naming it (``names[index]``): the engine's own
    :class:`LowlightError`, running out of memory, or a bug (an :class:`InternalError`, logged with
    its traceback); the batch goes on. It stops, yielding nothing more, when ``should_cancel``
    returns true before a file or the engine stops a file for it (:class:`Cancelled`).
    """
    for index, name in enumerate(names):
        if should_cancel is not None and should_cancel():
            return
        try:
            yield index, enhance_one(index)
        except Cancelled:
            return
        except LowlightError as exc:
            yield index, exc
        except MemoryError:
            yield index, LowlightError(name, "out of memory (try a smaller --tile)")
        except Exception as exc:  # a bug fails this file only: one line, and the batch goes on
            log.exception("unexpected failure on %s", ascii(str(name)))
            yield index, InternalError(name, f"internal error ({exc.__class__.__name__}: {exc})")


def _no_progress(index: int, fraction: float, stage: str) -> None:
    """A batch's progress that nobody watches."""


def _of_file(report: FileProgress, index: int) -> Callable[[float, str], None]:
    """The engine's per-file progress ``(fraction, stage)`` as the batch's ``(index, fraction, stage)``."""
    return lambda fraction, stage: report(index, fraction, stage)


def enhance_encoded(enhancer: Enhancer, file: FileInput, options: EnhanceOptions,
                    progress: Callable[[float, str], None] | None = None, should_cancel: Callable[[], bool] | None = None,
                    scratch: Path | None = None) -> EncodedOutput:
    """Enhance a file given as bytes in a private temporary folder (in ``scratch``); return the output's bytes.

    The source is written there under a usable form of its own name (:func:`scratch_name`; the
    engine records it in the output's metadata and names the output after it), the output is
    written beside it with ``overwrite`` and read back; the folder is removed whatever happens.
    Raises :class:`LowlightError` as the engine does, naming ``file.name`` where the failure
    concerns the temporary copy.
    """
    data = file.read()
    try:
        folder = tempfile.TemporaryDirectory(prefix="lowlight-task-", dir=scratch, ignore_cleanup_errors=True)
    except OSError as exc:
        raise LowlightError(file.name, f"no temporary space ({exc.strerror or exc})") from exc
    with folder as scratch_dir:
        source = Path(scratch_dir) / "in" / scratch_name(file.name)
        try:
            source.parent.mkdir()
            source.write_bytes(data)
        except OSError as exc:  # no space, no inodes …
            raise LowlightError(file.name, f"cannot store the file ({exc.strerror or exc})") from exc
        scratch_options = dataclasses.replace(options, output_dir=Path(scratch_dir) / "out", overwrite=True)
        try:
            result = enhancer.enhance(source, scratch_options, progress, should_cancel)
            return EncodedOutput(result.output.name, result.output.read_bytes(), result.ev, result.noise_source,
                                 result.seconds)
        except Cancelled:
            raise
        except LowlightError as exc:
            if exc.path is not None and exc.path.is_relative_to(scratch_dir):
                raise LowlightError(file.name, exc.reason) from exc
            raise


MAX_SCRATCH_NAME_BYTES = 160  # room left for "_lowlight_9999.ext" and a temporary suffix under NAME_MAX
_FALLBACK_STEM = "raw"


def scratch_name(name: str) -> str:
    """A plain, short, valid UTF-8 file name for bytes a client called ``name``.

    Its last component, keeping the client's stem (outputs are named after it) where it is
    usable: ``..``, ``sub/..``, control characters, lone surrogates and over-long names all map
    to something that can be created.
    """
    last = PurePosixPath(name.replace("\\", "/")).name
    text = last.encode("utf-8", "replace").decode("utf-8")
    text = "".join("_" if unicodedata.category(c)[0] == "C" else c for c in text).lstrip(".")
    suffix = PurePosixPath(text).suffix if len(PurePosixPath(text).suffix) <= 10 else ""
    stem = text[: len(text) - len(suffix)] if suffix else text
    while len((stem + suffix).encode("utf-8")) > MAX_SCRATCH_NAME_BYTES:
        stem = stem[:-1]
    return (stem or _FALLBACK_STEM) + suffix
