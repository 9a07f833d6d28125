#!/usr/bin/env bash
# Builds unionfs-cpp and mounts a small demo stack modelled on a Node.js container image:
#   base (Debian-like rootfs) : runtime (node, npm; OCI whiteout + opaque dir) : app : upper
# then shows lookup, whiteouts, copy-up and deletion, and unmounts.
# Env: BUILD_DIR (default build, relative to the repo root), DEMO_KEEP=1 keeps the temp dir.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-build}
[[ "$BUILD_DIR" = /* ]] || BUILD_DIR="$ROOT/$BUILD_DIR"
BIN="$BUILD_DIR/unionfs-cpp"

section() {
  echo
  echo "==== $* ===="
}

# Lists a tree one entry a line: mode, path, and the target of symlinks.
tree_of() {
  (cd "$1" && find . -mindepth 1 \( -type l -printf '%M  %P -> %l\n' \) -o -printf '%M  %P\n') |
    sort -k2
}

# --- Build ---------------------------------------------------------------------------------------
section "Installing dependencies"
"$ROOT/scripts/install-deps.sh"

section "Building $BIN"
if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]]; then
  cmake -S "$ROOT" -B "$BUILD_DIR" -G "Unix Makefiles" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DUNIONFS_TESTS=OFF >/dev/null
fi
cmake --build "$BUILD_DIR" -j2 --target unionfs-cpp
"$BIN" --version

# --- Demo stack ----------------------------------------------------------------------------------
WORK=$(realpath "$(mktemp -d "${TMPDIR:-/tmp}/unionfs-demo.XXXXXX")")
MNT="$WORK/merged"

cleanup() {
  local rc=$?
  if mountpoint -q "$MNT" 2>/dev/null; then
    fusermount3 -u "$MNT" 2>/dev/null || { sleep 1; fusermount3 -u "$MNT"; } ||
      fusermount3 -uz "$MNT" || true
  fi
  if mountpoint -q "$MNT" 2>/dev/null; then
    echo "demo: warning: $MNT is still mounted; leaving $WORK in place" >&2
  elif [[ "${DEMO_KEEP:-0}" = 1 ]]; then
    echo "demo: kept $WORK"
  else
    # --one-file-system: never descend into a mount that somehow survived.
    rm -rf --one-file-system "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Prints a command line, then runs it in $WORK, where the layers and merged/ are.
run() {
  echo "\$ $1"
  (cd "$WORK" && eval "$1")
}

put() { # put FILE CONTENT...
  mkdir -p "$(dirname "$1")"
  printf '%s\n' "${@:2}" >"$1"
}

# Layer 0: base, a tiny Debian-like root filesystem.
B="$WORK/base"
put "$B/etc/os-release" 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"' 'NAME="Debian GNU/Linux"' \
  'VERSION_ID="12"' 'VERSION="12 (bookworm)"' 'ID=debian'
put "$B/etc/motd" 'The programs included with the Debian GNU/Linux system are free software.'
put "$B/etc/hostname" 'demo'
put "$B/etc/passwd" 'root:x:0:0:root:/root:/bin/sh' 'node:x:1000:1000::/home/node:/bin/sh'
put "$B/usr/share/doc/base-files/README" 'Files in this package are part of the base system.'
put "$B/usr/share/doc/base-files/copyright" 'Copyright (C) Debian. GPL-2+.'
put "$B/bin/dash" '#!/bin/sh' 'echo "dash stand-in"'
chmod 755 "$B/bin/dash"
ln -s dash "$B/bin/sh"
put "$B/var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease" 'Origin: Debian'
put "$B/var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages" \
  'Package: base-files'

# Layer 1: runtime, the Node.js installation. Deletes etc/motd (OCI whiteout) and replaces
# var/lib/apt/lists wholesale (OCI opaque marker), as an image layer built by a Dockerfile would.
R="$WORK/runtime"
# shellcheck disable=SC2016  # the $1 and $* belong to the stand-in script
put "$R/usr/local/bin/node" '#!/bin/sh' 'case "$1" in' '  --version) echo v20.11.1 ;;' \
  '  *) echo "node stand-in: would run $*" ;;' 'esac'
chmod 755 "$R/usr/local/bin/node"
put "$R/usr/local/lib/node_modules/npm/package.json" '{ "name": "npm", "version": "10.2.4" }'
put "$R/usr/local/lib/node_modules/npm/bin/npm-cli.js" '#!/usr/bin/env node' '// npm stand-in'
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$R/usr/local/bin/npm"
mkdir -p "$R/etc" "$R/var/lib/apt/lists"
: >"$R/etc/.wh.motd"
: >"$R/var/lib/apt/lists/.wh..wh..opq"
: >"$R/var/lib/apt/lists/lock"

# Layer 2: app, the application.
A="$WORK/app"
put "$A/app/package.json" '{' '  "name": "demo-app",' '  "version": "1.0.0",' \
  '  "dependencies": { "express": "^4.18.2" }' '}'
put "$A/app/server.js" "const express = require('express');" 'const app = express();' \
  "app.get('/', (req, res) => res.send('hello from the union'));" 'app.listen(3000);'
put "$A/app/node_modules/express/package.json" '{ "name": "express", "version": "4.18.2" }'

# Layer 3: upper, empty and writable.
U="$WORK/upper"
mkdir -p "$U" "$MNT"

LAYERS="$B:$R:$A:$U"

section "The layers, bottom to top, in $WORK"
for d in base runtime app upper; do
  echo "--- $d/"
  tree_of "$WORK/$d"
done

section "Mounting"
cd "$WORK"
echo "\$ unionfs-cpp -o whiteout=auto base:runtime:app:upper merged     # (absolute paths)"
"$BIN" -o whiteout=auto "$LAYERS" "$MNT"
if ! mountpoint -q "$MNT"; then
  echo "demo: $MNT is not a mount point after unionfs-cpp returned" >&2
  exit 1
fi
grep -F " $MNT " /proc/mounts

section "The merged tree"
tree_of "$MNT"

section "Where each file comes from"
if "$BIN" which "$LAYERS" /etc/os-release >/dev/null 2>&1; then
  echo "\$ unionfs-cpp which base:runtime:app:upper PATH     # for each file PATH"
  (cd "$MNT" && find . -mindepth 1 ! -type d -printf '/%P\n') | sort | while read -r p; do
    "$BIN" which "$LAYERS" "$p" | sed "s|$WORK/||g"
  done
else
  echo "(the topmost layer that holds each name)"
  (cd "$MNT" && find . -mindepth 1 ! -type d -printf '%P\n') | sort | while read -r p; do
    for d in upper app runtime base; do
      if [[ -e "$WORK/$d/$p" || -L "$WORK/$d/$p" ]]; then
        printf '%-50s %s\n' "/$p" "$d"
        break
      fi
    done
  done
fi

section "Reading through the mount"
run 'grep PRETTY_NAME merged/etc/os-release           # from base'
run 'merged/usr/local/bin/node --version               # from runtime'
run 'readlink merged/usr/local/bin/npm                 # a symlink of runtime'

section "Whiteout: runtime deleted etc/motd of base"
run 'ls -la base/etc runtime/etc'
run 'ls -la merged/etc'
run 'cat merged/etc/motd 2>&1 || true'

section "Opaque directory: runtime replaced var/lib/apt/lists"
run 'ls -A base/var/lib/apt/lists runtime/var/lib/apt/lists'
run 'ls -A merged/var/lib/apt/lists'

section "Copy-up: appending to app/server.js, a file of the app layer"
run "echo '// patched' >> merged/app/server.js"
run 'sha256sum app/app/server.js upper/app/server.js merged/app/server.js'
run 'tail -n 2 app/app/server.js      # the app layer is unchanged'
run 'tail -n 2 upper/app/server.js    # the copy in the upper layer has the change'

section "Creating a file: it goes to the upper layer"
run "echo 'NODE_ENV=production' > merged/app/.env"
run 'ls -la upper/app'

section "Deleting a lower file leaves a whiteout in the upper layer"
run 'rm merged/usr/share/doc/base-files/README'
run 'ls -la merged/usr/share/doc/base-files'
run 'ls -la base/usr/share/doc/base-files      # the lower layer is untouched'
run 'ls -la upper/usr/share/doc/base-files'
if ((EUID == 0)); then
  echo "(root, whiteout=auto: kernel overlayfs format, a character device 0, 0)"
else
  echo "(not root, whiteout=auto: OCI format, an empty file .wh.README)"
fi

section "Unmounting"
run 'fusermount3 -u merged'
for _ in $(seq 50); do
  mountpoint -q "$MNT" || break
  sleep 0.1
done
if mountpoint -q "$MNT"; then
  echo "demo: $MNT is still mounted" >&2
  exit 1
fi
echo "unmounted"

section "The upper layer after the session"
tree_of "$U"

echo
echo "demo: done"
