"""Quality benchmark of the shipped model: ``python bench/quality.py [--weights PATH] [--count N]``.

Same as ``lowlight-raw evaluate`` (see :mod:`lowlight_raw.training.evaluate`).
"""

from lowlight_raw.training.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
