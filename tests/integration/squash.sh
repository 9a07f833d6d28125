#!/usr/bin/env bash
# `unionfs-cpp squash`: the squashed layer, mounted in place of the layers it replaces, shows
# the same tree as the original stack (names, types, modes, owners, sizes, contents, symlink
# targets, xattrs, hard-link groups, mtimes), for a full squash and for partial ones in both
# marker formats. Also: the progress bar only on a terminal, and bad input writes nothing.
source "$(dirname "$0")/lib.sh" "$@"
skip_on_kernel && skip "squash is a tool of the daemon's binary"

ROOT=$(id -u)

# Four layers: l1 l2 l3 upper = indices 0 1 2 3.
new_stack sq 3
l0=${L[0]} l1=${L[1]} l2=${L[2]} l3=$U
mkdir -p "$l0"/{d/sub,gone,opq/sub,hl,xd} "$l1"/{d,opq} "$l2"/{d,gone,hl} "$l3"/d
echo a0 >"$l0/d/a"; echo b0 >"$l0/d/b"; echo k0 >"$l0/d/sub/k"; chmod 0600 "$l0/d/sub/k"
echo x0 >"$l0/gone/x"; echo old >"$l0/opq/old"; echo deep >"$l0/opq/sub/deep"
echo linked >"$l0/hl/x"; ln "$l0/hl/x" "$l0/hl/y"; ln "$l0/hl/x" "$l0/hl/z"
truncate -s 20M "$l0/sparse"; echo tail >>"$l0/sparse"
ln -s d/a "$l0/ln"; ln -s /nowhere "$l0/dangling"
echo o >"$l0/owned"
if [[ $ROOT == 0 ]]; then chown 1234:5678 "$l0/owned"; fi
chmod 04755 "$l0/owned"
echo n >"$l0/noted"; setfattr -n user.note -v hello "$l0/noted"
setfattr -n user.dirnote -v dir "$l0/xd"; chmod 0710 "$l0/xd"
mkfifo "$l0/fifo"
# l1: kernel markers as root, OCI ones otherwise (mknod needs CAP_MKNOD).
if [[ $ROOT == 0 ]]; then
  mk_whiteout "$l1/d/a"; mk_whiteout "$l1/gone"; mk_opaque "$l1/opq"
else
  mk_oci_whiteout "$l1/d/a"; mk_oci_whiteout "$l1/gone"; mk_oci_opaque "$l1/opq"
fi
echo new >"$l1/opq/new"; echo c1 >"$l1/d/c"; echo h >"$l1/h1"; ln "$l1/h1" "$l1/h2"
# l2: OCI markers, a file recreated over a whiteout, a directory over one.
echo a2 >"$l2/d/a"; echo y2 >"$l2/gone/y"
mk_oci_whiteout "$l2/never_there"; mk_oci_whiteout "$l2/hl/y"
echo t3 >"$l3/top"; mk_oci_whiteout "$l3/d/b"; mk_oci_whiteout "$l3/ln"
# Distinct times everywhere, directories last (writing into them moves theirs).
i=0
while IFS= read -r -d '' p; do
  touch -h -d "@$((1600000000 + i * 11)).123456789" "$p"; i=$((i + 1))
done < <(find "$S" -mindepth 2 ! -type d -print0; find "$S" -mindepth 2 -depth -type d -print0)
SPEC=$(stack_spec)

view() { # MNT: everything a squash must keep, as seen through a mount
  (
    cd "$1"
    find . -type d -printf 'D %p|%m|%U:%G|%T@\n'
    find . ! -type d -printf 'N %p|%y|%m|%U:%G|%s|%l|%T@\n'
    find . -type f -print0 | xargs -0r sha256sum
    getfattr -R -P -d -m - -e hex . 2>/dev/null || true
    # Hard-link groups by member names, not by inode number.
    find . ! -type d -printf '%i %p\n' | LC_ALL=C sort -k2 |
      awk '{ g[$1] = g[$1] " " $2; n[$1]++ } END { for (k in g) if (n[k] > 1) print "link" g[k] }'
  ) | LC_ALL=C sort
}

mkdir -p "$T/m0"
mount_union -o ro "$SPEC" "$T/m0"
view "$T/m0" >"$T/want"
unmount_union "$T/m0"

# replaced I J OUT: the spec with layers I..J replaced by OUT
replaced() {
  local IFS=:
  local parts=($SPEC) out=() k
  for ((k = 0; k < ${#parts[@]}; k++)); do
    if ((k == $1)); then out+=("$3"); elif ((k < $1 || k > $2)); then out+=("${parts[k]}"); fi
  done
  echo "${out[*]}"
}

n=0
check_range() { # I J [squash options...]
  local i=$1 j=$2; shift 2
  n=$((n + 1))
  local out="$T/out$n" mnt="$T/m$n"
  check "squash $* --range $i:$j: same tree when mounted in place of the range"
  if ! "$UNIONFS_BIN" squash --range "$i:$j" "$@" "$SPEC" "$out" >"$T/sq.out" 2>"$T/sq.err"; then
    fail "squash --range $i:$j $*: $(cat "$T/sq.err")"; return
  fi
  [[ -s $T/sq.err ]] && fail "squash wrote to stderr when not on a terminal: $(cat "$T/sq.err")"
  mkdir -p "$mnt"
  mount_union -o ro "$(replaced "$i" "$j" "$out")" "$mnt"
  view "$mnt" >"$T/got$n"
  unmount_union "$mnt"
  diff "$T/want" "$T/got$n" >"$T/diff$n" || fail "range $i:$j $*: trees differ: $(head -c 3000 "$T/diff$n")"
}

check_range 0 3
check_range 1 3
check_range 2 3 --format oci
check_range 1 2 --format oci
check_range 1 1
check_range 0 1 --format oci

check "full squash: no markers, holes kept, hard links kept"
find "$T/out1" -name '.wh.*' | grep -q . && fail "full squash wrote OCI markers"
[[ -z $(find "$T/out1" -type c) ]] || fail "full squash wrote whiteouts"
getfattr -R -P -d -m 'overlay' "$T/out1" 2>/dev/null | grep -q overlay && fail "full squash wrote opaque xattrs"
(($(du -k "$T/out1/sparse" | cut -f1) < 1024)) || fail "sparse file lost its hole: $(du -k "$T/out1/sparse")"
expect_eq "$(stat -c %i "$T/out1/hl/x")" "$(stat -c %i "$T/out1/hl/z")" "hard link kept"
expect_eq "$(stat -c %h "$T/out1/hl/x")" 2 "link count of x, z (y whited out)"
expect_eq "$(stat -c %a "$T/out1/owned")" 4755 "set-user-ID mode"

check "partial squash keeps only the markers that hide something below"
if [[ $ROOT == 0 ]]; then
  is_whiteout "$T/out2/d/b" || fail "whiteout d/b (d/b is in layer 0)"
  is_whiteout "$T/out2/ln" || fail "whiteout ln"
  expect_eq "$(getfattr --absolute-names --only-values -n trusted.overlay.opaque "$T/out2/opq" 2>&1)" y "opaque opq"
  expect_eq "$(getfattr --absolute-names --only-values -n trusted.overlay.opaque "$T/out2/gone" 2>&1)" y "opaque gone"
fi
expect_absent "$T/out2/never_there" "whiteout of a name not below"
expect_absent "$T/out2/.wh.never_there" "OCI whiteout of a name not below"
[[ -e $T/out3/.wh.ln && -e $T/out3/d/.wh.b ]] || fail "--format oci: .wh. files missing: $(ls -A "$T/out3")"

check "progress bar on a terminal only"
script -qec "'$UNIONFS_BIN' squash '$SPEC' '$T/tty_out'" /dev/null >"$T/tty.log" 2>&1 || true
grep -q 'squashing \[' "$T/tty.log" || fail "no progress bar on a terminal: $(head -c 500 "$T/tty.log")"
[[ -d $T/tty_out ]] || fail "squash on a terminal wrote nothing"

check "bad input: exit 2, a clear message, nothing written"
mkdir "$T/busy" && echo x >"$T/busy/f"
: >"$T/bad.out"; : >"$T/bad.err"
before=$(ls -A "$T"; ls -A "$l0")
expect_status() { # WANT_STATUS WANT_MESSAGE ARGS...
  local want=$1 msg=$2 st=0; shift 2
  "$UNIONFS_BIN" squash "$@" >"$T/bad.out" 2>"$T/bad.err" || st=$?
  expect_eq "$st" "$want" "exit status of squash $*"
  grep -q -- "$msg" "$T/bad.err" || fail "squash $*: expected '$msg' in: $(cat "$T/bad.err")"
}
expect_status 2 "not empty" "$SPEC" "$T/busy"
expect_status 2 "inside layer 0" "$SPEC" "$l0/newdir"
expect_status 2 "bad --range" --range 2:9 "$SPEC" "$T/new1"
expect_status 2 "bad --range" --range 3:1 "$SPEC" "$T/new1"
expect_status 2 "bad --format" --format tar "$SPEC" "$T/new1"
expect_status 2 "usage" "$SPEC"
expect_status 2 "layer" "$SPEC:$T/missing" "$T/new1"
expect_eq "$(ls -A "$T"; ls -A "$l0")" "$before" "nothing written by bad input"

finish
