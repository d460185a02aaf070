"""The output formats by name and their file extensions: the one list every side reads.

Standard library only: the command lines, the wire protocol (:mod:`lowlight_raw.options`) and the
darktable plugin offer these names; :data:`lowlight_raw.files.writers.OUTPUT_FORMATS` has a writer
for each (``tests/test_writers.py`` holds the two equal). Adding a format is a row here and a
writer there.
"""

from __future__ import annotations

EXTENSIONS: dict[str, str] = {"dng": ".dng", "tiff": ".tif", "jpeg": ".jpg"}  # format name → output file extension
FORMATS: tuple[str, ...] = tuple(EXTENSIONS)
