"""Clean photographs to train and evaluate on: where they are, their licences, a local cache.

* BSDS500 (Berkeley Segmentation Dataset, 500 photos of 481×321): research use only, so it
  is used to train/validate/evaluate here and never shipped. ``train/`` and most of ``val/``
  train the model, the first :data:`VALIDATION_COUNT` of ``val/`` (sorted) are the validation
  set the training log reports, and ``test/`` (200) is held out for :mod:`.evaluate` only.
  Found at ``$LOWLIGHT_BSDS500``, else ``<repo>/../shared/datasets/bsds500``.
* scikit-image's bundled photographs (ship inside the ``scikit-image`` wheel, no download):
  public domain or CC0 per their docstrings.
* High-resolution photographs from Debian packages (:mod:`.debian_photos`, the committed
  manifest ``debian_photos.json``: CC0, CC-BY, CC-BY-SA, GPL, LGPL, BSD), each cached at 1/2,
  1/3 and 1/4 of its size, so the random-crop sampler sees every scene at several scales.

Training draws from a named selection of these (:data:`SOURCE_SELECTIONS`): ``all``, or
``licence-clean`` (everything but BSDS500). Validation and test are BSDS500 in both, so scores
stay comparable.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from ..files.atomic import write_atomically
from . import debian_photos

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = REPO_ROOT / "cache" / "training"
DEFAULT_PHOTOS = REPO_ROOT / "cache" / "photos"  # downloaded .debs and their extracted files
DEFAULT_MAX_MB = 128.0  # cap on the Debian photos' decoded pixels in the cache (BSDS train: 130 MB)
VALIDATION_COUNT = 20
BSDS_LICENCE = "BSDS500 (UC Berkeley): research/non-commercial use; not redistributed"
SKIMAGE_PHOTOS = {
    "astronaut": "public domain (NASA)",
    "chelsea": "CC0 (Stefan van der Walt)",
    "coffee": "CC0 (Rachel Michetti)",
    "rocket": "public domain (SpaceX)",
    "hubble_deep_field": "public domain (NASA, Hubble eXtreme Deep Field)",
    "retina": "CC0 (Wikimedia Commons, fundus photograph of a normal left eye)",
}
SOURCE_SELECTIONS = {"all": ("bsds500", "skimage", "debian"), "licence-clean": ("skimage", "debian")}


@dataclass(frozen=True)
class Photo:
    """One clean photo: an identifier, its source (``bsds500``, ``skimage`` or ``debian``: what
    :data:`SOURCE_SELECTIONS` name), its licence, its encoded file, its size, who to credit, and
    by how much it was downscaled.

    The cache keeps encoded files (BSDS500's JPEGs as published, the others as PNG), not decoded
    pixels: BSDS500's ``train/`` + ``val/`` are 23 MB as JPEGs but 130 MB decoded, and the
    training photos must travel to a GPU machine (64 MiB, ``docs/gpu.md``).
    """

    name: str
    source: str
    licence: str
    encoded: bytes
    size: tuple[int, int]
    attribution: str = ""
    downscale: int = 1

    @staticmethod
    def of_pixels(name: str, source: str, licence: str, pixels: np.ndarray, attribution: str = "",
                  downscale: int = 1) -> "Photo":
        """A photo from uint8 ``(H, W, 3)`` pixels, kept as PNG."""
        encoded = iio.imwrite("<bytes>", np.ascontiguousarray(pixels), extension=".png")
        return Photo(name, source, licence, encoded, pixels.shape[:2], attribution, downscale)

    @staticmethod
    def of_file(name: str, source: str, licence: str, path: Path) -> "Photo":
        """A photo from its file, kept as it is."""
        encoded = path.read_bytes()
        return Photo(name, source, licence, encoded, decode_rgb(encoded).shape[:2])


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


def debian_training_photos(photo_dir: Path = DEFAULT_PHOTOS, max_mb: float | None = DEFAULT_MAX_MB) -> list[Photo]:
    """The manifest's photos at every downscale factor, fetched when missing.

    With ``max_mb``, images are cropped to random windows (seeded, so the cache is reproducible)
    until their decoded pixels fit in that many megabytes. An unreachable archive is reported in
    one line and gives no photos; a file that differs from the manifest raises
    :class:`~.debian_photos.ManifestMismatch`.
    """
    try:
        selected = debian_photos.fetch_photos(Path(photo_dir), debian_photos.load_manifest())
    except debian_photos.ArchiveUnavailable as exc:
        print(f"training data: no Debian photos: {exc}", file=sys.stderr)
        return []
    scaled = []  # (entry, licence, factor, pixels)
    for entry, path in selected:
        licence = entry.licence + (f" (package metadata: {entry.upstream_licence})" if entry.upstream_licence else "")
        for factor, pixels in debian_photos.multiscale(debian_photos.read_rgb(path)):
            scaled.append((entry, licence, factor, pixels))
    if max_mb is not None:
        cap = debian_photos.pixel_cap([p.shape[0] * p.shape[1] for *_, p in scaled], int(max_mb * 1e6 / 3))
        rng = np.random.default_rng(0)
        scaled = [(e, lic, f, debian_photos.random_window(p, cap, rng)) for e, lic, f, p in scaled]
    return [Photo.of_pixels(e.name, "debian", lic, p, e.attribution, f) for e, lic, f, p in scaled]


def load_split(split: str, root: Path | None = None, photo_dir: Path = DEFAULT_PHOTOS,
               max_mb: float | None = DEFAULT_MAX_MB) -> list[Photo]:
    """Photos of a split: ``"train"`` (BSDS train + val minus validation + scikit-image + the
    Debian photos, see :func:`debian_training_photos`), ``"validation"`` (first BSDS val
    photos) or ``"test"`` (BSDS test, evaluation only)."""
    if split == "test":
        paths = bsds_files("test", root)
    elif split == "validation":
        paths = bsds_files("val", root)[:VALIDATION_COUNT]
    elif split == "train":
        paths = bsds_files("train", root) + bsds_files("val", root)[VALIDATION_COUNT:]
    else:
        raise ValueError(f"unknown split {split!r}")
    photos = [Photo.of_file(f"bsds500/{p.parent.name}/{p.name}", "bsds500", BSDS_LICENCE, p) for p in paths]
    if split == "train":
        import skimage.data

        photos += [Photo.of_pixels(f"skimage.data.{n}", "skimage", lic, getattr(skimage.data, n)()[..., :3])
                   for n, lic in SKIMAGE_PHOTOS.items()]
        photos += debian_training_photos(photo_dir, max_mb)
    return photos


def prepare_cache(cache_dir: Path = DEFAULT_CACHE, root: Path | None = None, photo_dir: Path = DEFAULT_PHOTOS,
                  max_mb: float | None = DEFAULT_MAX_MB) -> Path:
    """Gather every split's encoded photos into ``cache_dir/<split>.npz`` plus ``sources.json``
    (each cached image's name, source, licence, attribution, downscale factor and size); returns
    the dir. ``max_mb`` caps the Debian photos' share (see :func:`debian_training_photos`).
    ``train.npz``, ``validation.npz`` and ``sources.json`` are all that training needs."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for split in ("train", "validation", "test"):
        photos = load_split(split, root, photo_dir, max_mb)
        arrays = {f"{i:04d}": np.frombuffer(p.encoded, dtype=np.uint8) for i, p in enumerate(photos)}
        write_atomically(cache_dir / f"{split}.npz", lambda temp, arrays=arrays: _savez(temp, arrays))
        manifest[split] = [
            {"name": p.name, "source": p.source, "licence": p.licence, "attribution": p.attribution,
             "downscale": p.downscale, "size": list(p.size)}
            for p in photos
        ]
    write_atomically(cache_dir / "sources.json", json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    return cache_dir


def _savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` to exactly ``path`` (given a name, numpy would add ``.npz`` to it)."""
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def _selected_entries(cache_dir: Path, split: str, sources: str) -> list[tuple[int, dict]]:
    """``(index in the split's npz, sources.json entry)`` of the cached images ``sources`` selects
    (every image outside ``train``: validation and test never change)."""
    if sources not in SOURCE_SELECTIONS:
        raise ValueError(f"unknown source selection {sources!r} (choose from {', '.join(SOURCE_SELECTIONS)})")
    entries = json.loads((Path(cache_dir) / "sources.json").read_text())[split]
    if split != "train":
        return list(enumerate(entries))
    if any("source" not in e for e in entries):
        raise ValueError(f"{cache_dir} predates source selections: rebuild it (scripts/prepare_training_data.py)")
    return [(i, e) for i, e in enumerate(entries) if e["source"] in SOURCE_SELECTIONS[sources]]


def cached_images(split: str, cache_dir: Path = DEFAULT_CACHE, root: Path | None = None,
                  sources: str = "all") -> list[np.ndarray]:
    """uint8 ``(H, W, 3)`` photos of ``split`` from the cache (built first when missing); for
    ``train``, only those of the named source selection (a key of :data:`SOURCE_SELECTIONS`).
    Entries are encoded files (1-D uint8, decoded here) or, in caches made before, the pixels."""
    path = Path(cache_dir) / f"{split}.npz"
    if not path.is_file():
        prepare_cache(cache_dir, root)
    with np.load(path) as data:
        entries = (data[f"{i:04d}"] for i, _ in _selected_entries(cache_dir, split, sources))
        return [decode_rgb(a) if a.ndim == 1 else a for a in entries]


def source_summary(cache_dir: Path = DEFAULT_CACHE, sources: str = "all") -> dict:
    """Every training source and licence of the named selection in the cache, for the model card.

    Photos are counted once however many scales of them are cached (``train_images``)."""
    train = [e for _, e in _selected_entries(cache_dir, "train", sources)]
    photos = {e["name"]: e for e in train}
    per_source: dict[str, int] = {}
    licences: dict[str, int] = {}
    for e in photos.values():
        key = "/".join(e["name"].split("/")[:2]) if e["source"] == "debian" else e["source"]  # debian/<package>
        per_source[key] = per_source.get(key, 0) + 1
        licences[e["licence"]] = licences.get(e["licence"], 0) + 1
    manifest = json.loads((Path(cache_dir) / "sources.json").read_text())
    return {
        "sources": sources,
        "train_photos": len(photos),
        "train_images": len(train),
        "train_megapixels": round(sum(e["size"][0] * e["size"][1] for e in train) / 1e6, 1),
        "validation_photos": len(manifest["validation"]),
        "held_out_test_photos": len(manifest["test"]),
        "photos_per_source": per_source,
        "licences": licences,
        "skimage_photos": [e["name"] for e in photos.values() if e["source"] == "skimage"],
        "debian_photos": [{"name": e["name"], "licence": e["licence"], "attribution": e["attribution"]}
                          for e in photos.values() if e["source"] == "debian"],
        "debian_downscale_factors": sorted({e["downscale"] for e in train if e["source"] == "debian"}),
    }
