"""Small assertions shared by the test modules (pytest puts ``tests/`` on the import path)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import rawpy
import tifffile


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


def decode_output(path: Path, fmt: str) -> np.ndarray:
    """Decode an output to (H, W, 3) sRGB-ish floats in [0, 1]."""
    if fmt == "dng":
        with rawpy.imread(str(path)) as raw:
            return raw.postprocess(use_camera_wb=True, no_auto_bright=True, output_bps=16).astype(np.float32) / 65535
    if fmt == "tiff":
        return tifffile.imread(path).astype(np.float32) / 65535
    return iio.imread(path).astype(np.float32) / 255


def patch_means(rgb: np.ndarray) -> list[np.ndarray]:
    """Mean colour of the red, green, blue and grey patches of ``synthetic.test_scene``."""
    h, w, _ = rgb.shape
    return [rgb[h // 8 : h // 3, i * w // 4 + w // 16 : (i + 1) * w // 4 - w // 16].reshape(-1, 3).mean(0) for i in range(4)]
