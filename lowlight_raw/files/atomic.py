"""The one way a file is written whole: under a temporary name beside it, flushed to disk, renamed.

A crash or Ctrl-C leaves the previous file or the complete new one, never half of one, and a
failure leaves no temporary file behind (a killed process's leftovers are ``.NAME.PID.*.tmp``).
Weights, cards, state, caches, packages, plugin files and plots go through :func:`write_atomically`;
the engine's outputs, which must never replace a file unasked, add their own link-if-absent
placement in :mod:`lowlight_raw.files.writers` and share :func:`flush_to_disk`.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

TEMP_NAME_BYTES = 200  # of the file's name in its temporary name: with the rest, within NAME_MAX (255)


def write_atomically(path: Path, content: bytes | str | Callable[[Path], None], mode: int = 0o644) -> Path:
    """Write ``content`` to ``path`` (replacing it) and return ``path``.

    ``content``: the bytes or text of the file, or a function that writes the file at the path it
    is given (a library's own writer: ``torch.save``, ``tifffile``, ``zipfile``, ``savefig``; the
    path's name does not end in the target's suffix). ``mode``: the file's permissions, given
    from creation for bytes and text (``0o600`` for private state).
    """
    path = Path(path)
    name = os.fsdecode(os.fsencode(path.name)[:TEMP_NAME_BYTES])  # a long name's temporary one must fit too
    temp = path.with_name(f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        if callable(content):
            content(temp)
            os.chmod(temp, mode)
        else:
            data = content.encode("utf-8") if isinstance(content, str) else content
            with os.fdopen(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb") as handle:
                handle.write(data)
        flush_to_disk(temp)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def flush_to_disk(path: Path) -> None:
    """fsync ``path`` (written by whatever library) through a descriptor of our own."""
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())
