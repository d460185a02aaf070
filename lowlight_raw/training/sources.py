"""Clean photographs to train and evaluate on: where they are, their licences, a local cache.

* BSDS500 (Berkeley Segmentation Dataset, 500 photos of 481×321): research use only, so it
  is used to train/validate/evaluate here and never shipped. ``train/`` and most of ``val/``
  train the model, the first :data:`VALIDATION_COUNT` of ``val/`` (sorted) are the validation
  set the training log reports, and ``test/`` (200) is held out for :mod:`.evaluate` only.
  Found at ``$LOWLIGHT_BSDS500``, else ``<repo>/../shared/datasets/bsds500``.
* scikit-image's bundled photographs (ship inside the ``scikit-image`` wheel, no download):
  public domain or CC0 per their docstrings.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = REPO_ROOT / "cache" / "training"
VALIDATION_COUNT = 20
BSDS_LICENCE = "BSDS500 (UC Berkeley): research/non-commercial use; not redistributed"
SKIMAGE_PHOTOS = {
    "astronaut": "public domain (NASA)",
    "chelsea": "CC0 (Stefan van der Walt)",
    "coffee": "CC0 (Rachel Michetti)",
    "rocket": "public domain (SpaceX)",
}


@dataclass(frozen=True)
class Photo:
    """One clean photo: an identifier, its licence, and its encoded file (JPEG as published, or PNG).

    The cache keeps the encoded bytes, not the decoded pixels: BSDS500's ``train/`` + ``val/``
    are 23 MB as JPEGs but 130 MB decoded, and the cache must travel to a GPU machine (64 MiB).
    """

    name: str
    licence: str
    encoded: bytes


def bsds_root(explicit: Path | None = None) -> Path:
    """The BSDS500 folder (with ``train/``, ``val/``, ``test/``); raises ``FileNotFoundError``."""
    candidates = [explicit] if explicit else []
    if os.environ.get("LOWLIGHT_BSDS500"):
        candidates.append(Path(os.environ["LOWLIGHT_BSDS500"]))
    candidates.append(REPO_ROOT.parent / "shared" / "datasets" / "bsds500")
    for path in candidates:
        if path is not None and (Path(path) / "test").is_dir():
            return Path(path)
    raise FileNotFoundError(f"BSDS500 not found (tried {', '.join(str(c) for c in candidates)}); set LOWLIGHT_BSDS500")


def bsds_files(split: str, root: Path | None = None) -> list[Path]:
    """Sorted JPEG paths of one BSDS500 split: ``train``, ``val`` or ``test``."""
    return sorted((bsds_root(root) / split).glob("*.jpg"))


def decode_rgb(encoded: bytes | np.ndarray) -> np.ndarray:
    """An encoded image file (bytes, or their uint8 array) → uint8 ``(H, W, 3)`` sRGB pixels."""
    image = iio.imread(bytes(encoded))
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3].astype(np.uint8))


def _png(pixels: np.ndarray) -> bytes:
    return iio.imwrite("<bytes>", pixels, extension=".png")


def load_split(split: str, root: Path | None = None) -> list[Photo]:
    """Photos of a split: ``"train"`` (BSDS train + val minus validation + scikit-image),
    ``"validation"`` (first BSDS val photos) or ``"test"`` (BSDS test, evaluation only)."""
    if split == "test":
        paths = bsds_files("test", root)
    elif split == "validation":
        paths = bsds_files("val", root)[:VALIDATION_COUNT]
    elif split == "train":
        paths = bsds_files("train", root) + bsds_files("val", root)[VALIDATION_COUNT:]
    else:
        raise ValueError(f"unknown split {split!r}")
    photos = [Photo(f"bsds500/{p.parent.name}/{p.name}", BSDS_LICENCE, p.read_bytes()) for p in paths]
    if split == "train":
        import skimage.data

        photos += [Photo(f"skimage.data.{n}", lic, _png(getattr(skimage.data, n)()[..., :3])) for n, lic in SKIMAGE_PHOTOS.items()]
    return photos


def prepare_cache(cache_dir: Path = DEFAULT_CACHE, root: Path | None = None) -> Path:
    """Gather every split's encoded photos into ``cache_dir/<split>.npz`` plus ``sources.json``; returns the dir.

    ``train.npz``, ``validation.npz`` and ``sources.json`` are all that training needs (about
    24 MB): what a GPU machine is sent (``docs/gpu.md``).
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for split in ("train", "validation", "test"):
        photos = load_split(split, root)
        tmp = cache_dir / f"{split}.tmp.npz"
        np.savez(tmp, **{f"{i:04d}": np.frombuffer(p.encoded, dtype=np.uint8) for i, p in enumerate(photos)})
        tmp.replace(cache_dir / f"{split}.npz")
        manifest[split] = [{"name": p.name, "licence": p.licence} for p in photos]
    (cache_dir / "sources.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return cache_dir


def cached_images(split: str, cache_dir: Path = DEFAULT_CACHE, root: Path | None = None) -> list[np.ndarray]:
    """uint8 ``(H, W, 3)`` photos of ``split`` from the cache (built first when missing).

    Entries are encoded files (1-D uint8, decoded here) or, in caches made before, the pixels.
    """
    path = Path(cache_dir) / f"{split}.npz"
    if not path.is_file():
        prepare_cache(cache_dir, root)
    with np.load(path) as data:
        return [decode_rgb(a) if a.ndim == 1 else a for a in (data[k] for k in sorted(data.files))]


def source_summary(cache_dir: Path = DEFAULT_CACHE) -> dict:
    """Counts and licences of the cached training data, for the model card."""
    manifest = json.loads((Path(cache_dir) / "sources.json").read_text())
    licences: dict[str, int] = {}
    for entry in manifest["train"]:
        licences[entry["licence"]] = licences.get(entry["licence"], 0) + 1
    return {
        "train_photos": len(manifest["train"]),
        "validation_photos": len(manifest["validation"]),
        "held_out_test_photos": len(manifest["test"]),
        "licences": licences,
        "skimage_photos": [e["name"] for e in manifest["train"] if e["name"].startswith("skimage")],
    }
