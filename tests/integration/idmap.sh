#!/usr/bin/env bash
# fuse-overlayfs's id-mapping options (uidmapping=, gidmapping=, squash_to_root, squash_to_uid=,
# squash_to_gid=), compared with fuse-overlayfs itself: the same lower layer is mounted by both with
# the same options, the same operations run through each mount, and these must agree exactly:
#   - owners shown by `ls -ln` on a fresh mount (readdirplus) and by stat (lookup, getattr),
#     before and after the writes;
#   - objects created through the mount as root and as other uids (mapped and unmapped), with the
#     exit status of each attempt; chown and chgrp through the mount; copy-up of a lower file;
#   - the owners stored in the upper layer on disk.
# Then our own checks where fuse-overlayfs 1.10 has a bug (group of new objects in a set-group-ID
# directory), and that malformed values exit 2. Needs root (chown, setpriv) and fuse-overlayfs
# (scripts/install-deps.sh installs it); exit 77 = cannot run here. IDMAP_KEEP=DIR keeps what
# both sides saw and stored.
source "$(dirname "$0")/lib.sh" "$@"

skip_on_kernel && skip "the kernel's overlayfs has no id-mapping options"
[[ $(id -u) == 0 ]] || skip "needs root (chown of the lower files, setpriv to other uids)"
command -v fuse-overlayfs >/dev/null || skip "fuse-overlayfs missing (scripts/install-deps.sh)"
command -v setpriv >/dev/null || skip "setpriv missing"
BIN=$(realpath "$UNIONFS_BIN")
UNIONFS_BIN=$BIN
chmod 755 "$T"  # other uids create files through the mounts below

# The lower layer both daemons share (never written: checked at the end). Owners cover every
# case of the mappings below: the first and last ids of a range, ids outside every range.
LOWER=$T/lower
L=("$LOWER")
mkdir -p "$LOWER"/{dir,open,tree/sub}
for spec in f0:0:0 f1:1:1 f1000:1000:1000 f65536:65536:65536 f100005:100005:100005 f3:3:4 f7:7:8; do
  IFS=: read -r name u g <<<"$spec"
  echo "$name" >"$LOWER/$name"
  chown "$u:$g" "$LOWER/$name"
done
chown 2000:2000 "$LOWER/dir"
chown 0:0 "$LOWER/open" && chmod 1777 "$LOWER/open"
echo t >"$LOWER/tree/sub/t"
chown -R 1:1 "$LOWER/tree"
ln -s f0 "$LOWER/link"
chown -h 3:4 "$LOWER/link"
save_lowers

# mount_daemon MNT LOG COMMAND...: runs a daemon in the foreground as our child, waits for MNT.
mount_daemon() {
  local mnt=$1 log=$2
  shift 2
  "$@" >"$log" 2>&1 &
  local pid=$!
  _MOUNTS+=("$mnt"); _MPIDS+=("$pid")
  local deadline=$((SECONDS + MOUNT_TIMEOUT))
  until is_mounted "$mnt"; do
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; die "daemon exited before $mnt was mounted: $*"; }
    ((SECONDS < deadline)) || { cat "$log" >&2; die "timeout: $mnt not mounted"; }
    sleep 0.05
  done
}

as() { # UID COMMAND...: run as UID (group UID, no supplementary groups)
  local u=$1
  shift
  setpriv --reuid "$u" --regid "$u" --clear-groups "$@"
}

owners() { # DIR: every path under DIR with its owner, sorted
  (cd "$1" && find . -printf '%p %U:%G %y\n' | LC_ALL=C sort)
}

try() { # DESCRIPTION SHELL-COMMAND [UID]: run it (as UID), print its exit status
  local st=0
  if [[ -n ${3:-} ]]; then
    as "$3" sh -c "$2" 2>/dev/null || st=$?
  else
    sh -c "$2" 2>/dev/null || st=$?
  fi
  echo "$1: $st"
}

# The same operations through mount M; prints what it sees. Each write records its exit status,
# since with a mapping the kernel checks permissions against the owners shown.
exercise() {
  local m=$1 u
  echo "== ls -ln (readdirplus)"
  ls -ln "$m" "$m/tree" | awk 'NF > 2 { print $1, $3, $4, $NF }'
  echo "== lookups"
  owners "$m"
  echo "== writes"
  try "root creates" ": >$m/by_root && mkdir $m/dir_root && ln -s by_root $m/link_root && mkfifo $m/fifo_root"
  for u in 0 1 1000 100004 65536 55; do
    try "uid $u creates in open/" ": >$m/open/by_$u && mkdir $m/open/dir_$u && ln -s x $m/open/link_$u" "$u"
    try "uid $u creates in /" ": >$m/by_$u" "$u"
  done
  try "uid 100004 creates in tree/sub" ": >$m/tree/sub/by_100004" 100004
  try "root hard-links" "ln $m/f0 $m/hardlink"
  try "copy-up by append" "echo more >>$m/f3"
  try "chown" "chown 100010:100011 $m/f1 && chown 12345:23456 $m/f7 && chown -h 1000:1000 $m/link"
  try "chgrp/chown one id" "chgrp 100020 $m/f1000 && chown 100030 $m/f65536 && chown 5:5 $m/by_root"
  try "mkdir under a copied-up tree, chown of a lower dir" "mkdir $m/tree/sub/new && chown 100001:100001 $m/tree"
  echo "== after the writes"
  owners "$m"
  ls -ln "$m/open" | awk 'NF > 2 { print $1, $3, $4, $NF }'
}

# compare NAME OPTS: one mount per daemon over the same lower layer, the same operations.
compare() {
  local name=$1 opts=$2 impl d
  check "$name: -o $opts: same owners as fuse-overlayfs, through the mount and in the upper"
  for impl in ref ours; do
    d=$T/$name/$impl
    mkdir -p "$d"/{upper,work,mnt}
    chmod 755 "$T/$name" "$d"
    local o="lowerdir=$LOWER,upperdir=$d/upper,workdir=$d/work,$opts"
    if [[ $impl == ref ]]; then
      mount_daemon "$d/mnt" "$d/log" fuse-overlayfs -f -o "$o" "$d/mnt"
    else
      mount_daemon "$d/mnt" "$d/log" "$BIN" -f -o "$o" "$d/mnt"
    fi
    exercise "$d/mnt" >"$d/seen" 2>&1
    unmount_union "$d/mnt"
    # Not compared: the upper's root, and the opaque markers fuse-overlayfs puts in every new
    # directory (a ".wh..opq" whiteout and a ".wh..wh..opq" file) where we set an xattr.
    owners "$d/upper" | grep -v -e '^\. ' -e '/\.wh\.' >"$d/stored"
  done
  [[ -z ${IDMAP_KEEP:-} ]] || { mkdir -p "$IDMAP_KEEP" && cp -r "$T/$name" "$IDMAP_KEEP/"; }
  local what
  for what in seen stored; do
    if ! diff -u "$T/$name/ref/$what" "$T/$name/ours/$what" >"$T/$name/$what.diff"; then
      fail "$name: $what differs from fuse-overlayfs (-ref +ours): $(head -c 3000 "$T/$name/$what.diff")"
    fi
  done
}

# A rootless podman user namespace (fuse-overlayfs(1)'s example): container 0 is host 1000,
# container 1..65536 are host 100000..165535.
ROOTLESS="uidmapping=0:1000:1:1:100000:65536,gidmapping=0:1000:1:1:100000:65536"
compare rootless "$ROOTLESS"
# Different uid and gid maps; ranges that overlap at container id 5 (the last one wins).
compare overlap "uidmapping=0:100:10:5:200:1:1000:1000:1,gidmapping=0:300:2000:65536:0:1"
compare squash_root "squash_to_root"
compare squash_ids "squash_to_uid=7,squash_to_gid=8"
compare squash_gid "squash_to_gid=8"
compare squash_root_gid "squash_to_root,squash_to_gid=100"
compare squash_mapped "squash_to_uid=7,uidmapping=0:1000:1:1:100000:65536,gidmapping=3:50:1"
compare empty_maps "uidmapping=,gidmapping="

# fuse-overlayfs 1.10 gives new objects the caller's group there, and drops the bit of new dirs.
check "a new object in a set-group-ID directory takes the directory's group, mapped"
d=$T/setgid
mkdir -p "$d"/{lower/sg,upper,work,mnt}
chmod 755 "$d"
chown 0:7 "$d/lower/sg"
chmod 2777 "$d/lower/sg"
mount_union -o "lowerdir=$d/lower,upperdir=$d/upper,workdir=$d/work,$ROOTLESS" "$d/mnt"
as 100004 sh -c ": >'$d/mnt/sg/f' && mkdir '$d/mnt/sg/d'" || fail "uid 100004 cannot create in sg/"
expect_eq "$(stat -c '%u:%g' "$d/mnt/sg/f" "$d/mnt/sg/d" | tr '\n' ' ')" "100004:100006 100004:100006 " \
  "owners shown in sg/"
expect_eq "$(stat -c '%u:%g' "$d/upper/sg/f" "$d/upper/sg/d" | tr '\n' ' ')" "5:7 5:7 " "owners stored in sg/"
[[ -g $d/upper/sg/d ]] || fail "the new directory lost the set-group-ID bit"
unmount_union "$d/mnt"

check "malformed id options exit 2 and mount nothing"
for o in uidmapping=0:1000 uidmapping=0:1000:1:2 gidmapping=a:1:1 uidmapping=0:1:1:2: \
         uidmapping=-1:5:1 uidmapping=2:0:4294967295 squash_to_uid= squash_to_uid=-1 \
         squash_to_gid=4294967295 squash_to_root=1; do
  st=0
  "$BIN" -o "lowerdir=$LOWER,$o" "$d/mnt" 2>"$T/err" || st=$?
  expect_eq "$st" 2 "exit status for -o $o"
  grep -q '^unionfs-cpp: ' "$T/err" || fail "no unionfs-cpp: message for -o $o: $(cat "$T/err")"
  is_mounted "$d/mnt" && { fail "mounted after -o $o"; _unmount_one "$d/mnt"; }
done

check_lowers
finish
