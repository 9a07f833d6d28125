#!/usr/bin/env bash
# `unionfs-cpp import` and `export` against podman: a small image built with several RUN steps
# (one deletes a file of an earlier layer, one removes and recreates a directory), saved as a
# docker-archive and as an oci-archive, imported, mounted with unionfs-cpp: the tree seen through
# the mount (chroot) must be the one `podman run` of the image sees. Then a layer is exported
# (GNU tar lists it, its digest is sha256sum's, re-importing it gives the same layer), archives
# with several images need --image, bad targets are refused, and the progress bar shows only on a
# terminal.
#
# Podman runs as root on a private storage in the test's temp dir (as podman_mount_program.sh);
# podman, runc and busybox come from scripts/install-deps.sh. Exit 77 = podman cannot run here.
source "$(dirname "$0")/lib.sh" "$@"

[[ $(id -u) == 0 ]] || skip "needs root (podman on a private storage, chroot)"
BIN=$(realpath "$UNIONFS_BIN")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

if ! command -v podman >/dev/null || ! command -v runc >/dev/null || [[ ! -x /bin/busybox ]]; then
  echo "podman, runc or busybox missing: running scripts/install-deps.sh"
  timeout 300 "$ROOT/scripts/install-deps.sh" >"$T/deps.log" 2>&1 \
    || skip "scripts/install-deps.sh failed: $(tail -1 "$T/deps.log")"
fi
{ [[ -x /bin/busybox ]] && /bin/busybox true; } 2>/dev/null || skip "no working /bin/busybox"

PODMAN_TIMEOUT=${PODMAN_TIMEOUT:-120}
BASE=localhost/unionfs-import-base
IMG=localhost/unionfs-import-test
mkdir -p "$T/pm"/{graph,run,tmp,net}
printf '[storage]\ndriver = "overlay"\ngraphroot = "%s"\nrunroot = "%s"\n' \
  "$T/pm/graph" "$T/pm/run" >"$T/pm/storage.conf"
printf '[containers]\ndefault_ulimits = []\n[engine]\nevents_logger = "file"\ntmp_dir = "%s"\ncgroup_manager = "cgroupfs"\nruntime = "runc"\n[network]\nnetwork_config_dir = "%s"\n' \
  "$T/pm/tmp" "$T/pm/net" >"$T/pm/containers.conf"

pm() { # podman on the private storage, always with a timeout
  CONTAINERS_STORAGE_CONF=$T/pm/storage.conf CONTAINERS_CONF=$T/pm/containers.conf \
    timeout -k 10 "$PODMAN_TIMEOUT" podman --cgroup-manager=cgroupfs --runtime runc "$@" </dev/null
}

PM_USED=0
podman_cleanup() {
  local rc=$? m
  set +e
  if ((PM_USED)); then
    pm rm -a -f -t 0 >/dev/null 2>&1
    pm image unmount -a -f >/dev/null 2>&1
    pm rmi -a -f >/dev/null 2>&1
  fi
  for m in $(mounts_under "$T/pm" | sort -r); do umount -l "$m" 2>/dev/null; done
  return "$rc"
}
trap 'podman_cleanup; _cleanup' EXIT

info=$(pm info --format '{{.Store.GraphRoot}}' 2>"$T/info.err") || skip "podman info fails here: $(tail -1 "$T/info.err")"
[[ $info == "$T/pm/graph" ]] || die "podman ignores our storage.conf: graphroot $info"
PM_USED=1

# --- the image ----------------------------------------------------------------------------------
R=$T/rootfs
mkdir -p "$R"/{bin,etc,tmp,data/sub,old/deep}
cp /bin/busybox "$R/bin/busybox"
for a in $(/bin/busybox --list); do [[ $a == busybox ]] || ln -s busybox "$R/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' >"$R/etc/passwd"
echo 'root:x:0:' >"$R/etc/group"
echo a >"$R/data/a"
echo s >"$R/data/sub/s"
echo g >"$R/old/deep/g"
chmod 1777 "$R/tmp"
tar --numeric-owner --owner=0 --group=0 -C "$R" -c . >"$T/rootfs.tar"
check "podman import of the base"
pm import "$T/rootfs.tar" "$BASE" >"$T/import.out" 2>&1 || skip "podman import does not work here: $(tail -1 "$T/import.out")"

mkdir -p "$T/ctx"
cat >"$T/ctx/Containerfile" <<EOF
FROM $BASE
RUN mkdir -p /app/conf /victim/inner && echo one >/app/conf/a.conf && echo v1 >/victim/v1 && echo v2 >/victim/inner/v2 && echo del >/app/delme && ln -s conf/a.conf /app/link && echo h >/app/h1 && ln /app/h1 /app/h2 && seq 1 30000 >/app/big && mkfifo /app/fifo && chmod 4755 /app/h1 && chown 1000:100 /app/conf
RUN rm /app/delme /data/a && echo two >>/app/conf/a.conf && chmod 0750 /app/conf && rm -rf /old && dd if=/dev/zero of=/app/zeros bs=4096 count=32 2>/dev/null
RUN rm -rf /victim && mkdir /victim && echo new >/victim/new && rm -rf /data/sub && mkdir /data/sub && echo s2 >/data/sub/s2 && mkdir -p /deep/$(printf 'd%.0s' $(seq 1 120))/$(printf 'e%.0s' $(seq 1 150)) && echo long >/deep/$(printf 'd%.0s' $(seq 1 120))/$(printf 'e%.0s' $(seq 1 150))/file
EOF
check "podman build (4 layers)"
pm build --network none --layers -t "$IMG" -f "$T/ctx/Containerfile" "$T/ctx" >"$T/build.out" 2>&1 \
  || skip "podman build does not work here: $(tail -3 "$T/build.out")"
nlayers=$(pm image inspect --format '{{len .RootFS.Layers}}' "$IMG")
expect_eq "$nlayers" 4 "layers of the built image"

check "podman run: the reference tree"
pm run --rm --network none "$IMG" sh -c "$TREE_MANIFEST_SH" >"$T/ctr.raw" 2>"$T/run.err" \
  || skip "podman run does not work here: $(tail -3 "$T/run.err")"
# Not the image's: podman adds /etc/mtab (a symlink to /proc/mounts) to every container, and the
# root directory is the container layer's own (containers/storage makes it 0555; the layers of the
# image all say 0755). Both are left out on both sides.
drop_runtime() { grep -v -e '^/etc/mtab|' -e '^/|'; }
drop_runtime <"$T/ctr.raw" | fix_manifest >"$T/ctr.manifest"
[[ $(wc -l <"$T/ctr.manifest") -gt 200 ]] || die "short container manifest: $(head -c 500 "$T/ctr.manifest")"

check "podman save, docker-archive and oci-archive"
pm save -o "$T/docker.tar" "$IMG" >"$T/save.out" 2>&1 || die "podman save: $(cat "$T/save.out")"
pm save --format oci-archive -o "$T/oci.tar" "$IMG" >"$T/save.out" 2>&1 || die "podman save oci: $(cat "$T/save.out")"
# OCI layouts with compressed layers: `podman push` to an oci: directory, then tar it.
formats=(docker oci)
for c in gzip zstd; do
  check "podman push --compression-format $c to an OCI layout"
  if pm push --compression-format "$c" "$IMG" "oci:$T/layout-$c:$IMG" >"$T/push.out" 2>&1; then
    grep -rqs "tar+$c" "$T/layout-$c/blobs" || fail "no tar+$c layer in the $c layout"
    tar -C "$T/layout-$c" -cf "$T/oci-$c.tar" .
    formats+=("oci-$c")
  else
    fail "podman push --compression-format $c: $(tail -2 "$T/push.out")"
  fi
done

# --- import, mount, compare -----------------------------------------------------------------------
for fmt in "${formats[@]}"; do
  check "$fmt: import"
  D=$T/imp-$fmt
  if ! "$BIN" import "$T/$fmt.tar" "$D" >"$T/$fmt.stack" 2>"$T/$fmt.err"; then
    fail "$fmt: import failed: $(cat "$T/$fmt.err")"
    continue
  fi
  expect_eq "$(cat "$T/$fmt.stack")" "$(cat "$D/stack")" "$fmt: printed stack = DIR/stack"
  expect_eq "$(find "$D" -mindepth 1 -maxdepth 1 -type d | wc -l)" 4 "$fmt: one directory per layer"
  expect_eq "$(cat "$D/stack")" "$(ls -d "$D"/0* | paste -sd:)" \
    "$fmt: the stack lists the layer directories bottom to top"
  grep -q "mount with" "$T/$fmt.err" || fail "$fmt: no hint on stderr: $(cat "$T/$fmt.err")"

  check "$fmt: the mounted stack shows what podman run shows"
  mkdir -p "$T/$fmt-upper" "$T/$fmt-mnt"
  mount_union "$(cat "$D/stack"):$T/$fmt-upper" "$T/$fmt-mnt"
  timeout 120 chroot "$T/$fmt-mnt" /bin/sh -c "$TREE_MANIFEST_SH" </dev/null | drop_runtime \
    | fix_manifest >"$T/$fmt.manifest"
  unmount_union "$T/$fmt-mnt"
  if ! diff -u "$T/ctr.manifest" "$T/$fmt.manifest" >"$T/$fmt.diff"; then
    fail "$fmt: the imported stack differs from podman run (--- podman, +++ unionfs-cpp):
$(head -c 4000 "$T/$fmt.diff")"
  fi
done

check "docker: markers of the layers in the kernel's format"
D=$T/imp-docker
is_whiteout "$(ls -d "$D"/002-*)/app/delme" || fail "no whiteout for /app/delme in layer 2"
is_whiteout "$(ls -d "$D"/002-*)/old" || fail "no whiteout for /old in layer 2"
expect_eq "$(stat -c %h "$(ls -d "$D"/001-*)/app/h1")" 2 "hard link kept in layer 1"
expect_eq "$(stat -c '%a %u:%g' "$(ls -d "$D"/001-*)/app/conf")" "755 1000:100" "owner of /app/conf in layer 1"

check "import --format oci keeps .wh. files"
"$BIN" import --format oci "$T/docker.tar" "$T/imp-ocifmt" >/dev/null 2>"$T/ocifmt.err" || fail "import --format oci: $(cat "$T/ocifmt.err")"
[[ -f $(ls -d "$T/imp-ocifmt"/002-*)/app/.wh.delme ]] || fail "--format oci: no app/.wh.delme"

# --- export and re-import -------------------------------------------------------------------------
# tree_of DIR: what a layer directory holds, without inode numbers and ctimes.
tree_of() {
  (cd "$1" && find . -printf '%p|%y|%m|%U:%G|%s|%T@|%l|%n\n' | LC_ALL=C sort
   find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum
   getfattr -R -P -d -m - -e hex . 2>/dev/null || true)
}
L2=$(ls -d "$D"/002-*)
check "export of layer 2"
digest=$("$BIN" export "$L2" "$T/layer2.tar" 2>"$T/export.err") || fail "export: $(cat "$T/export.err")"
expect_eq "$digest" "sha256:$(sha256sum "$T/layer2.tar" | cut -d' ' -f1)" "export prints the sha256 of the tar"
tar -tvf "$T/layer2.tar" >"$T/layer2.list" || fail "tar -tvf cannot list the exported layer"
grep -q ' app/.wh.delme$' "$T/layer2.list" || fail "export: no app/.wh.delme entry: $(head -20 "$T/layer2.list")"
grep -q ' .wh.old$' "$T/layer2.list" || fail "export: no .wh.old entry"
"$BIN" export "$L2" "$T/layer2.again.tar" >/dev/null 2>&1
cmp -s "$T/layer2.tar" "$T/layer2.again.tar" || fail "two exports of one layer differ"
L3=$(ls -d "$D"/003-*)
"$BIN" export "$L3" "$T/layer3.tar" >/dev/null 2>"$T/export.err" || fail "export layer 3: $(cat "$T/export.err")"
if [[ -n $(getfattr -n trusted.overlay.opaque --only-values "$L3/victim" 2>/dev/null) ]]; then
  tar -tf "$T/layer3.tar" | grep -qx 'victim/.wh..wh..opq' || fail "export: opaque /victim without its .wh..wh..opq"
fi

check "export then import gives the same layer"
# A one-layer docker-archive around the exported tar.
mkdir -p "$T/re"
cp "$T/layer3.tar" "$T/re/layer.tar"
hex=$(sha256sum "$T/re/layer.tar" | cut -d' ' -f1)
printf '{"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$hex" >"$T/re/config.json"
printf '[{"Config":"config.json","RepoTags":["re:1"],"Layers":["layer.tar"]}]' >"$T/re/manifest.json"
tar -C "$T/re" -cf "$T/re.tar" manifest.json config.json layer.tar
if "$BIN" import "$T/re.tar" "$T/imp-re" >/dev/null 2>"$T/re.err"; then
  tree_of "$L3" >"$T/l3.tree"
  tree_of "$(ls -d "$T/imp-re"/000-*)" >"$T/re.tree"
  diff -u "$T/l3.tree" "$T/re.tree" >"$T/re.diff" || fail "re-imported layer differs: $(head -c 3000 "$T/re.diff")"
else
  fail "re-import of the exported layer: $(cat "$T/re.err")"
fi

# --- several images, bad input, progress ---------------------------------------------------------
check "an archive of two images needs --image"
pm save -m -o "$T/multi.tar" "$BASE" "$IMG" >"$T/save.out" 2>&1 || die "podman save -m: $(cat "$T/save.out")"
st=0
"$BIN" import "$T/multi.tar" "$T/imp-multi" >/dev/null 2>"$T/multi.err" || st=$?
expect_eq "$st" 2 "import of two images without --image: exit status"
grep -q 'choose one with --image' "$T/multi.err" || fail "no --image hint: $(cat "$T/multi.err")"
[[ ! -e $T/imp-multi ]] || fail "a refused import left $T/imp-multi"
"$BIN" import --image unionfs-import-test "$T/multi.tar" "$T/imp-multi" >/dev/null 2>"$T/multi.err" \
  || fail "import --image: $(cat "$T/multi.err")"
expect_eq "$(find "$T/imp-multi" -mindepth 1 -maxdepth 1 -type d | wc -l)" 4 "--image picks the 4-layer image"

check "bad targets and archives"
st=0
"$BIN" import "$T/docker.tar" "$T/imp-docker" >/dev/null 2>"$T/bad.err" || st=$?
expect_eq "$st" 2 "import into a non-empty directory: exit status"
grep -q 'not empty' "$T/bad.err" || fail "no 'not empty' message: $(cat "$T/bad.err")"
head -c 300000 "$T/docker.tar" >"$T/trunc.tar"
st=0
"$BIN" import "$T/trunc.tar" "$T/imp-trunc" >/dev/null 2>"$T/bad.err" || st=$?
expect_eq "$st" 2 "import of a truncated archive: exit status"
grep -q 'truncated' "$T/bad.err" || fail "no 'truncated' message: $(cat "$T/bad.err")"
[[ -z $(ls -A "$T" | grep -e '^imp-trunc' -e 'import-tmp') ]] || fail "a failed import left files: $(ls -A "$T")"
mkdir "$T/a:b" && ln -s "$T/a:b" "$T/ab"  # a ':' reached through a symlink
st=0
"$BIN" import "$T/docker.tar" "$T/ab/imp" >/dev/null 2>"$T/bad.err" || st=$?
expect_eq "$st" 2 "import below a path with ':' (through a symlink): exit status"
grep -q 'separates layers' "$T/bad.err" || fail "no 'separates layers' message: $(cat "$T/bad.err")"
[[ -z $(ls -A "$T/a:b") ]] || fail "a refused import left files: $(ls -A "$T/a:b")"
mkfifo "$T/fifo.tar"  # no writer: opening it must not hang
st=0
timeout 20 "$BIN" import "$T/fifo.tar" "$T/imp-fifo" >/dev/null 2>"$T/bad.err" || st=$?
expect_eq "$st" 2 "import of a FIFO: exit status"
grep -q 'not a regular file' "$T/bad.err" || fail "no 'not a regular file' message: $(cat "$T/bad.err")"

check "progress bar only on a terminal"
script -qec "$BIN import $T/docker.tar $T/imp-tty" /dev/null >"$T/tty.out" 2>&1 || fail "import on a pty: $(tail -3 "$T/tty.out")"
grep -q 'importing \[' "$T/tty.out" || fail "no progress bar on a terminal: $(head -c 300 "$T/tty.out")"
grep -q 'importing \[' "$T/docker.err" && fail "progress bar written to a file"
script -qec "$BIN export $L2 $T/tty.tar" /dev/null >"$T/tty.out" 2>&1 || fail "export on a pty"
grep -q 'exporting \[' "$T/tty.out" || fail "no export progress bar on a terminal: $(head -c 300 "$T/tty.out")"

finish
