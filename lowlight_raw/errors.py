"""The one exception type every user-facing failure of the engine is raised as."""

from __future__ import annotations

from pathlib import Path


class LowlightError(Exception):
    """A failure the user should see as one line: ``<file>: <reason>``.

    ``path`` names the file the failure concerns (the source RAW, an output, a weight file);
    it may be ``None`` for failures that concern no single file.
    """

    def __init__(self, path: Path | str | None, reason: str) -> None:
        self.path = Path(path) if path is not None else None
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path is not None else reason)


class InternalError(LowlightError):
    """A bug met while enhancing one file: that file fails with this line, the batch goes on."""


class UnsupportedSensor(LowlightError):
    """The file decodes, but its sensor layout (X-Trans, Foveon, mono, linear) is not supported yet."""


class Cancelled(LowlightError):
    """The caller asked to stop before this file was finished; nothing was written."""
