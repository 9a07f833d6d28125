#!/usr/bin/env bash
# Installs the Debian 12 packages that building and testing unionfs-cpp needs.
# Fast on reruns: apt is called only when a package is missing. Needs root (or sudo).
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config
  fuse3 libfuse3-dev libxxhash-dev libboost-filesystem-dev
  catch2 libbenchmark-dev
  python3 attr git tar coreutils util-linux procps
  podman runc busybox-static fuse-overlayfs uidmap acl gzip zstd
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)
  if [[ "$status" != ii* ]]; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

SUDO=()
if ((EUID != 0)); then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "install-deps: must run as root (or with sudo available) to install: ${missing[*]}" >&2
    exit 1
  fi
fi

echo "install-deps: installing ${missing[*]}"
"${SUDO[@]}" apt-get update
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y --no-install-recommends "${PACKAGES[@]}"
echo "install-deps: done"
