"""The one way a file is written: under a temporary name beside it, flushed to disk, then given its name.

A crash or Ctrl-C leaves the previous file or the complete new one, never half of one; a failure
leaves no temporary file behind, and a killed writer's leftovers (``.NAME.PID.TOKEN.tmp``) are
removed by the next writer in that folder (:func:`remove_stale_temporaries`). How the finished
file takes its name (:data:`Placement`):

- ``replace``: whatever was there is replaced (weights, cards, state, caches, packages, plots);
- ``new``: an existing file is never replaced, even one that appeared while this one was written
  (a hard link creates the name only if it is absent): the engine's outputs without ``overwrite``;
- ``numbered``: the name, else ``stem_1.ext``, ``stem_2.ext`` … the first one absent (a remote
  daemon's results on the client's side).
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from ..machine import left_by_dead_processes

Placement = Literal["replace", "new", "numbered"]
TEMP_NAME_BYTES = 200  # of the file's name in its temporary name: with the rest, within NAME_MAX (255)
MAX_NUMBER = 9999  # "numbered" tries stem_1 … stem_9999
_TEMPORARY = re.compile(r"^\..*\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$", re.DOTALL)


def write_atomically(path: Path, content: bytes | str | Callable[[Path], None], mode: int = 0o644,
                     placement: Placement = "replace") -> Path:
    """Write ``content`` as ``path`` and return the path it got (another one only when ``numbered``).

    ``content``: the bytes or text of the file, or a function that writes the file at the path it
    is given (a library's own writer: ``torch.save``, ``tifffile``, ``zipfile``, ``savefig``; the
    path's name does not end in the target's suffix). ``mode``: the file's permissions, given
    from creation for bytes and text (``0o600`` for private state). Raises ``FileExistsError``
    when ``placement`` is ``new`` and ``path`` exists, and whatever writing raises.
    """
    path = Path(path)
    remove_stale_temporaries(path.parent)
    temp = temporary_name(path)
    try:
        if callable(content):
            content(temp)
            os.chmod(temp, mode)
        else:
            data = content.encode("utf-8") if isinstance(content, str) else content
            with os.fdopen(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb") as handle:
                handle.write(data)
        flush_to_disk(temp)
        return _place(temp, path, placement)
    finally:
        temp.unlink(missing_ok=True)


def temporary_name(path: Path) -> Path:
    """Where ``path`` is written before it gets its name: beside it, hidden, this process's, within NAME_MAX."""
    shown = os.fsencode(path.name)[:TEMP_NAME_BYTES].decode("utf-8", "ignore")  # a long name's must fit too
    return path.with_name(f".{shown}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary files in ``folder`` whose writing process is gone; returns them."""
    removed = []
    for entry in left_by_dead_processes(folder, _TEMPORARY):
        if entry.is_file(follow_symlinks=False):
            try:
                os.unlink(entry.path)
            except OSError:
                continue
            removed.append(Path(entry.path))
    return removed


def flush_to_disk(path: Path) -> None:
    """fsync ``path`` (written by whatever library) through a descriptor of our own."""
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _place(temp: Path, path: Path, placement: Placement) -> Path:
    """Give the finished ``temp`` its name (see :data:`Placement`); the temporary name is left to the caller."""
    if placement == "replace":
        os.replace(temp, path)
        return path
    candidates = [path] if placement == "new" else [
        path if number == 0 else path.with_name(f"{path.stem}_{number}{path.suffix}") for number in range(MAX_NUMBER + 1)]
    for candidate in candidates:
        try:
            os.link(temp, candidate)  # creates the name only if it is absent: no race with another writer
            return candidate
        except FileExistsError:
            continue
        except OSError:  # no hard links on this file system: check, then rename
            if candidate.exists() or candidate.is_symlink():
                continue
            os.replace(temp, candidate)
            return candidate
    if placement == "new":
        raise FileExistsError(f"{path}: already exists")
    raise FileExistsError(f"{path}: {MAX_NUMBER} numbered copies already exist")
