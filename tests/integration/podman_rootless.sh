#!/usr/bin/env bash
# Rootless podman with unionfs-cpp as containers/storage's overlay mount_program, compared with
# fuse-overlayfs in the same slot. Two private storages of one unprivileged user (graphroot,
# runroot, XDG_RUNTIME_DIR, storage.conf and containers.conf in our temp dir):
#   ref:  mount_program = fuse-overlayfs;
#   ours: mount_program = a wrapper that logs its argv and runs the daemon.
# Podman runs the mount program inside the user's user namespace (uid 0 there). The same image is
# imported into both, and the same containers run: once with the user namespace podman sets up by
# default (no id options), once with --uidmap/--gidmap, for which containers/storage passes
# uidmapping=/gidmapping= to the mount program. What the containers print and the owners stored
# in their upper directories must be the same as with fuse-overlayfs.
#
# Needs root, podman, runc, uidmap, acl, fuse-overlayfs and busybox-static; exit 77 = cannot run
# here. It runs as UNIONFS_ROOTLESS_USER (default unionfs-rl), with /etc/subuid and /etc/subgid
# entries: if that user does not exist the test creates it (`useradd -m` adds the entries) and
# removes it at exit. If the user cannot open /dev/fuse (udev's usual mode is 0666; some VMs
# have 0600), the test grants it read-write with an ACL entry for that user alone, removed at exit.
# ROOTLESS_KEEP=DIR keeps what the containers printed and stored.
source "$(dirname "$0")/lib.sh" "$@"

skip_on_kernel && skip "this compares mount programs"
[[ $(id -u) == 0 ]] || skip "needs root (to run podman as another user)"
RL_USER=${UNIONFS_ROOTLESS_USER:-unionfs-rl}
for c in podman runc newuidmap fuse-overlayfs runuser setfacl useradd; do
  command -v "$c" >/dev/null || skip "$c missing"
done
[[ -x /bin/busybox ]] || skip "no /bin/busybox (busybox-static)"

# The user and its /dev/fuse access, made here if missing and undone at exit (see the header).
RL_MADE_USER=0
RL_MADE_ACL=0
rootless_unsetup() {
  local rc=$?  # the test's status, for _cleanup
  ((RL_MADE_ACL)) && setfacl -x "u:$RL_USER" /dev/fuse 2>/dev/null
  ((RL_MADE_USER)) && userdel -r "$RL_USER" >/dev/null 2>&1
  return "$rc"
}
if ! id "$RL_USER" >/dev/null 2>&1; then
  useradd -m "$RL_USER" || skip "cannot create the user $RL_USER"
  RL_MADE_USER=1
fi
trap 'rootless_unsetup; _cleanup' EXIT
grep -q "^$RL_USER:" /etc/subuid && grep -q "^$RL_USER:" /etc/subgid \
  || skip "$RL_USER has no /etc/subuid and /etc/subgid entries"
if ! runuser -u "$RL_USER" -- test -r /dev/fuse -a -w /dev/fuse; then
  setfacl -m "u:$RL_USER:rw" /dev/fuse \
    || skip "$RL_USER cannot open /dev/fuse (mode $(stat -c %a /dev/fuse)) and setfacl fails"
  RL_MADE_ACL=1
  runuser -u "$RL_USER" -- test -r /dev/fuse -a -w /dev/fuse || skip "$RL_USER still cannot open /dev/fuse"
fi

PODMAN_TIMEOUT=${PODMAN_TIMEOUT:-120}
KINDS=(ref ours)
chmod 755 "$T"
W=$T/w  # everything the user writes
install -d -o "$RL_USER" -g "$RL_USER" -m 755 "$W" "$W/bin"
install -o "$RL_USER" -m 755 "$(realpath "$UNIONFS_BIN")" "$W/bin/unionfs-cpp"
MP_LOG=$W/mount_program.log
cat >"$W/bin/mp" <<EOF
#!/bin/bash
{ printf 'argv:'; printf ' [%s]' "\$@"; printf '\n'; } >>"$MP_LOG"
"$W/bin/unionfs-cpp" "\$@" 2>>"$MP_LOG"
rc=\$?
echo "exit: \$rc" >>"$MP_LOG"
exit \$rc
EOF
chmod 755 "$W/bin/mp"

for k in "${KINDS[@]}"; do
  mkdir -p "$W/$k"/{graph,run,tmp,net,xdg}
  mp=$W/bin/mp
  [[ $k == ref ]] && mp=$(command -v fuse-overlayfs)
  printf '[storage]\ndriver = "overlay"\ngraphroot = "%s"\nrunroot = "%s"\nrootless_storage_path = "%s"\n[storage.options.overlay]\nmount_program = "%s"\n' \
    "$W/$k/graph" "$W/$k/run" "$W/$k/graph" "$mp" >"$W/$k/storage.conf"
  printf '[containers]\ndefault_ulimits = []\n[engine]\nevents_logger = "file"\ntmp_dir = "%s"\ncgroup_manager = "cgroupfs"\nruntime = "runc"\n[network]\nnetwork_config_dir = "%s"\n' \
    "$W/$k/tmp" "$W/$k/net" >"$W/$k/containers.conf"
done
chown -R "$RL_USER:" "$W"
chmod 700 "$W"/*/xdg

# pm KIND ARGS...: rootless podman on that private storage, with a timeout.
pm() {
  local k=$1
  shift
  (cd / && runuser -u "$RL_USER" -- env XDG_RUNTIME_DIR="$W/$k/xdg" HOME="$W/$k" \
    CONTAINERS_STORAGE_CONF="$W/$k/storage.conf" CONTAINERS_CONF="$W/$k/containers.conf" \
    timeout -k 10 "$PODMAN_TIMEOUT" podman --cgroup-manager=cgroupfs --runtime runc "$@" </dev/null)
}

rootless_cleanup() {
  local rc=$? k p m
  trap - ERR
  set +e
  for k in "${KINDS[@]}"; do
    pm "$k" rm -a -f -t 0 >/dev/null 2>&1
    pm "$k" rmi -a -f >/dev/null 2>&1
    # The pause process that holds this storage's user namespace (in the engine's tmp_dir).
    p=$(cat "$W/$k/tmp/pause.pid" 2>/dev/null)
    [[ -n $p ]] && kill -KILL "$p" 2>/dev/null
  done
  for m in $(mounts_under "$T" | sort -r); do
    echo "cleanup: lazy-unmounting leftover $m" >&2
    umount -l "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null
  done
  return "$rc"
}
trap 'rootless_cleanup; rootless_unsetup; _cleanup' EXIT

for k in "${KINDS[@]}"; do
  info=$(pm "$k" info --format '{{.Host.Security.Rootless}} {{.Store.GraphRoot}}' 2>"$W/$k/info.err") \
    || skip "rootless podman info fails here: $(grep -v 'shared mount' "$W/$k/info.err" | tail -1)"
  [[ $info == "true $W/$k/graph" ]] || die "podman does not use our rootless storage: $info"
done

# --- the image: busybox and a few files of various owners ------------------------------------
R=$T/rootfs
mkdir -p "$R"/{bin,etc,tmp,root,data/sub}
cp /bin/busybox "$R/bin/busybox"
for a in $(/bin/busybox --list); do [[ $a == busybox ]] || ln -s busybox "$R/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\nu:x:1000:1000::/tmp:/bin/sh\n' >"$R/etc/passwd"
printf 'root:x:0:\nu:x:1000:\n' >"$R/etc/group"
echo a >"$R/data/a"
echo s >"$R/data/sub/s"
chown 100:200 "$R/data/sub/s"
chown 1000:1000 "$R/data/sub"
chmod 1777 "$R/tmp"
tar --numeric-owner -C "$R" -c . >"$T/rootfs.tar"
chmod 644 "$T/rootfs.tar"

for k in "${KINDS[@]}"; do
  check "$k: podman import, as $RL_USER"
  pm "$k" import "$T/rootfs.tar" localhost/rl-base >"$W/$k/import.out" 2>&1 \
    || die "podman import fails ($k): $(tail -3 "$W/$k/import.out")"
done

# What each container runs: owners as the container sees them, then writes as root and as
# another user, chown, and the owners again.
SCRIPT='ls -ln / /data /data/sub | grep -v -e " dev$" -e " proc$" -e " sys$" -e "^total" | awk "{print \$1, \$3, \$4, \$NF}"
echo new >/data/new && mkdir /data/d && chown 1000:1000 /data/d && chown 5:6 /data/a && echo more >>/data/sub/s
su -s /bin/sh u -c "echo u >/tmp/by1000 && mkdir /tmp/d1000"
echo "writes: $?"
ls -ln /data /tmp | grep -v "^total" | awk "{print \$1, \$3, \$4, \$NF}"'

# run_case NAME PODMAN-RUN-OPTIONS...: the same container in both storages; compares what it
# printed and the owners stored in its upper directory.
run_case() {
  local name=$1 k up
  shift
  check "$name: same output and stored owners as fuse-overlayfs"
  for k in "${KINDS[@]}"; do
    pm "$k" run --name "c_$name" --net=none "$@" localhost/rl-base sh -c "$SCRIPT" \
      >"$W/$k/$name.out" 2>"$W/$k/$name.err" \
      || { dump_log; fail "$name: podman run fails ($k): $(grep -v 'shared mount' "$W/$k/$name.err" | tail -3)"; return; }
    up=$(pm "$k" inspect "c_$name" --format '{{.GraphDriver.Data.UpperDir}}' 2>/dev/null)
    [[ -d $up ]] || { fail "$name: no upper directory for $k: '$up'"; return; }
    (cd "$up" && find . -printf '%p %U:%G %y\n' | grep -v '/\.wh\.' | LC_ALL=C sort) >"$W/$k/$name.stored"
    pm "$k" rm "c_$name" >/dev/null 2>&1 || fail "$name: podman rm fails ($k)"
  done
  local what
  [[ -z ${ROOTLESS_KEEP:-} ]] || cp "$W"/*/"$name".* "$ROOTLESS_KEEP/" 2>/dev/null || true
  for what in out stored; do
    diff -u "$W/ref/$name.$what" "$W/ours/$name.$what" >"$T/$name.$what.diff" \
      || fail "$name: $what differs from fuse-overlayfs (-ref +ours): $(head -c 3000 "$T/$name.$what.diff")"
  done
}

dump_log() { tail -n 20 "$MP_LOG" >&2 2>/dev/null || true; }

run_case default
run_case uidmap --uidmap 0:1:2000 --gidmap 0:1:2000
grep -q 'uidmapping=' "$MP_LOG" || fail "containers/storage passed no uidmapping= to the mount program"
check "no mount program is left running and nothing stays mounted"
sleep 0.5
[[ -z $(mounts_under "$W") ]] || fail "still mounted: $(mounts_under "$W")"
pgrep -f "$W/bin/unionfs-cpp" >/dev/null && fail "a daemon is still running: $(pgrep -af "$W/bin/unionfs-cpp")"
finish
