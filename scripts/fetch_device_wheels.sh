#!/usr/bin/env bash
# Download (here, where pip can reach PyPI) the wheels that the GPU machine lacks for the engine,
# the daemon and the benchmark, into .whl/ (ignored; a device run names it in `carry`).
# Training needs none of them: the machine's python3 has torch, numpy and imageio.
# Versions: the ones installed in .venv, so the device runs what the tests ran here.
# The machine: Python 3.12, x86-64, no network (/work/.library/device/README.md, Notes).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
for package in rawpy exiv2 ExifRead pyzmq; do
  version=$(.venv/bin/python -m pip show "$package" | sed -n 's/^Version: //p')
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$package==$version"
done
du -sh .whl && ls .whl
