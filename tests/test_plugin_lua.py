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
