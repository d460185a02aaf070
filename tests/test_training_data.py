"""Training photo sources: the Debian photo manifest and fetcher, multi-scale entries, source
selections and the summary the model card records. No network: a tiny .deb is built here."""

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

from lowlight_raw.training import debian_photos, sources
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


@pytest.fixture
def fake_bsds(tmp_path: Path) -> Path:
    """A BSDS500-shaped folder of 24 × 32 JPEGs: 3 train, 21 val (20 validation + 1 train), 2 test."""
    rng = np.random.default_rng(7)
    root = tmp_path / "bsds"
    for split, count in (("train", 3), ("val", 21), ("test", 2)):
        (root / split).mkdir(parents=True)
        for i in range(count):
            iio.imwrite(root / split / f"{i:02d}.jpg", rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8))
    return root


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


def test_an_unreachable_archive_is_one_line_and_training_goes_on(tmp_path: Path, monkeypatch, capsys) -> None:
    manifest = Manifest({"lowlight-raw-no-such-package": "0"}, [])
    with pytest.raises(debian_photos.ArchiveUnavailable) as error:
        debian_photos.fetch_photos(tmp_path, manifest)
    assert "\n" not in str(error.value) and "lowlight-raw-no-such-package" in str(error.value)
    monkeypatch.setattr(sources.debian_photos, "load_manifest", lambda: manifest)
    assert sources.debian_training_photos(tmp_path) == []
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("training data: no Debian photos: ")


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
    assert debian_photos.random_window(np.zeros((300, 900, 3), np.uint8), 300 * 300, np.random.default_rng(0)).shape == (256, 351, 3)
    assert debian_photos.random_window(np.zeros((300, 900, 3), np.uint8), 1000, np.random.default_rng(0)).shape == (256, 256, 3)
    assert debian_photos.random_window(np.zeros((900, 300, 3), np.uint8), 300 * 300, np.random.default_rng(0)).shape == (351, 256, 3)


@needs_dpkg
def test_cache_holds_each_scale_and_licence_clean_excludes_every_bsds_image(tmp_path: Path, fake_bsds: Path, monkeypatch) -> None:
    photo_dir = tmp_path / "photos"
    manifest = build_fake_deb(tmp_path, photo_dir)
    monkeypatch.setattr(sources.debian_photos, "load_manifest", lambda: manifest)
    cache = sources.prepare_cache(tmp_path / "cache", fake_bsds, photo_dir, max_mb=None)
    entries = json.loads((cache / "sources.json").read_text())["train"]
    debian = [e for e in entries if e["source"] == "debian"]
    assert [(e["downscale"], e["size"]) for e in debian] == [(2, [385, 515]), (3, [256, 343])]
    all_train = sources.cached_images("train", cache)
    clean = sources.cached_images("train", cache, sources="licence-clean")
    skimage_count = len(sources.SKIMAGE_PHOTOS)
    assert len(all_train) == 3 + 1 + skimage_count + 2 and len(clean) == skimage_count + 2
    assert not any(image.shape == (24, 32, 3) for image in clean)  # every BSDS500 image is 24 × 32 here
    assert [im.shape[:2] for im in clean[-2:]] == [(385, 515), (256, 343)]
    assert np.array_equal(clean[-2], debian_photos.downscale(fake_photo(), 2))
    for split in ("validation", "test"):  # the scores stay comparable: same BSDS images
        assert [im.shape for im in sources.cached_images(split, cache, sources="licence-clean")] == [(24, 32, 3)] * (20 if split == "validation" else 2)
    capped = sources.prepare_cache(tmp_path / "capped", fake_bsds, photo_dir, max_mb=0.6)
    sizes = [e["size"] for e in json.loads((capped / "sources.json").read_text())["train"] if e["source"] == "debian"]
    assert sizes[1] == [256, 343] and sizes[0][0] < 385 and 0.55e6 < 3 * sum(h * w for h, w in sizes) <= 0.6e6


@needs_dpkg
def test_source_summary_lists_every_source_and_licence(tmp_path: Path, fake_bsds: Path, monkeypatch) -> None:
    photo_dir = tmp_path / "photos"
    manifest = build_fake_deb(tmp_path, photo_dir)
    monkeypatch.setattr(sources.debian_photos, "load_manifest", lambda: manifest)
    cache = sources.prepare_cache(tmp_path / "cache", fake_bsds, photo_dir, max_mb=None)
    summary = sources.source_summary(cache)
    skimage_count = len(sources.SKIMAGE_PHOTOS)
    assert summary["train_photos"] == 4 + skimage_count + 1 and summary["train_images"] == 4 + skimage_count + 2
    assert summary["photos_per_source"] == {"bsds500": 4, "skimage": skimage_count, "debian/fakephotos": 1}
    assert summary["licences"][sources.BSDS_LICENCE] == 4 and summary["licences"]["CC0-1.0"] == 1
    assert summary["licences"]["public domain (NASA)"] == 1 and summary["debian_downscale_factors"] == [2, 3]
    assert summary["debian_photos"] == [{"name": f"debian/fakephotos/{PHOTO_PATH}", "licence": "CC0-1.0",
                                         "attribution": "A. Photographer, 2024"}]
    clean = sources.source_summary(cache, "licence-clean")
    assert sources.BSDS_LICENCE not in clean["licences"] and "bsds500" not in clean["photos_per_source"]
    assert clean["train_photos"] == skimage_count + 1 and clean["validation_photos"] == 20
    assert clean["train_megapixels"] == pytest.approx(summary["train_megapixels"] - 4 * 24 * 32 / 1e6, abs=0.1)


def test_a_cache_from_before_source_selections_asks_to_be_rebuilt(tmp_path: Path) -> None:
    np.savez(tmp_path / "train.npz", **{"0000": np.zeros((4, 4, 3), np.uint8)})
    (tmp_path / "sources.json").write_text(json.dumps({"train": [{"name": "x", "licence": "y"}], "validation": [], "test": []}))
    with pytest.raises(ValueError, match="predates source selections: rebuild it"):
        sources.cached_images("train", tmp_path)


def test_the_committed_manifest_is_pinned_hashed_and_licence_clean() -> None:
    manifest = debian_photos.load_manifest()
    allowed = {"GPL-2+", "LGPL-2.1+", "CC0-1.0", "CC-BY-4.0", "CC-BY-SA-3.0", "CC-BY-SA-4.0", "BSD-3-clause-Google"}
    assert {p.package for p in manifest.photos} == set(manifest.packages)
    assert all(re.fullmatch(r"[0-9a-f]{64}", p.sha256) and p.licence in allowed and p.attribution for p in manifest.photos)
    assert len({p.name for p in manifest.photos}) == len(manifest.photos) == 56
