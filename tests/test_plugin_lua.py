"""The darktable plugin's Lua unit tests (tests/lua/test_plugin.lua), one pytest case each.

They run under plain ``lua5.4`` with a fake ``darktable`` table (tests/lua/fake_darktable.lua)
and real shells, files and stand-in client processes; skipped where lua5.4 is missing.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

LUA = shutil.which("lua5.4")
LUA_TESTS = Path(__file__).parent / "lua" / "test_plugin.lua"


def _test_names() -> list[str]:
    if LUA is None:
        return ["lua5.4-missing"]
    listing = subprocess.run([LUA, str(LUA_TESTS), "--list"], capture_output=True, text=True, check=True, timeout=30)
    return listing.stdout.split()


@pytest.mark.skipif(LUA is None, reason="lua5.4 is not installed")
@pytest.mark.parametrize("name", _test_names())
def test_lua(name: str) -> None:
    run = subprocess.run([LUA, str(LUA_TESTS), name], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"PASS {name}" in run.stdout


PLUGIN_CONSTANTS = """
package.path = arg[1] .. "/?.lua;" .. package.path
local fake = require "fake_darktable"
local C = fake.load_plugin(fake.new(), arg[2]).lowlight.CONSTANTS
fake.cleanup()
print("formats " .. table.concat(C.formats, " "))
print("ev_range " .. string.format("%.17g %.17g", C.ev_range[1], C.ev_range[2]))
print("strength_range " .. string.format("%.17g %.17g", C.strength_range[1], C.strength_range[2]))
print("models " .. table.concat(C.models, " "))
print("output_suffix " .. C.output_suffix)
print("client " .. C.client)
"""


@pytest.mark.skipif(LUA is None, reason="lua5.4 is not installed")
def test_the_plugins_constants_equal_the_python_definitions() -> None:
    from lowlight_raw.files.writers import OUTPUT_SUFFIX
    from lowlight_raw.networks.catalog import MODEL_CHOICES
    from lowlight_raw.options import FORMATS, MAX_MANUAL_EV, MAX_STRENGTH, MIN_EV, MIN_STRENGTH
    from lr_bridge.darktable_install import CLIENT_NAME

    plugin = LUA_TESTS.parent.parent.parent / "plugin" / "lowlight_enhance.lua"
    run = subprocess.run([LUA, "-", str(LUA_TESTS.parent), str(plugin)], input=PLUGIN_CONSTANTS,
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    constants = dict(line.split(" ", 1) for line in run.stdout.splitlines())
    assert constants["formats"].split() == [f.upper() for f in FORMATS]
    assert [float(v) for v in constants["ev_range"].split()] == [MIN_EV, MAX_MANUAL_EV]
    assert [float(v) for v in constants["strength_range"].split()] == [MIN_STRENGTH, MAX_STRENGTH]
    assert tuple(constants["models"].split()) == MODEL_CHOICES
    assert constants["output_suffix"] == OUTPUT_SUFFIX
    assert constants["client"] == CLIENT_NAME
