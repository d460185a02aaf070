"""Small assertions shared by the test modules (pytest puts ``tests/`` on the import path)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: Path) -> str:
    """The file's SHA-256, to show a source file was left byte-for-byte untouched."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def finished_outputs(folder: Path) -> list[str]:
    """The sorted names of the outputs in ``folder`` (none if it does not exist).

    Fails if a temporary (dot-named, partial) file was left behind: outputs appear whole or not at all.
    """
    names = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    assert not [name for name in names if name.startswith(".")], f"partial files left in {folder}: {names}"
    return names
