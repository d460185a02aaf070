#!/usr/bin/env bash
# A Debian trixie chroot with darktable 5.x (trixie-backports), to run the plugin's
# end-to-end tests in the darktable most users have. Built once per machine and cached.
#
#   scripts/darktable5_chroot.sh build   make sure the chroot is ready (build it when missing,
#                                         half-built or stale); print its path
#   scripts/darktable5_chroot.sh run CMD  run CMD inside it, with proc, sys, dev, dev/pts,
#                                         dev/shm and /tmp mounted, and each folder in
#                                         LR_DT5_BINDS (colon-separated) at its own path;
#                                         the mounts live in a private namespace and end with CMD
#
# Exit status 0: done; 3: it cannot be built or entered here (not root, no debootstrap, Debian's
# archive or PyPI unreachable, not built yet), with one line on stderr saying why (the tests skip
# with that line); anything else: a real failure.
#
# The chroot holds darktable, Xvfb and a Python venv (/opt/lr-client) with only what the
# lr-bridge client needs (pyzmq, tqdm): torch is never installed there. The project itself is
# put on that venv's path at test time (PYTHONPATH), so one chroot serves every checkout.
# LR_DT5_CHROOT overrides where it lives; LR_DT5_MIRROR which Debian archive it comes from.
set -euo pipefail

ROOT=${LR_DT5_CHROOT:-/var/cache/lowlight-raw/darktable5-chroot}
# Bump when what the chroot holds changes: a chroot with another recipe is rebuilt.
RECIPE=1
STAMP=$ROOT/.lowlight-raw-ready
CLIENT_PACKAGES=(pyzmq tqdm)

cannot() { echo "darktable 5 chroot: $*" >&2; exit 3; }
fail() { tail -n5 "$ROOT.build.log" >&2; echo "darktable 5 chroot: $* (log: $ROOT.build.log)" >&2; exit 1; }

# CMD inside the chroot DIR with a clean environment (none of the host's pip, proxy or CA settings).
in_chroot() {
  local dir=$1; shift
  env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    ${http_proxy:+http_proxy=$http_proxy} ${https_proxy:+https_proxy=$https_proxy} \
    chroot "$dir" "$@"
}

# The Debian archive this machine's apt already uses (deb822 or one-line sources).
mirror() {
  if [[ -n ${LR_DT5_MIRROR:-} ]]; then echo "$LR_DT5_MIRROR"; return; fi
  local uri
  uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | grep -v '^\s*#' \
        | grep -oE '(https?://[^ ]*/debian)/?( |$)' | grep -v security | head -n1 | tr -d ' ' || true)
  echo "${uri%/}"
}

mounts_below() { findmnt -rn -o TARGET | grep -E "^$1(/|$)" | sort -r || true; }

unmount_all() {
  local target
  for target in $(mounts_below "$1"); do umount -l "$target" 2>/dev/null || true; done
}

mount_into() {
  local dir=$1
  mkdir -p "$dir"/{proc,sys,dev,tmp}
  mount -t proc proc "$dir/proc"
  mount --rbind /sys "$dir/sys"
  mount --bind /dev "$dir/dev"
  mount --bind /dev/pts "$dir/dev/pts"
  mount --bind /dev/shm "$dir/dev/shm"
  mount --bind /tmp "$dir/tmp"
}

ready() { [[ -f $STAMP ]] && grep -qx "recipe=$RECIPE" "$STAMP"; }

build() {
  if ready; then echo "$ROOT"; return; fi
  [[ $(id -u) == 0 ]] || cannot "needs root to build $ROOT"
  command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null 2>&1 \
    || cannot "debootstrap is not installed and apt-get could not install it"
  local url
  url=$(mirror)
  [[ -n $url ]] || cannot "no Debian archive found in /etc/apt/sources.list*"
  curl -fsS --max-time 20 -o /dev/null "$url/dists/trixie-backports/Release" 2>/dev/null \
    || cannot "Debian's archive $url is unreachable"
  # A second build waits for the first; after the lock it may find the chroot ready.
  mkdir -p "$(dirname "$ROOT")"
  exec 9>"$ROOT.lock"
  flock 9
  if ready; then echo "$ROOT"; return; fi
  local partial=$ROOT.partial
  unmount_all "$partial"
  unmount_all "$ROOT"
  rm -rf --one-file-system "$ROOT"
  trap 'unmount_all "'"$partial"'"' EXIT
  local start=$SECONDS
  local log=$ROOT.build.log
  # Stages leave a marker when complete: an interrupted build resumes after the last one.
  if [[ ! -f $partial/.stage-base ]]; then
    rm -rf --one-file-system "$partial"
    echo "darktable 5 chroot: building $ROOT from $url (1.1 GB, a few minutes)" >&2
    debootstrap --variant=minbase trixie "$partial" "$url" >"$log" 2>&1 \
      || fail "debootstrap failed"
    printf 'deb %s trixie main\ndeb %s trixie-backports main\n' "$url" "$url" >"$partial/etc/apt/sources.list"
    touch "$partial/.stage-base"
  fi
  cp /etc/resolv.conf "$partial/etc/resolv.conf" 2>/dev/null || true
  mount_into "$partial"
  if [[ ! -f $partial/.stage-packages ]]; then
    {
      in_chroot "$partial" dpkg --configure -a # after an interrupted build
      in_chroot "$partial" apt-get update -q
      in_chroot "$partial" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -t trixie-backports darktable xvfb xauth lua5.4 python3-venv ca-certificates
      in_chroot "$partial" apt-get clean
    } >>"$log" 2>&1 || fail "installing darktable failed"
    touch "$partial/.stage-packages"
  fi
  # Behind a TLS-inspecting proxy only the host's CA bundle verifies PyPI: use it for pip.
  cp /etc/ssl/certs/ca-certificates.crt "$partial/etc/lowlight-host-ca.pem"
  {
    rm -rf "$partial/opt/lr-client"
    in_chroot "$partial" python3 -m venv /opt/lr-client
    in_chroot "$partial" env PIP_CERT=/etc/lowlight-host-ca.pem PIP_DISABLE_PIP_VERSION_CHECK=1 \
      /opt/lr-client/bin/pip install -q "${CLIENT_PACKAGES[@]}"
  } >>"$log" 2>&1 || {
    curl -fsS --max-time 20 -o /dev/null https://pypi.org/simple/pyzmq/ 2>/dev/null || cannot "PyPI is unreachable"
    fail "installing the client's Python packages (${CLIENT_PACKAGES[*]}) failed"
  }
  unmount_all "$partial"
  trap - EXIT
  local version
  version=$(chroot "$partial" dpkg-query -W -f='${Version}' darktable)
  printf 'recipe=%s\ndarktable=%s\nseconds=%s\n' "$RECIPE" "$version" "$((SECONDS - start))" >"$partial/.lowlight-raw-ready"
  mv "$partial" "$ROOT"
  echo "darktable 5 chroot: darktable $version ready in $((SECONDS - start)) s" >&2
  echo "$ROOT"
}

run() {
  ready || cannot "$ROOT is not built (run: scripts/darktable5_chroot.sh build)"
  [[ $(id -u) == 0 ]] || cannot "needs root to enter $ROOT"
  # Each run gets its own mount namespace: the mounts vanish with it, whatever happens.
  exec unshare --mount --propagation private -- "$0" enter "$@"
}

# (inside run's private mount namespace) mount what CMD needs, then become CMD in the chroot
enter() {
  local path binds
  mount_into "$ROOT"
  IFS=: read -ra binds <<<"${LR_DT5_BINDS:-}"
  for path in "${binds[@]}"; do
    [[ -n $path ]] || continue
    mkdir -p "$ROOT$path"
    mount --bind "$path" "$ROOT$path"
  done
  exec chroot "$ROOT" "$@"
}

case ${1:-} in
  build) build ;;
  run) shift; run "$@" ;;
  enter) shift; enter "$@" ;;
  *) echo "usage: $0 build | run CMD..." >&2; exit 2 ;;
esac
