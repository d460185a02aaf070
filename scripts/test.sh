#!/usr/bin/env bash
# Install everything the tests need, then run the whole suite (the command CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
exec .venv/bin/python -m pytest -q -ra "$@"
