"""Where files are enhanced: in this process, or on a Dask cluster. One seam, two backends.

A :class:`Backend` turns a batch of source files into outputs and reports each file as it
finishes: ``(index, EnhanceResult)`` or ``(index, LowlightError)`` (a failing file fails only
itself). ``lowlight-raw enhance`` drives either one the same way.

- :class:`LocalBackend` runs a warm :class:`~lowlight_raw.engine.Enhancer` here, file by file.
- :class:`lowlight_raw.cluster.DaskBackend` (made by :func:`lowlight_raw.cluster.connect`) sends each
  file as a task to a Dask cluster (``bytes in → output bytes out``,
  :func:`lowlight_raw.cluster.enhance_task`) and writes every output here, atomically, with the
  engine's naming rule; the workers never see the requesting side's folders. The ``lr-bridge``
  daemon uses its :meth:`~lowlight_raw.cluster.DaskBackend.outputs` for its jobs (see
  ``lr_bridge/worker.py``). It lives with the workers' side in :mod:`lowlight_raw.cluster`, which
  imports this module (never the other way round).

Tasks are pure, so when Dask reruns one (its worker died) nothing is written twice: only this
side writes, once per finished file. Results are reported in the order of the sources (so
outputs are named exactly as the local engine names them), with at most
``2 × workers + 2`` files in flight, which bounds memory for archives of any size.

Photos travel to the workers: :class:`ClusterSpec` refuses a scheduler address that is neither
loopback nor ``tls://`` unless the user passes ``--dask-insecure``. ``tls://`` uses Dask's TLS
security (:class:`distributed.security.Security`) from ``--dask-tls-ca/--dask-tls-cert/
--dask-tls-key``, or else from Dask's configuration (``distributed.comm.tls.*``).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from .errors import Cancelled, LowlightError
from .local import is_loopback_host
from .options import EnhanceOptions

if TYPE_CHECKING:  # the engine loads torch; the cluster module loads distributed
    from distributed.security import Security

    from .engine import Enhancer, EnhanceResult

FileProgress = Callable[[int, float, str], None]  # (index of the file, fraction of it, stage)
Outcome = tuple[int, "EnhanceResult | LowlightError"]


@dataclass(frozen=True)
class FileInput:
    """One file to enhance remotely: its name (the last component names the output) and where its bytes are."""

    name: str
    path: Path | None = None  # read when the file is sent …
    data: bytes | None = None  # … or its bytes already


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

    def close(self) -> None: ...


class LocalBackend:
    """A warm :class:`~lowlight_raw.engine.Enhancer` in this process, one file after another."""

    def __init__(self, enhancer: Enhancer) -> None:
        self.enhancer = enhancer

    def enhance(
        self,
        sources: Sequence[Path],
        options: EnhanceOptions,
        progress: FileProgress | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> Iterator[Outcome]:
        report = progress or (lambda index, fraction, stage: None)
        for index, source in enumerate(sources):
            try:
                yield index, self.enhancer.enhance(
                    source, options, lambda f, s, index=index: report(index, f, s), should_cancel
                )
            except Cancelled:
                return
            except LowlightError as exc:
                yield index, exc
            except MemoryError:
                yield index, LowlightError(source, "out of memory (try a smaller --tile)")
            except Exception as exc:  # a bug fails this file only: one line, and the batch goes on
                yield index, LowlightError(source, f"internal error ({exc.__class__.__name__}: {exc})")

    def close(self) -> None:
        """Nothing to release: the engine goes with the process."""


def enhance_encoded(enhancer: Enhancer, name: str, data: bytes, options: EnhanceOptions) -> EncodedOutput:
    """Enhance a file given as bytes in a private temporary folder; return the output's bytes.

    The source is written there under its own ``name`` (the engine records it in the output's
    metadata), the output is written beside it with ``overwrite`` and read back; the folder is
    removed whatever happens. Raises :class:`LowlightError` as the engine does.
    """
    with tempfile.TemporaryDirectory(prefix="lowlight-task-") as scratch:
        source = Path(scratch) / "in" / Path(name).name
        source.parent.mkdir()
        source.write_bytes(data)
        scratch_options = dataclasses.replace(options, output_dir=Path(scratch) / "out", overwrite=True)
        result = enhancer.enhance(source, scratch_options)
        return EncodedOutput(result.output.name, result.output.read_bytes(), result.ev, result.noise_source,
                             result.seconds)


class ClusterError(Exception):
    """The cluster cannot be used (unreachable, insecure address refused, bad address); one line."""


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that choose a Dask cluster (``lowlight-raw enhance`` and ``lr-bridge serve``)."""
    group = parser.add_argument_group("Dask cluster (studio GPUs, whole archives)")
    target = group.add_mutually_exclusive_group()
    target.add_argument("--dask-scheduler", metavar="ADDRESS",
                        help="run every file on this Dask scheduler's workers (tls://HOST:8786)")
    target.add_argument("--dask", metavar="local:N", dest="dask_local", type=_parse_local,
                        help="start a LocalCluster of N worker processes on this machine (loopback only)")
    group.add_argument("--dask-insecure", action="store_true",
                       help="allow a plain tcp:// scheduler beyond loopback (photos travel unencrypted)")
    group.add_argument("--dask-tls-ca", type=Path, metavar="FILE", help="TLS: the cluster's CA certificate")
    group.add_argument("--dask-tls-cert", type=Path, metavar="FILE", help="TLS: this client's certificate")
    group.add_argument("--dask-tls-key", type=Path, metavar="FILE", help="TLS: this client's private key")


def _parse_local(text: str) -> int:
    prefix, _, count = text.partition(":")
    if prefix != "local" or not count.isdigit() or not 1 <= int(count) <= 256:
        raise argparse.ArgumentTypeError(f"expected local:N with N from 1 to 256, got {text!r}")
    return int(count)


@dataclass(frozen=True)
class ClusterSpec:
    """Which cluster to use and how to reach it safely."""

    scheduler: str | None = None  # an existing scheduler's address …
    local_workers: int | None = None  # … or a LocalCluster of this many worker processes
    insecure: bool = False
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ClusterSpec | None:
        """The cluster :func:`add_cluster_arguments` asked for, or None (run here)."""
        if args.dask_scheduler is None and args.dask_local is None:
            return None
        return cls(args.dask_scheduler, args.dask_local, args.dask_insecure,
                   args.dask_tls_ca, args.dask_tls_cert, args.dask_tls_key)

    def security(self) -> Security | None:
        """TLS settings for ``tls://``; ``ClusterError`` for an address it refuses."""
        from distributed.security import Security

        address = self.scheduler or ""
        scheme, host = urlsplit(address).scheme, urlsplit(address).hostname
        if scheme == "tls":
            if not (self.tls_ca or self.tls_cert or self.tls_key):
                return None  # Dask's configuration (distributed.comm.tls.*) applies
            if not (self.tls_ca and self.tls_cert and self.tls_key):
                raise ClusterError("TLS needs all of --dask-tls-ca, --dask-tls-cert and --dask-tls-key")
            return Security(tls_ca_file=str(self.tls_ca), tls_client_cert=str(self.tls_cert),
                            tls_client_key=str(self.tls_key), require_encryption=True)
        if scheme != "tcp" or not host:
            raise ClusterError(f"cannot use the Dask scheduler address {address!r}: expected tls://HOST:PORT "
                               "or tcp://HOST:PORT")
        if not (is_loopback_host(host) or self.insecure):
            raise ClusterError(f"refusing to send photos unencrypted to {address}: use tls:// with "
                               "--dask-tls-ca/--dask-tls-cert/--dask-tls-key, or pass --dask-insecure")
        return None
