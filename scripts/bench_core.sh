#!/usr/bin/env bash
# Builds bench_core (the core-only Google Benchmark program, bench/bench_core.cc) if needed,
# runs it and prints a markdown table: lookup cost (present / missing / whited-out name),
# merged listing, first use of a merged directory and first touch of a 100,000-entry directory,
# against the depth of the layer stack, once without and once with a writable upper.
#
# Usage: scripts/bench_core.sh [extra bench_core / Google Benchmark flags...]
# Environment:
#   BUILD_DIR        build tree (default build/; configured as Release if it has no cache yet,
#                    an existing cache is used as it is)
#   BENCH_BIN        a bench_core binary to run instead of building one
#   BENCH_MIN_TIME   --benchmark_min_time in seconds (default 0.05: about 1-2 minutes in all)
#   BENCH_LONG=1     longer, steadier runs: min time 0.5 s and 3 repetitions (medians shown)
#   BENCH_FILTER     --benchmark_filter regex (default: all)
#   BENCH_CLOCK      cpu (default: process CPU time, steadier on a busy machine) or real
#   BENCH_JSON       where the JSON results go (default $BUILD_DIR/bench_core.json)
#   BENCH_QUIET=1    hide the benchmark's own progress output (normally on stderr)
#   UNIONFS_BENCH_DEPTHS   lower-layer depths (default 1,4,16,64,256,1024)
#   UNIONFS_BENCH_UPPER    upper modes, 0 (read-only stack) and/or 1 (default 0,1)
#   UNIONFS_BENCH_TMPDIR   where the layer trees are made (default /var/tmp); removed at exit
#   UNIONFS_BENCH_CACHE    keep the layer trees in this directory and reuse them in later runs
#                          (saves building ~150,000 files each run; remove it by hand)
# Kernel-format whiteouts need root; without it the whiteout column says "skip".
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
BENCH_CLOCK=${BENCH_CLOCK:-cpu}
JSON=${BENCH_JSON:-$BUILD_DIR/bench_core.json}

if [[ "$BENCH_CLOCK" != cpu && "$BENCH_CLOCK" != real ]]; then
  echo "bench_core.sh: BENCH_CLOCK must be cpu or real" >&2
  exit 2
fi

# --- Build --------------------------------------------------------------------------------------
if [[ -n "${BENCH_BIN:-}" ]]; then
  BIN=$BENCH_BIN
else
  if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]]; then
    echo "bench_core.sh: configuring $BUILD_DIR (Release)" >&2
    cmake -S "$ROOT" -B "$BUILD_DIR" -G "Unix Makefiles" -DCMAKE_BUILD_TYPE=Release \
      -DUNIONFS_TESTS=OFF >&2
  else
    build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD_DIR/CMakeCache.txt")
    if [[ "$build_type" == Debug ]]; then
      echo "bench_core.sh: warning: $BUILD_DIR is a Debug build; numbers will be slow" >&2
    fi
  fi
  if ! grep -q 'add_subdirectory(bench)' "$ROOT/CMakeLists.txt"; then
    echo "bench_core.sh: the top-level CMakeLists.txt has no add_subdirectory(bench);" \
      "build bench_core by hand and pass it as BENCH_BIN" >&2
    exit 1
  fi
  cmake --build "$BUILD_DIR" -j"${JOBS:-2}" --target bench_core >&2
  BIN=$BUILD_DIR/bench_core
fi
if [[ ! -x "$BIN" ]]; then
  echo "bench_core.sh: no executable $BIN" >&2
  exit 1
fi
mkdir -p "$(dirname "$JSON")"

# --- Run ----------------------------------------------------------------------------------------
# The program removes its layer trees itself (also on SIGINT/SIGTERM); this temporary parent is a
# second line of defence, should it be killed hard.
TMP_PARENT=$(mktemp -d "${UNIONFS_BENCH_TMPDIR:-/var/tmp}/bench_core.XXXXXX")
trap 'rm -rf -- "$TMP_PARENT"' EXIT

args=(--benchmark_out="$JSON" --benchmark_out_format=json)
if [[ "${BENCH_LONG:-0}" == 1 ]]; then
  args+=(--benchmark_min_time="${BENCH_MIN_TIME:-0.5}" --benchmark_repetitions=3
    --benchmark_report_aggregates_only=true)
else
  args+=(--benchmark_min_time="${BENCH_MIN_TIME:-0.05}")
fi
if [[ -n "${BENCH_FILTER:-}" ]]; then
  args+=(--benchmark_filter="$BENCH_FILTER")
fi

start=$SECONDS
if [[ "${BENCH_QUIET:-0}" == 1 ]]; then
  UNIONFS_BENCH_TMPDIR=$TMP_PARENT "$BIN" "${args[@]}" "$@" >/dev/null
else
  UNIONFS_BENCH_TMPDIR=$TMP_PARENT "$BIN" "${args[@]}" "$@" >&2
fi
echo "bench_core.sh: ran in $((SECONDS - start))s; JSON in $JSON" >&2

# --- Table --------------------------------------------------------------------------------------
/usr/bin/python3 - "$JSON" "$BENCH_CLOCK" <<'PY'
import json
import re
import sys

path, clock = sys.argv[1], sys.argv[2]
with open(path) as f:
    doc = json.load(f)

TO_US = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}
NAME = re.compile(r"^(BM_\w+)/depth:(\d+)/upper:(\d+)")

# (bench, depth, upper) -> run; a "median" aggregate (with repetitions) wins over single runs.
runs, errors = {}, []
for b in doc.get("benchmarks", []):
    m = NAME.match(b.get("run_name", b["name"]))
    if not m:
        continue
    key = (m.group(1), int(m.group(2)), int(m.group(3)))
    if b.get("error_occurred"):
        errors.append(f"{b['name']}: {b.get('error_message', '?')}")
        runs[key] = None
        continue
    agg = b.get("aggregate_name")
    if agg not in (None, "median"):
        continue
    if key in runs and runs[key] is not None and agg is None and \
            runs[key].get("aggregate_name") == "median":
        continue
    runs[key] = b


def us(b, field=None):
    """Time per iteration in microseconds (field: a counter, already in µs)."""
    if field is not None:
        return b.get(field)
    t = b["cpu_time" if clock == "cpu" else "real_time"]
    return t * TO_US[b.get("time_unit", "ns")]


def fmt(x):
    if x is None:
        return "—"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def cell(bench, depth, upper, scale=1.0):
    key = (bench, depth, upper)
    if key not in runs:
        return "—", None
    b = runs[key]
    if b is None:
        return "skip", None
    v = us(b) * scale
    return fmt(v), v


def split_cell(bench, depth, upper, parts):
    """Total per the chosen clock, then the wall-clock split counters in parentheses."""
    key = (bench, depth, upper)
    if key not in runs:
        return "—"
    b = runs[key]
    if b is None:
        return "skip"
    return f"{fmt(us(b))} ({' + '.join(fmt(b.get(p)) for p in parts)})"


def big_lookups_cell(depth, upper):
    key = ("BM_BigDir100Lookups", depth, upper)
    if key not in runs:
        return "—"
    b = runs[key]
    if b is None:
        return "skip"
    return f"{fmt(b.get('per_lookup_us'))} / {fmt(b.get('max_us'))} (#{b.get('max_at', 0):.0f})"


COLS = [("present, cold µs", "BM_LookupPresentCold"), ("present, warm µs", "BM_LookupPresentWarm"),
        ("missing µs", "BM_LookupMissing"), ("whiteout µs", "BM_LookupWhiteout")]
depths = sorted({k[1] for k in runs})
uppers = sorted({k[2] for k in runs})
ctx = doc.get("context", {})
print(f"## bench_core ({ctx.get('date', '')}, {ctx.get('num_cpus', '?')} CPUs, "
      f"load avg {', '.join(f'{x:.1f}' for x in ctx.get('load_avg', []))}; "
      f"times are {'process CPU' if clock == 'cpu' else 'wall-clock'} time per operation, "
      f"splits in parentheses wall-clock)")
for upper in uppers:
    title = "lower layers + writable upper" if upper else "lower layers only (read-only stack)"
    print()
    print(f"### {title}: steady state (m used by {ctx.get('warmup_lookups', '?')} lookups first)")
    print()
    print("| depth | layers | " + " | ".join(c for c, _ in COLS) + " | list ms | index B/name |")
    print("|" + "---:|" * (len(COLS) + 4))
    vals = {}
    for d in depths:
        row = [str(d), str(d + upper)]
        for _, bench in COLS:
            text, v = cell(bench, d, upper)
            vals[(bench, d)] = v
            row.append(text)
        text, v = cell("BM_List", d, upper, scale=1e-3)
        vals[("BM_List", d)] = v
        row.append(text)
        b = runs.get(("BM_List", d, upper))
        row.append(f"{b['index_bytes_per_name']:.0f}" if b and "index_bytes_per_name" in b
                   else "—")
        print("| " + " | ".join(row) + " |")
    lo = min(depths) if depths else None
    for hi in sorted({d for d in (256, max(depths, default=0)) if d in depths and d != lo}):
        row = [f"{hi} vs {lo}", ""]
        for bench in [b for _, b in COLS] + ["BM_List"]:
            a, b = vals.get((bench, lo)), vals.get((bench, hi))
            row.append(f"{b / a:.2f}x" if a and b else "—")
        print("| " + " | ".join(row) + " |")
    print()
    print(f"### {title}: first use")
    print()
    print("| depth | layers | fresh merged dir µs (dir + 1st + 2nd lookup) "
          "| fresh merged dir, first list µs (dir + list) "
          "| 100k-entry dir, first touch µs (dir + lookup) "
          "| 100k-entry dir, 100 lookups: mean / max µs (#slowest) |")
    print("|" + "---:|" * 6)
    for d in depths:
        row = [str(d), str(d + upper),
               split_cell("BM_FreshDir", d, upper, ("dir_us", "first_us", "second_us")),
               split_cell("BM_FreshDirList", d, upper, ("dir_us", "list_us")),
               split_cell("BM_BigDirFirstTouch", d, upper, ("dir_us", "first_us")),
               big_lookups_cell(d, upper)]
        print("| " + " | ".join(row) + " |")
print()
print("Goal (issue): lookup at depth 256 within 1.25x of depth 1. m: 1,000 files in the bottom"
      " layer, empty in every other; whiteouts in the top lower layer. Fresh merged dir: in every"
      " layer, 250 files in the bottom one, used once per UnionFs. 100k-entry dir: in the bottom"
      " layer only.")
if errors:
    print()
    print("Skipped or failed:")
    for e in errors:
        print(f"- {e}")
PY
