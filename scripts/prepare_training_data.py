"""Gather the clean training/validation/test photos (their encoded files) into the local cache (``cache/training``).

Usage: ``python scripts/prepare_training_data.py [--bsds PATH] [--cache DIR]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lowlight_raw.training.sources import DEFAULT_CACHE, prepare_cache, source_summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bsds", type=Path, default=None, help="BSDS500 folder (train/ val/ test/)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args(argv)
    try:
        cache = prepare_cache(args.cache, args.bsds)
    except FileNotFoundError as exc:
        print(f"prepare_training_data: {exc}")
        return 1
    print(json.dumps(source_summary(cache), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
