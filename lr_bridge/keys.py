"""CurveZMQ keys for a remote daemon: generating key pairs, authorising clients, loading keys.

Key files are ZeroMQ certificates (``NAME.key`` public, ``NAME.key_secret`` secret, as written
by :func:`zmq.auth.create_certificates`). The daemon needs its secret certificate and a
directory of authorised clients' public ``.key`` files; a client needs the daemon's public key
and its own secret certificate.

Every daemon (unless started with ``--insecure-plaintext``) is a CURVE server, also a local one:
at start it makes a fresh key pair for itself and one for its *owner*, published only in its
private state file (:mod:`lr_bridge.state`). :class:`Admission` is the ZAP check: the owner's key
and the authorised clients' keys get in, nothing else does.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth


class KeyFileError(Exception):
    """A key file is missing or not a ZeroMQ certificate (message names the file)."""


def default_key_dir() -> Path:
    """``$XDG_CONFIG_HOME/lowlight-raw/keys`` (``~/.config/lowlight-raw/keys`` by default)."""
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "lowlight-raw" / "keys"


def generate_keypair(directory: Path, name: str) -> tuple[Path, Path]:
    """Write ``NAME.key`` and ``NAME.key_secret`` (mode 600) in ``directory``; never overwrites."""
    if not name or Path(name).name != name or name.startswith("."):
        raise KeyFileError(f"{name!r}: a key name must be a plain file name")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    for path in (public, secret):
        if path.exists():
            raise KeyFileError(f"{path}: already exists (remove it first to make a new key)")
    old_umask = os.umask(0o077)
    try:
        zmq.auth.create_certificates(directory, name)
    finally:
        os.umask(old_umask)
    public.chmod(0o644)
    return public, secret


def authorize_client(public_key_file: Path, authorized_dir: Path) -> Path:
    """Copy a client's public certificate into the daemon's directory of authorised keys."""
    read_public_key(public_key_file)
    authorized_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = authorized_dir / (public_key_file.stem + ".key")
    if target.exists():
        raise KeyFileError(f"{target}: a client key of that name is already authorised")
    shutil.copyfile(public_key_file, target)
    return target


def read_public_key(path: Path) -> bytes:
    """The Z85 public key in a ``.key`` (or ``.key_secret``) certificate."""
    public, _ = _load(path)
    return public


def _load(path: Path) -> tuple[bytes, bytes | None]:
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"{path}: not a readable ZeroMQ certificate ({exc})") from exc
    if public is None or len(public) != 40:
        raise KeyFileError(f"{path}: holds no CURVE public key")
    return public, secret


@dataclass(frozen=True)
class KeyPair:
    """A CURVE key pair, both halves Z85-encoded."""

    public: bytes
    secret: bytes


def new_keypair() -> KeyPair:
    """A fresh random CURVE key pair (kept in memory and in the private state file only)."""
    public, secret = zmq.curve_keypair()
    return KeyPair(public, secret)


def authorized_keys(authorized_dir: Path) -> frozenset[bytes]:
    """The Z85 public keys of the ``*.key`` certificates in ``authorized_dir``."""
    if not authorized_dir.is_dir():
        raise KeyFileError(f"{authorized_dir}: the directory of authorised client keys does not exist")
    return frozenset(read_public_key(path) for path in sorted(authorized_dir.glob("*.key")))


REFUSAL_LOG_INTERVAL_S = 10.0  # refused handshakes are logged at most once per interval (with a count)


class Admission:
    """The daemon's ZAP check (``configure_curve_callback``): who may complete a CURVE handshake.

    ``owner`` is the daemon owner's key (administrator: may stop the daemon and cancel any
    job); ``clients`` are the authorised remote keys. Refused handshakes are logged, rate-limited.
    """

    def __init__(self, owner: bytes, clients: frozenset[bytes], log: logging.Logger) -> None:
        self.owner = owner
        self.clients = clients
        self._log = log
        self._refused_since_log = 0
        self._last_log = float("-inf")

    def callback(self, _domain: str, key: bytes) -> bool:
        """Whether the client with Z85 public ``key`` is let in (called by the ZAP thread)."""
        if key == self.owner or key in self.clients:
            return True
        self._refused_since_log += 1
        now = time.monotonic()
        if now - self._last_log >= REFUSAL_LOG_INTERVAL_S:
            self._log.warning("refused %d CURVE handshake(s) from unknown keys (latest %s…)",
                              self._refused_since_log, key[:8].decode("ascii", "replace"))
            self._refused_since_log, self._last_log = 0, now
        return False


def read_keypair(secret_file: Path) -> KeyPair:
    """The key pair in a ``.key_secret`` certificate."""
    public, secret = _load(secret_file)
    if secret is None or len(secret) != 40:
        raise KeyFileError(f"{secret_file}: holds no CURVE secret key (use the .key_secret file)")
    return KeyPair(public, secret)


def make_curve_server(socket: zmq.Socket, server: KeyPair) -> None:
    """Make ``socket`` a CURVE server with ``server``'s keys (call before bind)."""
    socket.curve_secretkey = server.secret
    socket.curve_publickey = server.public
    socket.curve_server = True


def make_curve_client(socket: zmq.Socket, client: KeyPair, server_public: bytes) -> None:
    """Make ``socket`` a CURVE client of the server ``server_public`` (call before connect)."""
    socket.curve_secretkey = client.secret
    socket.curve_publickey = client.public
    socket.curve_serverkey = server_public
