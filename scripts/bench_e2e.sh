#!/usr/bin/env bash
# End-to-end benchmark: unionfs-cpp against native directories, kernel overlayfs, fuse-overlayfs
# and unionfs-fuse, through real mounts (bench/e2e/bench_e2e.py; see its --help).
#
#   scripts/bench_e2e.sh            default run (~15 min on 2 cores)
#   scripts/bench_e2e.sh --quick    depths 1,16,256, fewer names, no Node.js (~4 min)
#   scripts/bench_e2e.sh --full     more depths, names and repetitions; both CPU modes everywhere
#   scripts/bench_e2e.sh --pin      only pinned (daemon and measuring process on CPU 0)
#
# Builds unionfs-cpp (Release) into $BUILD_DIR (default build/) if needed, installs the peers,
# gnuplot and nodejs/npm if missing (each skipped with a message if not installable), and runs the
# harness with the given arguments. Needs root. Results: bench/e2e/results/ (RESULTS.md,
# results.json, lookup_vs_depth.png). Env: BUILD_DIR, BUILD_JOBS, UNIONFS_BIN (use this binary, no build).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-build}
[[ "$BUILD_DIR" = /* ]] || BUILD_DIR="$ROOT/$BUILD_DIR"

if ((EUID != 0)); then
  echo "bench_e2e: must run as root (mounts, drop_caches)" >&2
  exit 1
fi

# --- unionfs-cpp -------------------------------------------------------------------------------
if [[ -z "${UNIONFS_BIN:-}" ]]; then
  if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]]; then
    timeout 600 cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DUNIONFS_TESTS=OFF >/dev/null
  fi
  build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD_DIR/CMakeCache.txt")
  if [[ "$build_type" != Release ]]; then
    echo "bench_e2e: warning: $BUILD_DIR is configured as '${build_type:-default}', not Release" \
      "(use BUILD_DIR=some-release-dir for a Release build)" >&2
  fi
  timeout 1800 cmake --build "$BUILD_DIR" -j"${BUILD_JOBS:-$(nproc)}" --target unionfs-cpp >&2
  UNIONFS_BIN="$BUILD_DIR/unionfs-cpp"
fi

# --- peers and tools (Debian packages) ---------------------------------------------------------
# package:command pairs; a package that cannot be installed is reported and its system skipped.
want=(fuse-overlayfs:fuse-overlayfs unionfs-fuse:unionfs-fuse gnuplot-nox:gnuplot
  fuse3:fusermount3 util-linux:taskset gcc:cc)
nonode=0
for arg in "$@"; do
  if [[ "$arg" == --quick || "$arg" == --no-node ]]; then nonode=1; fi
done
if ((nonode == 0)); then want+=(nodejs:node npm:npm); fi
missing=()
for pc in "${want[@]}"; do
  command -v "${pc#*:}" >/dev/null 2>&1 || missing+=("${pc%%:*}")
done
if ((${#missing[@]})); then
  echo "bench_e2e: installing ${missing[*]}" >&2
  timeout 300 apt-get update >/dev/null 2>&1 || echo "bench_e2e: apt-get update failed" >&2
  for pkg in "${missing[@]}"; do
    if ! timeout 600 env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      "$pkg" >/dev/null 2>&1; then
      echo "bench_e2e: could not install $pkg; the systems/figures needing it are skipped" >&2
    fi
  done
fi

exec /usr/bin/python3 "$ROOT/bench/e2e/bench_e2e.py" --bin "$UNIONFS_BIN" "$@"
