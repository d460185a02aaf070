"""Every sensor layout, registered: the one module that imports them all.

:mod:`.layouts` holds the base class and the registry (and imports no layout); each layout module
registers itself on import. Look layouts up here: :func:`layout_class`, :func:`layout_kinds`.
"""

from __future__ import annotations

from . import bayer, linear_rgb, xtrans  # noqa: F401 - each registers itself
from .layouts import LAYOUTS, SensorLayout


def layout_class(kind: str) -> type[SensorLayout]:
    """The layout registered as ``kind`` (``bayer``, ``xtrans``, ``linear``)."""
    try:
        return LAYOUTS[kind]
    except KeyError:
        raise ValueError(f"unknown sensor layout {kind!r} (known: {', '.join(sorted(LAYOUTS))})") from None


def layout_kinds() -> tuple[str, ...]:
    """Every registered layout's ``kind`` (``bayer``, ``linear``, ``xtrans``): command-line choices."""
    return tuple(LAYOUTS)
