# Shared helpers for the integration scripts: a private temp dir, layer builders, mounts with
# timeouts, and an EXIT trap that always unmounts and kills only the processes this script started.
# Source it first thing: `source "$(dirname "$0")/lib.sh" "$@"`.
#
# The daemon is found in $UNIONFS_BIN or as the first argument. UNIONFS_IMPL=kernel runs the same
# script against kernel overlayfs instead (root only), to check the expectations against the
# reference; options the kernel does not have make the check call `skip_on_kernel`.
set -Eeuo pipefail
shopt -s inherit_errexit

UNIONFS_BIN=${UNIONFS_BIN:-${1:-}}
UNIONFS_IMPL=${UNIONFS_IMPL:-fuse}
MOUNT_TIMEOUT=${MOUNT_TIMEOUT:-15}
UMOUNT_TIMEOUT=${UMOUNT_TIMEOUT:-10}
SKIP_CODE=77
# The system python starts in 50 ms; a pyenv shim can take a second per call.
PYTHON=${PYTHON:-$(command -v /usr/bin/python3 || command -v python3)}
TEST_NAME=$(basename "$0" .sh)

_MOUNTS=()   # every mount point this script mounted (empty string once unmounted)
_MPIDS=()    # daemon pid per mount point ("" for daemonized or kernel mounts)
_PIDS=()     # other background pids we started (stress writers)
_FAILS=0
_CHECKS=0

skip() { printf 'SKIP: %s: %s\n' "$TEST_NAME" "$*"; exit "$SKIP_CODE"; }
die() { printf 'FAIL: %s: %s\n' "$TEST_NAME" "$*" >&2; exit 1; }
# Record a failed expectation and go on, so one run lists every failure.
fail() { printf 'FAIL: %s\n' "$*" >&2; _FAILS=$((_FAILS + 1)); }
check() { _CHECKS=$((_CHECKS + 1)); printf -- '-- %s\n' "$*"; }
ok() { :; }

if [[ $UNIONFS_IMPL == fuse ]]; then
  [[ -n $UNIONFS_BIN ]] || die "set UNIONFS_BIN or pass the daemon path as the first argument"
  [[ -x $UNIONFS_BIN ]] || die "daemon not executable: $UNIONFS_BIN"
  [[ -c /dev/fuse ]] || skip "/dev/fuse missing"
  command -v fusermount3 >/dev/null || skip "fusermount3 missing"
else
  [[ $(id -u) == 0 ]] || skip "kernel overlayfs reference needs root"
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/unionfs-${TEST_NAME}.XXXXXX")
T=$(realpath "$T")

is_mounted() { # MNT
  awk -v m="$1" '$2 == m { f = 1 } END { exit !f }' /proc/mounts
}

mounts_under() { # DIR: print mount points at or below DIR
  awk -v d="$1" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/mounts
}

_unmount_one() { # MNT: polite unmount, then lazy; returns 0 if it is gone
  local mnt=$1
  if [[ $UNIONFS_IMPL == kernel || $(awk -v m="$mnt" '$2 == m { t = $3 } END { print t }' /proc/mounts) != fuse* ]]; then
    timeout "$UMOUNT_TIMEOUT" umount "$mnt" 2>/dev/null || timeout "$UMOUNT_TIMEOUT" umount -l "$mnt" || true
  else
    timeout "$UMOUNT_TIMEOUT" fusermount3 -u "$mnt" 2>/dev/null \
      || timeout "$UMOUNT_TIMEOUT" fusermount3 -uz "$mnt" || true
  fi
  ! is_mounted "$mnt"
}

_stop_pid() { # PID: wait for our child to exit, TERM then KILL it if it lingers
  local pid=$1 i
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    sleep 0.5
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null
}

_cleanup() {
  local rc=$? i
  trap - ERR
  set +e
  cd /
  for pid in "${_PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  done
  for ((i = ${#_MOUNTS[@]} - 1; i >= 0; i--)); do
    [[ -n ${_MOUNTS[i]} ]] || continue
    if is_mounted "${_MOUNTS[i]}"; then
      echo "cleanup: unmounting ${_MOUNTS[i]}" >&2
      _unmount_one "${_MOUNTS[i]}"
    fi
    [[ -n ${_MPIDS[i]} ]] && _stop_pid "${_MPIDS[i]}"
  done
  local left
  left=$(mounts_under "$T")
  if [[ -n $left ]]; then
    echo "FAIL: still mounted after cleanup, leaving $T in place: $left" >&2
    rc=1
  else
    rm -rf "$T"
  fi
  if ((rc == 0 && _FAILS > 0)); then rc=1; fi
  exit "$rc"
}
trap _cleanup EXIT
trap 'printf "FAIL: %s: line %s: command failed (status %s): %s\n" "$TEST_NAME" "$LINENO" "$?" "$BASH_COMMAND" >&2' ERR
trap 'exit 130' INT TERM

# Print the summary; the EXIT trap turns recorded failures into a non-zero status.
finish() {
  if ((_FAILS > 0)); then
    printf '%s: %d checks, %d failed\n' "$TEST_NAME" "$_CHECKS" "$_FAILS"
  else
    printf '%s: %d checks, all passed\n' "$TEST_NAME" "$_CHECKS"
  fi
}

skip_on_kernel() { [[ $UNIONFS_IMPL == kernel ]]; }

# mount_union [-o OPTS] LAYERS MNT — LAYERS bottom:...:upper as the daemon takes them. Runs the
# daemon in the foreground as our own background child (so we know its pid), waits until the mount
# appears in /proc/mounts, and dies with the daemon's log if it exits or times out first.
mount_union() {
  local args=("$@") mnt layers opts=""
  mnt=${args[-1]}
  layers=${args[-2]}
  if [[ ${args[0]} == -o ]]; then opts=${args[1]}; fi
  local log="$T/daemon.${#_MOUNTS[@]}.log"
  if [[ $UNIONFS_IMPL == kernel ]]; then
    _kernel_mount "$opts" "$layers" "$mnt"
    _MOUNTS+=("$mnt"); _MPIDS+=("")
    return
  fi
  "$UNIONFS_BIN" -f "$@" >"$log" 2>&1 &
  local pid=$!
  _MOUNTS+=("$mnt"); _MPIDS+=("$pid")
  local deadline=$((SECONDS + MOUNT_TIMEOUT))
  until is_mounted "$mnt"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      local st=0
      wait "$pid" || st=$?
      cat "$log" >&2
      die "daemon exited with status $st before $mnt was mounted (args: $*)"
    fi
    ((SECONDS < deadline)) || { cat "$log" >&2; die "timeout: $mnt not mounted after ${MOUNT_TIMEOUT}s"; }
    sleep 0.05
  done
}

_kernel_mount() { # OPTS LAYERS MNT: translate to overlayfs (lowerdir is listed top first)
  local opts=$1 layers=$2 mnt=$3 IFS=:
  local parts=($layers) lower="" i
  local upper=${parts[-1]}
  for ((i = ${#parts[@]} - 2; i >= 0; i--)); do lower+=${lower:+:}${parts[i]}; done
  local work="$T/work.${#_MOUNTS[@]}"
  mkdir -p "$work"
  local o="lowerdir=$lower,upperdir=$upper,workdir=$work"
  [[ ,$opts, == *,ro,* ]] && o="lowerdir=$upper:$lower"
  timeout "$MOUNT_TIMEOUT" mount -t overlay overlay -o "$o" "$mnt" || die "kernel overlay mount failed: $o"
  [[ ,$opts, == *,ro,* ]] && mount -o remount,ro "$mnt" 2>/dev/null
  return 0
}

# unmount_union MNT — unmount (polite, then lazy), wait for our daemon, check it exited with 0.
unmount_union() {
  local mnt=$1 i
  cd /
  for ((i = 0; i < ${#_MOUNTS[@]}; i++)); do [[ ${_MOUNTS[i]} == "$mnt" ]] && break; done
  if ! _unmount_one "$mnt"; then fail "could not unmount $mnt"; return; fi
  if ((i < ${#_MOUNTS[@]})); then
    local pid=${_MPIDS[i]} st=0
    _MOUNTS[i]=""
    if [[ -n $pid ]]; then
      _stop_pid "$pid" || st=$?
      ((st == 0)) || { fail "daemon for $mnt exited with status $st after unmount"; cat "$T/daemon.$i.log" >&2; }
    fi
  fi
}

track_pid() { _PIDS+=("$1"); }

# --- layers ----------------------------------------------------------------------------------

# new_stack NAME NLOWERS: creates $T/NAME/{l1..lN,upper,mnt}; sets L (array of lowers), U, M, S.
new_stack() {
  local name=$1 n=${2:-1} i
  S="$T/$name"
  mkdir -p "$S/mnt" "$S/upper"
  L=()
  for ((i = 1; i <= n; i++)); do mkdir -p "$S/l$i"; L+=("$S/l$i"); done
  U="$S/upper"
  M="$S/mnt"
}

stack_spec() { local IFS=:; echo "${L[*]}:$U"; }

# FOPEN_NOFLUSH: closing a file opened read-only (also by O_CREAT) sends no FLUSH, closing a
# written one does. Counts FLUSH requests in the -d log of a daemon mounted with -s -d on $M
# over a stack whose bottom layer holds f ("lower"). Skips on kernels before 5.16.
check_noflush() { # LOG
  local log=$1 v maj min
  v=$(uname -r); maj=${v%%.*}; v=${v#*.}; min=${v%%[!0-9]*}
  if ((maj < 5 || (maj == 5 && min < 16))); then
    echo "(FLUSH check skipped: FOPEN_NOFLUSH needs Linux 5.16, this is $(uname -r))"
    return
  fi
  flushes() { grep -ac 'opcode: FLUSH' "$log" || true; }
  local i
  for i in 1 2 3; do expect_file "$M/f" lower "f read through the mount ($i)"; done
  "$PYTHON" -c 'import os, sys; os.close(os.open(sys.argv[1], os.O_RDONLY | os.O_CREAT, 0o644))' \
    "$M/created" || fail "create of $M/created"
  expect_eq "$(flushes)" 0 "FLUSH requests after three read-only opens and a read-only create"
  echo more >>"$M/f"
  (($(flushes) >= 1)) || fail "no FLUSH at the close of a file opened for writing"
  expect_file "$M/f" "$(printf 'lower\nmore')" "f after the append"
}

mk_whiteout() { mknod "$1" c 0 0; }                       # kernel form
mk_oci_whiteout() { : >"$(dirname "$1")/.wh.$(basename "$1")"; }
mk_oci_opaque() { : >"$1/.wh..wh..opq"; }
mk_opaque() { setfattr -n trusted.overlay.opaque -v y "$1"; }
mk_user_opaque() { setfattr -n user.overlay.opaque -v y "$1"; }

# snapshot DIR: names, types, modes, owners, sizes, mtimes, ctimes, link targets, inode numbers,
# content hashes and xattrs: anything that writing through the mount could change.
snapshot() {
  (
    cd "$1"
    find . -printf '%p|%y|%m|%U:%G|%s|%T@|%C@|%l|%i|%n\n' | LC_ALL=C sort
    find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum
    getfattr -R -P -d -m - -e hex . 2>/dev/null || true
  )
}

# save_lowers / check_lowers: the lower layers of the current stack must be byte-identical.
save_lowers() {
  local l
  for l in "${L[@]}"; do snapshot "$l" >"$l.snap"; done
}
check_lowers() {
  local l
  for l in "${L[@]}"; do
    if ! snapshot "$l" | diff -u "$l.snap" - >"$l.diff"; then
      fail "lower layer $l changed: $(head -c 2000 "$l.diff")"
    fi
  done
}

# --- expectations ----------------------------------------------------------------------------

# py_errno 'python statement' → prints OK or the errno name (ENOENT, EXDEV...).
py_errno() {
  "$PYTHON" -c "
import os, errno, sys
try:
    $1
    print('OK')
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))
"
}

expect_errno() { # EXPECTED 'python statement' DESCRIPTION
  local got
  got=$(py_errno "$2")
  [[ $got == "$1" ]] || fail "$3: expected $1, got $got (from: $2)"
}

expect_eq() { # ACTUAL EXPECTED DESCRIPTION
  [[ $1 == "$2" ]] || fail "$3: expected '$2', got '$1'"
}

expect_file() { # PATH CONTENT DESCRIPTION
  local got
  if ! got=$(cat "$1" 2>&1); then fail "$3: cannot read $1: $got"; return; fi
  [[ $got == "$2" ]] || fail "$3: $1 contains '$got', expected '$2'"
}

expect_absent() { # PATH DESCRIPTION
  local got
  got=$(py_errno "os.lstat('$1')")
  [[ $got == ENOENT ]] || fail "$2: lstat $1 gave $got, expected ENOENT"
}

expect_listing() { # DIR "sorted names, space separated" DESCRIPTION
  local got
  got=$(ls -A "$1" 2>&1 | LC_ALL=C sort | tr '\n' ' ' | sed 's/ $//') || true
  [[ $got == "$2" ]] || fail "$3: ls -A $1 = '$got', expected '$2'"
}

is_whiteout() { # PATH in a layer: char device 0/0
  [[ -c $1 ]] && [[ $(stat -c '%t:%T' "$1") == 0:0 ]]
}

# --- trees seen from inside a root file system --------------------------------------------------

# TREE_MANIFEST_SH, run by busybox sh inside a root file system (a container, a chroot into a
# mount): every path but the runtime's mounts and files, sorted: type, mode, owner; for
# non-directories the link count and an inode number when it is above 1 (replaced by the first
# name of its hard-link group by fix_manifest); sizes and md5 of files, link targets. Not for
# directories: their size is the layer file system's and overlayfs counts a merged directory's
# links as 1.
TREE_MANIFEST_SH='
find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /run \) -prune -o -print \
  | grep -vxE "/etc/(hostname|hosts|resolv.conf)" | LC_ALL=C sort | while IFS= read -r p; do
  if [ -L "$p" ]; then
    echo "$(stat -c "%n|%F|%a|%u:%g|%h" "$p")|-> $(readlink "$p")"
  elif [ -d "$p" ]; then
    stat -c "%n|%F|%a|%u:%g" "$p"
  elif [ -f "$p" ]; then
    echo "$(stat -c "%n|%F|%a|%u:%g|%h|%s" "$p")|$(md5sum <"$p" | cut -d" " -f1)|@$(stat -c %h:%i "$p")"
  else
    echo "$(stat -c "%n|%F|%a|%u:%g|%h|%t:%T" "$p")|@$(stat -c %h:%i "$p")"
  fi
done
'
fix_manifest() { # stdin → stdout: "@NLINK:INO" becomes "" (NLINK 1) or "group=FIRST PATH"
  awk -F'|' -v OFS='|' '
    $NF ~ /^@/ { split(substr($NF, 2), a, ":")
                 if (a[1] == 1) $NF = ""
                 else { if (!(a[2] in g)) g[a[2]] = $1; $NF = "group=" g[a[2]] } }
    { print }'
}
