"""Writing an output that came back from a remote daemon as bytes: whole or not at all."""

from __future__ import annotations

from pathlib import Path

from lowlight_raw.files.atomic import write_atomically


def write_new_file(directory: Path, name: str, data: bytes, overwrite: bool = False) -> Path:
    """Write ``data`` as ``directory/name`` atomically (:func:`~lowlight_raw.files.atomic.write_atomically`).

    Without ``overwrite`` an existing file is never replaced: ``stem_1.ext``, ``stem_2.ext`` …
    is used instead (the engine's own rule). ``name`` must be a plain file name. Raises
    ``OSError`` on failure, leaving no temporary file behind.
    """
    if not name or Path(name).name != name or name in (".", ".."):
        raise OSError(f"{name!r} is not a plain file name")
    directory.mkdir(parents=True, exist_ok=True)
    return write_atomically(directory / name, data, placement="replace" if overwrite else "numbered")
