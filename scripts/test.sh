#!/usr/bin/env bash
# Install everything the tests need, then run the whole suite (the command CI runs).
# As root, the darktable 5.x chroot of the plugin's end-to-end tests is built (first run on a
# machine, a few minutes, cached under /var/cache/lowlight-raw) while the other tests run;
# the darktable 5 test waits for it, or skips with the reason it cannot be built.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
build=""
if [[ $(id -u) == 0 ]]; then
  setsid scripts/darktable5_chroot.sh build >/dev/null 2>&1 </dev/null &
  build=$!
  trap 'kill -- "-$build" 2>/dev/null || true' INT TERM  # an interrupted build resumes next time
fi
status=0
.venv/bin/ruff check . || status=$?  # lint (pyproject.toml [tool.ruff]); the tests run either way
.venv/bin/python -m pytest -q -ra "$@" || status=$?
[[ -z $build ]] || wait "$build" || true
exit "$status"
