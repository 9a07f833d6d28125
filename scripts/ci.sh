#!/usr/bin/env bash
# The project's test command: installs the Debian packages, then builds and runs every ctest
# twice: a release build with -Werror in build/, and an ASan+UBSan build in build-asan/.
# Run as root from anywhere (FUSE and the differential tests against kernel overlayfs need it).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

JOBS=${JOBS:-2}
CTEST_TIMEOUT=${CTEST_TIMEOUT:-600}
stage="start"
start_time=$SECONDS
failed=()   # test stages that failed; the run goes on to the next stage and fails at the end

# shellcheck disable=SC2317  # invoked by the EXIT trap
on_exit() {
  local rc=$?
  local elapsed=$((SECONDS - start_time))
  if ((rc == 0)); then
    echo "ci.sh: PASSED (build/ and build-asan/, ${elapsed}s)"
  elif ((${#failed[@]} > 0)); then
    echo "ci.sh: FAILED: ${failed[*]} (${elapsed}s)" >&2
  else
    echo "ci.sh: FAILED in stage '${stage}' (exit ${rc}, ${elapsed}s)" >&2
  fi
}
trap on_exit EXIT

section() {
  stage=$1
  echo
  echo "=== ci.sh: $1 ($((SECONDS - start_time))s) ==="
}

# Configures a build directory. Keeps the generator of an existing cache (cmake refuses to
# switch), otherwise uses Makefiles, which are always there (ninja may not be).
configure() {
  local dir=$1
  shift
  local gen=()
  if [[ ! -f "$dir/CMakeCache.txt" ]]; then
    gen=(-G "Unix Makefiles")
  fi
  cmake -S . -B "$dir" "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUNIONFS_TESTS=ON "$@"
}

section "install dependencies"
"$ROOT/scripts/install-deps.sh"

if ((EUID != 0)); then
  echo "ci.sh: warning: not root; FUSE and kernel-overlayfs tests may fail or skip" >&2
fi

# --- Release build, warnings are errors -------------------------------------------------------
section "configure build/"
configure build -DUNIONFS_WERROR=ON -DUNIONFS_SANITIZE=OFF
section "build build/"
cmake --build build -j"$JOBS"
section "test build/"
(cd build && ctest --output-on-failure --no-tests=error --timeout "$CTEST_TIMEOUT") ||
  failed+=("'test build/'")

# --- Sanitizer build ---------------------------------------------------------------------------
section "configure build-asan/"
configure build-asan -DUNIONFS_WERROR=ON -DUNIONFS_SANITIZE=ON
section "build build-asan/"
cmake --build build-asan -j"$JOBS"

# A daemonized FUSE server has no stderr, so every sanitizer report (from the daemon or from a
# test) also goes to a log file here; any such file fails the run even if all tests passed.
SAN_LOG_DIR="$ROOT/build-asan/sanitizer-logs"
rm -rf "$SAN_LOG_DIR"
mkdir -p "$SAN_LOG_DIR"
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1:detect_stack_use_after_return=1:log_path=$SAN_LOG_DIR/asan"
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1:log_path=$SAN_LOG_DIR/ubsan"
export LSAN_OPTIONS="log_path=$SAN_LOG_DIR/lsan"

section "test build-asan/"
(cd build-asan && ctest --output-on-failure --no-tests=error --timeout "$CTEST_TIMEOUT") ||
  failed+=("'test build-asan/'")

section "sanitizer reports"
shopt -s nullglob
reports=("$SAN_LOG_DIR"/*)
shopt -u nullglob
if ((${#reports[@]} > 0)); then
  for f in "${reports[@]}"; do
    echo "--- $f"
    cat "$f"
  done
  echo "ci.sh: ${#reports[@]} sanitizer report(s) in $SAN_LOG_DIR" >&2
  failed+=("'sanitizer reports'")
else
  echo "none"
fi
((${#failed[@]} == 0))
