#!/usr/bin/env bash
# Volumes: --volume HOST_DIR:PATH bind-mounts a host directory over PATH inside the mount, as
# Docker does, so writes there bypass the union; bad volumes fail cleanly with nothing mounted;
# SIGTERM and `umount -R` take everything down.
source "$(dirname "$0")/lib.sh" "$@"

skip_on_kernel && skip "volumes are a unionfs-cpp feature"
[[ $(id -u) == 0 ]] || skip "bind mounts need root"

new_stack vol 1
mkdir -p "${L[0]}/var/log" "$T/host" "$T/host2"
echo "lower log" >"${L[0]}/var/log/app.log"
echo "a file" >"${L[0]}/afile"
save_lowers

check "bad volumes exit 2 with one line and mount nothing"
for spec in "$T/missing:/x" "$T/host:../x" "$T/host:/" "$T/host:/afile" "$T/host"; do
  st=0
  out=$("$UNIONFS_BIN" -v "$spec" "$(stack_spec)" "$M" 2>&1) || st=$?
  expect_eq "$st" 2 "exit status for --volume $spec"
  [[ $out == "unionfs-cpp: "* && $(wc -l <<<"$out") == 1 ]] || fail "message for $spec: $out"
  [[ -z $(mounts_under "$M") ]] || { fail "something is mounted after --volume $spec"; _unmount_one "$M"; }
done

check "in the background, the command returns with the volumes mounted"
"$UNIONFS_BIN" -v "$T/host:/var/log" --volume "$T/host2:/data/new" "$(stack_spec)" "$M"
_MOUNTS+=("$M"); _MPIDS+=("")
expect_eq "$(mounts_under "$M" | wc -l)" 3 "mounts under $M"
check "writes under a volume land in the host directory, not in the upper layer"
echo "entry" >>"$M/var/log/service.log"
expect_file "$T/host/service.log" "entry" "host copy"
expect_absent "$U/var/log/service.log" "upper copy"
[[ ! -e $M/var/log/app.log ]] || fail "the volume should hide the lower var/log"
check "a missing PATH is created in the upper layer"
[[ -d $U/data/new ]] || fail "upper has no data/new"
echo x >"$M/data/new/f"
expect_file "$T/host2/f" "x" "second volume"
check "umount -R takes the volumes and the mount down, and the daemon exits"
cd /
timeout 10 umount -R "$M" || fail "umount -R failed"
[[ -z $(mounts_under "$M") ]] || fail "mounts left: $(mounts_under "$M")"
for _ in $(seq 50); do pgrep -f -- "-v $T/host:/var/log" >/dev/null || break; sleep 0.1; done
pgrep -f -- "-v $T/host:/var/log" >/dev/null && fail "daemon still running after umount -R"

check "in the foreground, SIGTERM unmounts the volumes and the mount and exits 0"
"$UNIONFS_BIN" -f -v "$T/host:/var/log" "$(stack_spec)" "$M" &
pid=$!
track_pid "$pid"
for _ in $(seq 100); do [[ $(mounts_under "$M" | wc -l) == 2 ]] && break; sleep 0.05; done
expect_eq "$(mounts_under "$M" | wc -l)" 2 "mounts under $M"
kill -TERM "$pid"
st=0
timeout 10 tail --pid="$pid" -f /dev/null || true
wait "$pid" || st=$?
expect_eq "$st" 0 "exit status after SIGTERM"
[[ -z $(mounts_under "$M") ]] || fail "mounts left after SIGTERM: $(mounts_under "$M")"
check_lowers
finish
