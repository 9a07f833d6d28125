#!/usr/bin/env bash
# Bad command lines: exit status 2, one line on stderr starting "unionfs-cpp: " that names the
# problem, nothing mounted, no file in the layers or the mount point touched. Plus --help/--version.
source "$(dirname "$0")/lib.sh" "$@"
skip_on_kernel && skip "CLI of the daemon only"

C="$T/cli"
mkdir -p "$C"/{l1/sub,l2,upper,mnt,nonempty_mnt,nested_lower/up,nested_upper/low,emptyl,emptyu}
echo one >"$C/l1/f"
echo two >"$C/l2/sub_file"
echo three >"$C/nonempty_mnt/keep"
echo plain >"$C/afile"
echo uu >"$C/upper/u"

# bad_input DESCRIPTION REGEX -- ARGS...: REGEX (extended, case-insensitive) must match the message.
bad_input() {
  local desc=$1 regex=$2
  shift 3
  check "bad input: $desc"
  local before after out err st=0
  before=$(snapshot "$C")
  local mounts_before
  mounts_before=$(mounts_under "$T" | sort)
  out=$(timeout 10 "$UNIONFS_BIN" "$@" 2>"$T/stderr") || st=$?
  err=$(cat "$T/stderr")
  ((st != 124)) || fail "$desc: timed out after 10 s"
  ((st == 2)) || fail "$desc: exit status $st, expected 2 (stderr: $err)"
  local lines
  lines=$(printf '%s' "$err" | grep -c '' || true)
  ((lines == 1)) || fail "$desc: $lines lines on stderr, expected exactly 1: $err"
  [[ $err == 'unionfs-cpp: '* ]] || fail "$desc: message does not start with 'unionfs-cpp: ': $err"
  grep -qiE -- "$regex" <<<"$err" || fail "$desc: message does not name the problem (/$regex/): $err"
  [[ -z $out ]] || fail "$desc: wrote to stdout: $out"
  # Anything new mounted under our dir is a failure; unmount it at once.
  local m
  for m in $(mounts_under "$T" | sort | comm -13 <(echo "$mounts_before") -); do
    fail "$desc: $m got mounted"
    _unmount_one "$m" || true
  done
  after=$(snapshot "$C")
  [[ $before == "$after" ]] || fail "$desc: layer or mount point dirs changed: $(diff <(echo "$before") <(echo "$after") | head -20)"
}

q() { printf '%s' "$1" | sed 's/[].[*^$()+?{|\\]/\\&/g'; } # path as a regex

bad_input "missing layer" "$(q "$C/nope").*(no such|not exist|missing)|(no such|not exist|missing).*$(q "$C/nope")" -- \
  "$C/nope:$C/upper" "$C/mnt"
bad_input "missing upper" "$(q "$C/nope_upper")" -- "$C/l1:$C/nope_upper" "$C/mnt"
bad_input "layer is a file" "$(q "$C/afile").*not a dir|not a dir.*$(q "$C/afile")" -- "$C/afile:$C/upper" "$C/mnt"
bad_input "upper is a file" "$(q "$C/afile")" -- "$C/l1:$C/afile" "$C/mnt"
bad_input "same lower twice" "$(q "$C/l1")" -- "$C/l1:$C/l1:$C/upper" "$C/mnt"
bad_input "same dir twice through another spelling" "$(q "$C/l1")|twice|duplicate|same" -- \
  "$C/l1:$C/l2/../l1/:$C/upper" "$C/mnt"
bad_input "lower equals upper" "$(q "$C/upper")" -- "$C/l1:$C/upper:$C/upper" "$C/mnt"
bad_input "upper inside a lower" "inside|within|nested|overlap|contain|beneath|under" -- \
  "$C/nested_lower:$C/nested_lower/up" "$C/mnt"
bad_input "lower inside the upper" "inside|within|nested|overlap|contain|beneath|under" -- \
  "$C/nested_upper/low:$C/nested_upper" "$C/mnt"
bad_input "mount point not empty" "$(q "$C/nonempty_mnt")" -- "$C/l1:$C/upper" "$C/nonempty_mnt"
bad_input "mount point is a file" "$(q "$C/afile")" -- "$C/l1:$C/upper" "$C/afile"
bad_input "mount point missing" "$(q "$C/nomnt")" -- "$C/l1:$C/upper" "$C/nomnt"
bad_input "empty layer spec" "empty" -- "" "$C/mnt"
bad_input "empty component a::b" "empty" -- "$C/l1::$C/upper" "$C/mnt"
bad_input "empty leading component" "empty" -- ":$C/upper" "$C/mnt"
bad_input "empty trailing component (no upper)" "empty" -- "$C/l1:" "$C/mnt"
bad_input "unknown whiteout format" "whiteout|bogus" -- -o whiteout=bogus "$C/l1:$C/upper" "$C/mnt"
bad_input "no arguments" "usage|argument|missing|need|--help" --
bad_input "mount point missing from the command line" "usage|argument|missing|need|--help" -- "$C/l1:$C/upper"

check "bad input: mount point already mounted"
mount_union "$C/emptyl:$C/emptyu" "$C/mnt"
bad_input "mount point already mounted" "mount" -- "$C/l1:$C/upper" "$C/mnt"
expect_listing "$C/mnt" "" "the first mount is still the one served"
unmount_union "$C/mnt"

for opt in --help --version; do
  check "$opt exits 0 and prints something"
  st=0
  out=$(timeout 10 "$UNIONFS_BIN" "$opt" 2>&1) || st=$?
  ((st == 0)) || fail "$opt: exit status $st: $out"
  [[ -n $out ]] || fail "$opt: printed nothing"
  [[ -z $(mounts_under "$T") ]] || fail "$opt: something got mounted"
done
check "--version names the version"
grep -qE '[0-9]+\.[0-9]+' <<<"$(timeout 10 "$UNIONFS_BIN" --version 2>&1)" || fail "--version has no version number"

finish
