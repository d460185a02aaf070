"""``lr-bridge install-darktable-plugin``: put the darktable Lua plugin where darktable loads it.

Copies ``lowlight_enhance.lua`` to ``<configdir>/lua/lowlight/lowlight_enhance.lua`` (its own
folder, so a lua-scripts checkout in ``<configdir>/lua`` stays clean and the script manager lists
it under "lowlight") and adds ``require "lowlight/lowlight_enhance"`` to ``<configdir>/luarc`` once.
Running it again updates the script and leaves ``luarc`` alone. Both files are written under a
temporary name and renamed, so darktable never reads half a file.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from importlib import resources
from pathlib import Path

SCRIPT_NAME = "lowlight_enhance.lua"
MODULE_NAME = "lowlight/" + SCRIPT_NAME.removesuffix(".lua")  # the name darktable's `require` loads, relative to <configdir>/lua
REQUIRE_LINE = f'require "{MODULE_NAME}"'
_REQUIRE_PATTERN = re.compile(r"""^\s*require\s*\(?\s*["']""" + re.escape(MODULE_NAME) + r"""["']""")


class PluginNotFound(Exception):
    """The Lua script is neither in the installed package nor in a source checkout."""


def default_configdir() -> Path:
    """darktable's own default: ``$XDG_CONFIG_HOME/darktable``, else ``~/.config/darktable``."""
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "darktable"


def plugin_source() -> bytes:
    """The plugin's Lua script: packaged in ``lr_bridge/plugin/``, else from the source checkout."""
    packaged = resources.files("lr_bridge") / "plugin" / SCRIPT_NAME
    if packaged.is_file():
        return packaged.read_bytes()
    checkout = Path(__file__).resolve().parent.parent
    in_checkout = checkout / "plugin" / SCRIPT_NAME
    if (checkout / "pyproject.toml").is_file() and in_checkout.is_file():
        return in_checkout.read_bytes()
    raise PluginNotFound(f"{SCRIPT_NAME} is not part of this installation (looked in lr_bridge/plugin and {in_checkout})")


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def luarc_requires_plugin(luarc_text: str) -> bool:
    """Whether ``luarc_text`` already loads the plugin (a commented-out line does not count)."""
    return any(_REQUIRE_PATTERN.match(line) for line in luarc_text.splitlines())


def install_plugin(configdir: Path | None = None) -> Path:
    """Install (or update) the plugin in darktable's ``configdir``; returns the installed script.

    Idempotent: the ``require`` line is added to ``luarc`` only if it is not there yet.
    Raises :class:`PluginNotFound` or ``OSError`` (with the path) on failure.
    """
    configdir = Path(configdir).expanduser() if configdir is not None else default_configdir()
    script = configdir / "lua" / f"{MODULE_NAME}.lua"
    source = plugin_source()
    if not script.is_file() or script.read_bytes() != source:
        _write_atomically(script, source)
    luarc = configdir / "luarc"
    current = luarc.read_bytes() if luarc.is_file() else b""
    if not luarc_requires_plugin(current.decode("utf-8", errors="replace")):
        separator = b"" if current == b"" or current.endswith(b"\n") else b"\n"
        _write_atomically(luarc, current + separator + REQUIRE_LINE.encode() + b"\n")
    return script


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``lr-bridge install-darktable-plugin``."""
    parser.add_argument(
        "--configdir",
        type=Path,
        help=f"darktable's configuration folder (default {default_configdir()}; "
        "flatpak: ~/.var/app/org.darktable.Darktable/config/darktable)",
    )


def run(args: argparse.Namespace) -> int:
    """Install the plugin as ``args`` say; prints what it did. Returns the exit status."""
    try:
        script = install_plugin(args.configdir)
    except (PluginNotFound, OSError) as exc:
        print(f"lr-bridge: cannot install the darktable plugin: {exc}", file=sys.stderr)
        return 1
    print(f"installed {script}")
    print(f"darktable loads it through {script.parents[2] / 'luarc'} ({REQUIRE_LINE});")
    print("restart darktable, select photos in the lighttable and press 'enhance low light'")
    return 0
