"""Training photo sources: the Debian photo manifest and fetcher, multi-scale entries.
No network: a tiny .deb is built here."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from lowlight_raw.training import debian_photos
from lowlight_raw.training.debian_photos import Manifest, ManifestMismatch, ManifestPhoto

needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb not installed")
PHOTO_PATH = "usr/share/backgrounds/meadow.png"
PHOTO_SHAPE = (770, 1030)  # /2 → 385 × 515, /3 → 256 × 343, /4 → 192 × 257: below MIN_SIDE, left out


def fake_photo() -> np.ndarray:
    rng = np.random.default_rng(3)
    y, x = np.mgrid[: PHOTO_SHAPE[0], : PHOTO_SHAPE[1]]
    smooth = np.stack([x / PHOTO_SHAPE[1], y / PHOTO_SHAPE[0], np.full(x.shape, 0.5)], axis=-1) * 200
    return np.clip(smooth + rng.normal(0, 20, smooth.shape), 0, 255).astype(np.uint8)


def build_fake_deb(tmp_path: Path, photo_dir: Path) -> Manifest:
    """``fakephotos_1.0_all.deb`` in ``photo_dir/debs`` (where the fetcher looks before apt) with
    one PNG photo, and a manifest selecting it."""
    root = tmp_path / "debroot"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        "Package: fakephotos\nVersion: 1.0\nArchitecture: all\nMaintainer: T <t@example.org>\nDescription: test\n")
    (root / PHOTO_PATH).parent.mkdir(parents=True)
    iio.imwrite(root / PHOTO_PATH, fake_photo())
    (photo_dir / "debs").mkdir(parents=True)
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(photo_dir / "debs" / "fakephotos_1.0_all.deb")],
                   check=True, capture_output=True)
    digest = hashlib.sha256((root / PHOTO_PATH).read_bytes()).hexdigest()
    return Manifest({"fakephotos": "1.0"}, [ManifestPhoto("fakephotos", PHOTO_PATH, digest, "CC0-1.0", "A. Photographer, 2024")])


@needs_dpkg
def test_fetcher_extracts_verifies_and_refuses_a_changed_file(tmp_path: Path) -> None:
    photo_dir = tmp_path / "photos"
    manifest = build_fake_deb(tmp_path, photo_dir)
    [(entry, path)] = debian_photos.fetch_photos(photo_dir, manifest)
    assert path == photo_dir / "extracted" / "fakephotos" / PHOTO_PATH
    assert entry.name == f"debian/fakephotos/{PHOTO_PATH}"
    assert np.array_equal(debian_photos.read_rgb(path), fake_photo())
    path.write_bytes(path.read_bytes() + b"\0")  # the package changed under the manifest
    with pytest.raises(ManifestMismatch) as error:
        debian_photos.fetch_photos(photo_dir, manifest)
    message = str(error.value)
    assert "\n" not in message and str(path) in message and "differs from the manifest" in message
    path.unlink()
    with pytest.raises(ManifestMismatch, match="missing"):
        debian_photos.fetch_photos(photo_dir, manifest)


def test_downscale_averages_in_linear_light() -> None:
    checker = np.zeros((4, 6, 3), dtype=np.uint8)
    checker[0::2, 0::2] = checker[1::2, 1::2] = 255
    half = debian_photos.downscale(checker, 2)
    assert half.shape == (2, 3, 3) and np.all(half == 188)  # linear 0.5 is sRGB 0.735, not 128
    ramp = np.repeat(np.arange(7, dtype=np.uint8)[None, :, None] * 40, 7, axis=0).repeat(3, axis=2)
    third = debian_photos.downscale(ramp, 3)  # a 7 × 7 image: the last row and column are dropped
    assert third.shape == (2, 2, 3) and third[0, 0, 0] == 52 and third[0, 1, 0] == 164  # means 40, 160


def test_pixel_cap_keeps_small_images_whole_and_fills_the_budget() -> None:
    assert debian_photos.pixel_cap([100, 1000, 5000], 10_000) == 5000  # everything fits
    assert debian_photos.pixel_cap([100, 1000, 5000], 2100) == 1000
    assert debian_photos.pixel_cap([100, 1000, 5000], 1100) == 500
    window = debian_photos.random_window(np.zeros((600, 900, 3), np.uint8), 300 * 450, np.random.default_rng(0))
    assert window.shape == (300, 450, 3)
    assert debian_photos.random_window(np.zeros((300, 900, 3), np.uint8), 1000, np.random.default_rng(0)).shape == (256, 256, 3)


def test_the_committed_manifest_is_pinned_hashed_and_licence_clean() -> None:
    manifest = debian_photos.load_manifest()
    allowed = {"GPL-2+", "CC0-1.0", "CC-BY-4.0", "CC-BY-SA-3.0", "CC-BY-SA-4.0", "BSD-3-clause-Google"}
    assert {p.package for p in manifest.photos} == set(manifest.packages)
    assert all(re.fullmatch(r"[0-9a-f]{64}", p.sha256) and p.licence in allowed and p.attribution for p in manifest.photos)
    assert len({p.name for p in manifest.photos}) == len(manifest.photos) == 43
