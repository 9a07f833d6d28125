#!/usr/bin/env bash
# Union semantics through a real mount: lookup precedence over both whiteout formats, hidden
# markers, directory merge, copy-up, whiteouts on delete, opaque mkdir, EXDEV, -o ro and
# -o whiteout=oci. After every group the lower layers must be byte-identical.
source "$(dirname "$0")/lib.sh" "$@"

# Two lowers and an upper with every kind of marker in l2 (the middle layer).
build_marker_stack() {
  new_stack "$1" 2
  local l1=${L[0]} l2=${L[1]}
  mkdir -p "$l1"/{a,optdir,optdir_x,optdir_u,optdir_ux,file_over_dir,dirmerge,wh_dir,move_me/sub,deep/x/y}
  echo l1 >"$l1/shared"
  echo l1-only >"$l1/only1"
  echo gone >"$l1/hidden_by_wh"
  echo gone >"$l1/hidden_oci"
  echo f1 >"$l1/a/f1"
  echo f2 >"$l1/a/f2"
  echo c1 >"$l1/optdir/c1"
  echo c1 >"$l1/optdir_x/c1"
  echo c1 >"$l1/optdir_u/c1"
  echo c1 >"$l1/optdir_ux/c1"
  echo inner >"$l1/file_over_dir/inner"
  echo from1 >"$l1/dirmerge/from1"
  echo both1 >"$l1/dirmerge/both"
  echo x >"$l1/wh_dir/x"
  echo m >"$l1/move_me/sub/m"
  echo deep >"$l1/deep/x/y/z"
  printf 'lower-bytes\n' >"$l1/tocopy"
  chmod 0640 "$l1/tocopy"
  chown 123:456 "$l1/tocopy"
  touch -d '2001-02-03 04:05:06' "$l1/tocopy"

  echo l2 >"$l2/shared"
  mk_whiteout "$l2/hidden_by_wh"
  mk_oci_whiteout "$l2/hidden_oci"
  mkdir -p "$l2"/{optdir,optdir_x,optdir_u,optdir_ux,dirmerge}
  mk_oci_opaque "$l2/optdir"
  echo c2 >"$l2/optdir/c2"
  mk_opaque "$l2/optdir_x"
  echo c2 >"$l2/optdir_x/c2"
  mk_user_opaque "$l2/optdir_u"
  echo c2 >"$l2/optdir_u/c2"
  echo file >"$l2/file_over_dir"
  rmdir "$l2/file_over_dir" 2>/dev/null || true
  echo from2 >"$l2/dirmerge/from2"
  echo both2 >"$l2/dirmerge/both"
  mkdir -p "$U/dirmerge"
  echo fromu >"$U/dirmerge/fromu"
  echo u >"$U/only_u"
}

# --- daemon mode ------------------------------------------------------------------------------
if ! skip_on_kernel; then
  check "without -f the daemon returns only once the mount is live"
  new_stack daemonize 1
  echo hi >"${L[0]}/f"
  save_lowers
  st=0
  timeout "$MOUNT_TIMEOUT" "$UNIONFS_BIN" "$(stack_spec)" "$M" || st=$?
  if ((st != 0)); then
    fail "daemonized mount exited with status $st"
  else
    _MOUNTS+=("$M"); _MPIDS+=("")
    is_mounted "$M" || fail "daemon returned 0 but $M is not in /proc/mounts yet"
    expect_file "$M/f" hi "read through a daemonized mount"
    unmount_union "$M"
    for ((i = 0; i < 50; i++)); do pgrep -f "^$UNIONFS_BIN .*$M\$" >/dev/null || break; sleep 0.1; done
    pgrep -f "^$UNIONFS_BIN .*$M\$" >/dev/null && fail "daemonized daemon still running 5 s after fusermount3 -u"
  fi
  check_lowers
fi

# --- lookup precedence and hidden markers -----------------------------------------------------
build_marker_stack lookup
save_lowers
mount_union "$(stack_spec)" "$M"

check "top layer wins for a name in several layers"
expect_file "$M/shared" l2 "shared name"
expect_file "$M/only1" l1-only "name only in the bottom layer"
expect_file "$M/only_u" u "name only in the upper"

check "kernel whiteout (char 0/0) hides a lower file"
expect_absent "$M/hidden_by_wh" "kernel whiteout"

check "OCI .wh.NAME hides a lower file and is itself invisible"
skip_on_kernel || expect_absent "$M/hidden_oci" "OCI whiteout"
skip_on_kernel || expect_absent "$M/.wh.hidden_oci" "the .wh. marker file"

check "opaque markers hide lower children: .wh..wh..opq, trusted.overlay.opaque, user.overlay.opaque"
skip_on_kernel || expect_listing "$M/optdir" "c2" ".wh..wh..opq dir"
expect_listing "$M/optdir_x" "c2" "trusted.overlay.opaque=y dir"
skip_on_kernel || expect_listing "$M/optdir_u" "c2" "user.overlay.opaque=y dir"
expect_listing "$M/optdir_ux" "c1" "plain dir below nothing"
skip_on_kernel || expect_absent "$M/optdir/c1" "lookup of a child under .wh..wh..opq"
expect_absent "$M/optdir_x/c1" "lookup of a child under trusted opaque"
skip_on_kernel || expect_absent "$M/optdir_u/c1" "lookup of a child under user opaque"
skip_on_kernel || expect_absent "$M/optdir/.wh..wh..opq" "lookup of the opaque marker"

check "opaque xattrs are not visible through the mount"
for d in optdir_x optdir_u; do
  got=$(getfattr -d -m - "$M/$d" 2>/dev/null || true)
  [[ $got != *trusted.overlay* ]] || fail "trusted.overlay.* listed on $M/$d: $got"
  skip_on_kernel || [[ $got != *overlay.opaque* ]] || fail "overlay.opaque listed on $M/$d: $got"
done

check "a file in a higher layer hides a directory below"
[[ -f $M/file_over_dir ]] || fail "file_over_dir is not a regular file: $(stat -c %F "$M/file_over_dir" 2>&1)"
expect_file "$M/file_over_dir" file "file over dir"

check "directories merge across all layers, topmost entry wins"
expect_listing "$M/dirmerge" "both from1 from2 fromu" "merged dir"
expect_file "$M/dirmerge/both" both2 "dirmerge/both"

check "no marker, whiteout or work dir is visible in any listing"
skip_on_kernel || expect_listing "$M" "a deep dirmerge file_over_dir move_me only1 only_u optdir optdir_u optdir_ux optdir_x shared tocopy wh_dir" "root listing"
bad=$(find "$M" \( -name '.wh.*' -o -type c \) -print 2>&1 || true)
skip_on_kernel && bad=""
[[ -z $bad ]] || fail "markers visible: $bad"

check "readdir reports no duplicate names"
dups=$(find "$M" -mindepth 1 -printf '%h/%f\n' | sort | uniq -d)
[[ -z $dups ]] || fail "duplicate entries: $dups"

unmount_union "$M"
check_lowers

# --- writes: copy-up, whiteouts, opaque mkdir, EXDEV ------------------------------------------
build_marker_stack writes
save_lowers
mount_union "$(stack_spec)" "$M"

check "writing a lower file copies it up; the lower file is unchanged"
echo appended >>"$M/shared"
expect_file "$M/shared" $'l2\nappended' "after append"
expect_file "$U/shared" $'l2\nappended' "upper copy"
expect_file "${L[1]}/shared" l2 "lower original"

check "copy-up keeps mode, owner and mtime"
chmod 0640 "$M/tocopy" # a metadata-only change must copy up too
[[ -e $U/tocopy ]] || fail "chmod did not copy up tocopy"
expect_eq "$(stat -c '%a %U:%G %Y' "$M/tocopy")" "$(stat -c '%a %U:%G %Y' "${L[0]}/tocopy")" "metadata after copy-up"
expect_file "$M/tocopy" lower-bytes "content after metadata copy-up"

check "rm of a lower file leaves a whiteout in the upper"
rm "$M/a/f1"
expect_absent "$M/a/f1" "removed lower file"
expect_listing "$M/a" "f2" "dir after rm"
is_whiteout "$U/a/f1" || fail "no kernel whiteout at $U/a/f1: $(stat -c '%F %t:%T' "$U/a/f1" 2>&1)"

check "rm of an upper-only file leaves nothing behind"
rm "$M/only_u"
[[ ! -e $U/only_u && ! -L $U/only_u ]] || fail "upper still has only_u: $(stat -c %F "$U/only_u" 2>&1)"

check "rmdir of a merged non-empty dir gives ENOTEMPTY"
expect_errno ENOTEMPTY "os.rmdir('$M/dirmerge')" "rmdir merged dir"
expect_errno ENOTEMPTY "os.rmdir('$M/deep')" "rmdir lower-only non-empty dir"

check "rmdir of a dir whose lower children are all deleted works"
rm "$M/a/f2"
expect_errno OK "os.rmdir('$M/a')" "rmdir emptied lower dir"
expect_absent "$M/a" "a after rmdir"

check "mkdir over a deleted lower dir gives an empty, opaque dir"
rm -rf "$M/wh_dir"
mkdir "$M/wh_dir"
expect_listing "$M/wh_dir" "" "recreated dir"
[[ $(getfattr --only-values -n trusted.overlay.opaque "$U/wh_dir" 2>/dev/null) == y ]] \
  || fail "$U/wh_dir lacks trusted.overlay.opaque=y: $(getfattr -d -m - "$U/wh_dir" 2>&1)"
echo new >"$M/wh_dir/newfile"
expect_listing "$M/wh_dir" "newfile" "recreated dir after create"

check "rename(2) of a lower dir gives EXDEV"
expect_errno EXDEV "os.rename('$M/move_me', '$M/moved')" "rename lower dir"
expect_errno EXDEV "os.rename('$M/dirmerge', '$M/dm2')" "rename merged dir"
check "mv of a lower dir falls back to copy + delete and works"
mv "$M/move_me" "$M/moved"
expect_file "$M/moved/sub/m" m "moved tree"
expect_absent "$M/move_me" "mv source"

check "rename of a lower file works and whites out the source"
mv "$M/only1" "$M/renamed1"
expect_file "$M/renamed1" l1-only "renamed lower file"
expect_absent "$M/only1" "rename source"

check "rename of an upper-created dir works"
mkdir -p "$M/newdir/sub" && echo n >"$M/newdir/sub/n"
expect_errno OK "os.rename('$M/newdir', '$M/newdir2')" "rename upper dir"
expect_file "$M/newdir2/sub/n" n "content of renamed upper dir"

check "a deleted lower file can be recreated"
rm "$M/shared"
expect_absent "$M/shared" "deleted shared"
echo again >"$M/shared"
expect_file "$M/shared" again "recreated shared"

check "deep copy-up creates the parent chain"
echo zz >>"$M/deep/x/y/z"
expect_file "$U/deep/x/y/z" $'deep\nzz' "deep upper copy"

unmount_union "$M"
check_lowers

if ! skip_on_kernel; then
  check "the upper we wrote mounts on kernel overlayfs with the same view"
  view() { (cd "$1" && find . -printf '%p %y %m\n' | LC_ALL=C sort && find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum); }
  mount_union "$(stack_spec)" "$M"
  view "$M" >"$S/view.fuse"
  unmount_union "$M"
  km="$S/kmnt" kw="$S/kwork"
  mkdir -p "$km" "$kw"
  # The OCI markers in l2 mean nothing to the kernel; compare only what both formats agree on.
  if mount -t overlay overlay -o "lowerdir=${L[1]}:${L[0]},upperdir=$U,workdir=$kw" "$km" 2>/dev/null; then
    _MOUNTS+=("$km"); _MPIDS+=("")
    view "$km" | grep -v -e hidden_oci -e '\./optdir/' -e '\./optdir_u/' -e '\./optdir \|\./optdir_u ' >"$S/view.kernel"
    grep -v -e hidden_oci -e '\./optdir/' -e '\./optdir_u/' -e '\./optdir \|\./optdir_u ' "$S/view.fuse" >"$S/view.fuse2"
    diff -u "$S/view.kernel" "$S/view.fuse2" >"$S/view.diff" || fail "kernel overlayfs sees another tree: $(head -c 2000 "$S/view.diff")"
    timeout "$UMOUNT_TIMEOUT" umount "$km" || umount -l "$km"
  else
    echo "note: kernel overlay mount not possible here; not compared"
  fi
fi

# --- the daemon never follows a symlink of a layer ---------------------------------------------
new_stack symlinks 2
mkdir -p "$T/outside/secretdir" && echo secret >"$T/outside/secretdir/secret"
mkdir -p "$U/sub" "${L[1]}/sub2"
ln -s "$T/outside/secretdir" "${L[0]}/sub"       # a dir above, a symlink below: merging stops
ln -s "$T/outside/secretdir" "${L[0]}/sub2"
ln -s "$T/outside" "${L[0]}/plainlink"
save_lowers
snapshot "$T/outside" >"$T/outside.snap"
mount_union "$(stack_spec)" "$M"
check "a symlink in a lower layer under a directory above is not followed by the daemon"
expect_listing "$M/sub" "" "dir over a lower symlink"
expect_absent "$M/sub/secret" "file behind a lower symlink"
expect_listing "$M/sub2" "" "lower dir over a lower symlink"
expect_absent "$M/sub2/secret" "file behind a lower symlink (lower dir above)"
check "writes next to such symlinks stay in the upper"
echo mine >"$M/sub2/new"
[[ -f $U/sub2/new ]] || fail "new file not in the upper"
[[ ! -e $T/outside/secretdir/new ]] || fail "the daemon wrote through a lower symlink"
check "a plain lower symlink is returned as a link"
expect_eq "$(readlink "$M/plainlink")" "$T/outside" "readlink of a lower symlink"
chmod 0700 "$M/sub2" 2>/dev/null || true
unmount_union "$M"
check_lowers
snapshot "$T/outside" | diff -q "$T/outside.snap" - >/dev/null || fail "a dir outside the layers changed"

# --- -o whiteout=overlay: .wh. names are plain files -------------------------------------------
if ! skip_on_kernel; then
  build_marker_stack overlay_fmt
  save_lowers
  mount_union -o whiteout=overlay "$(stack_spec)" "$M"
  check "-o whiteout=overlay reads .wh. names as plain files"
  expect_file "$M/hidden_oci" gone "name with an OCI whiteout above"
  [[ -f $M/.wh.hidden_oci ]] || fail ".wh.hidden_oci not shown as a file in overlay format"
  expect_absent "$M/hidden_by_wh" "kernel whiteout still hides"
  unmount_union "$M"
  check_lowers
fi

# --- SIGTERM on a foreground daemon unmounts ----------------------------------------------------
if ! skip_on_kernel; then
  new_stack sigterm 1
  echo x >"${L[0]}/x"
  mount_union "$(stack_spec)" "$M"
  check "SIGTERM to a foreground daemon unmounts and exits 0"
  pid=${_MPIDS[-1]}
  kill -TERM "$pid"
  st=0
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    fail "daemon still running 10 s after SIGTERM"
  else
    wait "$pid" || st=$?
    ((st == 0)) || fail "daemon exited with status $st after SIGTERM"
    is_mounted "$M" && fail "$M still mounted after SIGTERM"
    _MOUNTS[-1]=""
  fi
  unmount_union "$M" 2>/dev/null || true
fi

# --- requests are read, not spliced ------------------------------------------------------------
if ! skip_on_kernel; then
  new_stack splice 1
  for ((i = 0; i < 20; i++)); do echo "$i" >"${L[0]}/f$i"; done
  mount_union "$(stack_spec)" "$M"
  # libfuse splices a request into a per-thread pipe and then reads it out again (two system
  # calls for every lookup) wherever that pipe can grow to a request's full size (1 MiB + 4 KiB:
  # root with CAP_SYS_RESOURCE, or fs.pipe-max-size raised). It makes that pipe on the first
  # request it would splice, whether or not it can grow, so a pipe of its own in the daemon
  # (not one it inherited from this script) tells. No READ here: a reply spliced from a file
  # would make one too.
  check "metadata requests are read with one read(2), not spliced through a pipe"
  for ((i = 0; i < 20; i++)); do stat "$M/f$i" >/dev/null; done
  ls -l "$M" >/dev/null
  fds=/proc/${_MPIDS[-1]}/fd
  [[ -n $(find "$fds" -mindepth 1 -maxdepth 1 -lname /dev/fuse) ]] \
    || fail "no /dev/fuse among the daemon's descriptors ($fds): not the daemon"
  pipes_of() { find "$1" -mindepth 1 -maxdepth 1 -lname 'pipe:*' -printf '%l\n' | sort -u; }
  own=$(comm -23 <(pipes_of "$fds") <(pipes_of /proc/$$/fd) | wc -l)
  expect_eq "$own" 0 "pipes the daemon made, after stat and ls -l"
  unmount_union "$M"
fi

# --- -o ro ------------------------------------------------------------------------------------
build_marker_stack ro
save_lowers
snapshot "$U" >"$S/upper.snap"
mount_union -o ro "$(stack_spec)" "$M"
check "-o ro refuses every write with EROFS"
expect_errno EROFS "open('$M/newfile', 'w')" "create"
expect_errno EROFS "open('$M/shared', 'a')" "open lower file for append"
expect_errno EROFS "open('$M/only_u', 'a')" "open upper file for append"
expect_errno EROFS "os.mkdir('$M/newdir')" "mkdir"
expect_errno EROFS "os.unlink('$M/shared')" "unlink"
expect_errno EROFS "os.rmdir('$M/wh_dir')" "rmdir"
expect_errno EROFS "os.rename('$M/only1', '$M/x')" "rename"
expect_errno EROFS "os.chmod('$M/shared', 0o600)" "chmod"
expect_errno EROFS "os.symlink('x', '$M/sl')" "symlink"
expect_errno EROFS "os.truncate('$M/shared', 0)" "truncate"
expect_file "$M/shared" l2 "reads still work"
unmount_union "$M"
check_lowers
snapshot "$U" | diff -u "$S/upper.snap" - >/dev/null || fail "-o ro changed the upper layer"

# --- -o whiteout=oci --------------------------------------------------------------------------
if ! skip_on_kernel; then
  build_marker_stack oci
  save_lowers
  mount_union -o whiteout=oci "$(stack_spec)" "$M"
  check "-o whiteout=oci writes .wh.NAME files and .wh..wh..opq"
  rm "$M/a/f1"
  expect_absent "$M/a/f1" "removed file"
  [[ -f $U/a/.wh.f1 ]] || fail "no OCI whiteout $U/a/.wh.f1 (upper a/: $(ls -la "$U/a" 2>&1))"
  [[ ! -e $U/a/f1 ]] || fail "oci mode left $U/a/f1 ($(stat -c '%F' "$U/a/f1"))"
  rm -rf "$M/wh_dir"
  mkdir "$M/wh_dir"
  expect_listing "$M/wh_dir" "" "recreated dir in oci mode"
  [[ -f $U/wh_dir/.wh..wh..opq ]] || fail "no $U/wh_dir/.wh..wh..opq (upper: $(ls -la "$U/wh_dir" 2>&1))"
  found=$(find "$U" -type c)
  [[ -z $found ]] || fail "oci mode wrote char devices: $found"
  bad=$(find "$M" -name '.wh.*' 2>&1 || true)
  [[ -z $bad ]] || fail "OCI markers visible through the mount: $bad"
  check "-o whiteout=oci: a recreated name drops its .wh. marker"
  echo back >"$M/a/f1"
  expect_file "$M/a/f1" back "recreated after oci whiteout"
  [[ ! -e $U/a/.wh.f1 ]] || fail "$U/a/.wh.f1 left next to a recreated a/f1"
  unmount_union "$M"
  check_lowers
fi

# --- closes: no FLUSH round trip for files only read ----------------------------------------
if ! skip_on_kernel; then
  new_stack noflush 1
  echo lower >"${L[0]}/f"
  check "closing a file opened read-only sends no FLUSH (FOPEN_NOFLUSH); closing a written one does"
  mount_union -s -d "$(stack_spec)" "$M"
  check_noflush "$T/daemon.$((${#_MOUNTS[@]} - 1)).log"
  unmount_union "$M"
fi

# --- the daemon's heap: huge pages ----------------------------------------------------------
# A fresh 4 KiB page costs ~13 us to fault in on a paravirtualised VM; the daemon re-executes
# itself with glibc's malloc on transparent huge pages (fuse/malloc_tuning.h).
thp=$(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || true)
if skip_on_kernel; then
  :
elif [[ $thp != *"[always]"* && $thp != *"[madvise]"* ]]; then
  echo "(heap check skipped: transparent huge pages are off: ${thp:-no sysfs entry})"
elif ldd "$UNIONFS_BIN" 2>/dev/null | grep -q libasan; then
  echo "(heap check skipped: an ASan build has its own allocator)"
else
  new_stack heap 2
  mkdir -p "${L[0]}/big" "${L[1]}/big"
  for ((i = 0; i < 3000; i++)); do : >"${L[0]}/big/file-with-a-longer-name-$i"; done
  anon_huge_kb() { awk '/^AnonHugePages:/ {print $2}' "/proc/$1/smaps_rollup"; }
  check "the daemon's heap is on transparent huge pages"
  mount_union "$(stack_spec)" "$M"
  expect_eq "$(ls "$M/big" | wc -l)" 3000 "entries of big/"
  kb=$(anon_huge_kb "${_MPIDS[-1]}")
  ((kb > 0)) || fail "daemon AnonHugePages ${kb:-?} kB after indexing a 3,000-entry directory"
  unmount_union "$M"
  check "GLIBC_TUNABLES naming glibc.malloc.hugetlb is the caller's choice: no huge pages with =0"
  GLIBC_TUNABLES=glibc.malloc.hugetlb=0 mount_union "$(stack_spec)" "$M"
  expect_eq "$(ls "$M/big" | wc -l)" 3000 "entries of big/ (hugetlb=0)"
  kb=$(anon_huge_kb "${_MPIDS[-1]}")
  expect_eq "$kb" 0 "daemon AnonHugePages with glibc.malloc.hugetlb=0"
  unmount_union "$M"
fi

finish
