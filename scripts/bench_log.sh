#!/usr/bin/env bash
# Log-writing benchmark: a service appending 200-byte records to its log through unionfs-cpp
# (log already in a lower layer, so the first write copies it up; a new log), on a volume (a host
# directory, also bind-mounted into the union with --volume), and on kernel overlayfs for
# reference; fsync never or every 100 records; initial log sizes 1 MiB, 64 MiB, 1 GiB.
# Driver: bench/log/run.py (see its --help); timed program: bench/log_bench.cc.
#
#   scripts/bench_log.sh            default run (1 MiB, 64 MiB, 1 GiB; ~5-10 min on 2 cores)
#   scripts/bench_log.sh --quick    1 MiB and 64 MiB only, less appended (~3 min)
#
# Builds unionfs-cpp and log_bench (Release) into $BUILD_DIR (default build/) if needed, installs
# gnuplot if missing, and runs the driver with the given arguments. Needs root (mounts,
# drop_caches). Layers under /var/tmp/unionfs-logbench (~2.2 GiB for the 1 GiB size, kept for
# reuse; delete the directory to reclaim it). Results: bench/log/results/ (RESULTS.md,
# results.json, latency_over_time.png). Env: BUILD_DIR, BUILD_JOBS, UNIONFS_BIN, LOG_BENCH_BIN
# (use these binaries, no build).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-build}
[[ "$BUILD_DIR" = /* ]] || BUILD_DIR="$ROOT/$BUILD_DIR"

if ((EUID != 0)); then
  echo "bench_log: must run as root (mounts, drop_caches)" >&2
  exit 1
fi

if [[ -z "${UNIONFS_BIN:-}" || -z "${LOG_BENCH_BIN:-}" ]]; then
  if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]]; then
    timeout 600 cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DUNIONFS_TESTS=OFF >/dev/null
  fi
  build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD_DIR/CMakeCache.txt")
  if [[ "$build_type" != Release ]]; then
    echo "bench_log: warning: $BUILD_DIR is configured as '${build_type:-default}', not Release" \
      "(use BUILD_DIR=some-release-dir for a Release build)" >&2
  fi
  timeout 1800 cmake --build "$BUILD_DIR" -j"${BUILD_JOBS:-$(nproc)}" --target unionfs-cpp log_bench >&2
  export UNIONFS_BIN=${UNIONFS_BIN:-$BUILD_DIR/unionfs-cpp}
  export LOG_BENCH_BIN=${LOG_BENCH_BIN:-$BUILD_DIR/log_bench}
fi

# Tools (Debian packages): package:command pairs.
missing=()
for pc in gnuplot-nox:gnuplot fuse3:fusermount3; do
  command -v "${pc#*:}" >/dev/null 2>&1 || missing+=("${pc%%:*}")
done
if ((${#missing[@]})); then
  echo "bench_log: installing ${missing[*]}" >&2
  timeout 300 apt-get update >/dev/null 2>&1 || echo "bench_log: apt-get update failed" >&2
  timeout 600 env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    "${missing[@]}" >/dev/null 2>&1 || echo "bench_log: could not install ${missing[*]}" >&2
fi

exec /usr/bin/python3 "$ROOT/bench/log/run.py" --bin "$UNIONFS_BIN" --log-bench "$LOG_BENCH_BIN" "$@"
