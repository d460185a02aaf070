"""A built wheel, installed into a fresh virtualenv outside the checkout, enhances the bundled example
through both command lines, the daemon and a Dask worker, with the weights it carries.

The wheel is built once per run (``pip wheel``); the virtualenv installs it with its dependencies
(torch 2.13.0 from the machine's local wheel, the rest from PyPI or pip's cache: ~25 s here).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tomllib
from PIL import Image

import lowlight_raw
from lowlight_raw.networks.catalog import SHIPPED_MODELS

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "coffee_dark.dng"

pytestmark = pytest.mark.slow


class Installed:
    """A fresh virtualenv holding only the wheel (and its dependencies), used from a folder outside the checkout."""

    def __init__(self, root: Path, wheel: Path) -> None:
        self.root, self.wheel = root, wheel
        self.bin = root / "venv" / "bin"
        self.home = root / "home"
        self.home.mkdir()
        self.env = {key: value for key, value in os.environ.items()
                    if key not in {"PYTHONPATH", "VIRTUAL_ENV"} and not key.startswith("LR_BRIDGE_")}
        self.env.update(HOME=str(self.home), XDG_CONFIG_HOME=str(self.home / ".config"),
                        LR_BRIDGE_STATE_DIR=str(root / "state"), PATH=f"{self.bin}:{os.environ['PATH']}")

    def run(self, *command: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.bin / command[0]), *command[1:]], cwd=self.home, env=self.env,
                              capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(REPO)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    return dist / f"lowlight_raw-{lowlight_raw.__version__}-py3-none-any.whl"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Installed:
    root = tmp_path_factory.mktemp("installed")
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, timeout=120)
    setup = Installed(root, wheel)
    done = setup.run("pip", "install", "-q", "--disable-pip-version-check", str(wheel), timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    return setup


def test_the_wheel_carries_the_weights_cards_and_plugin(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for layouts in SHIPPED_MODELS.values():
        for path in layouts.values():
            if path.is_file():  # what this checkout ships, the wheel ships: weights and card
                relative = path.relative_to(REPO).as_posix()
                assert {relative, relative.removesuffix(".pt") + ".json"} <= names
    assert {"lowlight_raw/weights/MODEL_CARD.md", "lr_bridge/plugin/lowlight_enhance.lua", "lr_bridge/PROTOCOL.md"} <= names


def test_the_version_is_written_once() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert f"## {lowlight_raw.__version__}" in changelog


def test_both_command_lines_say_the_installed_version(installed: Installed) -> None:
    for command in ("lowlight-raw", "lr-bridge"):
        done = installed.run(command, "--version")
        assert done.stdout.strip() == f"{command} {lowlight_raw.__version__}", done.stderr


def test_the_installed_engine_uses_its_own_weights(installed: Installed) -> None:
    done = installed.run("python", "-c", "import lowlight_raw.networks.catalog as r, json; "
                         "print(json.dumps([str(r.shipped_weights('fast')), r.__file__]))")
    weights, module = map(Path, json.loads(done.stdout))
    assert weights.is_file() and weights.is_relative_to(installed.root / "venv"), weights
    assert Path(module).is_relative_to(installed.root / "venv")


def _brightened(jpeg: Path) -> float:
    pixels = np.asarray(Image.open(jpeg), dtype=np.float32)
    assert pixels.shape[2] == 3
    return float(pixels.mean())


def test_lowlight_raw_enhances_the_example_from_any_folder(installed: Installed) -> None:
    out = installed.root / "out-cli"
    done = installed.run("lowlight-raw", "enhance", str(EXAMPLE), "-o", str(out), "-f", "jpeg", "-q")
    assert done.returncode == 0, done.stderr
    assert 60 < _brightened(out / "coffee_dark_lowlight.jpg") < 200  # the dark example, brought to mid-tones


def test_lr_bridge_enhances_the_example_through_its_daemon(installed: Installed) -> None:
    out = installed.root / "out-bridge"
    try:
        done = installed.run("lr-bridge", "enhance", str(EXAMPLE), "-o", str(out), "-f", "jpeg")
        assert done.returncode == 0, done.stderr
        assert 60 < _brightened(out / "coffee_dark_lowlight.jpg") < 200
        status = installed.run("lr-bridge", "status")
        assert status.returncode == 0 and lowlight_raw.__version__ in status.stdout, status.stdout
    finally:
        installed.run("lr-bridge", "stop")


def test_a_dask_worker_enhances_the_example(installed: Installed) -> None:
    out = installed.root / "out-dask"
    done = installed.run("lowlight-raw", "enhance", str(EXAMPLE), "-o", str(out), "-f", "jpeg", "-q", "--dask", "local:1")
    assert done.returncode == 0, done.stderr
    assert 60 < _brightened(out / "coffee_dark_lowlight.jpg") < 200
