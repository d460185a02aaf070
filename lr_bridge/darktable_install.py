"""``lr-bridge install-darktable-plugin``: put the darktable Lua plugin where darktable loads it.

Copies ``lowlight_enhance.lua`` to ``<configdir>/lua/lowlight/lowlight_enhance.lua`` (its own
folder, so a lua-scripts checkout in ``<configdir>/lua`` stays clean and the script manager lists
it under "lowlight") and adds ``require "lowlight/lowlight_enhance"`` to ``<configdir>/luarc`` once.
Running it again updates the script and leaves ``luarc`` alone. Beside the script it writes
``lowlight_enhance.json``: the absolute path of this installation's ``lr-bridge`` (so darktable
started from a desktop menu, whose PATH lacks a virtualenv's ``bin``, finds the client) and the
models this installation ships (the plugin offers only those). Every file is written under a
temporary name and renamed, so darktable never reads half a file.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from importlib import resources
from pathlib import Path

from lowlight_raw.files.atomic import write_atomically
from lowlight_raw.networks.catalog import MODEL_CHOICES, shipped_weights

SCRIPT_NAME = "lowlight_enhance.lua"
# what the installer found, read by the plugin from beside its own script (same name, .json)
INSTALL_INFO_NAME = SCRIPT_NAME.removesuffix(".lua") + ".json"
CLIENT_NAME = "lr-bridge"
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


def luarc_requires_plugin(luarc_text: str) -> bool:
    """Whether ``luarc_text`` already loads the plugin (a commented-out line does not count)."""
    return any(_REQUIRE_PATTERN.match(line) for line in luarc_text.splitlines())


def client_command() -> str | None:
    """The absolute path of this installation's ``lr-bridge``: beside its Python (a virtualenv's
    ``bin``), else the one on ``PATH``; None when there is neither."""
    beside = Path(sys.executable).parent / CLIENT_NAME  # not resolved: a venv's python is a symlink
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside.absolute())
    found = shutil.which(CLIENT_NAME)
    return str(Path(found).absolute()) if found else None


def shipped_models() -> list[str]:
    """The model names this installation can run (``auto`` and every shipped one), in registry order."""
    return [name for name in MODEL_CHOICES if name == "auto" or shipped_weights(name) is not None]


def install_info() -> bytes:
    """The JSON the plugin reads beside its script: ``client`` (absolute path or null) and ``models``."""
    return (json.dumps({"client": client_command(), "models": shipped_models()}, indent=2) + "\n").encode()


def install_plugin(configdir: Path | None = None) -> Path:
    """Install (or update) the plugin in darktable's ``configdir``; returns the installed script.

    Idempotent: the ``require`` line is added to ``luarc`` only if it is not there yet; the
    script and :data:`INSTALL_INFO_NAME` are rewritten when they changed.
    Raises :class:`PluginNotFound` or ``OSError`` (with the path) on failure.
    """
    configdir = Path(configdir).expanduser() if configdir is not None else default_configdir()
    script = configdir / "lua" / f"{MODULE_NAME}.lua"
    for path, data in ((script, plugin_source()), (script.with_name(INSTALL_INFO_NAME), install_info())):
        if not path.is_file() or path.read_bytes() != data:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, data)
    luarc = configdir / "luarc"
    current = luarc.read_bytes() if luarc.is_file() else b""
    if not luarc_requires_plugin(current.decode("utf-8", errors="replace")):
        separator = b"" if current == b"" or current.endswith(b"\n") else b"\n"
        write_atomically(luarc, current + separator + REQUIRE_LINE.encode() + b"\n")
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
    client = client_command()
    print(f"installed {script}")
    print(f"darktable loads it through {script.parents[2] / 'luarc'} ({REQUIRE_LINE});")
    print(f"the plugin runs {client}" if client else
          f"no {CLIENT_NAME} found: set its full path in darktable's preferences > lua options > client command")
    print("restart darktable, select photos in the lighttable and press 'enhance low light'")
    return 0
