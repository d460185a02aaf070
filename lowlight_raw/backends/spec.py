"""Which Dask cluster, and how it is reached safely: :class:`ClusterSpec` and its command-line options.

Standard library only: the command lines and the ``lr-bridge`` daemon parse a cluster without
loading Dask.

Photos travel to the workers: :class:`ClusterSpec` refuses a scheduler address that is neither
loopback nor ``tls://`` unless the user passes ``--dask-insecure``. ``tls://`` uses Dask's TLS
security (:class:`distributed.security.Security`) from ``--dask-tls-ca/--dask-tls-cert/
--dask-tls-key``, or else from Dask's configuration (``distributed.comm.tls.*``).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..machine import is_loopback_host

if TYPE_CHECKING:  # the engine loads torch; the cluster module loads distributed
    from distributed.security import Security


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
