"""Fetch the Debian photos and gather the clean training/validation/test photos (their encoded files) into the local cache.

Usage: ``python scripts/prepare_training_data.py [--bsds PATH] [--cache DIR] [--photos DIR] [--max-mb MB]``

The Debian packages of ``lowlight_raw/training/debian_photos.json`` are downloaded with
``apt-get download`` into ``<photos>/debs`` (once) and their selected photos checked against
the manifest's sha256. ``--max-mb`` caps the Debian photos' decoded pixels in the cache (random
crops, never below 256 × 256, so about 25 MB is the least it can reach).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lowlight_raw.training.sources import DEFAULT_CACHE, DEFAULT_MAX_MB, DEFAULT_PHOTOS, prepare_cache, source_summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bsds", type=Path, default=None, help="BSDS500 folder (train/ val/ test/)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help="where the .debs are downloaded and extracted")
    parser.add_argument("--max-mb", type=float, default=DEFAULT_MAX_MB,
                        help=f"cap on the Debian photos' decoded megabytes in the cache (default {DEFAULT_MAX_MB:g})")
    args = parser.parse_args(argv)
    try:
        cache = prepare_cache(args.cache, args.bsds, args.photos, args.max_mb)
    except (FileNotFoundError, ValueError) as exc:
        print(f"prepare_training_data: {exc}")
        return 1
    print(json.dumps(source_summary(cache), indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
