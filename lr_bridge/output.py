"""Writing an output that came back from a remote daemon as bytes: whole or not at all."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from lowlight_raw.files.atomic import TEMP_NAME_BYTES

MAX_COLLISION_SUFFIX = 9999


def write_new_file(directory: Path, name: str, data: bytes, overwrite: bool = False) -> Path:
    """Write ``data`` as ``directory/name`` atomically (temporary file, fsync, then link/rename).

    Without ``overwrite`` an existing file is never replaced: ``stem_1.ext``, ``stem_2.ext`` …
    is used instead (the engine's own rule). ``name`` must be a plain file name. Raises
    ``OSError`` on failure, leaving no temporary file behind.
    """
    if not name or Path(name).name != name or name in (".", ".."):
        raise OSError(f"{name!r} is not a plain file name")
    directory.mkdir(parents=True, exist_ok=True)
    short = os.fsdecode(os.fsencode(name)[:TEMP_NAME_BYTES])  # a name near NAME_MAX leaves room for the rest
    handle, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{short}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.chmod(0o644)
        target = directory / name
        if overwrite:
            tmp.replace(target)
            return target
        stem, suffix = Path(name).stem, Path(name).suffix
        for number in range(MAX_COLLISION_SUFFIX + 1):
            candidate = target if number == 0 else directory / f"{stem}_{number}{suffix}"
            try:
                os.link(tmp, candidate)  # fails if it exists: no race with another writer
                return candidate
            except FileExistsError:
                continue
        raise OSError(f"{target}: {MAX_COLLISION_SUFFIX} numbered copies already exist")
    finally:
        tmp.unlink(missing_ok=True)
