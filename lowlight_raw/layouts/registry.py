"""Every sensor layout by its ``kind``: the one table of them (:data:`LAYOUTS`) and its lookups.

:mod:`.base` holds the base class and what the layouts share; each layout module defines one
subclass; adding a layout is a module and a row here.
"""

from __future__ import annotations

from .base import SensorLayout
from .bayer import BayerLayout
from .linear import LinearLayout
from .xtrans import XTransLayout

LAYOUTS: dict[str, type[SensorLayout]] = {layout.kind: layout for layout in (BayerLayout, LinearLayout, XTransLayout)}


def layout_class(kind: str) -> type[SensorLayout]:
    """The layout registered as ``kind`` (``bayer``, ``xtrans``, ``linear``)."""
    try:
        return LAYOUTS[kind]
    except KeyError:
        raise ValueError(f"unknown sensor layout {kind!r} (known: {', '.join(sorted(LAYOUTS))})") from None


def layout_kinds() -> tuple[str, ...]:
    """Every registered layout's ``kind`` (``bayer``, ``linear``, ``xtrans``): command-line choices."""
    return tuple(LAYOUTS)
