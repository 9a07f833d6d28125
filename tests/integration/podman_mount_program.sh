#!/usr/bin/env bash
# unionfs-cpp as containers/storage's overlay `mount_program` (the slot of fuse-overlayfs), compared
# with the kernel's overlayfs (podman's default as root) doing the same steps.
#
# Two private podman storages live in the test's temp dir, each with its own graphroot, runroot,
# tmp_dir, network dir, storage.conf and containers.conf (the default storage is never touched):
#   kern: the plain overlay driver: the kernel's overlayfs;
#   fuse: the same with [storage.options.overlay] mount_program = a wrapper that logs its argv and
#         stderr to $T/mount_program.log and runs the daemon.
# In each: import the same busybox root file system as an image, `podman build` the same
# Containerfile (RUN steps that create files and directories, append, delete files of earlier
# layers, rm -rf and recreate a directory, chmod, symlinks, a hard link, rename a directory), run a
# container that writes and reads files and lists its whole visible tree, and compare:
#   - what the container printed and its tree (types, modes, owners, link counts and hard-link
#     groups, sizes, link targets, md5 of contents): exactly;
#   - the tree of every image of the build, read through `podman image mount` (for `fuse` a
#     read-only unionfs-cpp mount): exactly;
#   - `podman diff` of the container and of every built layer, normalized (see normalize_diff);
#   - `podman history`: the CreatedBy of every step and the number of layers (not the sizes).
# A running container's rootfs must be a fuse.unionfs-cpp mount with the mount program, and no
# daemon or mount may be left once the containers are gone.
#
# We compare with the kernel, not with expectations; note that with a mount_program containers/storage
# always computes layer diffs "naively", by comparing two mounted trees (drivers/overlay: useNaiveDiff),
# instead of reading the upper directory as it does for the kernel. So the two storages commit the
# same tree with a different representation: for a directory removed and recreated in one RUN the
# kernel's layer has an opaque directory, the naive one a whiteout per old entry; the naive one
# lists every parent of a change; and a hard link made to a file of an earlier layer becomes a copy
# (fuse-overlayfs gets exactly the same). The Containerfile avoids that last case; the diffs are
# compared through what they mean for the trees; the layer sizes of `podman history` differ a little.
#
# Needs root; installs podman, runc and busybox-static if missing; exit 77 = cannot run here.
# PODMAN_MP_KEEP=DIR copies the outputs of both sides to DIR for a look.
source "$(dirname "$0")/lib.sh" "$@"

[[ $(id -u) == 0 ]] || skip "needs root (podman with the overlay driver as root)"
BIN=$(realpath "$UNIONFS_BIN")

if ! command -v podman >/dev/null || ! command -v runc >/dev/null || [[ ! -x /bin/busybox ]]; then
  echo "installing podman, runc and busybox-static"
  DEBIAN_FRONTEND=noninteractive timeout 180 apt-get install -y -q podman runc busybox-static \
    >"$T/apt.log" 2>&1 || skip "apt-get install podman runc busybox-static failed: $(tail -1 "$T/apt.log")"
fi
{ [[ -x /bin/busybox ]] && /bin/busybox true; } 2>/dev/null || skip "no working /bin/busybox"
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
grep -qw overlay /proc/filesystems || skip "the kernel has no overlayfs (the reference)"

PODMAN_TIMEOUT=${PODMAN_TIMEOUT:-90}
BUILD_TIMEOUT=${BUILD_TIMEOUT:-150}
IMAGE=localhost/unionfs-mp-base
BUILT=localhost/unionfs-mp-built
KINDS=(kern fuse)
MP_LOG=$T/mount_program.log

# The mount program: logs its argv and stderr, then runs the daemon, which daemonizes once the
# mount is live, as fuse-overlayfs does (containers/storage unmounts with umount2(MNT_DETACH)).
WRAPPER=$T/bin/unionfs-cpp-mount
mkdir -p "$T/bin"
cat >"$WRAPPER" <<EOF
#!/bin/bash
{ printf 'argv:'; printf ' [%s]' "\$@"; printf ' (cwd %s)\n' "\$PWD"; } >>"$MP_LOG"
err=\$(mktemp)
"$BIN" "\$@" 2>"\$err"
rc=\$?
if [[ -s \$err ]]; then sed 's/^/stderr: /' "\$err" >>"$MP_LOG"; cat "\$err" >&2; fi
rm -f "\$err"
echo "exit: \$rc" >>"$MP_LOG"
exit \$rc
EOF
chmod 755 "$WRAPPER"

for k in "${KINDS[@]}"; do
  mkdir -p "$T/$k"/{graph,run,tmp,net}
  {
    printf '[storage]\ndriver = "overlay"\ngraphroot = "%s"\nrunroot = "%s"\n' "$T/$k/graph" "$T/$k/run"
    printf '[storage.options.overlay]\n'
    [[ $k == fuse ]] && printf 'mount_program = "%s"\n' "$WRAPPER"
  } >"$T/$k/storage.conf"
  printf '[containers]\ndefault_ulimits = []\n[engine]\nevents_logger = "file"\ntmp_dir = "%s"\ncgroup_manager = "cgroupfs"\nruntime = "runc"\n[network]\nnetwork_config_dir = "%s"\n' \
    "$T/$k/tmp" "$T/$k/net" >"$T/$k/containers.conf"
done

# pm KIND [-t SECONDS] ARGS...: podman on that private storage, always with a timeout. The storage
# comes from storage.conf alone: with --root, --runroot or --storage-driver podman drops the
# driver options of storage.conf, mount_program included.
pm() {
  local k=$1 t=$PODMAN_TIMEOUT
  shift
  if [[ $1 == -t ]]; then t=$2; shift 2; fi
  CONTAINERS_STORAGE_CONF=$T/$k/storage.conf CONTAINERS_CONF=$T/$k/containers.conf \
    timeout -k 10 "$t" podman --cgroup-manager=cgroupfs --runtime runc "$@" </dev/null
}

our_daemons() { # pids of unionfs-cpp processes serving mounts in our temp dir
  local p
  for p in $(pgrep -x unionfs-cpp 2>/dev/null || true); do
    tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF "$T/" && echo "$p"
  done
  return 0
}

OURS=() # the storages podman was seen to use; only those are cleaned with podman

podman_cleanup() {
  local rc=$? k m p
  set +e
  for k in "${OURS[@]}"; do
    pm "$k" -t 60 rm -a -f -t 0 >/dev/null 2>&1
    pm "$k" -t 60 image unmount -a -f >/dev/null 2>&1
    pm "$k" -t 60 rmi -a -f >/dev/null 2>&1
  done
  # Whatever is still mounted below our temp dir (rootfs, shm) goes lazily.
  for m in $(mounts_under "$T" | sort -r); do
    echo "cleanup: lazy-unmounting leftover $m" >&2
    umount -l "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null
  done
  sleep 0.2
  for p in $(our_daemons); do
    echo "cleanup: daemon $p still running after unmount, killing it" >&2
    kill -KILL "$p" 2>/dev/null
  done
  return "$rc"
}
trap 'podman_cleanup; _cleanup' EXIT

dump_mp_log() {
  echo "--- mount program log ($MP_LOG), last lines:" >&2
  tail -n 30 "$MP_LOG" >&2 2>/dev/null || true
}

# Make sure podman uses our storages, and the mount program for `fuse`, before touching them.
for k in "${KINDS[@]}"; do
  if ! info=$(pm "$k" info --format '{{.Store.GraphRoot}} {{.Store.RunRoot}} {{.Store.GraphDriverName}}' 2>"$T/$k/info.err"); then
    [[ $k == kern ]] && skip "podman info fails here: $(tail -1 "$T/$k/info.err")"
    die "podman info fails with the mount program only: $(tail -3 "$T/$k/info.err")"
  fi
  [[ $info == "$T/$k/graph $T/$k/run overlay" ]] \
    || die "podman ignores our storage.conf ($T/$k/storage.conf): graphroot, runroot, driver = $info"
  OURS+=("$k")
done
mp=$(pm fuse info --format '{{index .Store.GraphOptions "overlay.mount_program"}}' 2>&1) || true
[[ $mp == *"$WRAPPER"* ]] || die "podman does not see the mount program: $mp"

# --- the base image: busybox with all its applets and a few files ------------------------------
R=$T/rootfs
mkdir -p "$R"/{bin,etc,tmp,root,data/sub,data/mvdir/in,data/keepdir,old/deep}
cp /bin/busybox "$R/bin/busybox"
for a in $(/bin/busybox --list); do [[ $a == busybox ]] || ln -s busybox "$R/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' >"$R/etc/passwd"
echo 'root:x:0:' >"$R/etc/group"
echo a >"$R/data/a"
echo b >"$R/data/b"
echo s >"$R/data/sub/s"
echo t >"$R/data/sub/t"
echo m >"$R/data/mvdir/in/m"
echo k >"$R/data/keepdir/k"
echo g >"$R/old/deep/g"
chmod 1777 "$R/tmp"
tar --numeric-owner --owner=0 --group=0 -C "$R" -c . >"$T/rootfs.tar"

for k in "${KINDS[@]}"; do
  check "$k: podman import"
  pm "$k" import "$T/rootfs.tar" "$IMAGE" >"$T/$k/import.out" 2>&1 || {
    [[ $k == kern ]] && skip "podman import does not work here: $(tail -1 "$T/$k/import.out")"
    dump_mp_log
    die "podman import fails with the mount program only: $(cat "$T/$k/import.out")"
  }
done

# --- the build ----------------------------------------------------------------------------------
# RUN 1 makes files, dirs, a symlink and hard links (both names new in that step, so that the
# naive diff keeps the link); RUN 2 deletes files of RUN 1 and of the base, chmods, removes a tree;
# RUN 3 removes and recreates directories of RUN 1 and of the base in one step; RUN 4 symlinks,
# renames a file and a directory of earlier layers, replaces a symlink; RUN 5 rewrites, touches,
# chmods to the same mode (a copy-up only), removes and adds deep directories.
CTX=$T/context
mkdir -p "$CTX"
cat >"$CTX/Containerfile" <<EOF
FROM $IMAGE
RUN mkdir -p /app/conf /app/data /victim/inner && echo one >/app/conf/a.conf && echo keep >/app/data/keep && ln /app/data/keep /app/data/keep.hard && seq 1 20000 >/app/data/big && echo v1 >/victim/v1 && echo v2 >/victim/inner/v2 && echo del >/app/delme && ln -s conf/a.conf /app/link
RUN echo two >>/app/conf/a.conf && rm /app/delme /data/a && chmod 0750 /app/data && chmod 0600 /app/conf/a.conf && rm -rf /old
RUN rm -rf /victim && mkdir /victim && echo new >/victim/new && rm -rf /data/sub && mkdir /data/sub && echo s2 >/data/sub/s2
RUN ln -s ../app/conf/a.conf /etc/app.conf && mkdir -p /deep/a/b/c && echo d >/deep/a/b/c/d && chmod 1777 /deep/a && mv /app/data/big /app/data/big.moved && mv /data/mvdir /data/mvdir2 && : >/empty && rm /app/link && ln -s /etc/passwd /app/link
RUN echo three >/app/conf/a.conf && touch /data/keepdir/k && chmod 0644 /data/b && rm -rf /deep/a/b/c && mkdir /deep/a/b/c2
EOF
for k in "${KINDS[@]}"; do
  check "$k: podman build"
  if ! pm "$k" -t "$BUILD_TIMEOUT" build --network none --layers -t "$BUILT" -f "$CTX/Containerfile" "$CTX" \
    >"$T/$k/build.out" 2>&1; then
    [[ $k == kern ]] && skip "podman build does not work here with the kernel: $(tail -3 "$T/$k/build.out")"
    cat "$T/$k/build.out" >&2
    dump_mp_log
    die "podman build fails with the mount program but works with the kernel"
  fi
done

# --- the manifest of a tree: TREE_MANIFEST_SH and fix_manifest, from lib.sh -------------------
MANIFEST_SH=$TREE_MANIFEST_SH

# --- a container that writes, reads and lists its tree ------------------------------------------
RUN_SCRIPT='
set -e
echo hello >/newfile
echo more >>/app/conf/a.conf
cat /app/conf/a.conf
rm /data/b
mkdir -p /cdir/x && echo y >/cdir/x/y
rm -rf /deep/a/b
mv /app/data /app/data2
echo w >>/app/data2/keep.hard
ln /etc/group /etc/group.hard && echo wheel:x:10: >>/etc/group.hard
ln -s /newfile /newlink
readlink /newlink
chmod 640 /etc/passwd
mkdir /victim/sub && echo z >/victim/sub/z && rm /victim/new
rm -rf /data/sub && mkdir /data/sub && echo s3 >/data/sub/s3
dd if=/dev/zero of=/zeros bs=4096 count=64 2>/dev/null
truncate -s 100 /app/data2/big.moved
cat /newfile /cdir/x/y /data/sub/s3 /etc/group /app/data2/keep
ls -A / /app /data /victim /deep/a
md5sum /zeros /app/data2/big.moved
echo ===MANIFEST===
'"$MANIFEST_SH"
for k in "${KINDS[@]}"; do
  check "$k: podman run (writes, reads, lists)"
  if ! pm "$k" run --name "mp-run-$k" --network none "$BUILT" sh -c "$RUN_SCRIPT" >"$T/$k/run.out" 2>"$T/$k/run.err"; then
    [[ $k == kern ]] && skip "podman run does not work here with the kernel: $(tail -3 "$T/$k/run.err")"
    cat "$T/$k/run.err" >&2
    dump_mp_log
    die "podman run fails with the mount program but works with the kernel"
  fi
  sed -n '/^===MANIFEST===$/,$p' "$T/$k/run.out" | sed 1d | fix_manifest >"$T/$k/ctr.manifest"
  sed '/^===MANIFEST===$/,$d' "$T/$k/run.out" >"$T/$k/ctr.output"
  [[ $(wc -l <"$T/$k/ctr.manifest") -gt 300 ]] || fail "$k: short manifest: $(head -c 500 "$T/$k/ctr.manifest")"
done

# compare FILE DESCRIPTION: $T/kern/FILE and $T/fuse/FILE must be equal.
compare() {
  check "$2"
  if ! diff -u "$T/kern/$1" "$T/fuse/$1" >"$T/$1.diff"; then
    fail "$2: with unionfs-cpp it differs from the kernel (--- kernel, +++ unionfs-cpp):
$(head -c 4000 "$T/$1.diff")"
  fi
}

compare ctr.output "what the container reads"
compare ctr.manifest "the container's whole visible tree"

# --- the images of the build: history and trees -------------------------------------------------
for k in "${KINDS[@]}"; do
  pm "$k" history --no-trunc --format '{{.ID}}|{{.Size}}|{{.CreatedBy}}' "$BUILT" >"$T/$k/history.full"
  cut -d'|' -f3- "$T/$k/history.full" >"$T/$k/history"
  pm "$k" image inspect --format '{{len .RootFS.Layers}}' "$BUILT" >"$T/$k/nlayers"
  # The tree of every image, top first, through `podman image mount` (read-only mounts).
  n=0
  while IFS='|' read -r id _; do
    [[ $id != "<missing>" ]] || { fail "$k: history without an image id for step $n"; continue; }
    mnt=$(pm "$k" image mount "$id") || { fail "$k: podman image mount $id failed"; continue; }
    if ((n == 0)); then
      fstype=$(awk -v m="$mnt" '$2 == m { print $3 }' /proc/mounts)
      want=overlay
      [[ $k == fuse ]] && want=fuse.unionfs-cpp
      check "$k: podman image mount is $want"
      expect_eq "$fstype" "$want" "$k: file system of the image mount $mnt"
    fi
    timeout 60 chroot "$mnt" /bin/sh -c "$MANIFEST_SH" </dev/null | fix_manifest >"$T/$k/image.$n.manifest"
    pm "$k" image unmount "$id" >/dev/null || fail "$k: podman image unmount $id failed"
    n=$((n + 1))
  done <"$T/$k/history.full"
  echo "$n" >"$T/$k/nimages"
done
# Sizes are those containers/storage measured of each layer's tar stream: from the upper directory
# for the kernel, from comparing two mounted trees with the mount program (see the top), so they
# differ by a few directory entries and whiteouts; only the steps and the layer count are compared.
echo "podman history (kernel):"; sed 's/^/  /' "$T/kern/history.full" | cut -c1-160
echo "podman history (unionfs-cpp):"; sed 's/^/  /' "$T/fuse/history.full" | cut -c1-160
compare history "podman history: CreatedBy of every step"
compare nlayers "number of layers of the built image"
compare nimages "number of images in the history"
nimages=$(cat "$T/kern/nimages")
for ((i = 0; i < nimages; i++)); do
  compare "image.$i.manifest" "tree of the image of build step $((nimages - i - 1)) (podman image mount)"
done
if grep -q '^/victim/v1|' "$T/kern/image.0.manifest"; then
  echo "note: on the kernel, podman lost the opaque marker of /victim (rm -rf + mkdir in one RUN)"
fi

# --- podman diff ---------------------------------------------------------------------------------
# normalize_diff DIFF BEFORE AFTER: what `podman diff` means for the trees. The kernel's diff is
# read from the upper directory (a copied-up but unchanged file is "C", a replaced directory is "D"
# alone), the mount program's from comparing the trees (every parent of a change is "C", a replaced
# directory is "C" with a "D" per old entry). Normalized: "A p" for every reported path not in
# BEFORE, "C p" for a reported A/C path whose manifest line differs, "D q" for q = a deleted path
# or anything below it in BEFORE that is not in AFTER; "!" marks a reported path that does not fit.
normalize_diff() {
  "$PYTHON" - "$@" <<'EOF'
import sys
def load(f):
    m = {}
    for line in open(f):
        line = line.rstrip("\n")
        m[line.split("|", 1)[0]] = line
    return m
diff, before, after = sys.argv[1], load(sys.argv[2]), load(sys.argv[3])
skip = ("/proc", "/sys", "/dev", "/run")
out = set()
for line in open(diff):
    kind, p = line.rstrip("\n").split(" ", 1)
    if p in ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf") or any(p == s or p.startswith(s + "/") for s in skip):
        continue
    if kind in ("A", "C"):
        if p not in before:
            out.add(("A " if p in after else "A! ") + p)
        elif p not in after:
            out.add("C! " + p)
        elif before[p] != after[p]:
            out.add("C " + p)
    elif kind == "D":
        if p not in before:
            out.add("D! " + p)
        for q in before:
            if (q == p or q.startswith(p + "/")) and q not in after:
                out.add("D " + q)
    else:
        out.add("?! " + line.strip())
for l in sorted(out, key=lambda s: (s.split(" ", 1)[1], s)):
    print(l)
EOF
}

for k in "${KINDS[@]}"; do
  pm "$k" diff "mp-run-$k" | LC_ALL=C sort >"$T/$k/ctr.pdiff"
  normalize_diff "$T/$k/ctr.pdiff" "$T/$k/image.0.manifest" "$T/$k/ctr.manifest" >"$T/$k/ctr.ndiff"
  : >"$T/$k/layers.ndiff"
  i=0
  while IFS='|' read -r id _ cmd; do
    if ((i + 1 < nimages)); then # the bottom image (the import) has no parent to compare with
      pm "$k" diff "$id" | LC_ALL=C sort >"$T/$k/layer.$i.pdiff"
      { echo "## ${cmd:0:60}"; normalize_diff "$T/$k/layer.$i.pdiff" "$T/$k/image.$((i + 1)).manifest" "$T/$k/image.$i.manifest"; } \
        >>"$T/$k/layers.ndiff"
    fi
    i=$((i + 1))
  done <"$T/$k/history.full"
done
compare ctr.ndiff "podman diff of the container (normalized)"
compare layers.ndiff "podman diff of every built image against its parent (normalized)"
for k in "${KINDS[@]}"; do
  check "$k: podman diff of the container is consistent with the trees"
  ! grep -q '!' "$T/$k/ctr.ndiff" || fail "$k: podman diff reports paths that do not fit the trees: $(grep '!' "$T/$k/ctr.ndiff")"
done
check "podman diff of the container names the changes"
for want in 'A /newfile' 'A /cdir/x/y' 'A /app/data2/keep.hard' 'C /app/conf/a.conf' 'C /etc/group' \
  'C /etc/passwd' 'D /data/b' 'D /data/sub/s2' 'D /app/data/keep' 'D /victim/new' 'A /data/sub/s3'; do
  grep -qxF "$want" "$T/fuse/ctr.ndiff" || fail "unionfs-cpp: '$want' missing from the normalized podman diff"
done

# --- a running container's rootfs is a fuse.unionfs-cpp mount -----------------------------------
for k in "${KINDS[@]}"; do
  check "$k: the rootfs mount of a running container"
  pm "$k" run -d --name "mp-live-$k" --network none "$BUILT" sleep 120 >/dev/null 2>"$T/$k/live.err" \
    || { fail "$k: podman run -d: $(tail -2 "$T/$k/live.err")"; continue; }
  merged=$(pm "$k" inspect --format '{{.GraphDriver.Data.MergedDir}}' "mp-live-$k")
  fstype=$(awk -v m="$merged" '$2 == m { print $3 }' /proc/mounts)
  want=overlay
  [[ $k == fuse ]] && want=fuse.unionfs-cpp
  expect_eq "$fstype" "$want" "$k: file system of the container's rootfs $merged"
  got=$(pm "$k" exec "mp-live-$k" sh -c 'echo live >/live && cat /live /app/conf/a.conf' 2>&1) || true
  expect_eq "$got" $'live\nthree' "$k: podman exec writes and reads through the mount"
  expect_file "$merged/live" live "$k: the container's write, read on the host through its rootfs"
  pm "$k" rm -f -t 0 "mp-live-$k" >/dev/null 2>&1 || fail "$k: podman rm -f"
  ! is_mounted "$merged" || fail "$k: $merged still mounted after podman rm"
done

# The daemon binary itself as the mount program, as the README shows it (no wrapper).
check "fuse: the daemon binary itself as mount_program"
sed -i "s|^mount_program = .*|mount_program = \"$BIN\"|" "$T/fuse/storage.conf"
got=$(pm fuse run --rm --network none "$BUILT" sh -c 'cat /app/conf/a.conf; awk "\$2 == \"/\" { print \$3 }" /proc/mounts' 2>&1) || true
expect_eq "$got" $'three\nfuse.unionfs-cpp' "fuse: a container with mount_program = $BIN (its /app/conf/a.conf and rootfs type)"

check "nothing of unionfs-cpp is left once the containers are removed"
for k in "${KINDS[@]}"; do pm "$k" rm -a -f -t 0 >/dev/null 2>&1 || fail "$k: podman rm -a"; done
for ((i = 0; i < 20; i++)); do [[ -z $(our_daemons) ]] && break; sleep 0.25; done
left=$(our_daemons | tr '\n' ' ')
[[ -z $left ]] || fail "unionfs-cpp daemons still running after every container was removed: $left"
left=$(awk -v d="$T/" 'index($2, d) == 1 && $3 == "fuse.unionfs-cpp" { print $2 }' /proc/mounts)
[[ -z $left ]] || fail "unionfs-cpp mounts left after every container was removed: $left"

check "every call of the mount program succeeded"
calls=$(grep -c '^argv:' "$MP_LOG" || true)
bad=$(grep '^exit: ' "$MP_LOG" | grep -vc '^exit: 0$' || true)
((calls > 10)) || fail "the mount program was called only $calls times"
((bad == 0)) || fail "$bad calls of the mount program failed: $(grep -B6 '^exit: [^0]' "$MP_LOG" | cut -c1-300 | head -40)"
echo "mount program: $calls calls; the options containers/storage passed:"
grep '^argv:' "$MP_LOG" | grep -o '\[-o\] \[[^]]*\]' | cut -d' ' -f2 | tr -d '[]' | tr ',' '\n' \
  | sed -E 's/=.*/=.../; s/^$/(empty)/' | sort | uniq -c | sed 's/^/  /'
if grep -q '^stderr:' "$MP_LOG"; then
  echo "the daemon wrote on stderr:"; grep '^stderr:' "$MP_LOG" | sort | uniq -c | head
fi
((_FAILS == 0)) || dump_mp_log

if [[ -n ${PODMAN_MP_KEEP:-} ]]; then
  rm -rf "$PODMAN_MP_KEEP"
  for k in "${KINDS[@]}"; do mkdir -p "$PODMAN_MP_KEEP/$k" && cp -p "$T/$k"/*.* "$PODMAN_MP_KEEP/$k/" 2>/dev/null || true; done
  cp "$MP_LOG" "$CTX/Containerfile" "$PODMAN_MP_KEEP/" || true
fi
finish
