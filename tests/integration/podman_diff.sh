#!/usr/bin/env bash
# `unionfs-cpp diff` against `podman diff` on the same container: a tiny busybox image, a
# container that adds, changes and deletes files (an image file, a whole directory, a
# directory replaced by a new one), then both change lists of its overlay layers, which must be
# equal apart from the paths podman leaves out of its own diff (the runtime's mount points).
# Needs root (podman's default storage); installs podman and runc if missing; exit 77 = skip.
set -Eeuo pipefail

BIN=${UNIONFS_BIN:-${1:-}}
SKIP=77
skip() { printf 'SKIP: podman_diff: %s\n' "$*"; exit "$SKIP"; }
die() { printf 'FAIL: podman_diff: %s\n' "$*" >&2; exit 1; }

[[ -x $BIN ]] || die "daemon not executable: '$BIN' (pass it or set UNIONFS_BIN)"
[[ $(id -u) == 0 ]] || skip "needs root for podman's default storage"

if ! command -v podman >/dev/null || ! command -v runc >/dev/null || [[ ! -x /bin/busybox ]]; then
  echo "installing podman, runc and busybox-static"
  DEBIAN_FRONTEND=noninteractive timeout 150 apt-get install -y -q podman runc busybox-static \
    >/dev/null 2>&1 || skip "apt-get install podman runc busybox-static failed"
fi
file /bin/busybox 2>/dev/null | grep -q 'statically linked' || [[ -x /bin/busybox ]] \
  || skip "no /bin/busybox"

T=$(mktemp -d "${TMPDIR:-/tmp}/unionfs-podman_diff.XXXXXX")
IMAGE=localhost/unionfs-cpp-diff-test-$$
CTR=unionfs-cpp-diff-test-$$
export CONTAINERS_CONF=$T/containers.conf
printf '[containers]\ndefault_ulimits = []\n[engine]\nevents_logger = "file"\n' >"$CONTAINERS_CONF"
PODMAN=(timeout 60 podman --storage-driver overlay --cgroup-manager=cgroupfs --runtime runc)

cleanup() {
  local rc=$?
  set +e
  "${PODMAN[@]}" rm -f "$CTR" >/dev/null 2>&1
  "${PODMAN[@]}" rmi -f "$IMAGE" >/dev/null 2>&1
  rm -rf "$T"
  exit "$rc"
}
trap cleanup EXIT

# The image: busybox and its applets, a few files and directories to change.
R=$T/rootfs
mkdir -p "$R"/{bin,etc,data/sub,data/keepdir,gone/deep,keep}
cp /bin/busybox "$R/bin/busybox"
for a in sh echo rm mkdir chmod cat ln mv touch; do ln -s busybox "$R/bin/$a"; done
echo 'root:x:0:0:root:/:/bin/sh' >"$R/etc/passwd"
echo a >"$R/data/a"
echo m >"$R/data/m"
echo b >"$R/data/sub/b"
echo o >"$R/data/sub/old"
echo k >"$R/data/keepdir/k"
echo g >"$R/gone/deep/g"
echo k >"$R/keep/k"
tar -C "$R" -c . | "${PODMAN[@]}" import - "$IMAGE" >/dev/null 2>"$T/import.err" \
  || skip "podman import failed here: $(tail -1 "$T/import.err")"

script='
echo new >/newfile
echo more >>/etc/passwd
rm /data/a
mv /data/m /data/m2
rm -rf /gone
rm -rf /data/sub && mkdir /data/sub && echo c >/data/sub/c && echo b2 >/data/sub/b
echo k2 >/data/keepdir/k
mkdir -p /nd/x && echo y >/nd/x/y
ln -s /newfile /data/link
chmod 700 /keep
'
"${PODMAN[@]}" run --name "$CTR" --network none "$IMAGE" sh -c "$script" >"$T/run.out" 2>&1 \
  || skip "podman run does not work here: $(tail -1 "$T/run.out")"

upper=$("${PODMAN[@]}" inspect --format '{{.GraphDriver.Data.UpperDir}}' "$CTR")
lower=$("${PODMAN[@]}" inspect --format '{{.GraphDriver.Data.LowerDir}}' "$CTR")
[[ -d $upper && -n $lower ]] || die "no overlay layer dirs for the container ('$lower' / '$upper')"
# LowerDir lists the top layer first; unionfs-cpp takes the bottom first.
IFS=: read -r -a lowers <<<"$lower"
spec=""
for ((i = ${#lowers[@]} - 1; i >= 0; i--)); do spec+=${lowers[i]}:; done
spec+=$upper

"${PODMAN[@]}" container diff "$CTR" | LC_ALL=C sort >"$T/podman.txt"
# podman leaves out the runtime's own paths (libpod/diff.go initInodes); the mount points
# /dev /proc /sys /run and the files it bind-mounts are in the upper all the same.
excl=()
for p in /dev /proc /sys /run /run/.containerenv /run/secrets /run/notify /run/podman-init \
  /etc/hostname /etc/hosts /etc/resolv.conf /etc/mtab; do
  excl+=(--exclude "$p")
done
"$BIN" diff "${excl[@]}" "$spec" >"$T/ours.txt"

fails=0
cut -c3- "$T/ours.txt" | LC_ALL=C sort -c || { echo "FAIL: diff output is not sorted by path" >&2; fails=1; }
if ! LC_ALL=C sort "$T/ours.txt" | diff -u "$T/podman.txt" - >"$T/d"; then
  echo "FAIL: unionfs-cpp diff differs from podman diff:" >&2
  cat "$T/d" >&2
  fails=1
fi
for want in 'C /etc/passwd' 'D /gone' 'D /data/sub' 'A /data/sub/c' 'A /newfile' 'D /data/a'; do
  grep -qxF "$want" "$T/ours.txt" || { echo "FAIL: '$want' missing" >&2; fails=1; }
done

# JSON: the same sets as podman's own JSON.
"${PODMAN[@]}" container diff --format json "$CTR" >"$T/podman.json"
"$BIN" diff --format json "${excl[@]}" "$spec" >"$T/ours.json"
python3 - "$T/podman.json" "$T/ours.json" <<'EOF' || fails=1
import json, sys
p, o = (json.load(open(f)) for f in sys.argv[1:3])
for k in ("changed", "added", "deleted"):
    if sorted(p.get(k) or []) != sorted(o.get(k) or []):
        print(f"FAIL: json {k}: podman {sorted(p.get(k) or [])} ours {sorted(o.get(k) or [])}", file=sys.stderr)
        sys.exit(1)
EOF

# The layer table of the same stack parses and counts every layer.
"$BIN" layers --format json "$spec" >"$T/layers.json"
python3 - "$T/layers.json" $((${#lowers[@]} + 1)) <<'EOF' || fails=1
import json, sys
t = json.load(open(sys.argv[1]))
depth = int(sys.argv[2])
assert t["total"]["depth"] == depth == len(t["layers"]), t["total"]
assert t["layers"][0]["whiteouts"] >= 2, t["layers"][0]
assert t["total"]["wasted"] > 0 and t["total"]["visible"] + t["total"]["wasted"] == t["total"]["on_disk"]
EOF

((fails == 0)) || exit 1
echo "podman_diff: $(wc -l <"$T/ours.txt") changes, equal to podman diff"
