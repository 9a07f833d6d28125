#!/usr/bin/env bash
# The overlayfs / fuse-overlayfs command line: -o lowerdir=TOP:...:BOTTOM,upperdir=,workdir=
# MOUNTPOINT, as containers/storage runs its mount_program, and mount(8) through mount.fuse3.
source "$(dirname "$0")/lib.sh" "$@"

skip_on_kernel && skip "this is the daemon's own command line"

new_stack ovl 2
mkdir -p "$S/work"
echo bottom >"${L[0]}/f"
echo only-bottom >"${L[0]}/g"
echo top >"${L[1]}/f"
echo doomed >"${L[0]}/gone"
save_lowers

check "lowerdir lists the top layer first; upperdir takes the writes"
"$UNIONFS_BIN" -o "lowerdir=${L[1]}:${L[0]},upperdir=$U,workdir=$S/work,,volatile,noatime" "$M"
_MOUNTS+=("$M"); _MPIDS+=("")
expect_file "$M/f" "top" "top layer wins"
expect_file "$M/g" "only-bottom" "bottom layer shows through"
echo new >"$M/h"
expect_file "$U/h" "new" "write went to upperdir"
check "the workdir holds the temporaries of copy-up and whiteouts, and nothing is left in it"
echo more >>"$M/g"
rm "$M/gone"
expect_absent "$M/gone" "removed file"
[[ -z $(ls -A "$S/work") ]] || fail "workdir not empty: $(ls -A "$S/work")"
unmount_union "$M"

check "without upperdir the mount is read-only"
"$UNIONFS_BIN" -o "lowerdir=${L[1]}:${L[0]}" "$M"
_MOUNTS+=("$M"); _MPIDS+=("")
expect_errno EROFS "open('$M/x', 'w')" "create on a read-only mount"
unmount_union "$M"

check "mount.fuse3 (what mount -t fuse.unionfs-cpp and fstab run) mounts it, umount unmounts it"
if command -v mount.fuse3 >/dev/null; then
  PATH="$(dirname "$UNIONFS_BIN"):$PATH" timeout "$MOUNT_TIMEOUT" \
    mount.fuse3 unionfs "$M" -t unionfs-cpp -o "lowerdir=${L[1]}:${L[0]},upperdir=$U,workdir=$S/work,rw"
  _MOUNTS+=("$M"); _MPIDS+=("")
  expect_file "$M/f" "top" "top layer wins through mount.fuse3"
  cd /
  timeout "$UMOUNT_TIMEOUT" umount "$M" || fail "umount failed"
  is_mounted "$M" && fail "still mounted after umount"
else
  echo "note: mount.fuse3 not installed; skipped this check"
fi

check "the id-mapping options of containers/storage are honoured (tests/integration/idmap.sh compares them with fuse-overlayfs)"
"$UNIONFS_BIN" -o "lowerdir=${L[1]}:${L[0]},uidmapping=$(id -u):1000:1,gidmapping=$(id -g):2000:1" "$M"
_MOUNTS+=("$M"); _MPIDS+=("")
expect_eq "$(stat -c '%u:%g' "$M/g")" "1000:2000" "owner of a lower file through uidmapping/gidmapping"
unmount_union "$M"
"$UNIONFS_BIN" -o "lowerdir=${L[1]}:${L[0]},squash_to_root,squash_to_gid=7" "$M"
_MOUNTS+=("$M"); _MPIDS+=("")
expect_eq "$(stat -c '%u:%g' "$M/g")" "0:7" "owner of a lower file through squash_to_root,squash_to_gid=7"
unmount_union "$M"

check "bad overlay-style options exit 2 and mount nothing"
for o in "lowerdir=${L[0]},bogus_option" "upperdir=$U" "lowerdir=${L[0]},upperdir=$U,workdir=$T/nope" \
         "lowerdir=${L[0]},uidmapping=0:1000" "lowerdir=${L[0]},gidmapping=0:x:1" \
         "lowerdir=${L[0]},squash_to_uid=-1"; do
  st=0
  "$UNIONFS_BIN" -o "$o" "$M" 2>"$T/err" || st=$?
  expect_eq "$st" 2 "exit status for -o $o"
  grep -q '^unionfs-cpp: ' "$T/err" || fail "no unionfs-cpp: message for -o $o"
  is_mounted "$M" && { fail "mounted after -o $o"; _unmount_one "$M"; }
done
check_lowers
finish
