#!/usr/bin/python3
"""Differential test: kernel overlayfs against unionfs-cpp.

The same seeded random sequence of filesystem operations is applied to the
kernel's overlayfs and to unionfs-cpp (-o whiteout=overlay), each mounted over
its own byte-identical copy of the same layer set.  After every operation the
results (value or errno) must agree; every --check-every operations and at the
end the visible trees must agree; after unmounting, the two upper layers must
agree and the lower layers must be unchanged.

Run:   differential.py --bin build/unionfs-cpp [--seeds N | --seed S] [--ops M]
       [--keep] [--no-minimize] [--replay FILE] [--without FEATURE] [--stats]
On a mismatch it prints the seed, the op and both results, shrinks the op list to a
minimal reproduction (first failure only, time-boxed) and writes it as JSON for --replay.
Needs root, /dev/fuse and the overlay filesystem; exits 77 (skip) without them.

How the harness was verified to be able to fail: `differential.py --self-test`
(also registered in CTest as differential_selftest) first runs kernel overlay
against kernel overlay (everything must agree), then re-runs with one fault
injected into side B for each checker (a wrong op result, a silent chmod, a
silent content change, a stray user.* xattr, an effective whiteout and an
effective opaque marker written into B's upper, a change to one of B's lower
layers); each of these runs must exit 1 and name the injected fault.

What is deliberately NOT compared (also printed at runtime as "skipped: ..."):
"""

SKIPS = [
    ("inode numbers, st_dev, st_blocks, atime, ctime",
     "they are implementation details; only whether an inode number changes "
     "across an operation, the hard-link grouping of the visible tree and "
     "readdir d_ino == lstat st_ino (unionfs-cpp only, invariant 6) are checked"),
    ("directory sizes, directory nlink and directory times",
     "they depend on the layer filesystem and on the order of internal "
     "operations, not on union semantics"),
    ("mtime of regular files unless it was set explicitly",
     "a write stamps the current time, which differs between the two mounts; "
     "mtimes set by utime and the mtimes of layer files (all set far in the "
     "past) must agree, so copy-up has to preserve them"),
    ("times of symlinks, fifos and of every entry of the upper layers",
     "only the visible mtime of regular files is compared (see above)"),
    ("trusted.overlay.* xattrs in the upper other than trusted.overlay.opaque",
     "the kernel records origin/impure/redirect/etc. for its own bookkeeping"),
    ("whiteouts and opaque markers in the upper that hide nothing",
     "the kernel may or may not leave them (e.g. a whiteout for a name that is "
     "already whited out in a lower layer, an opaque marker over a lower "
     "directory that has no visible entries); an ineffective marker and its "
     "absence are treated as equal and each such case is printed as a note"),
    ("st_ino that the kernel changes on copy-up",
     "with index=off the kernel gives a copied-up file whose lower inode has nlink > 1 "
     "a new st_ino (broken hard link); where the kernel reports ino-changed, "
     "unionfs-cpp keeping st_ino (DESIGN invariant 6) is accepted"),
    ("getxattr of trusted.overlay.* through the mount: kernel ENODATA, unionfs-cpp ENOTSUP",
     "kernel >= 6.7 escapes trusted.overlay.* set through an overlay mount (for nested "
     "overlays) and so reports ENODATA; unionfs-cpp refuses internal xattrs by design "
     "(DESIGN: neither listed nor settable); setxattr of them is not generated"),
    ("allocation (st_blocks) of upper files smaller than 1 MiB",
     "block allocation after truncate/write depends on the filesystem's timing; for "
     "files of 1 MiB or more only whether they are sparse is compared, so that a copy-up "
     "that fills the 1 MiB hole of sparse.img is caught"),
    ("mode, owner, nlink and hard-link grouping of whiteouts in the upper",
     "the kernel makes all whiteouts hard links of one shared whiteout inode, and a "
     "rename over a whiteout exchanges it to the source, keeping its mode"),
    ("hard-link grouping of files with nlink == 1",
     "with index=off the kernel reports the lower inode number for a copied-up "
     "file, so a broken hard link keeps sharing st_ino with its lower sibling"),
    ("unionfs-cpp's own internal names in its upper (--ignore-upper, default "
     "none)", "a work directory of the daemon is not part of the kernel's upper"),
    ("the kernel side of readdir d_ino == st_ino",
     "only unionfs-cpp promises it (DESIGN invariant 6)"),
]

import argparse
import ctypes
import errno
import hashlib
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import traceback

T_OLD = 1262304000 * 10**9          # 2010-01-01: explicit times are older
BASE_MTIME = 1104537600             # 2005-01-01: base layer files
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
XATTR_CREATE = 1
XATTR_REPLACE = 2
MAX_READ = 16 << 20

_libc = ctypes.CDLL(None, use_errno=True)


def log(*a):
    print(*a, flush=True)


# ---------------------------------------------------------------------------
# Hygiene: every mount is tracked and undone; a watchdog aborts a hung daemon.

class Fatal(Exception):
    pass


ACTIVE_MOUNTS = []          # objects with .cleanup()
STATE = {"progress": time.monotonic(), "deadline": None, "op_timeout": 60.0,
         "fired": None}
STATE_LOCK = threading.Lock()


def touch_progress():
    STATE["progress"] = time.monotonic()


def run_cmd(argv, timeout=30, check=True):
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Fatal("command timed out after %ss: %s" % (timeout, " ".join(argv)))
    if check and p.returncode != 0:
        raise Fatal("command failed (%d): %s\n%s%s" % (
            p.returncode, " ".join(argv), p.stdout.decode(errors="replace"),
            p.stderr.decode(errors="replace")))
    return p


def mountinfo_entry(mnt):
    """(major:minor, fstype) of the mount at mnt, or None; never touches the fs."""
    mnt = os.path.realpath(mnt)
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    found = None
    for line in lines:
        parts = line.split()
        mp = parts[4].replace("\\040", " ").replace("\\134", "\\")
        if mp == mnt:
            sep = parts.index("-")
            found = (parts[2], parts[sep + 1])
    return found


class KernelMount:
    kind = "kernel"

    def __init__(self, lowers, upper, work, mnt):
        self.lowers, self.upper, self.work, self.mnt = lowers, upper, work, mnt
        self.mounted = False

    def mount(self):
        opts = "lowerdir=%s,upperdir=%s,workdir=%s,redirect_dir=off,index=off," \
               "metacopy=off,xino=off" % (":".join(reversed(self.lowers)),
                                         self.upper, self.work)
        ACTIVE_MOUNTS.append(self)
        run_cmd(["mount", "-t", "overlay", "overlay", "-o", opts, self.mnt])
        self.mounted = True

    def abort(self, hard=False):
        pass

    def unmount(self):
        if not self.mounted:
            return
        p = run_cmd(["umount", self.mnt], timeout=30, check=False)
        if p.returncode != 0:
            run_cmd(["umount", "-l", self.mnt], timeout=30, check=False)
            self.mounted = False
            raise Fatal("umount %s failed: %s" % (self.mnt, p.stderr.decode(errors="replace")))
        self.mounted = False

    def cleanup(self):
        if self.mounted and mountinfo_entry(self.mnt):
            run_cmd(["umount", "-l", self.mnt], timeout=30, check=False)
        self.mounted = False

    def problems(self):
        return []


class FuseMount:
    kind = "unionfs-cpp"

    def __init__(self, binary, lowers, upper, mnt, logpath, extra_opts=()):
        self.binary, self.lowers, self.upper, self.mnt = binary, lowers, upper, mnt
        self.logpath = logpath
        self.extra_opts = list(extra_opts)
        self.proc = None
        self.mounted = False
        self.conn = None
        self.exit_code = None

    def mount(self):
        opts = ",".join(["whiteout=overlay"] + self.extra_opts)
        argv = [self.binary, "-f", "-o", opts,
                ":".join(self.lowers + [self.upper]), self.mnt]
        self.argv = argv
        ACTIVE_MOUNTS.append(self)
        self.logf = open(self.logpath, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30:
            ent = mountinfo_entry(self.mnt)
            if ent and ent[1].startswith("fuse"):
                self.mounted = True
                self.conn = ent[0].split(":")[1]
                return
            if self.proc.poll() is not None:
                raise Fatal("unionfs-cpp exited with %d before mounting:\n%s" % (
                    self.proc.returncode, self.log_text()))
            time.sleep(0.02)
        raise Fatal("unionfs-cpp did not mount within 30s:\n" + self.log_text())

    def log_text(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read()[-20000:].decode(errors="replace")
        except OSError:
            return ""

    def abort(self, hard=False):
        """Abort the FUSE connection: every blocked request fails with ENOTCONN.
        Through fusectl where it is mounted; with hard=True (the watchdog) also by
        killing the daemon, which is our own child, since its death ends the connection."""
        if self.conn:
            try:
                with open("/sys/fs/fuse/connections/%s/abort" % self.conn, "w") as f:
                    f.write("1")
            except OSError:
                pass
        if hard and self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.kill()
            except OSError:
                pass

    def _wait_proc(self, timeout):
        if self.proc is None:
            return
        try:
            self.exit_code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()     # our own child only
            self.exit_code = self.proc.wait(timeout=10)
            raise Fatal("unionfs-cpp did not exit within %ss of the unmount" % timeout)
        finally:
            self.logf.close()

    def unmount(self):
        if not self.mounted:
            return
        p = run_cmd(["fusermount3", "-u", self.mnt], timeout=30, check=False)
        if p.returncode != 0:
            err = p.stderr.decode(errors="replace")
            self.abort()
            run_cmd(["fusermount3", "-uz", self.mnt], timeout=30, check=False)
            self.mounted = False
            self._wait_proc(30)
            raise Fatal("fusermount3 -u %s failed: %s" % (self.mnt, err))
        self.mounted = False
        self._wait_proc(60)

    def cleanup(self):
        if self.mounted and mountinfo_entry(self.mnt):
            self.abort()
            run_cmd(["fusermount3", "-uz", self.mnt], timeout=30, check=False)
        self.mounted = False
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGCONT)   # in case it was stopped
            except OSError:
                pass
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()     # our own child only
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
        if self.proc is not None and self.exit_code is None:
            self.exit_code = self.proc.poll()
            if self.exit_code == -signal.SIGKILL:
                self.exit_code = None    # we killed it ourselves after the unmount

    def problems(self):
        out = []
        text = self.log_text()
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                       "runtime error:", "WARNING: ThreadSanitizer"):
            if marker in text:
                out.append("sanitizer report in the daemon's output (%s)" % marker)
        if self.exit_code not in (None, 0):
            out.append("daemon exited with status %s" % self.exit_code)
        if out:
            out.append("daemon output (tail):\n" + text[-6000:])
        return out


def cleanup_all():
    while ACTIVE_MOUNTS:
        m = ACTIVE_MOUNTS.pop()
        try:
            m.cleanup()
        except Exception as e:  # keep cleaning the rest
            log("cleanup of %s failed: %s" % (getattr(m, "mnt", m), e))


def watchdog():
    while True:
        time.sleep(0.5)
        now = time.monotonic()
        why = None
        if STATE["deadline"] is not None and now > STATE["deadline"]:
            why = "global time limit reached"
        elif now - STATE["progress"] > STATE["op_timeout"]:
            why = "no progress for %.0fs (hung operation?)" % STATE["op_timeout"]
        if why and STATE["fired"] is None:
            STATE["fired"] = why
            log("watchdog: %s: aborting FUSE connections" % why)
            for m in list(ACTIVE_MOUNTS):
                m.abort(hard=True)


def check_watchdog():
    if STATE["fired"]:
        raise Fatal("watchdog fired: " + STATE["fired"])


# ---------------------------------------------------------------------------
# Base layers

def rbytes(seed, n):
    return random.Random(seed).randbytes(n)


class LayerBuilder:
    def __init__(self, root):
        self.root = root
        self.n = 0

    def p(self, rel):
        return os.path.join(self.root, rel)

    def dir(self, rel, mode=0o755):
        os.makedirs(self.p(rel), exist_ok=True)
        os.chmod(self.p(rel), mode)

    def file(self, rel, data=b"", mode=0o644, xattrs=None):
        os.makedirs(os.path.dirname(self.p(rel)), exist_ok=True)
        with open(self.p(rel), "wb") as f:
            f.write(data)
        os.chmod(self.p(rel), mode)
        for k, v in (xattrs or {}).items():
            os.setxattr(self.p(rel), k, v)
        self.n += 1
        os.utime(self.p(rel), ns=((BASE_MTIME + self.n) * 10**9 + 123456789,
                                   (BASE_MTIME + self.n) * 10**9 + 987654321))

    def sparse(self, rel, size, chunks):
        with open(self.p(rel), "wb") as f:
            f.truncate(size)
            for off, data in chunks:
                f.seek(off)
                f.write(data)
        self.n += 1
        os.utime(self.p(rel), ns=((BASE_MTIME + self.n) * 10**9, (BASE_MTIME + self.n) * 10**9))

    def symlink(self, target, rel):
        os.symlink(target, self.p(rel))

    def whiteout(self, rel):
        os.mknod(self.p(rel), 0o600 | stat.S_IFCHR, os.makedev(0, 0))

    def opaque(self, rel):
        os.setxattr(self.p(rel), "trusted.overlay.opaque", b"y")

    def fifo(self, rel):
        os.mkfifo(self.p(rel), 0o644)

    def link(self, src, dst):
        os.link(self.p(src), self.p(dst))

    def xattr(self, rel, k, v):
        os.setxattr(self.p(rel), k, v, follow_symlinks=False)


def build_layers(base, prepopulated, without=()):
    """Layers bottom to top: l0 l1 l2, upper 'up'. Returns ([lowers], upper)."""
    names = ["l0", "l1", "l2"]
    for n in names + ["up"]:
        os.makedirs(os.path.join(base, n))
    l0, l1, l2, up = (LayerBuilder(os.path.join(base, n)) for n in names + ["up"])

    # l0: the bottom
    l0.file("a.txt", b"hello from l0\n", xattrs={"user.color": b"blue", "user.empty": b""})
    l0.file("empty", b"")
    l0.file("big.bin", rbytes(1, 300 * 1024))
    l0.sparse("sparse.img", 2 << 20, [(1 << 20, rbytes(2, 5000)), ((2 << 20) - 10, b"tail-tail\n")])
    l0.file("hidden.txt", b"whited out by l1\n")
    l0.file("ro.txt", b"read only\n", mode=0o444)
    l0.file("exec.sh", b"#!/bin/sh\necho hi\n", mode=0o755)
    l0.file("suid", b"suid\n", mode=0o4755)
    l0.file("zero-mode", b"mode 000\n", mode=0o000)
    l0.file(".wh.notawhiteout", b"an ordinary file in overlay format\n")
    l0.file("sp ace", b"name with a space\n")
    l0.file("ünï", b"utf-8 name\n")
    l0.file("hl1", b"hard linked in l0\n")
    if "lower-hardlinks" not in without:
        l0.link("hl1", "hl2")
    l0.symlink("a.txt", "link1")
    l0.symlink("nowhere", "dangling")
    l0.symlink("d1", "dirlink")
    l0.fifo("fifo0")
    l0.file("d1/x", b"d1/x from l0\n")
    l0.file("d1/y", b"d1/y from l0\n", xattrs={"user.y": b"1"})
    l0.file("d1/sub/z", b"d1/sub/z from l0\n")
    l0.xattr("d1", "user.dir", b"d1-l0")
    l0.file("d2/p", b"d2/p\n")
    l0.file("d2/q", b"d2/q whited out by l1\n")
    l0.file("d3/k", b"d3/k hidden by opaque d3 in l1\n")
    l0.file("d3/kk/deep", b"deeper under opaque\n")
    l0.file("f_over", b"file in l0, dir in l2\n")
    l0.file("dir_over/c1", b"child of a dir that l2 replaces with a file\n")
    l0.file("uo/child", b"under a dir marked user.overlay.opaque in l1\n")
    l0.file("lonely/only", b"only child\n")
    l0.dir("emptydir")
    l0.dir("d1", 0o755)

    # l1: the middle
    l1.file("d1/w", b"d1/w from l1\n")
    l1.file("d1/x", b"d1/x from l1 (over l0)\n", mode=0o600)
    l1.dir("d2")
    l1.whiteout("d2/q")
    l1.whiteout("hidden.txt")
    l1.file("d3/m", b"d3/m in opaque d3\n")
    l1.opaque("d3")
    l1.file("a2.txt", b"a2 from l1\n", xattrs={"user.a2": b"x" * 100})
    l1.file("deep/a/b/c/file", b"deep file\n")
    l1.dir("uo")
    l1.xattr("uo", "user.overlay.opaque", b"y")
    l1.file("uo/own", b"l1's own child of uo\n")
    l1.symlink("../a.txt", "deep/a/up2")
    l1.dir("d1", 0o750)

    # l2: the top lower
    l2.file("d1/v", b"d1/v from l2\n")
    l2.file("d1/sub/s2", b"d1/sub/s2 from l2\n")
    l2.file("f_over/inner", b"dir over a lower file\n")
    l2.file("dir_over", b"file over a lower dir\n")
    l2.file("d4/n1", b"d4/n1\n")
    l2.symlink("n1", "d4/ln")
    l2.file("d2/.wh.p", b"")            # an ordinary file in overlay format
    l2.whiteout("lonely")
    l2.dir("emptydir2")

    if prepopulated:
        up.file("u.txt", b"from the upper\n")
        up.file("d1/u", b"d1/u in upper\n")
        up.whiteout("d1/y")
        up.file("d2/newp", b"opaque d2 in upper\n")
        up.opaque("d2")
        up.file("ud/a", b"upper-only dir\n")
        up.file("ud/sub/b", b"upper-only subdir\n")
        up.whiteout("a2.txt")
        up.file("a.txt", b"a.txt copied up earlier\n", xattrs={"user.color": b"red"})
        up.dir("d4")
        up.symlink("ud/a", "ulink")
    for lb in (l0, l1, l2, up):
        os.utime(lb.root, ns=(BASE_MTIME * 10**9, BASE_MTIME * 10**9))
    return [l0.root, l1.root, l2.root], up.root


# ---------------------------------------------------------------------------
# Raw layer reading (uppers, lowers) and the lower-stack resolver

def ftype(mode):
    if stat.S_ISDIR(mode): return "dir"
    if stat.S_ISREG(mode): return "file"
    if stat.S_ISLNK(mode): return "symlink"
    if stat.S_ISFIFO(mode): return "fifo"
    if stat.S_ISCHR(mode): return "chr"
    if stat.S_ISBLK(mode): return "blk"
    if stat.S_ISSOCK(mode): return "sock"
    return "?"


def sha_file(path):
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        total = 0
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            total += len(b)
            h.update(b)
            if total > MAX_READ * 4:
                return "too-big"
    finally:
        os.close(fd)
    return h.hexdigest()[:16]


def is_whiteout(st):
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def raw_walk(root, full_xattrs=False, with_times=False):
    """Describe every entry under root (a layer directory, not a mount)."""
    out = {}

    def rec(rel):
        p = os.path.join(root, rel) if rel else root
        for name in sorted(os.listdir(p)):
            r = os.path.join(rel, name) if rel else name
            fp = os.path.join(root, r)
            st = os.lstat(fp)
            t = ftype(st.st_mode)
            d = {"type": t, "mode": oct(stat.S_IMODE(st.st_mode)), "uid": st.st_uid,
                 "gid": st.st_gid}
            if is_whiteout(st) and not full_xattrs:
                # kernel whiteouts share one inode, and one moved by rename keeps its mode
                d = {"type": t}
            elif t != "dir":
                d["nlink"] = st.st_nlink
                d["size"] = st.st_size
            if t == "file":
                d["sha"] = sha_file(fp)
                if st.st_size >= 1 << 20:       # see SKIPS
                    d["sparse"] = st.st_blocks * 512 < st.st_size
            if t == "symlink":
                d["target"] = os.readlink(fp)
            if t in ("chr", "blk"):
                d["rdev"] = "%d/%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))
            if with_times:
                d["mtime"] = st.st_mtime_ns
                d["ctime"] = st.st_ctime_ns
            xa = {}
            try:
                names = os.listxattr(fp, follow_symlinks=False)
            except OSError:
                names = []
            for k in sorted(names):
                if full_xattrs or k.startswith("user.") or k == "trusted.overlay.opaque":
                    try:
                        xa[k] = os.getxattr(fp, k, follow_symlinks=False).hex()
                    except OSError as e:
                        xa[k] = "E" + errno.errorcode.get(e.errno, str(e.errno))
            if xa:
                d["xattrs"] = xa
            d["_ino"] = st.st_ino
            out[r] = d
            if t == "dir":
                rec(r)
    rec("")
    return out


def strip_private(tree):
    return {k: {kk: vv for kk, vv in v.items() if not kk.startswith("_")}
            for k, v in tree.items()}


def link_groups(tree, nlink_min=2):
    groups = {}
    for path, d in tree.items():
        if d.get("type") not in (None, "dir") and d.get("rdev") != "0/0" and d.get("nlink", 1) >= nlink_min:
            groups.setdefault(d["_ino"], []).append(path)
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)


class LowerStack:
    """Resolves paths through the (immutable) lower layers the way overlayfs does."""

    def __init__(self, lowers):
        self.layers = [raw_walk(l, full_xattrs=True) for l in reversed(lowers)]  # top first

    @staticmethod
    def _opaque(d):
        return d.get("xattrs", {}).get("trusted.overlay.opaque") == b"y".hex()

    def resolve(self, rel):
        """'dir' / 'nondir' / None for the lower view of rel."""
        parts = rel.split("/")
        active = list(range(len(self.layers)))   # layers where the parent is a merged dir
        for i, comp in enumerate(parts):
            prefix = "/".join(parts[:i + 1])
            nxt = []
            result = None
            for li in active:
                d = self.layers[li].get(prefix)
                if d is None:
                    continue
                if d["type"] == "chr" and d.get("rdev") == "0/0":
                    break                        # whiteout: stop
                if d["type"] != "dir":
                    if not nxt:
                        result = "nondir"
                    break
                result = "dir"
                nxt.append(li)
                if self._opaque(d):
                    break
            if result is None:
                return None
            if i == len(parts) - 1:
                return result
            if result != "dir":
                return None
            active = nxt
        return None

    def has_children(self, rel):
        if self.resolve(rel) != "dir":
            return False
        names = set()
        for layer in self.layers:
            for p in layer:
                if p.startswith(rel + "/") and "/" not in p[len(rel) + 1:]:
                    names.add(p)
        return any(self.resolve(n) is not None for n in names)


def normalise_upper(tree, lower, notes, side):
    """Drop whiteouts and opaque markers that hide nothing; record a note for each."""
    out = {}

    def hidden_by_upper_ancestor(path):
        parts = path.split("/")
        for i in range(1, len(parts)):
            a = "/".join(parts[:i])
            d = tree.get(a)
            if d is None or d["type"] != "dir":
                return True
            if LowerStack._opaque(d):
                return True
        return False

    for path, d in tree.items():
        d = dict(d)
        if d["type"] == "chr" and d.get("rdev") == "0/0":
            if hidden_by_upper_ancestor(path) or lower.resolve(path) is None:
                notes.append("%s upper: ineffective whiteout %s ignored" % (side, path))
                continue
        if d["type"] == "dir" and LowerStack._opaque(d):
            if hidden_by_upper_ancestor(path) or not lower.has_children(path):
                notes.append("%s upper: ineffective opaque marker on %s ignored" % (side, path))
                xa = dict(d["xattrs"])
                del xa["trusted.overlay.opaque"]
                if xa:
                    d["xattrs"] = xa
                else:
                    del d["xattrs"]
        out[path] = d
    return out


# ---------------------------------------------------------------------------
# The visible tree through a mount

def norm_mtime(ns):
    return ns if ns < T_OLD else "recent"


def mount_walk(root, check_dino=False, problems=None):
    out = {}

    def rec(rel):
        p = os.path.join(root, rel) if rel else root
        try:
            with os.scandir(p) as it:
                ents = sorted(it, key=lambda e: e.name)
        except OSError as e:
            out[(rel or ".") + " (readdir)"] = {"error": errno.errorcode.get(e.errno, e.errno)}
            return
        for e in ents:
            r = os.path.join(rel, e.name) if rel else e.name
            try:
                entry(e, r)
            except OSError as ex:
                out[r] = {"error": "%s in %s" % (errno.errorcode.get(ex.errno, ex.errno),
                                                 ex.filename and os.path.relpath(ex.filename, root))}

    def entry(e, r):
        fp = os.path.join(root, r)
        st = os.lstat(fp)
        t = ftype(st.st_mode)
        d = {"type": t, "mode": oct(stat.S_IMODE(st.st_mode)), "uid": st.st_uid,
             "gid": st.st_gid}
        if check_dino and problems is not None and e.inode() != st.st_ino:
            problems.append("readdir d_ino %d != lstat st_ino %d for %s" % (
                e.inode(), st.st_ino, r))
        if t != "dir":
            d["nlink"] = st.st_nlink
            d["size"] = st.st_size
        if t == "file":
            d["sha"] = sha_file(fp)
            d["mtime"] = norm_mtime(st.st_mtime_ns)
        if t == "symlink":
            d["target"] = os.readlink(fp)
        if t in ("chr", "blk"):
            d["rdev"] = "%d/%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))
        names = sorted(os.listxattr(fp, follow_symlinks=False))
        if names:
            d["xattr_names"] = names
            xa = {}
            for k in names:
                if k.startswith("user."):
                    xa[k] = os.getxattr(fp, k, follow_symlinks=False).hex()
            if xa:
                d["xattrs"] = xa
        d["_ino"] = st.st_ino
        out[r] = d
        if t == "dir":
            rec(r)
    rec("")
    try:
        st = os.lstat(root)
        out["."] = {"type": "dir", "mode": oct(stat.S_IMODE(st.st_mode)),
                    "uid": st.st_uid, "gid": st.st_gid, "_ino": st.st_ino}
    except OSError as e:
        out["."] = {"error": errno.errorcode.get(e.errno)}
    return out


def existing_types(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        rel = "" if rel == "." else rel
        for n in dirnames + filenames:
            r = os.path.join(rel, n) if rel else n
            try:
                out[r] = ftype(os.lstat(os.path.join(root, r)).st_mode)
            except OSError:
                pass
    return out


# ---------------------------------------------------------------------------
# Operations

def renameat2(src, dst, flags):
    r = _libc.renameat2(-100, os.fsencode(src), -100, os.fsencode(dst), ctypes.c_uint(flags))
    if r != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def norm_stat(st):
    t = ftype(st.st_mode)
    d = {"type": t, "mode": oct(stat.S_IMODE(st.st_mode)), "uid": st.st_uid, "gid": st.st_gid}
    if t != "dir":
        d["nlink"] = st.st_nlink
        d["size"] = st.st_size
    if t == "file":
        d["mtime"] = norm_mtime(st.st_mtime_ns)
    return d


def lino(p):
    try:
        return os.lstat(p).st_ino
    except OSError:
        return None


def ino_change(before, after):
    if before is None or after is None:
        return "n/a"
    return "same-ino" if before == after else "ino-changed"


OPEN_FLAGS = {
    "trunc": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    "excl": os.O_WRONLY | os.O_CREAT | os.O_EXCL,
    "creat": os.O_WRONLY | os.O_CREAT,
    "rw": os.O_RDWR,
    "wronly": os.O_WRONLY,
    "append": os.O_WRONLY | os.O_APPEND,
}


FD_FLAGS = {"r": os.O_RDONLY, "rw": os.O_RDWR, "w": os.O_WRONLY,
            "creat": os.O_RDWR | os.O_CREAT, "append": os.O_WRONLY | os.O_APPEND}


def close_fds(fds):
    for slot in list(fds):
        try:
            os.close(fds.pop(slot))
        except OSError:
            pass


def apply_op(root, op, fds):
    """Apply op under root; return a comparable result (never raises OSError).
    fds maps slot numbers to descriptors held open across operations."""
    kind = op[0]
    P = lambda rel: os.path.join(root, rel) if rel else root
    try:
        if kind == "write":
            _, path, how, nofollow, off, n, dseed = op
            flags = OPEN_FLAGS[how] | os.O_NONBLOCK | (os.O_NOFOLLOW if nofollow else 0)
            before = lino(P(path))
            fd = os.open(P(path), flags, 0o644)
            try:
                data = rbytes(dseed, n)
                w = os.write(fd, data) if how == "append" else os.pwrite(fd, data, off)
                st = os.fstat(fd)
            finally:
                os.close(fd)
            return ("ok", w, st.st_size, ino_change(before, lino(P(path))))
        if kind == "read":
            _, path, off, n = op
            fd = os.open(P(path), os.O_RDONLY | os.O_NONBLOCK)
            try:
                if n is None:
                    chunks, total = [], 0
                    while total < MAX_READ:
                        b = os.read(fd, 1 << 20)
                        if not b:
                            break
                        chunks.append(b)
                        total += len(b)
                    data = b"".join(chunks)
                else:
                    data = os.pread(fd, n, off)
            finally:
                os.close(fd)
            return ("ok", len(data), hashlib.sha256(data).hexdigest()[:16])
        if kind == "truncate":
            _, path, size = op
            before = lino(P(path))
            os.truncate(P(path), size)
            return ("ok", os.stat(P(path)).st_size, ino_change(before, lino(P(path))))
        if kind == "stat":
            _, path, follow = op
            st = os.stat(P(path)) if follow else os.lstat(P(path))
            return ("ok", norm_stat(st))
        if kind == "readdir":
            _, path = op
            with os.scandir(P(path)) as it:
                ents = sorted((e.name, "dir" if e.is_dir(follow_symlinks=False) else
                               "symlink" if e.is_symlink() else
                               "file" if e.is_file(follow_symlinks=False) else "other")
                              for e in it)
            return ("ok", ents)
        if kind == "readlink":
            return ("ok", os.readlink(P(op[1])))
        if kind == "unlink":
            os.unlink(P(op[1]))
            return ("ok",)
        if kind == "rmdir":
            os.rmdir(P(op[1]))
            return ("ok",)
        if kind == "mkdir":
            os.mkdir(P(op[1]), op[2])
            return ("ok", norm_stat(os.lstat(P(op[1]))))
        if kind == "mkfifo":
            os.mkfifo(P(op[1]), op[2])
            return ("ok", norm_stat(os.lstat(P(op[1]))))
        if kind == "symlink":
            _, target, path = op
            os.symlink(target, P(path))
            return ("ok", norm_stat(os.lstat(P(path))))
        if kind == "link":
            _, src, dst = op
            before = lino(P(src))
            os.link(P(src), P(dst), follow_symlinks=False)
            return ("ok", norm_stat(os.lstat(P(dst))), norm_stat(os.lstat(P(src))),
                    ino_change(before, lino(P(dst))))
        if kind == "rename":
            _, src, dst, flags = op
            before_s, before_d = lino(P(src)), lino(P(dst))
            if flags == 0:
                os.rename(P(src), P(dst))
            else:
                renameat2(P(src), P(dst), flags)
            r = ["ok", ino_change(before_s, lino(P(dst)))]
            if flags == RENAME_EXCHANGE:
                r.append(ino_change(before_d, lino(P(src))))
            return tuple(r)
        if kind == "chmod":
            _, path, mode = op
            before = lino(P(path))
            os.chmod(P(path), mode)
            return ("ok", oct(os.stat(P(path)).st_mode), ino_change(before, lino(P(path))))
        if kind == "utime":
            _, path, at, mt, follow = op
            before = lino(P(path))
            os.utime(P(path), ns=(at, mt), follow_symlinks=follow)
            st = os.stat(P(path)) if follow else os.lstat(P(path))
            return ("ok", st.st_mtime_ns, ino_change(before, lino(P(path))))
        if kind == "setxattr":
            _, path, name, value, flags = op
            before = lino(P(path))
            os.setxattr(P(path), name, value.encode(), flags, follow_symlinks=False)
            return ("ok", ino_change(before, lino(P(path))))
        if kind == "removexattr":
            _, path, name = op
            before = lino(P(path))
            os.removexattr(P(path), name, follow_symlinks=False)
            return ("ok", ino_change(before, lino(P(path))))
        if kind == "getxattr":
            _, path, name = op
            return ("ok", os.getxattr(P(path), name, follow_symlinks=False).hex())
        if kind == "listxattr":
            return ("ok", sorted(os.listxattr(P(op[1]), follow_symlinks=False)))
        if kind == "chown":
            _, path, uid, gid, follow = op
            before = lino(P(path))
            os.chown(P(path), uid, gid, follow_symlinks=follow)
            st = os.stat(P(path)) if follow else os.lstat(P(path))
            return ("ok", norm_stat(st), ino_change(before, lino(P(path))))
        if kind == "mknod":
            _, path, what = op
            mode, dev = {"whiteout": (stat.S_IFCHR | 0o600, os.makedev(0, 0)),
                         "null": (stat.S_IFCHR | 0o666, os.makedev(1, 3)),
                         "reg": (stat.S_IFREG | 0o640, 0)}[what]
            os.mknod(P(path), mode, dev)
            return ("ok", norm_stat(os.lstat(P(path))))
        if kind == "fdopen":
            _, slot, path, how = op
            if slot in fds:
                os.close(fds.pop(slot))
            fds[slot] = os.open(P(path), FD_FLAGS[how] | os.O_NONBLOCK, 0o600)
            return ("ok", norm_stat(os.fstat(fds[slot])))
        if kind.startswith("fd"):
            if op[1] not in fds:
                return ("err", "EBADF")
            fd = fds[op[1]]
            if kind == "fdclose":
                os.close(fds.pop(op[1]))
                return ("ok",)
            if kind == "fdwrite":
                _, slot, off, n, dseed = op
                w = os.pwrite(fd, rbytes(dseed, n), off)
                return ("ok", w, os.fstat(fd).st_size)
            if kind == "fdread":
                _, slot, off, n = op
                data = os.pread(fd, n, off)
                return ("ok", len(data), hashlib.sha256(data).hexdigest()[:16])
            if kind == "fdtruncate":
                os.ftruncate(fd, op[2])
                return ("ok", os.fstat(fd).st_size)
            if kind == "fdstat":
                return ("ok", norm_stat(os.fstat(fd)))
            if kind == "fdfsync":
                os.fsync(fd)
                return ("ok",)
        if kind == "rmtree":
            # remove a whole subtree bottom-up, as rm -r does; each side walks its own view
            res = []
            top = P(op[1])
            if not os.path.isdir(top) or os.path.islink(top):
                raise OSError(errno.ENOTDIR, "not a directory")

            def rm(p):   # sorted, so that readdir order (an implementation detail) is irrelevant
                try:
                    names = sorted(os.listdir(p))
                except OSError as e:
                    res.append((os.path.relpath(p, root), "listdir " + errno.errorcode.get(e.errno)))
                    names = []
                for n in names:
                    c = os.path.join(p, n)
                    if os.path.isdir(c) and not os.path.islink(c):
                        rm(c)
                        continue
                    try:
                        os.unlink(c)
                        res.append((os.path.relpath(c, root), "ok"))
                    except OSError as e:
                        res.append((os.path.relpath(c, root), errno.errorcode.get(e.errno)))
                try:
                    os.rmdir(p)
                    res.append((os.path.relpath(p, root), "ok"))
                except OSError as e:
                    res.append((os.path.relpath(p, root), errno.errorcode.get(e.errno)))
            rm(top)
            return ("ok", res)
        if kind == "opendir":   # open a path with O_DIRECTORY / a dir for writing
            _, path, flags = op
            fd = os.open(P(path), flags | os.O_NONBLOCK)
            os.close(fd)
            return ("ok",)
        raise ValueError("unknown op %r" % (op,))
    except OSError as e:
        return ("err", errno.errorcode.get(e.errno, str(e.errno)))


def same_modulo_kernel_ino(ra, rb, op=None):
    if (op is not None and op[0] == "getxattr" and op[2].startswith("trusted.overlay.")
            and ra == ("err", "ENODATA") and rb == ("err", "ENOTSUP")):
        return True     # see SKIPS: the kernel escapes trusted.overlay.* for nested overlays
    """The kernel (index=off) gives a copied-up file with lower nlink > 1 a new st_ino
    (broken hard link); unionfs-cpp may keep it: where the kernel says ino-changed,
    accept same-ino."""
    if len(ra) != len(rb):
        return False
    for x, y in zip(ra, rb):
        if x != y and not (x == "ino-changed" and y == "same-ino"):
            return False
    return True


def result_signature(ra, rb):
    """What differs, without paths or values, so that minimisation keeps to one bug."""
    if ra[0] != "ok" or rb[0] != "ok":
        return "%s vs %s" % (ra[1] if ra[0] == "err" else "ok", rb[1] if rb[0] == "err" else "ok")
    keys = set()
    for x, y in zip(ra, rb):
        if isinstance(x, dict) and isinstance(y, dict):
            keys |= {k for k in set(x) | set(y) if x.get(k) != y.get(k)}
        elif x != y:
            keys.add("ino" if str(x).startswith(("ino-", "same-")) else "value")
    return ", ".join(sorted(keys)) + " differs"


def fmt_op(op):
    kind = op[0]
    a = list(op[1:])
    if kind == "write":
        path, how, nofollow, off, n, dseed = a
        return "write(%r, %s%s, off=%d, len=%d, data=seed%d)" % (
            path, how, "|NOFOLLOW" if nofollow else "", off, n, dseed)
    if kind == "rename":
        fl = {0: "0", 1: "RENAME_NOREPLACE", 2: "RENAME_EXCHANGE"}[a[2]]
        return "rename(%r, %r, %s)" % (a[0], a[1], fl)
    if kind in ("chmod", "mkdir", "mkfifo"):
        return "%s(%r, %s)" % (kind, a[0], oct(a[1]))
    if kind in ("fdwrite",):
        return "fdwrite(slot %d, off=%d, len=%d, data=seed%d)" % tuple(a)
    if kind == "fdopen":
        return "fdopen(slot %d, %r, %s)" % tuple(a)
    if kind.startswith("fd"):
        return "%s(slot %s)" % (kind, ", ".join(repr(x) for x in a))
    if kind == "opendir":
        names = [n for n, v in (("O_DIRECTORY", os.O_DIRECTORY), ("O_WRONLY", os.O_WRONLY),
                                ("O_RDWR", os.O_RDWR)) if a[1] & v] or ["O_RDONLY"]
        return "open(%r, %s)" % (a[0], "|".join(names))
    return "%s(%s)" % (kind, ", ".join(repr(x) for x in a))


# ---------------------------------------------------------------------------
# Random generation (depends only on the seed and the kernel side's state)

WITHOUT = {
    "lower-hardlinks": "no hard-linked files in the lower layers",
    "mknod": "no mknod operations",
    "fd": "no file descriptors held across operations",
    "xattr": "no xattr operations",
    "rename": "no rename operations",
    "chown": "no chown operations",
}


class Generator:
    MODES = [0o644, 0o600, 0o755, 0o700, 0o444, 0o000, 0o777, 0o4755, 0o2755, 0o1777, 0o640]
    XNAMES = ["user.color", "user.y", "user.a2", "user.new", "user.dir", "user.big", "user.empty"]
    WEIGHTS = [("write", 14), ("read", 8), ("truncate", 4), ("stat", 7), ("readdir", 6),
               ("readlink", 2), ("unlink", 7), ("rmdir", 5), ("mkdir", 7), ("mkfifo", 1),
               ("symlink", 4), ("link", 3), ("rename", 12), ("chmod", 4), ("utime", 4),
               ("setxattr", 4), ("removexattr", 3), ("getxattr", 2), ("listxattr", 2),
               ("opendir", 1), ("chown", 2), ("mknod", 1), ("fdopen", 4), ("fdwrite", 3),
               ("fdread", 3), ("fdstat", 1), ("fdtruncate", 1), ("fdclose", 2), ("fdfsync", 1),
               ("rmtree", 1)]

    def __init__(self, seed, pool, without=()):
        self.rng = random.Random(seed * 7919 + 17)
        self.pool = sorted(set(pool))
        self.fresh_n = 0
        drop = set()
        for w in without:
            drop |= {"mknod": {"mknod"}, "rename": {"rename"}, "chown": {"chown"},
                     "xattr": {"setxattr", "removexattr", "getxattr", "listxattr"},
                     "fd": {k for k, _ in self.WEIGHTS if k.startswith("fd")}}.get(w, set())
        self.kinds = [k for k, w in self.WEIGHTS for _ in range(w) if k not in drop]
        self.slots = set()
        # (path, name) pairs that probably carry an xattr, so removexattr/getxattr hit
        self.xhint = [("a.txt", "user.color"), ("a.txt", "user.empty"), ("d1/y", "user.y"),
                      ("d1", "user.dir"), ("a2.txt", "user.a2"), ("uo", "user.overlay.opaque")]

    def fresh(self, existing):
        r = self.rng
        dirs = [p for p, t in existing.items() if t == "dir"] + [""]
        roll = r.random()
        if roll < 0.85:
            parent = r.choice(sorted(dirs))
        else:
            parent = r.choice(self.pool)
        self.fresh_n += 1
        name = r.choice(["n%d" % self.fresh_n] * 8 + ["f %d" % self.fresh_n,
                        ".wh.n%d" % self.fresh_n, "L%d-" % self.fresh_n + "x" * 200])
        path = os.path.join(parent, name) if parent else name
        self.pool.append(path)
        return path

    def existing(self, existing, types=None):
        cands = sorted(p for p, t in existing.items() if types is None or t in types)
        if not cands:
            return self.rng.choice(self.pool)
        return self.rng.choice(cands)

    def any(self, existing, types=None):
        roll = self.rng.random()
        if roll < 0.7:
            return self.existing(existing, types)
        if roll < 0.9:
            return self.rng.choice(self.pool)
        return self.fresh(existing)

    def target(self, existing, at):
        r = self.rng
        roll = r.random()
        if roll < 0.15:
            return "nowhere-%d" % r.randrange(3)
        dest = self.any(existing)
        base = os.path.dirname(at)
        t = os.path.relpath(dest, base or ".")
        return t

    def next(self, existing):
        r = self.rng
        kind = r.choice(self.kinds)
        if kind == "write":
            how = r.choice(["trunc", "trunc", "excl", "creat", "creat", "rw", "wronly",
                            "append", "append"])
            path = self.any(existing, ("file", "symlink")) if r.random() < 0.75 else \
                self.fresh(existing) if r.random() < 0.6 else self.any(existing)
            n = r.choice([0, 1, 10, 100, 4096, 5000, 70000])
            off = r.choice([0, 0, 0, 5, 4096, 100000, 1 << 20])
            return ("write", path, how, r.random() < 0.1, off, n, r.randrange(1 << 30))
        if kind == "read":
            path = self.any(existing, ("file", "symlink"))
            if r.random() < 0.6:
                return ("read", path, 0, None)
            return ("read", path, r.choice([0, 3, 4096, 1 << 20, 5 << 20]), r.choice([1, 100, 9000]))
        if kind == "truncate":
            return ("truncate", self.any(existing, ("file",)),
                    r.choice([0, 1, 7, 4096, 10000, 3 << 20]))
        if kind == "stat":
            return ("stat", self.any(existing), r.random() < 0.3)
        if kind == "readdir":
            return ("readdir", self.any(existing, ("dir",)) if r.random() < 0.95 else "")
        if kind == "readlink":
            return ("readlink", self.any(existing, ("symlink",)))
        if kind == "unlink":
            return ("unlink", self.any(existing, ("file", "symlink", "fifo")
                                       if r.random() < 0.8 else None))
        if kind == "rmdir":
            if r.random() < 0.5:
                dirs = sorted(p for p, t in existing.items() if t == "dir")
                empty = [d for d in dirs if not any(q.startswith(d + "/") for q in existing)]
                if empty:
                    return ("rmdir", r.choice(empty))
            return ("rmdir", self.any(existing, ("dir",) if r.random() < 0.85 else None))
        if kind == "rmtree":
            return ("rmtree", self.any(existing, ("dir",)))
        if kind == "mkdir":
            path = self.fresh(existing) if r.random() < 0.7 else self.any(existing)
            return ("mkdir", path, r.choice([0o755, 0o700, 0o775, 0o1777]))
        if kind == "mkfifo":
            return ("mkfifo", self.fresh(existing) if r.random() < 0.8 else self.any(existing),
                    0o644)
        if kind == "symlink":
            path = self.fresh(existing) if r.random() < 0.8 else self.any(existing)
            return ("symlink", self.target(existing, path), path)
        if kind == "link":
            src = self.any(existing, ("file", "symlink", "fifo") if r.random() < 0.85 else None)
            dst = self.fresh(existing) if r.random() < 0.8 else self.any(existing)
            return ("link", src, dst)
        if kind == "rename":
            flags = r.choice([0] * 7 + [RENAME_NOREPLACE] * 2 + [RENAME_EXCHANGE] * 2)
            src = self.any(existing)
            roll = r.random()
            if roll < 0.45:
                dst = self.fresh(existing)
            elif roll < 0.85:
                st = existing.get(src)
                dst = self.any(existing, (st,) if st else None)
            else:
                dst = self.any(existing)
            return ("rename", src, dst, flags)
        if kind == "chmod":
            return ("chmod", self.any(existing, None if r.random() < 0.3 else ("file", "dir")),
                    r.choice(self.MODES))
        if kind == "utime":
            at = (T_OLD // 10**9 - r.randrange(1, 10**8)) * 10**9 + r.randrange(10**9)
            mt = (T_OLD // 10**9 - r.randrange(1, 10**8)) * 10**9 + r.randrange(10**9)
            return ("utime", self.any(existing), at, mt, r.random() < 0.2)
        if kind == "setxattr":
            name = r.choice(self.XNAMES)
            val = "v%d" % r.randrange(1000) if name != "user.big" else "B" * r.choice([1000, 3000])
            path = self.any(existing, ("file", "dir") if r.random() < 0.8 else None)
            self.xhint.append((path, name))
            return ("setxattr", path, name, val, r.choice([0, 0, 0, XATTR_CREATE, XATTR_REPLACE]))
        if kind == "removexattr":
            if r.random() < 0.6:
                return ("removexattr",) + r.choice(self.xhint)
            return ("removexattr", self.any(existing, ("file", "dir")), r.choice(self.XNAMES))
        if kind == "getxattr":
            if r.random() < 0.5:
                return ("getxattr",) + r.choice(self.xhint)
            name = r.choice(self.XNAMES + ["trusted.overlay.opaque", "user.overlay.opaque"])
            return ("getxattr", self.any(existing), name)
        if kind == "listxattr":
            return ("listxattr", self.any(existing))
        if kind == "chown":
            ids = [0, 0, 1000, 65534]
            return ("chown", self.any(existing), r.choice(ids), r.choice(ids), r.random() < 0.3)
        if kind == "mknod":
            return ("mknod", self.fresh(existing) if r.random() < 0.7 else self.any(existing),
                    r.choice(["whiteout", "whiteout", "null", "reg"]))
        if kind.startswith("fd") and kind != "fdopen":
            slot = r.choice(sorted(self.slots)) if self.slots and r.random() < 0.9 \
                else r.randrange(3)
            if kind == "fdclose":
                self.slots.discard(slot)
        if kind == "fdopen":
            path = self.any(existing, ("file",)) if r.random() < 0.85 else self.fresh(existing)
            slot = r.randrange(3)
            self.slots.add(slot)
            return ("fdopen", slot, path, r.choice(["r", "r", "rw", "w", "creat",
                                                             "append"]))
        if kind == "fdwrite":
            return ("fdwrite", slot, r.choice([0, 0, 3, 4096, 70000]),
                    r.choice([1, 100, 5000]), r.randrange(1 << 30))
        if kind == "fdread":
            return ("fdread", slot, r.choice([0, 0, 3, 4096]), r.choice([10, 9000]))
        if kind == "fdtruncate":
            return ("fdtruncate", slot, r.choice([0, 5, 9000]))
        if kind in ("fdstat", "fdclose", "fdfsync"):
            return (kind, slot)
        if kind == "opendir":
            return ("opendir", self.any(existing),
                    r.choice([os.O_DIRECTORY, os.O_WRONLY, os.O_RDWR, os.O_RDONLY]))
        raise AssertionError(kind)


# ---------------------------------------------------------------------------
# Comparison helpers

class Mismatch(Exception):
    def __init__(self, category, detail, op_index=None):
        super().__init__(detail)
        self.category = category
        self.detail = detail
        self.op_index = op_index


def diff_trees(a, b, what, label_a, label_b, skip=()):
    """Return (category, text) for the first differences, or None."""
    lines = []
    cat = None
    for path in sorted(set(a) | set(b)):
        if path in skip:
            continue
        da, db = a.get(path), b.get(path)
        if da is None or db is None:
            cat = cat or "%s: missing entry" % what
            lines.append("  %s: %s=%s %s=%s" % (path, label_a,
                         "absent" if da is None else da.get("type"), label_b,
                         "absent" if db is None else db.get("type")))
            continue
        for k in sorted((set(da) | set(db)) - {"_ino"}):
            if da.get(k) != db.get(k):
                cat = cat or "%s: %s differs" % (what, k)
                lines.append("  %s: %s: %s=%r %s=%r" % (path, k, label_a, da.get(k),
                                                       label_b, db.get(k)))
        if len(lines) > 30:
            lines.append("  ...")
            break
    if not lines:
        return None
    return cat, "\n".join(lines)


# ---------------------------------------------------------------------------
# One run: one seed (or a replayed/minimised op list)

class Config:
    pass


def run_case(cfg, seed, prepop, ops=None, nops=0, quiet=False):
    """Returns (passed, mismatch_or_None, executed_ops, notes)."""
    tmp = tempfile.mkdtemp(prefix="unionfs-diff-%d-" % seed, dir=cfg.tmpdir)
    notes = []
    executed = []
    mounts = []
    fdsets = []
    say = (lambda *a: None) if quiet else log
    try:
        base = os.path.join(tmp, "base")
        os.makedirs(base)
        lowers_b, _ = build_layers(base, prepop, cfg.without)
        for side in ("A", "B"):
            run_cmd(["cp", "-a", base, os.path.join(tmp, side)], timeout=120)
        lower_names = [os.path.basename(l) for l in lowers_b]
        sides = {}
        for side in ("A", "B"):
            d = os.path.join(tmp, side)
            os.makedirs(os.path.join(d, "work"))
            os.makedirs(os.path.join(d, "mnt"))
            sides[side] = {"lowers": [os.path.join(d, n) for n in lower_names],
                           "upper": os.path.join(d, "up"), "mnt": os.path.join(d, "mnt"),
                           "work": os.path.join(d, "work")}
        lower_snap = {s: [raw_walk(l, full_xattrs=True, with_times=True)
                          for l in sides[s]["lowers"]] for s in sides}
        lstack = LowerStack(sides["A"]["lowers"])
        pool = set()
        for layer in lowers_b + [os.path.join(base, "up")]:
            pool.update(raw_walk(layer).keys())

        A, B = sides["A"], sides["B"]
        ma = KernelMount(A["lowers"], A["upper"], A["work"], A["mnt"])
        if cfg.self_test_kernel:
            mb = KernelMount(B["lowers"], B["upper"], B["work"], B["mnt"])
        else:
            mb = FuseMount(cfg.bin, B["lowers"], B["upper"], B["mnt"],
                           os.path.join(tmp, "daemon.log"), cfg.fuse_opts)
        mounts = [ma, mb]
        touch_progress()
        ma.mount()
        mb.mount()
        la, lb = "kernel", ("kernel#2" if cfg.self_test_kernel else "unionfs-cpp")

        def compare_trees(when, idx):
            touch_progress()
            probs = []
            ta = mount_walk(A["mnt"])
            tb = mount_walk(B["mnt"], check_dino=not cfg.self_test_kernel, problems=probs)
            check_watchdog()
            d = diff_trees(strip_private(ta), strip_private(tb), "visible tree", la, lb)
            if d:
                raise Mismatch(d[0], "  (visible trees compared %s)\n" % when + d[1], idx)
            ga, gb = link_groups(ta), link_groups(tb)
            if ga != gb:
                raise Mismatch("visible tree: hard-link groups differ",
                               "  (%s)\n  %s: %s\n  %s: %s" % (when, la, ga, lb, gb), idx)
            if probs:
                raise Mismatch("visible tree: st_ino inconsistency",
                               "  (%s)\n" % when + "\n".join("  " + p for p in probs[:10]), idx)

        compare_trees("at start", None)
        fds_a, fds_b = {}, {}
        fdsets.extend([fds_a, fds_b])
        gen = Generator(seed, pool, cfg.without) if ops is None else None
        total = nops if ops is None else len(ops)
        for i in range(total):
            check_watchdog()
            touch_progress()
            if gen is not None:
                op = gen.next(existing_types(A["mnt"]))
            else:
                op = ops[i]
            executed.append(op)
            ra = apply_op(A["mnt"], op, fds_a)
            rb = apply_op(B["mnt"], op, fds_b)
            check_watchdog()
            if cfg.inject and i == cfg.inject_at:
                if cfg.inject == "kill-daemon" and isinstance(mb, FuseMount):
                    mb.proc.kill()      # our own child: simulates a crash of the daemon
                    mb.proc.wait(timeout=10)
                if cfg.inject == "stop-daemon" and isinstance(mb, FuseMount):
                    os.kill(mb.proc.pid, signal.SIGSTOP)   # simulates a hung daemon
                inject_runtime(cfg.inject, B["mnt"], ra)
                if cfg.inject == "result":
                    rb = ("err", "EIO")
            if cfg.stats is not None:
                key = (op[0], ra[0] if ra[0] == "ok" else ra[1])
                cfg.stats[key] = cfg.stats.get(key, 0) + 1
            if ra != rb and not same_modulo_kernel_ino(ra, rb, op):
                raise Mismatch("result of an operation: " + result_signature(ra, rb),
                               "  %s: %r\n  %s: %r" % (la, ra, lb, rb), i)
            if cfg.check_every and (i + 1) % cfg.check_every == 0:
                compare_trees("after op %d" % i, i)
        close_fds(fds_a)
        close_fds(fds_b)
        compare_trees("at end", total - 1 if total else None)
        touch_progress()
        ma.unmount()
        mb.unmount()
        probs = mb.problems()
        if probs:
            raise Mismatch("daemon problem", "\n".join(probs), None)
        if cfg.inject in ("upper-whiteout", "upper-opaque", "lower"):
            inject_layers(cfg.inject, B, lstack, A)
        # upper layers
        ua = raw_walk(A["upper"])
        ub = raw_walk(B["upper"])
        for name in cfg.ignore_upper:
            for k in [k for k in ub if k == name or k.startswith(name + "/")]:
                del ub[k]
        na, nb = [], []
        ua_n = normalise_upper(ua, lstack, na, la)
        ub_n = normalise_upper(ub, lstack, nb, lb)
        d = diff_trees(strip_private(ua_n), strip_private(ub_n), "upper layer", la, lb)
        if d:
            raise Mismatch(d[0], d[1], None)
        if link_groups(ua, 1) != link_groups(ub, 1):
            raise Mismatch("upper layer: hard-link groups differ", "  %s: %s\n  %s: %s" % (
                la, link_groups(ua, 1), lb, link_groups(ub, 1)), None)
        notes += [n for n in na if n.replace(la, "", 1) not in [x.replace(lb, "", 1) for x in nb]]
        notes += [n for n in nb if n.replace(lb, "", 1) not in [x.replace(la, "", 1) for x in na]]
        # lower layers untouched
        for s in ("A", "B"):
            for i, l in enumerate(sides[s]["lowers"]):
                now = raw_walk(l, full_xattrs=True, with_times=True)
                d = diff_trees(strip_private(lower_snap[s][i]), strip_private(now),
                               "lower layer %s of %s" % (lower_names[i], la if s == "A" else lb),
                               "before", "after")
                if d:
                    raise Mismatch(d[0], d[1], None)
        return True, None, executed, notes
    except Mismatch as m:
        if len(mounts) > 1 and isinstance(mounts[1], FuseMount):
            for fds in fdsets:
                close_fds(fds)
            try:
                mounts[1].cleanup()
            except Exception:
                pass
            probs = mounts[1].problems()
            if probs and "daemon problem" not in m.category:
                m.detail += "\n  daemon: " + "\n".join(probs)
        return False, m, executed, notes
    except Exception as ex:
        if not isinstance(ex, Fatal):
            ex = Fatal("harness error: %s\n%s" % (ex, traceback.format_exc()))
        f = ex
        extra = ""
        if len(mounts) > 1 and isinstance(mounts[1], FuseMount):
            extra = "\n" + "\n".join(mounts[1].problems() or ["daemon output (tail):\n" +
                                                             mounts[1].log_text()[-4000:]])
        return False, Mismatch("fatal", str(f) + extra, len(executed) - 1 if executed else None), \
            executed, notes
    finally:
        for fds in fdsets:
            close_fds(fds)
        for m in reversed(mounts):
            try:
                m.cleanup()
            except Exception as e:
                log("cleanup failed: %s" % e)
            if m in ACTIVE_MOUNTS:
                ACTIVE_MOUNTS.remove(m)
        if cfg.keep:
            say("kept temp dir %s" % tmp)
        else:
            if not any(mountinfo_entry(os.path.join(tmp, s, "mnt")) for s in ("A", "B")):
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                log("NOT removing %s: something is still mounted there" % tmp)


# --- fault injection for --self-test -----------------------------------------

def inject_runtime(kind, mnt, ra):
    if kind == "tree-mode":
        for p, t in sorted(existing_types(mnt).items()):
            if t == "file":
                os.chmod(os.path.join(mnt, p), 0o611)
                return
    if kind == "tree-content":
        for p, t in sorted(existing_types(mnt).items()):
            if t == "file":
                fp = os.path.join(mnt, p)
                st = os.lstat(fp)
                with open(fp, "r+b") as f:    # same size and mtime, other content
                    b = f.read(1)
                    f.seek(0)
                    f.write(bytes([(b[0] ^ 1) if b else 0]))
                os.utime(fp, ns=(st.st_atime_ns, st.st_mtime_ns))
                return
    if kind == "tree-xattr":
        os.setxattr(os.path.join(mnt, "d1"), "user.injected", b"1")


def inject_layers(kind, side, lstack, other):
    if kind == "upper-whiteout":
        # a whiteout that hides a lower file that the other side still shows (so it is
        # effective and not normalised away)
        for name in sorted(os.listdir(side["lowers"][0])):
            if lstack.resolve(name) and not os.path.lexists(os.path.join(other["upper"], name)) \
                    and not os.path.lexists(os.path.join(side["upper"], name)):
                os.mknod(os.path.join(side["upper"], name), 0o600 | stat.S_IFCHR,
                         os.makedev(0, 0))
                return
    if kind == "upper-opaque":
        p = os.path.join(side["upper"], "d1")
        os.makedirs(p, exist_ok=True)
        os.setxattr(p, "trusted.overlay.opaque", b"y")
    if kind == "lower":
        os.chmod(os.path.join(side["lowers"][0], "empty"), 0o600)


# ---------------------------------------------------------------------------
# Minimisation (ddmin over the recorded op list)

def minimise(cfg, seed, prepop, ops, failure, budget):
    t_end = time.monotonic() + budget
    want = failure.category
    tries = [0]

    def fails(sub):
        tries[0] += 1
        ok, m, _, _ = run_case(cfg, seed, prepop, ops=sub, quiet=True)
        return (not ok) and m is not None and m.category == want

    cur = list(ops)
    n = 2
    while len(cur) >= 2 and time.monotonic() < t_end:
        chunk = max(1, len(cur) // n)
        reduced = False
        for start in range(0, len(cur), chunk):
            if time.monotonic() >= t_end:
                break
            cand = cur[:start] + cur[start + chunk:]
            if cand and fails(cand):
                cur = cand
                n = max(n - 1, 2)
                reduced = True
                break
        if not reduced:
            if chunk == 1:
                break
            n = min(len(cur), n * 2)
    return cur, tries[0], time.monotonic() >= t_end


# ---------------------------------------------------------------------------

def report_failure(cfg, seed, prepop, m, executed):
    log("FAIL seed %d (%s upper): %s" % (seed, "pre-populated" if prepop else "empty",
                                         m.category))
    if m.op_index is not None and m.op_index < len(executed):
        if m.category == "fatal":
            log("  during or right after op #%d: %s" % (m.op_index, fmt_op(executed[m.op_index])))
        elif m.category.startswith("result of"):
            log("  at op #%d: %s" % (m.op_index, fmt_op(executed[m.op_index])))
        else:
            log("  found by the check after op #%d (%s); the op that caused it may be "
                "earlier" % (m.op_index, fmt_op(executed[m.op_index])))
    log(m.detail)
    ops = executed[:m.op_index + 1] if m.op_index is not None else executed
    budget = min(cfg.minimize_budget, STATE["deadline"] - time.monotonic() - 90)
    if cfg.minimize and ops and m.category != "fatal" and not cfg.inject and budget >= 20:
        cfg.minimize = False     # only the first failure: keep the total time bounded
        log("  minimising %d ops (budget %ds) ..." % (len(ops), budget))
        small, tries, timed_out = minimise(cfg, seed, prepop, ops, m, budget)
        ok, m2, _, _ = run_case(cfg, seed, prepop, ops=small, quiet=True)
        log("  minimal reproduction (%d ops, %d runs%s), replay with --replay FILE:" % (
            len(small), tries, ", budget exhausted" if timed_out else ""))
        for j, op in enumerate(small):
            log("    %3d  %s" % (j, fmt_op(op)))
        if m2 is not None:
            log("  which gives: %s" % m2.category)
            log("\n".join("  " + l for l in m2.detail.splitlines()[:12]))
        ops = small
    os.makedirs(os.path.join(cfg.tmpdir, "unionfs-diff-repros"), exist_ok=True)
    path = os.path.join(cfg.tmpdir, "unionfs-diff-repros", "seed%d.json" % seed)
    with open(path, "w") as f:
        json.dump({"seed": seed, "prepopulated": prepop, "without": cfg.without, "ops": ops}, f)
    log("  repro written to %s (rerun: %s --bin BIN --replay %s)" % (path, sys.argv[0], path))


def self_test(args):
    me = [sys.executable, os.path.abspath(__file__), "--self-test-kernel", "--no-minimize",
          "--seeds", "1", "--ops", str(args.ops or 120)]
    failed = 0
    p = subprocess.run(me, timeout=600, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = p.stdout.decode(errors="replace")
    ok = p.returncode == 0
    log("self-test: kernel vs kernel -> exit %d (%s)" % (p.returncode, "ok" if ok else "WRONG"))
    if not ok:
        log(out)
        failed += 1
    expect = {"result": "result of an operation", "tree-mode": "mode differs",
              "tree-content": "sha differs", "tree-xattr": "xattr",
              "upper-whiteout": "upper layer", "upper-opaque": "upper layer",
              "lower": "lower layer"}
    for kind, word in expect.items():
        p = subprocess.run(me + ["--inject", kind, "--inject-at", "30"], timeout=600,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out = p.stdout.decode(errors="replace")
        ok = p.returncode == 1 and word in out and "1 failed" in out
        log("self-test: injected %-15s -> exit %d (%s)" % (kind, p.returncode,
                                                          "detected" if ok else "NOT DETECTED"))
        if not ok:
            log(out)
            failed += 1
    log("differential self-test: %d passed, %d failed" % (len(expect) + 1 - failed, failed))
    return 1 if failed else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", help="path to the unionfs-cpp binary")
    ap.add_argument("--seeds", type=int, default=6, help="run seeds 1..N (default 6)")
    ap.add_argument("--seed", type=int, action="append", help="run only this seed (repeatable)")
    ap.add_argument("--ops", type=int, default=400, help="operations per seed (default 400)")
    ap.add_argument("--check-every", type=int, default=20,
                    help="compare the visible trees every K operations (default 20)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directories")
    ap.add_argument("--replay", help="replay the op list in a JSON repro file")
    ap.add_argument("--no-minimize", dest="minimize", action="store_false")
    ap.add_argument("--minimize-budget", type=int, default=120, help="seconds (default 120)")
    ap.add_argument("--timeout", type=int, default=780, help="global time limit in seconds")
    ap.add_argument("--op-timeout", type=int, default=60,
                    help="abort if one step makes no progress for this long")
    ap.add_argument("--tmpdir", default="/tmp")
    ap.add_argument("--fuse-opt", action="append", default=[],
                    help="extra -o option for unionfs-cpp (repeatable)")
    ap.add_argument("--ignore-upper", action="append", default=[],
                    help="top-level name in unionfs-cpp's upper to ignore (repeatable)")
    ap.add_argument("--keep-going", action="store_true",
                    help="run all seeds even after a failure")
    ap.add_argument("--without", action="append", default=[], choices=sorted(WITHOUT),
                    help="leave a feature out, to look past a known mismatch (repeatable)")
    ap.add_argument("--stats", action="store_true",
                    help="print how often each operation succeeded or failed with each errno")
    ap.add_argument("--self-test-kernel", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--self-test", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--inject", help=argparse.SUPPRESS)
    ap.add_argument("--inject-at", type=int, default=30, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        log("differential: skipped (needs root and /dev/fuse)")
        return 77
    with open("/proc/filesystems") as f:
        if "overlay" not in f.read():
            run_cmd(["modprobe", "overlay"], check=False)
    if args.self_test:
        return self_test(args)
    if not args.self_test_kernel and not args.bin:
        ap.error("--bin is required (or --self-test-kernel)")
    if args.bin and not os.access(args.bin, os.X_OK):
        ap.error("not executable: %s" % args.bin)

    cfg = Config()
    cfg.bin = os.path.abspath(args.bin) if args.bin else None
    cfg.self_test_kernel = args.self_test_kernel
    cfg.keep = args.keep
    cfg.check_every = args.check_every
    cfg.minimize = args.minimize
    cfg.minimize_budget = args.minimize_budget
    cfg.tmpdir = args.tmpdir
    cfg.fuse_opts = args.fuse_opt
    cfg.ignore_upper = args.ignore_upper
    cfg.inject = args.inject
    cfg.inject_at = args.inject_at
    cfg.stats = {} if args.stats else None
    cfg.without = args.without
    for w in cfg.without:
        log("left out (--without %s): %s" % (w, WITHOUT[w]))

    os.umask(0o022)
    STATE["deadline"] = time.monotonic() + args.timeout
    STATE["op_timeout"] = args.op_timeout
    threading.Thread(target=watchdog, daemon=True).start()

    def on_signal(signum, frame):
        raise Fatal("signal %d" % signum)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    # backstop if the main thread is stuck somewhere the watchdog cannot unblock
    signal.signal(signal.SIGALRM, on_signal)
    signal.alarm(args.timeout + 60)

    for name, why in SKIPS:
        log("skipped: %s because %s" % (name, why))
    log("B side: %s" % ("kernel overlayfs (self-test)" if cfg.self_test_kernel
                        else "%s -o %s" % (cfg.bin, ",".join(["whiteout=overlay"] + cfg.fuse_opts))))

    passed = failed = 0
    try:
        if args.replay:
            with open(args.replay) as f:
                rep = json.load(f)
            ops = [tuple(o) for o in rep["ops"]]
            cfg.minimize = False
            cfg.without = rep.get("without", cfg.without)
            ok, m, executed, notes = run_case(cfg, rep["seed"], rep["prepopulated"], ops=ops)
            for n in notes:
                log("  note: " + n)
            if ok:
                passed += 1
                log("replay: passed (%d ops)" % len(ops))
            else:
                failed += 1
                report_failure(cfg, rep["seed"], rep["prepopulated"], m, executed)
        else:
            seeds = args.seed or list(range(1, args.seeds + 1))
            for seed in seeds:
                prepop = seed % 2 == 1
                t0 = time.monotonic()
                ok, m, executed, notes = run_case(cfg, seed, prepop, nops=args.ops)
                for n in notes:
                    log("  note: seed %d: %s" % (seed, n))
                if ok:
                    passed += 1
                    log("ok   seed %d (%s upper, %d ops, %.1fs)" % (
                        seed, "pre-populated" if prepop else "empty", len(executed),
                        time.monotonic() - t0))
                else:
                    failed += 1
                    report_failure(cfg, seed, prepop, m, executed)
                    if STATE["fired"] or (m.category == "fatal" and "signal" in m.detail):
                        break
                    if not args.keep_going and time.monotonic() > STATE["deadline"] - 60:
                        break
    except Fatal as f:
        log("aborted: %s" % f)
        failed += 1
    finally:
        cleanup_all()
        signal.alarm(0)
    if cfg.stats:
        kinds = sorted({k for k, _ in cfg.stats})
        for k in kinds:
            log("stats: %-12s %s" % (k, ", ".join("%s=%d" % (r, n) for (kk, r), n in
                                                 sorted(cfg.stats.items()) if kk == k)))
    log("differential: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        cleanup_all()
