#!/usr/bin/env bash
# A stack deeper than the kernel's 500-layer limit: 1,000 layers mount and work. Each layer adds
# one file to a directory merged across all of them; one layer in the middle deletes a file of
# the bottom layer; lookups, a listing, a copy-up and a deletion must behave.
source "$(dirname "$0")/lib.sh" "$@"

DEPTH=${DEPTH:-1000}
skip_on_kernel && skip "the kernel stops at 500 layers"

new_stack deep "$DEPTH"
for ((i = 0; i < DEPTH; i++)); do
  mkdir -p "${L[$i]}/d"
  echo "layer $i" >"${L[$i]}/d/f$i"
done
echo "bottom" >"${L[0]}/d/gone"
mk_whiteout "${L[$((DEPTH / 2))]}/d/gone"
# One pass over all lowers (the per-file snapshot of lib.sh is too slow for 1,000 layers).
lowers_digest() { (cd "$S" && find l* -printf '%p %y %s %m %T@\n' | sort | md5sum); }
before=$(lowers_digest)
mount_union "$(stack_spec)" "$M"

check "the merged directory lists one file per layer"
expect_eq "$(ls "$M/d" | wc -l)" "$DEPTH" "entries in d"
check "files of the bottom, middle and top layers are found"
expect_file "$M/d/f0" "layer 0" "bottom layer file"
expect_file "$M/d/f$((DEPTH / 2))" "layer $((DEPTH / 2))" "middle layer file"
expect_file "$M/d/f$((DEPTH - 1))" "layer $((DEPTH - 1))" "top layer file"
check "a whiteout in the middle hides a bottom file; a missing name is missing"
expect_absent "$M/d/gone" "whited-out file"
expect_absent "$M/d/nothing-here" "missing name"
check "a write to the bottom layer's file copies it up; rm leaves a whiteout"
echo more >>"$M/d/f0"
expect_file "$M/d/f0" "layer 0
more" "copied-up file"
expect_file "$U/d/f0" "layer 0
more" "upper copy"
rm "$M/d/f1"
expect_absent "$M/d/f1" "removed file"
[[ -e $U/d/f1 ]] && is_whiteout "$U/d/f1" || fail "no whiteout for d/f1 in the upper"
expect_eq "$(ls "$M/d" | wc -l)" "$((DEPTH - 1))" "entries in d after rm"
unmount_union "$M"
check "the lower layers are unchanged"
expect_eq "$(lowers_digest)" "$before" "digest of the lower layers"
finish
