"""Where a running daemon says where it is: the state directory, its state file and its lock.

The daemon holds an exclusive ``flock`` on ``daemon.lock`` for its whole life (so two daemons
never share a state directory) and writes ``daemon.json`` (endpoint, pid, versions) atomically
once it listens; it removes the file when it stops. Clients read the file to find the daemon.

The folder is private to its user (mode 700, owned by them: :func:`private_dir`) and the state
file is mode 600: it holds the owner's CURVE client key, which is what makes a local daemon
usable by its owner only.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

from lowlight_raw.files.atomic import write_atomically

STATE_FILE = "daemon.json"
LOCK_FILE = "daemon.lock"
LOG_FILE = "daemon.log"


def default_state_dir() -> Path:
    """``$XDG_RUNTIME_DIR/lowlight-raw`` where the session has one, else ``~/.cache/lowlight-raw``."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / "lowlight-raw"
    return Path.home() / ".cache" / "lowlight-raw"


@dataclass(frozen=True)
class DaemonState:
    """What ``daemon.json`` holds."""

    endpoint: str
    pid: int
    version: str
    protocol: int
    started: float  # time.time() when the daemon started listening
    server_key: str | None = None  # the daemon's CURVE public key (Z85); None for --insecure-plaintext
    owner_public: str | None = None  # the owner's CURVE client key pair (Z85): any process of the
    owner_secret: str | None = None  # user who can read this file may use (and stop) the daemon


class StateDirInsecure(Exception):
    """The state folder is not private to this user (message names it and says why)."""


def private_dir(path: Path) -> Path:
    """Create ``path`` (mode 700) if needed and make sure only this user can enter it.

    An existing folder of ours that others could read is tightened to 700; a symlink or a folder
    owned by someone else raises :class:`StateDirInsecure`.
    """
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise StateDirInsecure(f"{path}: the state folder is a symlink or not a folder")
    if info.st_uid != os.getuid():
        raise StateDirInsecure(f"{path}: the state folder belongs to uid {info.st_uid}, not to this user")
    if info.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def write_state(state_dir: Path, state: DaemonState) -> Path:
    """Write ``daemon.json`` (mode 600) atomically (temporary name, then rename); returns its path."""
    return write_atomically(state_dir / STATE_FILE, json.dumps(asdict(state), indent=2) + "\n", mode=0o600)


def read_state(state_dir: Path) -> DaemonState | None:
    """The state a daemon wrote in ``state_dir``, or ``None`` if there is none or it is unreadable."""
    try:
        data = json.loads((state_dir / STATE_FILE).read_text())
        return DaemonState(**data)
    except (OSError, ValueError, TypeError):
        return None


def remove_state(state_dir: Path, pid: int) -> None:
    """Remove ``daemon.json`` if it is the one process ``pid`` wrote."""
    state = read_state(state_dir)
    if state is not None and state.pid == pid:
        (state_dir / STATE_FILE).unlink(missing_ok=True)


EXIT_ALREADY_RUNNING = 75  # the exit status of ``lr-bridge serve`` when another daemon holds the folder


class StateDirLocked(Exception):
    """Another daemon holds this state directory."""


def lock_state_dir(state_dir: Path) -> IO[str]:
    """Make ``state_dir`` private (:func:`private_dir`) and take its daemon lock; keep the file open.

    Raises :class:`StateDirLocked` if another live daemon holds it.
    """
    private_dir(state_dir)
    handle = open(state_dir / LOCK_FILE, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.close()
        raise StateDirLocked(str(state_dir)) from exc
    return handle
