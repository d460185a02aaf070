"""The daemon's log, bounded: ``daemon.log`` (its stderr) is rotated to ``daemon.log.1`` when full.

A detached daemon's stderr is ``daemon.log`` in its state folder, opened for appending (so the
client can quote a start-up failure from it). :class:`BoundedLogHandler` writes log records there
and, once the file exceeds :data:`MAX_LOG_BYTES`, copies it to ``daemon.log.1`` (replacing the
previous one) and truncates it: the log never takes more than about twice that.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import sys
from typing import TextIO

MAX_LOG_BYTES = 1 << 20
ROTATED_SUFFIX = ".1"


class BoundedLogHandler(logging.StreamHandler):
    """A stream handler on ``stream`` (stderr) that rotates the file behind it when it grows too large."""

    def __init__(self, stream: TextIO = sys.stderr, max_bytes: int = MAX_LOG_BYTES) -> None:
        super().__init__(stream)
        self.max_bytes = max_bytes

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        try:
            self._rotate_if_full()
        except OSError:  # the log is not worth failing for
            pass

    def _rotate_if_full(self) -> None:
        fd = self.stream.fileno()
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size <= self.max_bytes:
            return
        path = os.readlink(f"/proc/self/fd/{fd}")
        if not os.path.isfile(path):
            return
        self.stream.flush()
        shutil.copyfile(path, path + ROTATED_SUFFIX)
        os.ftruncate(fd, 0)  # opened for appending: the next line starts the file again
