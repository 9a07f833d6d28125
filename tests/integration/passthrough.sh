#!/usr/bin/env bash
# -o passthrough (fuse/passthrough.h): the kernel reads and writes the layers' files itself, so
# reading a file makes no read requests to the daemon; a file open for reading from a lower
# layer cannot be written (ETXTBSY) until it is closed; every open of one inode shares one
# backing file; nothing ever writes a lower layer. Also its errors: not root, stacked layers.
source "$(dirname "$0")/lib.sh" "$@"
skip_on_kernel && skip "an option of the daemon only"
[[ $(id -u) == 0 ]] || skip "passthrough needs root"

new_stack pt 1
head -c $((64 << 20)) /dev/urandom >"${L[0]}/big"
for f in a b c; do printf 'lower-%s%.0s' "$f" {1..1000} >"${L[0]}/$f"; done
mkdir "${L[0]}/race"
for i in $(seq 300); do echo "data-$i" >"${L[0]}/race/f$i"; done
head -c $((128 << 20)) /dev/zero >"${L[0]}/slow"
lower_sums=$(cd "${L[0]}" && sha256sum big a b c)

mount_union -o passthrough "$(stack_spec)" "$M"
log="$T/daemon.$((${#_MOUNTS[@]} - 1)).log"
sleep 0.2
if grep -q "does not offer FUSE passthrough" "$log"; then
  unmount_union "$M"
  skip "this kernel has no FUSE passthrough"
fi
pid=${_MPIDS[-1]}

check "a lower file reads whole, and its data never pass through the daemon"
before=$(awk '/^syscr/ {print $2}' "/proc/$pid/io")
cmp "${L[0]}/big" "$M/big" || fail "big differs through the mount"
cmp "${L[0]}/big" "$M/big" || fail "big differs through the mount (cached)"
after=$(awk '/^syscr/ {print $2}' "/proc/$pid/io")
# 128 MiB through the daemon would take at least 128 read requests of 1 MiB.
(( after - before < 40 )) || fail "the daemon made $((after - before)) read calls for 128 MiB"

check "open for reading from the lower layer: writers and truncates wait (ETXTBSY)"
"$PYTHON" - "$M" "${L[0]}" <<'EOF' || fail "semantics (see above)"
import errno, mmap, os, sys
m, low = sys.argv[1], sys.argv[2]
bad = 0
def expect(what, got, want):
    global bad
    if got != want:
        print(f"FAIL: {what}: got {got!r}, want {want!r}", file=sys.stderr); bad += 1
def err(f):
    try:
        f(); return 0
    except OSError as e:
        return errno.errorcode[e.errno]

r = os.open(f"{m}/a", os.O_RDONLY)
expect("read a", os.pread(r, 7, 0), b"lower-a")
expect("open a for writing while it is read", err(lambda: os.open(f"{m}/a", os.O_WRONLY)), "ETXTBSY")
expect("open a with O_TRUNC while it is read", err(lambda: os.open(f"{m}/a", os.O_RDONLY | os.O_TRUNC)), "ETXTBSY")
expect("truncate a while it is read", err(lambda: os.truncate(f"{m}/a", 3)), "ETXTBSY")
expect("chmod a while it is read (copies up the metadata)", err(lambda: os.chmod(f"{m}/a", 0o600)), 0)
r2 = os.open(f"{m}/a", os.O_RDONLY)  # the copy's data are the lower file's: it shares its backing
expect("read a again after its copy-up", os.pread(r2, 7, 0), b"lower-a")
expect("writers still wait", err(lambda: os.open(f"{m}/a", os.O_RDWR)), "ETXTBSY")
os.close(r); os.close(r2)
w = os.open(f"{m}/a", os.O_WRONLY)   # the last reader closed: the backing is released
expect("write a once its readers closed", os.pwrite(w, b"UPPER", 0), 5)
os.close(w)
expect("a through the mount", open(f"{m}/a", "rb").read(8), b"UPPER-al")
expect("a's mode", os.stat(f"{m}/a").st_mode & 0o777, 0o600)

# A writer first: readers share its backing file (the upper copy) and see its writes at once.
w = os.open(f"{m}/b", os.O_RDWR)
r = os.open(f"{m}/b", os.O_RDONLY)
os.pwrite(w, b"NEWB", 0)
expect("a reader sees a writer's write", os.pread(r, 7, 0), b"NEWBr-b")
mm = mmap.mmap(w, 4096)
mm[0:4] = b"MMAP"; mm.flush(); mm.close()
expect("a reader sees a shared mapping's write", os.pread(r, 7, 0), b"MMAPr-b")
os.close(w); os.close(r)

# A created file open for writing, read meanwhile through another open (one backing per inode).
w = os.open(f"{m}/new", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
os.write(w, b"created")
r = os.open(f"{m}/new", os.O_RDONLY)
expect("reading a file being written", os.pread(r, 7, 0), b"created")
os.close(w); os.close(r)
expect("new's size", os.stat(f"{m}/new").st_size, 7)

w = os.open(f"{m}/c", os.O_WRONLY | os.O_TRUNC)
os.write(w, b"truncated"); os.close(w)
expect("c after O_TRUNC and a write", open(f"{m}/c", "rb").read(), b"truncated")
sys.exit(1 if bad else 0)
EOF
check "a reader and an O_TRUNC writer at once: a refused writer has emptied nothing"
"$PYTHON" - "$M/race" <<'EOF' || fail "reader/writer race (see above)"
import errno, os, sys, threading
d = sys.argv[1]
bad = 0
for i in range(1, 301):
    p = f"{d}/f{i}"
    go = threading.Barrier(2)
    res = {}
    def reader():
        go.wait()
        fd = os.open(p, os.O_RDONLY)
        res["r"] = os.read(fd, 64)
        os.close(fd)
    def writer():
        go.wait()
        try:
            os.close(os.open(p, os.O_WRONLY | os.O_TRUNC)); res["w"] = "ok"
        except OSError as e:
            res["w"] = errno.errorcode[e.errno]
    ts = [threading.Thread(target=reader), threading.Thread(target=writer)]
    for t in ts: t.start()
    for t in ts: t.join()
    want = f"data-{i}\n".encode()
    got = open(p, "rb").read()
    if res["w"] == "ETXTBSY" and got != want:
        print(f"FAIL: f{i}: the writer got ETXTBSY but the file reads {got!r}", file=sys.stderr); bad += 1
    elif res["w"] == "ok" and got != b"":
        print(f"FAIL: f{i}: the O_TRUNC writer succeeded but the file reads {got!r}", file=sys.stderr); bad += 1
    elif res["w"] not in ("ok", "ETXTBSY"):
        print(f"FAIL: f{i}: the writer got {res['w']}", file=sys.stderr); bad += 1
    if res["r"] not in (want, b""):
        print(f"FAIL: f{i}: the reader read {res['r']!r}", file=sys.stderr); bad += 1
sys.exit(1 if bad else 0)
EOF
check "a reader that comes during a writer's copy-up reads the copy afterwards"
"$PYTHON" - "$M" <<'EOF' || fail "reader during a copy-up (see above)"
import os, sys, threading, time
m = sys.argv[1]
res = {}
def writer():
    fd = os.open(f"{m}/slow", os.O_RDWR)   # copies 128 MiB up (and syncs it)
    os.pwrite(fd, b"UPPER", 0)
    res["written"] = True
    time.sleep(0.3)
    os.close(fd)
w = threading.Thread(target=writer); w.start()
time.sleep(0.02)
r = os.open(f"{m}/slow", os.O_RDONLY)       # the copy-up is (most likely) still running
w.join()
got = os.pread(r, 5, 0)
os.close(r)
if got != b"UPPER":
    print(f"FAIL: the reader read {got!r} after the write", file=sys.stderr); sys.exit(1)
EOF
[[ $(cat "$U/a" | head -c 5) == UPPER ]] || fail "a's copy is not in the upper"
[[ $(cat "$U/new") == created ]] || fail "new is not in the upper"
unmount_union "$M"
[[ $(cd "${L[0]}" && sha256sum big a b c) == "$lower_sums" ]] || fail "a lower file changed"

check "a layer whose files cannot back passthrough (a passthrough mount): served by the daemon"
new_stack nest 1
printf 'inner data' >"${L[0]}/f"
inner=$T/nest/inner
mkdir -p "$inner"
mount_union -o passthrough "$(stack_spec)" "$inner"
mkdir -p "$T/nest/up2" "$T/nest/mnt2"
mount_union -o passthrough "$inner:$T/nest/up2" "$T/nest/mnt2"
outer_log="$T/daemon.$((${#_MOUNTS[@]} - 1)).log"
"$PYTHON" - "$T/nest/mnt2" <<'EOF' || fail "files of a passthrough layer (see above)"
import mmap, os, sys
m = sys.argv[1]
fd = os.open(f"{m}/f", os.O_RDONLY)
assert os.read(fd, 64) == b"inner data", "read"
mm = mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ)   # ENODEV on a direct-io open
assert mm[:5] == b"inner", "shared mapping"
mm.close()
w = os.open(f"{m}/f", os.O_WRONLY)   # a cached inode: no passthrough rules, as without the option
os.pwrite(w, b"OUTER", 0); os.close(w)
os.close(fd)
assert open(f"{m}/f", "rb").read() == b"OUTER data", "after a write"
EOF
grep -q "could not back a passthrough open" "$outer_log" || fail "no warning about the fallback: $(cat "$outer_log")"
[[ $(cat "$T/nest/up2/f") == "OUTER data" ]] || fail "the outer copy-up is not in its upper"
[[ $(cat "${L[0]}/f") == "inner data" ]] || fail "the inner lower changed"
unmount_union "$T/nest/mnt2"
unmount_union "$inner"

check "-o passthrough: closing a file opened read-only sends no FLUSH; closing a written one does"
new_stack ptflush 1
echo lower >"${L[0]}/f"
mount_union -s -d -o passthrough "$(stack_spec)" "$M"
check_noflush "$T/daemon.$((${#_MOUNTS[@]} - 1)).log"
unmount_union "$M"

check "-o passthrough needs root"
out=$(setpriv --reuid=65534 --regid=65534 --clear-groups timeout 10 "$UNIONFS_BIN" -o passthrough \
  "$(stack_spec)" "$M" 2>&1) && fail "mounted as a user: $out"
grep -q "passthrough needs root" <<<"$out" || fail "no clear message as a user: $out"
is_mounted "$M" && fail "mounted as a user"

check "-o passthrough refuses a layer on overlayfs"
mkdir -p "$T/ovl/low" "$T/ovl/up" "$T/ovl/work" "$T/ovl/mnt"
echo x >"$T/ovl/low/x"
timeout 10 mount -t overlay overlay -o "lowerdir=$T/ovl/low,upperdir=$T/ovl/up,workdir=$T/ovl/work" \
  "$T/ovl/mnt"
_MOUNTS+=("$T/ovl/mnt"); _MPIDS+=("")
st=0
out=$(timeout 10 "$UNIONFS_BIN" -o passthrough "$T/ovl/mnt:$U" "$M" 2>&1) || st=$?
((st == 2)) || fail "exit status $st for a layer on overlayfs: $out"
grep -q "stacked filesystem" <<<"$out" || fail "no clear message for a layer on overlayfs: $out"
is_mounted "$M" && fail "mounted over an overlayfs layer"
unmount_union "$T/ovl/mnt"

finish
