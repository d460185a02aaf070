#!/usr/bin/env bash
# Install lowlight-raw into ./.venv (CPU torch 2.13.0).
#   scripts/setup.sh          the engine, daemon and client
#   scripts/setup.sh --test   also the test tools: pytest, and (as root, via apt) darktable,
#                             xvfb, exiftool and lua5.4 for the real-darktable and DNG checks,
#                             debootstrap for the darktable 5 chroot (scripts/darktable5_chroot.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
if [[ "${1:-}" == "--test" ]]; then
  extras="test,train,dtmodel"
  need=()
  command -v darktable-cli >/dev/null || need+=(darktable)
  command -v xvfb-run >/dev/null || need+=(xvfb)
  command -v exiftool >/dev/null || need+=(libimage-exiftool-perl)
  command -v lua5.4 >/dev/null || need+=(lua5.4)
  command -v debootstrap >/dev/null || need+=(debootstrap)
  if ((${#need[@]})); then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
      echo "setup: installing ${need[*]} (apt)"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" xauth >/dev/null
    else
      echo "setup: ${need[*]} missing and not root: the darktable/exiftool/Lua tests will be skipped" >&2
    fi
  fi
fi
[[ -x .venv/bin/python ]] || python3 -m venv .venv
if ! log=$(.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras:+[$extras]}" 2>&1); then
  echo "$log" >&2
  echo "setup: pip install failed (see above)" >&2
  exit 1
fi
.venv/bin/python -c "import lowlight_raw, torch, rawpy; print(f'setup: lowlight-raw ready (torch {torch.__version__}, LibRaw {rawpy.libraw_version})')"
echo "setup: the darktable plugin: .venv/bin/lr-bridge install-darktable-plugin (then restart darktable)"
