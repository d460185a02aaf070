"""High-resolution photographs with clear licences, fetched from Debian packages.

The selection is the committed manifest ``debian_photos.json``: for each photo its package (at a
pinned version), its path inside the package, its sha256, its licence and attribution as the
package's ``usr/share/doc/PKG/copyright`` states them (and, where the package's own metadata
names a different one, ``upstream_licence``). It was made by looking at every image: only real
photographs, no drawings, renders, gradients, textures or logos; only licences that allow
redistribution and derivative works. Code never re-decides it.

:func:`fetch_photos` downloads the packages with ``apt-get download`` into
``<photo_dir>/debs``, extracts them with ``dpkg-deb -x`` into ``<photo_dir>/extracted`` and
checks every selected file's sha256. Each photo enters training downscaled by 2, 3 and 4
(:func:`multiscale`): an exact area average in linear light, which removes JPEG blocking and
ringing and gives the random-crop sampler the same scenes at several scales.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..pipeline.color import srgb_decode, srgb_encode

MANIFEST = Path(__file__).with_name("debian_photos.json")
DOWNSCALE_FACTORS = (2, 3, 4)
MIN_SIDE = 256  # smaller scaled images are left out: training crops 2 × 128 packed pixels


class ArchiveUnavailable(RuntimeError):
    """The Debian archive (or apt/dpkg) could not deliver a package."""


class ManifestMismatch(ValueError):
    """A fetched file is missing or differs from the manifest."""


@dataclass(frozen=True)
class ManifestPhoto:
    """One selected photograph: where it is, what it must hash to, and its licence."""

    package: str
    path: str  # inside the package, e.g. ``usr/share/backgrounds/...``
    sha256: str
    licence: str  # as the package's copyright file states it
    attribution: str
    upstream_licence: str | None = None  # the package's own metadata, where it differs

    @property
    def name(self) -> str:
        return f"debian/{self.package}/{self.path}"


@dataclass(frozen=True)
class Manifest:
    """Pinned package versions and the selected photos."""

    packages: dict[str, str]
    photos: list[ManifestPhoto]


def load_manifest(path: Path = MANIFEST) -> Manifest:
    """Read the committed selection."""
    data = json.loads(Path(path).read_text())
    return Manifest(dict(data["packages"]), [ManifestPhoto(**entry) for entry in data["photos"]])


def download_deb(package: str, version: str, deb_dir: Path) -> Path:
    """``apt-get download PACKAGE=VERSION`` into ``deb_dir`` unless already there; the .deb path."""
    deb_dir.mkdir(parents=True, exist_ok=True)
    pattern = f"{package}_{version.replace(':', '%3a')}_*.deb"  # apt's file name for PACKAGE=VERSION
    found = sorted(deb_dir.glob(pattern))
    if not found:
        try:
            result = subprocess.run(["apt-get", "download", f"{package}={version}"], cwd=deb_dir,
                                    capture_output=True, text=True)
        except FileNotFoundError as exc:
            raise ArchiveUnavailable(f"apt-get not found ({exc})") from exc
        found = sorted(deb_dir.glob(pattern))
        if result.returncode != 0 or not found:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise ArchiveUnavailable(f"apt-get download {package}={version} failed: {last}")
    return found[0]


def extract_deb(deb: Path, dest: Path) -> Path:
    """``dpkg-deb -x`` the package into ``dest`` (once: an existing ``dest`` is kept)."""
    if not dest.is_dir():
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        result = subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], capture_output=True, text=True)
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise ArchiveUnavailable(f"dpkg-deb -x {deb.name} failed: {last}")
        tmp.rename(dest)
    return dest


def verify_sha256(path: Path, expected: str) -> None:
    """Raise :class:`ManifestMismatch` (one line) unless ``path`` exists and hashes to ``expected``."""
    if not path.is_file():
        raise ManifestMismatch(f"{path}: missing (the package no longer ships it?)")
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    if actual != expected:
        raise ManifestMismatch(f"{path}: sha256 {actual[:16]}… differs from the manifest's {expected[:16]}…")


def fetch_photos(photo_dir: Path, manifest: Manifest) -> list[tuple[ManifestPhoto, Path]]:
    """Every manifest photo with its verified local file, downloading and extracting as needed."""
    roots = {
        package: extract_deb(download_deb(package, version, photo_dir / "debs"), photo_dir / "extracted" / package)
        for package, version in manifest.packages.items()
    }
    selected = []
    for photo in manifest.photos:
        path = roots[photo.package] / photo.path
        verify_sha256(path, photo.sha256)
        selected.append((photo, path))
    return selected


def read_rgb(path: Path) -> np.ndarray:
    """uint8 ``(H, W, 3)`` sRGB pixels of a JPEG/PNG file."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def downscale_linear(pixels: np.ndarray, factor: int) -> np.ndarray:
    """uint8 sRGB ``(H, W, 3)`` → float32 linear ``(H // factor, W // factor, 3)``: the mean of
    each ``factor × factor`` block in linear light (an exact area filter)."""
    h, w = (pixels.shape[0] // factor) * factor, (pixels.shape[1] // factor) * factor
    linear = srgb_decode(np.arange(256, dtype=np.float32) / 255.0).astype(np.float32)[pixels[:h, :w]]
    return linear.reshape(h // factor, factor, w // factor, factor, 3).mean(axis=(1, 3))


def downscale(pixels: np.ndarray, factor: int) -> np.ndarray:
    """:func:`downscale_linear`, re-encoded to uint8 sRGB."""
    return np.round(srgb_encode(downscale_linear(pixels, factor)) * 255.0).astype(np.uint8)


def multiscale(pixels: np.ndarray, factors: tuple[int, ...] = DOWNSCALE_FACTORS) -> list[tuple[int, np.ndarray]]:
    """``(factor, downscaled)`` for each factor whose result is at least :data:`MIN_SIDE` a side."""
    scaled = []
    for factor in factors:
        if min(pixels.shape[:2]) // factor >= MIN_SIDE:
            scaled.append((factor, downscale(pixels, factor)))
    return scaled


def pixel_cap(areas: list[int], budget: int) -> int:
    """The largest per-image pixel count ``c`` with ``sum(min(area, c)) <= budget``
    (water-filling: small images stay whole, large ones are cropped to ``c``)."""
    remaining, left = budget, len(areas)
    for area in sorted(areas):
        if area * left > remaining:
            return remaining // left
        remaining -= area
        left -= 1
    return max(areas, default=0)


def random_window(pixels: np.ndarray, max_pixels: int, rng: np.random.Generator) -> np.ndarray:
    """A random crop of at most ``max_pixels`` (the image's aspect ratio unless a side would fall
    below :data:`MIN_SIDE`; never smaller than that a side), or the whole image when it fits."""
    h, w = pixels.shape[:2]
    if h * w <= max_pixels:
        return pixels
    short, long = sorted((h, w))
    crop_short = min(short, max(MIN_SIDE, int(short * np.sqrt(max_pixels / (h * w)))))
    crop_long = min(long, max(MIN_SIDE, max_pixels // crop_short))
    ch, cw = (crop_short, crop_long) if h <= w else (crop_long, crop_short)
    y, x = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
    return pixels[y : y + ch, x : x + cw]
