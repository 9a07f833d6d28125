#!/usr/bin/python3
"""End-to-end benchmark of unionfs-cpp against native directories and the other union filesystems.

Everything is measured through real mounts, side by side, in the same run:
  native         the bottom layer (or an equivalent plain directory), no union at all
  kernel-ovl     kernel overlayfs (mount -t overlay; at most 500 lower layers, one page of options)
  fuse-overlayfs containers/fuse-overlayfs (Debian package)
  unionfs-fuse   rpodgorny/unionfs-fuse (Debian package, -o cow)
  unionfs-cpp    this project

Measurements (median of --reps runs, each with its ratio to native and to kernel overlayfs):
  lookup     cold and warm lstat of present names (files only in the bottom layer) and of missing
             names, against depth. Cold = fresh mount, lower layers' dentry cache warm, first lstat
             of each name; warm = the same names again. The directory holding the names is looked
             into once, untimed, before the loop (its one-time cost is the "firststat" figure).
  firststat  the first lstat of a name in a directory merged over 256 layers, on a fresh mount (ms);
             pinned, also with the dentry and inode caches dropped after the mount.
  readdir    listing of that directory (256 layers x 50 names), first and second time (ms).
  read       sequential read of a 256 MiB lower file, cold (drop_caches) and warm (MiB/s).
  copyup     the first append (100 bytes) to a lower file of 1, 16, 256 MiB: open+write+close (ms).
  node       cold start of `node -e "require('express')"` with node_modules spread over N layers.

The timed loops run in a small C helper (statloop.c, compiled here with cc -O2), not in Python.
--pin runs the FUSE daemons and the measuring process on CPU 0 (taskset -c 0): a FUSE round trip
then costs a few us instead of a cross-CPU wake-up. By default the lookup-type figures (lookup,
firststat, readdir, node) are measured in both modes and the data path (read, copy-up) pinned; --full measures everything
in both modes; --no-pin only unpinned.

Mount hygiene: every mount is undone in a finally block (and at exit, and on SIGTERM/SIGINT) with
fusermount3 -u / umount, falling back to the lazy forms; daemons run in the foreground as our own
children so that only they are ever killed; every external command has a timeout; at the end
/proc/mounts is checked for anything left under the work directory.
"""

import argparse
import atexit
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
POOL_VERSION = "4"

SYSTEMS = ["native", "kernel-ovl", "fuse-overlayfs", "unionfs-fuse", "unionfs-cpp"]
UNIONS = SYSTEMS[1:]
FUSE_SYSTEMS = ["fuse-overlayfs", "unionfs-fuse", "unionfs-cpp"]
# unionfs-cpp reading kernel-format whiteouts only, as kernel overlayfs does (the default also
# reads OCI ".wh." markers, which costs two more lookups per layer on a directory's first use):
# measured in the firststat/readdir phase only.
UNIONFS_CPP_OVL = "unionfs-cpp -o whiteout=overlay"
SPREAD_SYSTEMS = SYSTEMS + [UNIONFS_CPP_OVL]
# unionfs-cpp with FUSE passthrough (root, Linux 6.9+): the kernel does the file I/O in the
# layers itself. Measured where files are opened and read (read, copy-up, Node.js): lookups do
# not change.
UNIONFS_CPP_PT = "unionfs-cpp -o passthrough"
DATA_SYSTEMS = SYSTEMS + [UNIONFS_CPP_PT]
KERNEL_MAX_LOWER = 500  # OVL_MAX_STACK in fs/overlayfs/params.h
PAGE = 4096

SPREAD_LAYERS = 256  # the merged directory r/ of the firststat/readdir figures
SPREAD_NAMES = 50
BIG_SIZES = {"1m": 1 << 20, "16m": 16 << 20, "256m": 256 << 20}
READ_DEPTH = 4

PROFILES = {
    "quick": dict(depths=[1, 16, 256], names=500, reps=3, node_depths=[], node_runs=5,
                  copyup_sizes=["1m", "16m", "256m"], both_modes_all=False, rep_cap_s=6,
                  slow_cap_s=4),
    "default": dict(depths=[1, 4, 16, 64, 256, 1000], names=2000, reps=3, node_depths=[16, 64],
                    node_runs=5, copyup_sizes=["1m", "16m", "256m"], both_modes_all=False,
                    rep_cap_s=10, slow_cap_s=8),
    "full": dict(depths=[1, 4, 16, 64, 256, 500, 1000], names=4000, reps=5,
                 node_depths=[16, 64, 256], node_runs=7, copyup_sizes=["1m", "16m", "256m"],
                 both_modes_all=True, rep_cap_s=120, slow_cap_s=1e9),
}
MAX_NAMES = 4000


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# External commands and mounts

class CmdError(RuntimeError):
    pass


def run(cmd, timeout, cwd=None, check=True, capture=True, env=None):
    try:
        p = subprocess.run(cmd, cwd=cwd, timeout=timeout, env=env, text=True,
                           stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                           stderr=subprocess.PIPE if capture else subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise CmdError(f"timed out after {timeout}s: {' '.join(cmd)[:300]}")
    if check and p.returncode != 0:
        raise CmdError(f"exit {p.returncode}: {' '.join(cmd)[:300]}: {(p.stderr or '').strip()[-500:]}")
    return p


def mounted_points():
    pts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4]
            pts.append(mp.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
                       .replace("\\134", "\\"))
    return pts


def is_mounted(path):
    return os.path.realpath(path) in mounted_points()


ACTIVE = {}  # mountpoint -> Mount


class MountError(RuntimeError):
    pass


class Mount:
    """One mount of one system over one stack. Use as a context manager: always unmounts."""

    def __init__(self, h, system, lowers, workdir, pinned, lower_cwd=None):
        self.h, self.system, self.lowers, self.pinned = h, system, lowers, pinned
        self.lower_cwd = lower_cwd  # directory the lower paths are relative to (kernel-ovl)
        self.dir = workdir
        self.upper = os.path.join(workdir, "u")
        self.work = os.path.join(workdir, "w")
        self.mnt = os.path.join(workdir, "m")
        self.proc = None
        self.log_path = os.path.join(workdir, "daemon.log")
        self.logf = None
        self.t_mount = None
        self.t_unmount = None

    def __enter__(self):
        for d in (self.upper, self.work, self.mnt):
            os.makedirs(d)
        try:
            self._mount()
        except BaseException:
            self.unmount()
            raise
        return self

    def __exit__(self, *exc):
        self.unmount()
        return False

    def _taskset(self):
        return ["taskset", "-c", "0"] if self.pinned else []

    def _mount(self):
        t0 = time.monotonic()
        abs_lowers = [os.path.join(self.lower_cwd, l) if self.lower_cwd else l for l in self.lowers]
        if self.system == "kernel-ovl":
            if len(self.lowers) > KERNEL_MAX_LOWER:
                raise MountError(f"kernel overlayfs takes at most {KERNEL_MAX_LOWER} lower layers")
            opts = (f"lowerdir={':'.join(reversed(self.lowers))},upperdir={self.upper},"
                    f"workdir={self.work}")
            if len(opts) >= PAGE:
                raise MountError(f"mount options are {len(opts)} bytes, more than one page")
            ACTIVE[self.mnt] = self
            p = run(["mount", "-t", "overlay", "overlay", "-o", opts, self.mnt], timeout=60,
                    cwd=self.lower_cwd, check=False)
            if p.returncode != 0:
                ACTIVE.pop(self.mnt, None)
                raise MountError(f"mount -t overlay failed: {p.stderr.strip()[-300:]}")
            self.t_mount = time.monotonic() - t0
            return
        if self.system == "fuse-overlayfs":
            cmd = [self.h.tools["fuse-overlayfs"], "-f", "-o",
                   f"lowerdir={':'.join(reversed(abs_lowers))},upperdir={self.upper},"
                   f"workdir={self.work}", self.mnt]
        elif self.system == "unionfs-fuse":
            branches = [f"{self.upper}=RW"] + [f"{l}=RO" for l in reversed(abs_lowers)]
            cmd = [self.h.tools["unionfs-fuse"], "-f", "-o", "cow", ":".join(branches), self.mnt]
        elif self.system == "unionfs-cpp":
            cmd = [self.h.tools["unionfs-cpp"], "-f", ":".join(abs_lowers + [self.upper]), self.mnt]
        elif self.system == UNIONFS_CPP_OVL:
            cmd = [self.h.tools["unionfs-cpp"], "-f", "-o", "whiteout=overlay",
                   ":".join(abs_lowers + [self.upper]), self.mnt]
        elif self.system == UNIONFS_CPP_PT:
            cmd = [self.h.tools["unionfs-cpp"], "-f", "-o", "passthrough",
                   ":".join(abs_lowers + [self.upper]), self.mnt]
        else:
            raise MountError(f"unknown system {self.system}")
        self.logf = open(self.log_path, "w")
        ACTIVE[self.mnt] = self
        self.proc = subprocess.Popen(self._taskset() + cmd, stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 60
        real = os.path.realpath(self.mnt)
        while time.monotonic() < deadline:
            if real in mounted_points():
                self.t_mount = time.monotonic() - t0
                return
            if self.proc.poll() is not None:
                raise MountError(f"{self.system} exited with {self.proc.returncode} before the "
                                 f"mount was live: {self.daemon_log()}")
            time.sleep(0.003)
        raise MountError(f"{self.system}: mount not live after 60 s")

    def daemon_log(self, n=400):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-n:].strip()
        except OSError:
            return ""

    def unmount(self):
        errors = []
        t0 = time.monotonic()
        if self.mnt in ACTIVE or (os.path.isdir(self.mnt) and is_mounted(self.mnt)):
            if self.system == "kernel-ovl":
                attempts = [["umount", self.mnt], ["umount", self.mnt], ["umount", "-l", self.mnt]]
            else:
                attempts = [["fusermount3", "-u", self.mnt], ["fusermount3", "-u", self.mnt],
                            ["fusermount3", "-uz", self.mnt]]
            for i, cmd in enumerate(attempts):
                if not is_mounted(self.mnt):
                    break
                if i:
                    time.sleep(0.5)
                try:
                    p = run(cmd, timeout=30, check=False)
                    if p.returncode != 0:
                        errors.append(p.stderr.strip())
                except CmdError as e:
                    errors.append(str(e))
            ACTIVE.pop(self.mnt, None)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                log(f"  ! {self.system} daemon {self.proc.pid} did not exit after unmount; SIGTERM")
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=5)
            if self.proc.returncode not in (0, None):
                self.h.note(f"{self.system} daemon exited with status {self.proc.returncode}: "
                            f"{self.daemon_log(200)}")
            self.proc = None
        if self.logf:
            self.logf.close()
            self.logf = None
        if self.t_unmount is None:
            self.t_unmount = time.monotonic() - t0
        if is_mounted(self.mnt):
            raise RuntimeError(f"could not unmount {self.mnt}: {errors}")
        txt = self.daemon_log(300)
        if txt and self.system.startswith("unionfs-cpp"):
            self.h.note(f"unionfs-cpp printed: {txt}")
        if not self.h.args.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def unmount_all():
    for m in list(ACTIVE.values()):
        try:
            m.unmount()
        except Exception as e:  # noqa: BLE001 - best effort at exit
            log(f"unmount of {m.mnt} failed: {e}")


# ------------------------------------------------------------------------------------------------
# Statistics and formatting

def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(v, digits=None):
    if v is None:
        return "–"
    if digits is None:
        digits = 0 if abs(v) >= 100 else 1 if abs(v) >= 10 else 2
    return f"{v:.{digits}f}"


def ratio(v, base):
    if v is None or not base:
        return "–"
    r = v / base
    if r >= 10000:
        return f"{r:.1e}×".replace("e+0", "e").replace("e+", "e")
    return f"{r:.0f}×" if r >= 100 else f"{r:.1f}×" if r >= 10 else f"{r:.2f}×"


def cell(v, nat, ovl, higher_better=False):
    """A value with its ratios to native and to kernel overlayfs (for throughput: base/value, so
    that >1 always means slower than the base)."""
    if v is None:
        return "–"
    if higher_better:
        rn = ratio(nat, v) if nat and v else "–"
        ro = ratio(ovl, v) if ovl and v else "–"
    else:
        rn, ro = ratio(v, nat), ratio(v, ovl)
    return f"{fmt(v)} ({rn} / {ro})"


def stat_cells(f, nat, ovl):
    """The first, second and next-16 stat cells of a firststat summary, with their ratios."""
    return " | ".join(cell(f[k], nat.get(k), ovl.get(k)) for k in ("first_ms", "second_ms",
                                                                     "rest_ms"))


# ------------------------------------------------------------------------------------------------
# The harness

class Harness:
    def __init__(self, args):
        self.args = args
        self.prof = dict(PROFILES[args.profile])
        if args.depths:
            self.prof["depths"] = [int(x) for x in args.depths.split(",")]
        if args.names:
            self.prof["names"] = min(args.names, MAX_NAMES)
        if args.reps:
            self.prof["reps"] = args.reps
        if args.no_node:
            self.prof["node_depths"] = []
        if args.pin:
            self.modes_lookup = self.modes_other = ["pinned"]
        elif args.no_pin:
            self.modes_lookup = self.modes_other = ["unpinned"]
        else:
            self.modes_lookup = ["pinned", "unpinned"]
            self.modes_other = ["pinned", "unpinned"] if self.prof["both_modes_all"] else ["pinned"]
        self.base = args.base
        self.pool = os.path.join(self.base, f"pool-v{POOL_VERSION}")
        self.L = os.path.join(self.pool, "L")
        self.runs = os.path.join(self.base, f"run-{os.getpid()}")
        self.tools = {}
        self.skipped = {}  # system -> reason (whole system unavailable)
        self.notes = []
        self.results = {"lookup": [], "firststat": [], "firststat_cold": [], "readdir": [],
                        "probecost": [], "read": [], "copyup": [], "node": []}
        self.counter = 0
        self.phase_times = {}

    def note(self, msg):
        if msg not in self.notes:
            self.notes.append(msg)
            log(f"  note: {msg}")

    def systems(self):
        wanted = self.args.systems.split(",") if self.args.systems else SYSTEMS
        return [s for s in SYSTEMS if s in wanted and s not in self.skipped]

    def newdir(self):
        self.counter += 1
        d = os.path.join(self.runs, f"k{self.counter}")
        os.makedirs(d)
        return d

    # ---- setup ----------------------------------------------------------------------------------
    def setup_tools(self):
        bin_path = os.path.abspath(self.args.bin)
        if not (os.path.isfile(bin_path) and os.access(bin_path, os.X_OK)):
            self.skipped["unionfs-cpp"] = f"binary {bin_path} not found (build it, or pass --bin)"
        else:
            self.tools["unionfs-cpp"] = bin_path
        for sysname, exe in (("fuse-overlayfs", "fuse-overlayfs"), ("unionfs-fuse", "unionfs-fuse")):
            path = shutil.which(exe)
            if path:
                self.tools[sysname] = path
            else:
                self.skipped[sysname] = (f"{exe} not installed (apt-get install -y {exe} "
                                         f"failed or was not run)")
        if not any("overlay" in l for l in open("/proc/filesystems")):
            run(["modprobe", "overlay"], timeout=30, check=False)
            if not any("overlay" in l for l in open("/proc/filesystems")):
                self.skipped["kernel-ovl"] = "overlay is not in /proc/filesystems"
        for s, why in self.skipped.items():
            log(f"skipping {s}: {why}")
        # The C helper.
        src = os.path.join(HERE, "statloop.c")
        self.helper_bin = os.path.join(self.base, "statloop")
        if (not os.path.exists(self.helper_bin)
                or os.path.getmtime(self.helper_bin) < os.path.getmtime(src)):
            run(["cc", "-O2", "-Wall", "-o", self.helper_bin, src], timeout=120)
        self.versions = {"kernel": platform.release()}
        for s, cmd in (("fuse-overlayfs", ["--version"]), ("unionfs-fuse", ["--version"]),
                       ("unionfs-cpp", ["--version"])):
            if s in self.tools:
                p = run([self.tools[s]] + cmd, timeout=10, check=False)
                lines = ((p.stdout or "") + (p.stderr or "")).strip().splitlines()
                mine = [l.strip() for l in lines if s.split("-")[0] in l and "fusermount" not in l]
                self.versions[s] = (mine or lines or ["?"])[0]
        if "unionfs-cpp" in self.tools:
            self.versions["unionfs-cpp-binary"] = self.tools["unionfs-cpp"]
            self.versions["unionfs-cpp-mtime"] = time.ctime(os.path.getmtime(self.tools["unionfs-cpp"]))
            cache = os.path.join(os.path.dirname(self.tools["unionfs-cpp"]), "CMakeCache.txt")
            try:
                for line in open(cache):
                    if line.startswith("CMAKE_BUILD_TYPE:"):
                        bt = line.split("=", 1)[1].strip()
                        self.versions["unionfs-cpp-build-type"] = bt
                        if bt != "Release":
                            self.note(f"unionfs-cpp was built as '{bt or 'default'}', not Release")
            except OSError:
                pass
            try:
                gh = run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], timeout=10)
                dirty = run(["git", "-C", REPO, "status", "--porcelain", "core", "fuse"],
                            timeout=10).stdout.strip()
                self.versions["git"] = gh.stdout.strip() + (" (core/fuse modified)" if dirty else "")
            except CmdError:
                pass

    def helper_cmd(self, pinned):
        return (["taskset", "-c", "0"] if pinned else []) + [self.helper_bin]

    def helper(self, args, pinned, cwd=None, timeout=900):
        p = run(self.helper_cmd(pinned) + args, timeout=timeout, cwd=cwd)
        return [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]

    def build_pool(self):
        stamp = os.path.join(self.pool, "stamp")
        if os.path.exists(stamp) and not self.args.rebuild_layers:
            return
        log(f"building the layer pool in {self.pool} (once; reused by later runs)")
        t0 = time.monotonic()
        for d in os.listdir(self.base) if os.path.isdir(self.base) else []:
            if d.startswith("pool-v") and d != f"pool-v{POOL_VERSION}":
                self._rmtree_safe(os.path.join(self.base, d))
        self._rmtree_safe(self.pool)
        depth_max = 1000
        for i in range(depth_max):
            d = os.path.join(self.L, str(i), "d")
            os.makedirs(d)
            open(os.path.join(d, f"l{i}"), "w").close()
            if i < SPREAD_LAYERS:
                r = os.path.join(self.L, str(i), "r")
                os.makedirs(r)
                for j in range(SPREAD_NAMES):
                    open(os.path.join(r, f"l{i}n{j}"), "w").close()
        bottom = os.path.join(self.L, "0")
        for k in range(MAX_NAMES):
            with open(os.path.join(bottom, "d", f"f{k:04d}"), "w") as f:
                f.write("x")
        # The native equivalent of the merged r/: one plain directory with the same listing.
        flat = os.path.join(self.pool, "flat", "r")
        os.makedirs(flat)
        for i in range(SPREAD_LAYERS):
            for j in range(SPREAD_NAMES):
                open(os.path.join(flat, f"l{i}n{j}"), "w").close()
        # Big files in the bottom layer, and scratch copies for the native in-place append.
        big = os.path.join(bottom, "big")
        os.makedirs(big)
        os.makedirs(os.path.join(self.pool, "scratch"))
        block = os.urandom(1 << 20)
        for name, size in BIG_SIZES.items():
            for path in (os.path.join(big, f"f{name}"), os.path.join(self.pool, "scratch", f"f{name}")):
                with open(path, "wb") as f:
                    for _ in range(size // len(block)):
                        f.write(block)
        with open(os.path.join(self.pool, "names"), "w") as f:
            f.write("".join(f"f{k:04d}\n" for k in range(MAX_NAMES)))
        run(["sync"], timeout=300)
        with open(stamp, "w") as f:
            f.write(POOL_VERSION + "\n")
        log(f"  pool built in {time.monotonic() - t0:.1f} s")

    def _rmtree_safe(self, path):
        real = os.path.realpath(path)
        for mp in mounted_points():
            if mp == real or mp.startswith(real + "/"):
                raise RuntimeError(f"refusing to remove {path}: {mp} is mounted under it")
        shutil.rmtree(path, ignore_errors=True)

    def lists(self, n):
        """Relative path lists (inside the mount) of n present and n missing names."""
        d = os.path.join(self.runs, "lists")
        os.makedirs(d, exist_ok=True)
        hit, miss = os.path.join(d, f"hit{n}"), os.path.join(d, f"miss{n}")
        if not os.path.exists(hit):
            with open(hit, "w") as f:
                f.write("".join(f"d/f{k:04d}\n" for k in range(n)))
            with open(miss, "w") as f:
                f.write("".join(f"d/m{k:04d}\n" for k in range(n)))
            with open(os.path.join(d, f"names{n}"), "w") as f:
                f.write("".join(f"f{k:04d}\nm{k:04d}\n" for k in range(n)))
        return hit, miss, os.path.join(d, f"names{n}")

    def lowers(self, depth):
        return [str(i) for i in range(depth)]  # bottom first, relative to self.L

    def warm_layers(self, depth, n):
        """Fills the dentry cache of the layers: every layer's d/ read, every name lstat()ed."""
        _, _, names = self.lists(n)
        dl = os.path.join(self.runs, "lists", f"dirs{depth}")
        with open(dl, "w") as f:
            f.write("".join(os.path.join(self.L, str(i), "d") + "\n" for i in range(depth)))
        self.helper(["warm", dl, names], pinned=False)

    def mount(self, system, depth, pinned, lower_root=None):
        lower_root = lower_root or self.L
        lowers = [str(i) for i in range(depth)]
        return Mount(self, system, lowers, self.newdir(), pinned, lower_cwd=lower_root)

    # ---- phases ---------------------------------------------------------------------------------
    def phase_lookup(self):
        n_default = self.prof["names"]
        reps = self.prof["reps"]
        failed = {}  # (mode, system) -> depth at which it failed
        est = {}  # (mode, system) -> (depth, seconds per rep per name)
        for mode in self.modes_lookup:
            pinned = mode == "pinned"
            for depth in self.prof["depths"]:
                self.warm_layers(depth, n_default)
                for system in self.systems():
                    key = (mode, system)
                    if key in failed:
                        continue
                    if system == "kernel-ovl" and depth > KERNEL_MAX_LOWER:
                        self.record_skip("lookup", mode, depth, system,
                                         f"kernel overlayfs stops at {KERNEL_MAX_LOWER} lower layers")
                        continue
                    n = n_default
                    if key in est:
                        d0, per_name = est[key]
                        guess = per_name * depth / d0 * n
                        if guess > self.prof["rep_cap_s"]:
                            n = max(200, int(n * self.prof["rep_cap_s"] / guess) // 100 * 100)
                    for rep in range(reps):
                        t0 = time.monotonic()
                        try:
                            r = self.one_lookup(system, depth, pinned, n)
                        except (MountError, CmdError, OSError) as e:
                            failed[key] = depth
                            self.record_skip("lookup", mode, depth, system, str(e))
                            break
                        r.update(mode=mode, depth=depth, system=system, rep=rep, names=n)
                        self.results["lookup"].append(r)
                        took = time.monotonic() - t0
                        est[key] = (depth, sum(r[k] for k in ("cold_hit_us", "cold_miss_us",
                                                              "warm_hit_us", "warm_miss_us")) / 1e6)
                        log(f"  lookup {mode:8} depth {depth:4} {system:14} rep {rep}: "
                            f"cold hit {r['cold_hit_us']:.1f} miss {r['cold_miss_us']:.1f}  "
                            f"warm hit {r['warm_hit_us']:.1f} miss {r['warm_miss_us']:.1f} us"
                            f"  (n={n}, {took:.1f}s; mount {r['mount_s'] or 0:.2f}s, first lookup"
                            f" in d/ {r['prime_ms']:.1f}ms, umount {r['unmount_s'] or 0:.2f}s)")

    def record_skip(self, phase, mode, depth, system, reason):
        self.results.setdefault("skips", []).append(
            dict(phase=phase, mode=mode, depth=depth, system=system, reason=reason))
        log(f"  skip {phase} {mode} depth {depth} {system}: {reason}")

    def one_lookup(self, system, depth, pinned, n):
        hit, miss, _ = self.lists(n)
        args = ["stat", "2", "-p", "d/.e2e-prime", hit, miss]
        if system == "native":
            out = self.helper(args, pinned, cwd=os.path.join(self.L, "0"))
            mount_s = None
        else:
            with self.mount(system, depth, pinned) as m:
                out = self.helper(args, pinned, cwd=m.mnt)
                mount_s = m.t_mount
        prime_ms = next((o["ns"] / 1e6 for o in out if "prime" in o), None)
        by = {(o["list"], o["pass"]): o for o in out if "list" in o}
        for (li, p), o in by.items():
            want = "ok" if li == 0 else "enoent"
            if o[want] != o["n"]:
                raise MountError(f"unexpected lstat results {o} (list {li}, pass {p})")
        return dict(cold_hit_us=by[(0, 1)]["ns_per_op"] / 1e3, warm_hit_us=by[(0, 2)]["ns_per_op"] / 1e3,
                    cold_miss_us=by[(1, 1)]["ns_per_op"] / 1e3,
                    warm_miss_us=by[(1, 2)]["ns_per_op"] / 1e3,
                    cold_hit_p50_us=by[(0, 1)]["p50_ns"] / 1e3,
                    cold_miss_p50_us=by[(1, 1)]["p50_ns"] / 1e3, mount_s=mount_s,
                    prime_ms=prime_ms, unmount_s=m.t_unmount if system != "native" else None)

    def phase_spread(self):
        """First stat into, and listing of, a directory merged over SPREAD_LAYERS layers."""
        depth = SPREAD_LAYERS
        lists = os.path.join(self.runs, "lists")
        os.makedirs(lists, exist_ok=True)
        first, second = os.path.join(lists, "first"), os.path.join(lists, "second")
        rest = os.path.join(lists, "rest")
        with open(first, "w") as f:
            f.write("r/l0n0\n")
        with open(second, "w") as f:
            f.write("r/l0n1\n")
        with open(rest, "w") as f:
            f.write("".join(f"r/l{i}n2\n" for i in range(0, SPREAD_LAYERS, SPREAD_LAYERS // 16)))
        dl = os.path.join(lists, "rdirs")
        with open(dl, "w") as f:
            f.write("".join(os.path.join(self.L, str(i), "r") + "\n" for i in range(depth)))
            f.write(os.path.join(self.pool, "flat", "r") + "\n")
        nl = os.path.join(lists, "rnames")
        with open(nl, "w") as f:
            f.write("l0n0\nl0n1\n" + "".join(f"l{i}n2\n" for i in range(0, SPREAD_LAYERS,
                                                                         SPREAD_LAYERS // 16)))
        self.helper(["warm", dl, nl], pinned=False)
        self.probe_cost(depth, lists)
        for mode in self.modes_lookup:
            pinned = mode == "pinned"
            bad, slow = set(), set()
            systems = self.systems()
            if "unionfs-cpp" in systems:
                systems.append(UNIONFS_CPP_OVL)
            for rep in range(self.prof["reps"]):
                for system in systems:
                    if system in bad or system in slow:
                        continue
                    t_rep = time.monotonic()
                    try:
                        if system == "native":
                            cwd = os.path.join(self.pool, "flat")
                            o = self.helper(["stat", "1", first, second, rest], pinned, cwd=cwd)
                            rd = self.helper(["readdir", "2", "r"], pinned, cwd=cwd)
                        else:
                            with self.mount(system, depth, pinned) as m:
                                o = self.helper(["stat", "1", first, second, rest], pinned,
                                                cwd=m.mnt)
                            with self.mount(system, depth, pinned) as m:
                                rd = self.helper(["readdir", "2", "r"], pinned, cwd=m.mnt)
                    except (MountError, CmdError, OSError) as e:
                        bad.add(system)
                        self.record_skip("firststat/readdir", mode, depth, system, str(e))
                        continue
                    if time.monotonic() - t_rep > self.prof["slow_cap_s"]:
                        slow.add(system)
                        self.note(f"{system}: one first-stat + readdir run over {SPREAD_LAYERS} "
                                  f"layers took {time.monotonic() - t_rep:.0f} s; measured once "
                                  f"({mode})")
                    if any(x["ok"] != x["n"] for x in o):
                        self.note(f"{system}: r/l0n0 or r/l0n1 not found through the mount: {o}")
                    want = SPREAD_LAYERS * SPREAD_NAMES + 2
                    if rd[0]["entries"] != want:
                        self.note(f"{system}: merged r/ lists {rd[0]['entries']} entries, "
                                  f"expected {want} (with . and ..)")
                    self.results["firststat"].append(dict(
                        mode=mode, system=system, rep=rep, depth=depth,
                        first_ms=o[0]["ns_per_op"] / 1e6, second_ms=o[1]["ns_per_op"] / 1e6,
                        rest_ms=o[2]["ns_per_op"] / 1e6))
                    self.results["readdir"].append(dict(
                        mode=mode, system=system, rep=rep, depth=depth, entries=rd[0]["entries"],
                        first_ms=rd[0]["ns"] / 1e6, second_ms=rd[1]["ns"] / 1e6))
                    log(f"  spread {mode:8} {system:14} rep {rep}: first stat "
                        f"{o[0]['ns_per_op'] / 1e6:.3f} ms, readdir {rd[0]['ns'] / 1e6:.2f} / "
                        f"{rd[1]['ns'] / 1e6:.2f} ms ({rd[0]['entries']} entries)")
            if pinned:
                self.spread_cold(systems, bad, slow, depth, first, second, rest)

    def probe_cost(self, depth, lists):
        """What each layer costs a first lookup that asks the layers one by one, measured outside
        any union (statloop probecost, pinned): the system calls unionfs-cpp's probe of a pending
        layer makes for r/l0n0 (absent in every layer but the bottom one), and reading one
        instance of r. Pass 1 is dropped (it may find the dentries cold)."""
        dirs = os.path.join(lists, "probedirs")
        with open(dirs, "w") as f:
            f.write("".join(os.path.join(self.L, str(i), "r") + "\n" for i in range(depth)))
        try:
            out = self.helper(["probecost", "6", "l0n0", dirs], pinned=True)
        except (CmdError, OSError) as e:
            self.note(f"probe cost not measured: {e}")
            return
        self.results["probecost"] = [x for x in out if x.get("pass", 0) > 1]
        for x in self.results["probecost"]:
            log(f"  probe cost pass {x['pass']}: name {x['stat_name_us']:.2f}, .wh. "
                f"{x['stat_wh_us']:.2f}, xattr {x['listxattr_us']:.2f}, opq "
                f"{x['stat_opq_us']:.2f}, read dir {x['read_dir_us']:.2f} us")

    def spread_cold(self, systems, skip, slow, depth, first, second, rest):
        """The same stats with the dentry and inode caches dropped after the mount (echo 2 >
        drop_caches: as on a first start after boot, but with the page cache kept, so that no
        disk read is timed). The warm-up above made the kernel's per-layer lookups of exactly
        these names dentry-cache hits; here every system looks each layer up for real. Systems
        too slow for repeated runs above are measured once."""
        skip = set(skip)
        for rep in range(self.prof["reps"]):
            for system in systems:
                if system in skip or (rep > 0 and system in slow):
                    continue
                try:
                    if system == "native":
                        self.drop_dentries()
                        o = self.helper(["stat", "1", first, second, rest], True,
                                        cwd=os.path.join(self.pool, "flat"))
                    else:
                        with self.mount(system, depth, True) as m:
                            self.drop_dentries()
                            o = self.helper(["stat", "1", first, second, rest], True, cwd=m.mnt)
                except (MountError, CmdError, OSError) as e:
                    skip.add(system)
                    self.record_skip("firststat cold", "pinned", depth, system, str(e))
                    continue
                self.results["firststat_cold"].append(dict(
                    mode="pinned", system=system, rep=rep, depth=depth,
                    first_ms=o[0]["ns_per_op"] / 1e6, second_ms=o[1]["ns_per_op"] / 1e6,
                    rest_ms=o[2]["ns_per_op"] / 1e6))
                log(f"  spread cold     {system:14} rep {rep}: first stat "
                    f"{o[0]['ns_per_op'] / 1e6:.3f} ms, second {o[1]['ns_per_op'] / 1e6:.3f} ms")

    def drop_dentries(self):
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("2\n")

    def drop_caches(self):
        run(["sync"], timeout=300)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")

    def data_systems(self):
        """The systems of the phases that open and read files: with -o passthrough as root."""
        systems = self.systems()
        if "unionfs-cpp" in systems and os.geteuid() == 0:
            systems.append(UNIONFS_CPP_PT)
        return systems

    def phase_read(self):
        rel = "big/f256m"
        size = BIG_SIZES["256m"]
        for mode in self.modes_other:
            pinned = mode == "pinned"
            bad = set()
            for rep in range(self.prof["reps"]):
                for system in self.data_systems():
                    if system in bad:
                        continue
                    try:
                        if system == "native":
                            self.drop_caches()
                            cold = self.helper(["read", rel, str(1 << 20)], pinned,
                                               cwd=os.path.join(self.L, "0"))[0]
                            warm = self.helper(["read", rel, str(1 << 20)], pinned,
                                               cwd=os.path.join(self.L, "0"))[0]
                        else:
                            with self.mount(system, READ_DEPTH, pinned) as m:
                                self.drop_caches()
                                cold = self.helper(["read", rel, str(1 << 20)], pinned, cwd=m.mnt)[0]
                                warm = self.helper(["read", rel, str(1 << 20)], pinned, cwd=m.mnt)[0]
                    except (MountError, CmdError, OSError) as e:
                        bad.add(system)
                        self.record_skip("read", mode, READ_DEPTH, system, str(e))
                        continue
                    if cold["bytes"] != size or warm["bytes"] != size:
                        self.note(f"{system}: read {cold['bytes']}/{warm['bytes']} bytes of {size}")
                    r = dict(mode=mode, system=system, rep=rep,
                             cold_mibs=size / (1 << 20) / (cold["ns"] / 1e9),
                             warm_mibs=size / (1 << 20) / (warm["ns"] / 1e9))
                    self.results["read"].append(r)
                    log(f"  read {mode:8} {system:14} rep {rep}: cold {r['cold_mibs']:.0f} "
                        f"warm {r['warm_mibs']:.0f} MiB/s")

    def phase_copyup(self):
        big = os.path.join(self.L, "0", "big")
        for mode in self.modes_other:
            pinned = mode == "pinned"
            bad = set()
            for name in self.prof["copyup_sizes"]:
                size = BIG_SIZES[name]
                lower = os.path.join(big, f"f{name}")
                scratch = os.path.join(self.pool, "scratch", f"f{name}")
                run(["cat", lower, scratch], timeout=300, capture=False)  # page cache warm
                for rep in range(self.prof["reps"]):
                    for system in self.data_systems():
                        if system in bad:
                            continue
                        try:
                            if system == "native":
                                o = self.helper(["append", scratch, "100"], pinned)[0]
                                os.truncate(scratch, size)
                            else:
                                with self.mount(system, READ_DEPTH, pinned) as m:
                                    o = self.helper(["append", f"big/f{name}", "100"], pinned,
                                                    cwd=m.mnt)[0]
                                    st = os.stat(os.path.join(m.mnt, "big", f"f{name}"))
                                    if st.st_size != size + 100:
                                        self.note(f"{system}: size after append {st.st_size}, "
                                                  f"expected {size + 100}")
                                if os.path.getsize(lower) != size:
                                    raise RuntimeError(f"{system} changed the LOWER file {lower}!")
                        except (MountError, CmdError, OSError) as e:
                            bad.add(system)
                            self.record_skip("copyup", mode, name, system, str(e))
                            continue
                        r = dict(mode=mode, system=system, rep=rep, size=name, ms=o["ns"] / 1e6,
                                 open_ms=o["open_ns"] / 1e6, close_ms=o["close_ns"] / 1e6)
                        self.results["copyup"].append(r)
                        log(f"  copyup {mode:8} {name:5} {system:14} rep {rep}: {r['ms']:.2f} ms "
                            f"(open {r['open_ms']:.2f}, close {r['close_ms']:.2f})")

    # ---- node -----------------------------------------------------------------------------------
    def npm_tree(self):
        prefix = os.path.join(self.base, "npm")
        nm = os.path.join(prefix, "node_modules")
        if os.path.isfile(os.path.join(nm, "express", "package.json")):
            return prefix
        node, npm = shutil.which("node"), shutil.which("npm")
        if not node or not npm:
            raise CmdError("node/npm not installed")
        log("installing express with npm (once)")
        os.makedirs(prefix, exist_ok=True)
        run([npm, "install", "express", "--prefix", prefix, "--no-audit", "--no-fund",
             "--cache", os.path.join(self.base, "npm-cache")], timeout=600)
        return prefix

    def node_pool(self, prefix, depth):
        root = os.path.join(self.pool, f"N{depth}")
        stamp = os.path.join(root, "stamp")
        if os.path.exists(stamp):
            return root
        self._rmtree_safe(root)
        nm = os.path.join(prefix, "node_modules")
        pkgs = []
        for e in sorted(os.listdir(nm)):
            if e.startswith("@") and os.path.isdir(os.path.join(nm, e)):
                pkgs += [os.path.join(e, s) for s in sorted(os.listdir(os.path.join(nm, e)))]
            elif not e.startswith("."):
                pkgs.append(e)
        for i in range(depth):
            os.makedirs(os.path.join(root, str(i), "app", "node_modules"))
        # Dot entries (.bin, .package-lock.json) stay in the bottom layer; package k goes to
        # layer k mod depth, so the packages are spread over all the layers.
        for e in os.listdir(nm):
            if e.startswith("."):
                src = os.path.join(nm, e)
                dst = os.path.join(root, "0", "app", "node_modules", e)
                if os.path.isdir(src) and not os.path.islink(src):
                    shutil.copytree(src, dst, symlinks=True)
                else:
                    shutil.copy2(src, dst, follow_symlinks=False)
        for k, p in enumerate(pkgs):
            dst = os.path.join(root, str(k % depth), "app", "node_modules", p)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copytree(os.path.join(nm, p), dst, symlinks=True)
        with open(os.path.join(root, "0", "app", "package.json"), "w") as f:
            f.write('{"name":"e2e-app","version":"1.0.0","private":true}\n')
        with open(stamp, "w") as f:
            f.write(f"{len(pkgs)} packages\n")
        return root

    def phase_node(self):
        try:
            prefix = self.npm_tree()
        except CmdError as e:
            self.record_skip("node", "-", "-", "all", f"cannot install express: {e}")
            return
        node = shutil.which("node")
        script = ("const t=process.hrtime.bigint();require('express');"
                  "process.stdout.write(String(process.hrtime.bigint()-t))")
        env = {k: v for k, v in os.environ.items() if not k.startswith("NODE_")}
        for depth in self.prof["node_depths"]:
            root = self.node_pool(prefix, depth)
            run(["sh", "-c", f"find {root} {prefix} -type f -exec cat {{}} + >/dev/null"],
                timeout=300)  # lower files and dentries warm
            for mode in self.modes_lookup:
                pinned = mode == "pinned"
                bad = set()
                for rep in range(self.prof["node_runs"]):
                    for system in self.data_systems():
                        if system in bad:
                            continue
                        cmd = (["taskset", "-c", "0"] if pinned else []) + [node, "-e", script]
                        try:
                            if system == "native":
                                t0 = time.monotonic()
                                p = run(cmd, timeout=120, cwd=prefix, env=env)
                                wall = time.monotonic() - t0
                            else:
                                with self.mount(system, depth, pinned, lower_root=root) as m:
                                    t0 = time.monotonic()
                                    p = run(cmd, timeout=120, cwd=os.path.join(m.mnt, "app"), env=env)
                                    wall = time.monotonic() - t0
                        except (MountError, CmdError, OSError) as e:
                            bad.add(system)
                            self.record_skip("node", mode, depth, system, str(e))
                            continue
                        r = dict(mode=mode, system=system, rep=rep, depth=depth,
                                 require_ms=int(p.stdout.strip()) / 1e6, wall_ms=wall * 1e3)
                        self.results["node"].append(r)
                        log(f"  node {mode:8} depth {depth:3} {system:14} rep {rep}: require "
                            f"{r['require_ms']:.1f} ms, process {r['wall_ms']:.1f} ms")

    # ---- report ---------------------------------------------------------------------------------
    def summary(self):
        S = {}

        def med(rows, key, **match):
            return median([r[key] for r in rows if all(r.get(k) == v for k, v in match.items())])

        L = self.results["lookup"]
        S["lookup"] = {}
        for mode in self.modes_lookup:
            for depth in self.prof["depths"]:
                for system in SYSTEMS:
                    rows = [r for r in L if r["mode"] == mode and r["depth"] == depth
                            and r["system"] == system]
                    if rows:
                        S["lookup"][f"{mode}/{depth}/{system}"] = {
                            k: med(rows, k) for k in ("cold_hit_us", "cold_miss_us", "warm_hit_us",
                                                      "warm_miss_us", "cold_hit_p50_us",
                                                      "cold_miss_p50_us", "mount_s", "prime_ms",
                                                      "unmount_s")
                        } | {"names": rows[0]["names"], "reps": len(rows)}
        for ph, keys in (("firststat", ("first_ms", "second_ms", "rest_ms")),
                         ("firststat_cold", ("first_ms", "second_ms", "rest_ms")),
                         ("readdir", ("first_ms", "second_ms")),
                         ("read", ("cold_mibs", "warm_mibs"))):
            S[ph] = {}
            for r in self.results[ph]:
                k = f"{r['mode']}/{r['system']}"
                if k not in S[ph]:
                    rows = [x for x in self.results[ph] if x["mode"] == r["mode"]
                            and x["system"] == r["system"]]
                    S[ph][k] = {kk: med(rows, kk) for kk in keys} | {"reps": len(rows)}
        P = self.results["probecost"]
        S["probecost"] = {k: median([x[k] for x in P]) for k in
                          ("stat_name_us", "stat_wh_us", "listxattr_us", "stat_opq_us",
                           "read_dir_us", "entries_per_dir")} if P else {}
        S["copyup"] = {}
        for r in self.results["copyup"]:
            k = f"{r['mode']}/{r['size']}/{r['system']}"
            if k not in S["copyup"]:
                rows = [x for x in self.results["copyup"] if x["mode"] == r["mode"]
                        and x["size"] == r["size"] and x["system"] == r["system"]]
                S["copyup"][k] = {kk: med(rows, kk) for kk in ("ms", "open_ms", "close_ms")}
        S["node"] = {}
        for r in self.results["node"]:
            k = f"{r['mode']}/{r['depth']}/{r['system']}"
            if k not in S["node"]:
                rows = [x for x in self.results["node"] if x["mode"] == r["mode"]
                        and x["depth"] == r["depth"] and x["system"] == r["system"]]
                S["node"][k] = {kk: med(rows, kk) for kk in ("require_ms", "wall_ms")} | {"runs": len(rows)}
        return S

    def markdown(self, S, elapsed):
        out = []
        w = out.append
        w("# unionfs-cpp end-to-end benchmark")
        w("")
        w(f"Run {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}, profile `{self.args.profile}`, "
          f"{elapsed / 60:.1f} min. Kernel {platform.release()}, {os.cpu_count()} CPUs, layers on "
          f"ext4 under `{self.base}`. Versions: "
          + "; ".join(f"{k}: {v}" for k, v in self.versions.items() if k != "kernel") + ". "
          f"Load average at start {' '.join(self.load_start)}, at end {' '.join(self.load_end)} "
          "(other work on the machine makes the figures noisier).")
        w("")
        w("Every figure is the median of the repeated runs; in parentheses its ratio to **native** "
          "and to **kernel overlayfs** measured in the same run (× native / × kernel-ovl; > 1 means "
          "slower, also for throughput). *pinned*: the FUSE daemon and the measuring process on "
          "CPU 0 (`taskset -c 0`); *unpinned*: the scheduler decides (a FUSE round trip may then "
          "wake the other CPU).")
        if self.skipped:
            w("")
            for s, why in self.skipped.items():
                w(f"- **{s} not measured**: {why}")
        w("")
        for mode in self.modes_lookup:
            w(f"## Lookup: µs per lstat ({mode})")
            w("")
            w("Present names live only in the bottom layer; missing names are in no layer. "
              "*Cold*: fresh mount, lower dentries cached, first lstat of each name (after one "
              "untimed lookup in their directory); *warm*: the same names again.")
            w("")
            w("The last column is the untimed first lookup in the directory (`d/.e2e-prime`, "
              "missing), which loads a merged directory where a system does so, ms.")
            w("")
            w("| depth | system | names | cold hit | cold miss | warm hit | warm miss | first in d/ ms |")
            w("|---:|---|---:|---:|---:|---:|---:|---:|")
            for depth in self.prof["depths"]:
                nat = S["lookup"].get(f"{mode}/{depth}/native", {})
                ovl = S["lookup"].get(f"{mode}/{depth}/kernel-ovl", {})
                for system in SYSTEMS:
                    v = S["lookup"].get(f"{mode}/{depth}/{system}")
                    if not v:
                        why = next((s["reason"] for s in self.results.get("skips", [])
                                    if s["phase"] == "lookup" and s["mode"] == mode
                                    and s["system"] == system and s["depth"] == depth), None)
                        if why:
                            w(f"| {depth} | {system} | | *skipped: {why[:120]}* | | | | |")
                        continue
                    cells = [cell(v[k], nat.get(k), ovl.get(k))
                             for k in ("cold_hit_us", "cold_miss_us", "warm_hit_us", "warm_miss_us")]
                    cells.append(fmt(v.get("prime_ms")) if system != "native" else "–")
                    w(f"| {depth} | {system} | {v['names']} | " + " | ".join(cells) + " |")
            w("")
        for mode in self.modes_lookup:
            if not any(k.startswith(mode + "/") for k in S["firststat"]):
                continue
            w(f"## A directory merged over {SPREAD_LAYERS} layers × {SPREAD_NAMES} names ({mode})")
            w("")
            w("*First stat*: lstat of `r/l0n0` (bottom layer) as the first operation on a fresh mount, "
              "ms; *second*: then `r/l0n1`; *next 16*: then 16 names from layers spread over the stack, "
              "mean per lstat. *Readdir*: opendir+readdir+closedir of `r` on another "
              f"fresh mount, first and second time, ms. Native: a plain directory with the same "
              f"{SPREAD_LAYERS * SPREAD_NAMES} names. `{UNIONFS_CPP_OVL}` reads kernel-format "
              "whiteouts only, as kernel overlayfs does; by default unionfs-cpp also reads OCI "
              "`.wh.` markers.")
            w("")
            w("| system | runs | first stat | second stat | next 16 (mean) | readdir first | readdir second |")
            w("|---|---:|---:|---:|---:|---:|---:|")
            nf, of_ = S["firststat"].get(f"{mode}/native", {}), S["firststat"].get(f"{mode}/kernel-ovl", {})
            nr, or_ = S["readdir"].get(f"{mode}/native", {}), S["readdir"].get(f"{mode}/kernel-ovl", {})
            for system in SPREAD_SYSTEMS:
                f = S["firststat"].get(f"{mode}/{system}")
                r = S["readdir"].get(f"{mode}/{system}")
                if not f:
                    continue
                w(f"| {system} | {f['reps']} | {stat_cells(f, nf, of_)} | "
                  f"{cell(r['first_ms'], nr.get('first_ms'), or_.get('first_ms'))} | "
                  f"{cell(r['second_ms'], nr.get('second_ms'), or_.get('second_ms'))} |")
            w("")
        if S["firststat_cold"]:
            w("## The same directory, dentry and inode caches dropped (pinned)")
            w("")
            w("As above, but `echo 2 > /proc/sys/vm/drop_caches` after the mount and before the "
              "first stat: every layer's `r` and names are looked up for real, as on a first start "
              "after boot (the page cache is kept, so no disk read is timed). Above, the warm-up "
              "left the kernel's lookups of exactly these names in the dentry cache, ms.")
            w("")
            w("| system | runs | first stat | second stat | next 16 (mean) |")
            w("|---|---:|---:|---:|---:|")
            nf = S["firststat_cold"].get("pinned/native", {})
            of_ = S["firststat_cold"].get("pinned/kernel-ovl", {})
            for system in SPREAD_SYSTEMS:
                f = S["firststat_cold"].get(f"pinned/{system}")
                if not f:
                    continue
                w(f"| {system} | {f['reps']} | {stat_cells(f, nf, of_)} |")
            w("")
        if S["probecost"]:
            P = S["probecost"]
            n = SPREAD_LAYERS - 1
            by_default = P["stat_name_us"] + P["stat_wh_us"] + P["listxattr_us"] + P["stat_opq_us"]
            overlay_only = P["stat_name_us"] + P["listxattr_us"]
            w(f"## What each layer costs a lookup from user space ({SPREAD_LAYERS} layers, pinned)")
            w("")
            w("`statloop probecost`, outside any union: the system calls with which unionfs-cpp "
              "asks a layer it has not opened `r` in about `r/l0n0` (the first stat above), each "
              f"timed over the {SPREAD_LAYERS} layers' `r` in turn, µs per call, median of 5 "
              "passes. The kernel makes the same lookups inside one system call.")
            w("")
            w("| `r/l0n0` | `r/.wh.l0n0` | opacity xattr of `r` | `r/.wh..wh..opq` | "
              f"reading `r` (openat, getdents64, close; {P['entries_per_dir']:.0f} entries with `.` and `..`) |")
            w("|---:|---:|---:|---:|---:|")
            w(f"| {P['stat_name_us']:.2f} | {P['stat_wh_us']:.2f} | {P['listxattr_us']:.2f} | "
              f"{P['stat_opq_us']:.2f} | {P['read_dir_us']:.2f} |")
            w("")
            w(f"So a first lookup that finds its name in the bottom layer spends at least "
              f"{n} × {by_default:.1f} µs = {n * by_default / 1000:.2f} ms in system calls when it "
              f"also reads OCI markers (unionfs-cpp's default), {n} × {overlay_only:.1f} µs = "
              f"{n * overlay_only / 1000:.2f} ms with kernel-format whiteouts only, and reading "
              f"every instance once costs {n * P['read_dir_us'] / 1000:.2f} ms.")
            w("")
        for mode in self.modes_other:
            if not any(k.startswith(mode + "/") for k in S["read"]) and \
                    not any(k.startswith(mode + "/") for k in S["copyup"]):
                continue
            w(f"## Data path ({mode}), stack of {READ_DEPTH} layers")
            w("")
            w("*Read*: sequential read of a 256 MiB lower file in 1 MiB reads, MiB/s; cold after "
              "`drop_caches`, warm = again. *Copy-up*: open(O_APPEND)+write(100 B)+close of a lower "
              "file (page cache warm), ms; native appends in place.")
            w("")
            sizes = self.prof["copyup_sizes"]
            w("| system | read cold MiB/s | read warm MiB/s | " +
              " | ".join(f"copy-up {s[:-1]} MiB ms" for s in sizes) + " |")
            w("|---|---:|---:|" + "---:|" * len(sizes))
            nrd, ord_ = S["read"].get(f"{mode}/native", {}), S["read"].get(f"{mode}/kernel-ovl", {})
            for system in DATA_SYSTEMS:
                rd = S["read"].get(f"{mode}/{system}", {})
                cu = [S["copyup"].get(f"{mode}/{s}/{system}", {}).get("ms") for s in sizes]
                if not rd and not any(cu):
                    continue
                cells = [cell(rd.get("cold_mibs"), nrd.get("cold_mibs"), ord_.get("cold_mibs"), True),
                         cell(rd.get("warm_mibs"), nrd.get("warm_mibs"), ord_.get("warm_mibs"), True)]
                for s, v in zip(sizes, cu):
                    cells.append(cell(v, S["copyup"].get(f"{mode}/{s}/native", {}).get("ms"),
                                      S["copyup"].get(f"{mode}/{s}/kernel-ovl", {}).get("ms")))
                w(f"| {system} | " + " | ".join(cells) + " |")
            w("")
        if S["node"]:
            for mode in self.modes_lookup:
                if not any(k.startswith(mode + "/") for k in S["node"]):
                    continue
                w(f"## Node.js cold start ({mode})")
                w("")
                w("`node -e \"require('express')\"` with express's node_modules packages spread over "
                  "N layers (package k in layer k mod N), fresh mount each run: time inside node "
                  "for `require('express')`, and of the whole process, ms.")
                w("")
                w("| layers | system | require ms | process ms |")
                w("|---:|---|---:|---:|")
                for depth in self.prof["node_depths"]:
                    nn = S["node"].get(f"{mode}/{depth}/native", {})
                    no = S["node"].get(f"{mode}/{depth}/kernel-ovl", {})
                    for system in DATA_SYSTEMS:
                        v = S["node"].get(f"{mode}/{depth}/{system}")
                        if v:
                            w(f"| {depth} | {system} | "
                              f"{cell(v['require_ms'], nn.get('require_ms'), no.get('require_ms'))} | "
                              f"{cell(v['wall_ms'], nn.get('wall_ms'), no.get('wall_ms'))} |")
                w("")
        skips = self.results.get("skips", [])
        if skips or self.notes:
            w("## Skipped and odd")
            w("")
            seen = set()
            for s in skips:
                k = (s["phase"], s["system"], s["reason"][:80])
                if k in seen:
                    continue
                seen.add(k)
                w(f"- {s['phase']} {s['system']} (from depth {s['depth']}, {s['mode']}): {s['reason'][:400]}")
            for n in self.notes:
                w(f"- {n[:500]}")
            w("")
        w("Raw data: `results.json`; plot: `lookup_vs_depth.png`. Reproduce: `scripts/bench_e2e.sh "
          + " ".join(sys.argv[1:]) + "`.")
        return "\n".join(out) + "\n"

    def plot(self, S, path):
        gp = shutil.which("gnuplot")
        if not gp:
            self.note("gnuplot not installed: no plot")
            return
        d = tempfile.mkdtemp(dir=self.runs)
        colors = {"native": "#000000", "kernel-ovl": "#1f77b4", "fuse-overlayfs": "#ff7f0e",
                  "unionfs-fuse": "#2ca02c", "unionfs-cpp": "#d62728"}
        series = {"hit": [], "miss": []}
        for kind in ("hit", "miss"):
            for mode in self.modes_lookup:
                for system in SYSTEMS:
                    pts = [(dep, S["lookup"][f"{mode}/{dep}/{system}"][f"cold_{kind}_us"])
                           for dep in self.prof["depths"] if f"{mode}/{dep}/{system}" in S["lookup"]]
                    if not pts:
                        continue
                    fn = os.path.join(d, f"{kind}-{mode}-{system}.dat")
                    with open(fn, "w") as f:
                        f.write("".join(f"{x} {y}\n" for x, y in pts))
                    dash = 1 if mode == "pinned" or len(self.modes_lookup) == 1 else 2
                    pt = 7 if dash == 1 else 6
                    title = system + (f" ({mode})" if len(self.modes_lookup) > 1 else f"")
                    series[kind].append(f"'{fn}' using 1:2 with linespoints lw 2 dt {dash} pt {pt} "
                                        f"ps 1.1 lc rgb '{colors[system]}' title '{title}'")
        if not series["hit"]:
            return
        ymin = max(0.1, min(v[f"cold_{k}_us"] for v in S["lookup"].values() for k in ("hit", "miss")
                            if v[f"cold_{k}_us"]) / 2)
        ymax = max(v[f"cold_{k}_us"] for v in S["lookup"].values() for k in ("hit", "miss")
                   if v[f"cold_{k}_us"]) * 40  # room for the key at the top
        xmax = max(self.prof["depths"]) * 1.6
        mode_txt = ("solid = pinned to CPU 0, dashed = unpinned" if len(self.modes_lookup) > 1
                    else self.modes_lookup[0])
        foot = (f"unionfs-cpp {self.versions.get('git', '')}, {self.versions.get('unionfs-cpp-build-type', '')}; "
                f"kernel overlayfs stops at {KERNEL_MAX_LOWER} lower layers; {platform.release()}, "
                f"{os.cpu_count()} CPUs; names per point: see RESULTS.md")
        script = f"""
set terminal pngcairo size 1500,760 noenhanced font 'DejaVu Sans,11'
set output '{path}'
set multiplot layout 1,2 title "Cold lookup latency vs layer depth (fresh mount, lower dentries cached; median of {self.prof['reps']}; {mode_txt})" font ',14'
set logscale xy
set xrange [0.8:{xmax}]
set yrange [{ymin}:{ymax}]
set xlabel 'lower layers (depth)'
set ylabel 'µs per lstat (log scale)'
set xtics ({', '.join(str(x) for x in self.prof['depths'])})
set grid xtics ytics mytics lc rgb '#dddddd'
set key inside top left vertical maxrows 5 font ',10' spacing 1.05 width 1 box opaque
set bmargin 5
set label 1 "{foot}" at screen 0.5, screen 0.015 center font ',9' 
set title 'present names (only in the bottom layer)'
plot {', '.join(series['hit'])}
set title 'missing names (in no layer)'
plot {', '.join(series['miss'])}
unset multiplot
"""
        with open(os.path.join(d, "plot.gp"), "w") as f:
            f.write(script)
        with open(os.path.join(os.path.dirname(path), "lookup_vs_depth.gp"), "w") as f:
            f.write(script.replace(d + "/", ""))
        run([gp, os.path.join(d, "plot.gp")], timeout=60)
        for fn in os.listdir(d):
            if fn.endswith(".dat"):
                shutil.copy(os.path.join(d, fn), os.path.join(os.path.dirname(path), "plotdata-" + fn))

    def main(self):
        t_start = time.monotonic()
        self.load_start = open("/proc/loadavg").read().split()[:3]
        os.makedirs(self.base, exist_ok=True)
        os.makedirs(self.runs)
        self.setup_tools()
        self.build_pool()
        phases = [("lookup", self.phase_lookup), ("spread", self.phase_spread),
                  ("read", self.phase_read), ("copyup", self.phase_copyup),
                  ("node", self.phase_node)]
        only = set(self.args.phases.split(",")) if self.args.phases else None
        for name, fn in phases:
            if only and name not in only:
                continue
            if name == "node" and not self.prof["node_depths"]:
                continue
            log(f"== phase {name}")
            t0 = time.monotonic()
            fn()
            self.phase_times[name] = round(time.monotonic() - t0, 1)
            log(f"   phase {name} took {self.phase_times[name]:.0f} s")
        elapsed = time.monotonic() - t_start
        self.load_end = open("/proc/loadavg").read().split()[:3]
        S = self.summary()
        res = self.args.results
        os.makedirs(res, exist_ok=True)
        md = self.markdown(S, elapsed)
        with open(os.path.join(res, "RESULTS.md"), "w") as f:
            f.write(md)
        with open(os.path.join(res, "results.json"), "w") as f:
            json.dump(dict(meta=dict(argv=sys.argv, profile=self.args.profile, prof=self.prof,
                                     modes_lookup=self.modes_lookup, modes_other=self.modes_other,
                                     versions=self.versions, skipped=self.skipped, notes=self.notes,
                                     phase_seconds=self.phase_times, elapsed_s=elapsed,
                                     loadavg_start=self.load_start, loadavg_end=self.load_end,
                                     date=datetime.datetime.now().isoformat()),
                           summary=S, raw=self.results), f, indent=1)
        try:
            self.plot(S, os.path.join(res, "lookup_vs_depth.png"))
        except CmdError as e:
            self.note(f"plot failed: {e}")
        print(md, end="")
        log(f"results in {res}/ (RESULTS.md, results.json, lookup_vs_depth.png); "
            f"{elapsed / 60:.1f} min")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", dest="profile", action="store_const", const="quick",
                   help="depths 1,16,256, 500 names, no node (~4 min)")
    g.add_argument("--full", dest="profile", action="store_const", const="full",
                   help="more depths, names, reps, node depths; everything in both CPU modes")
    pg = ap.add_mutually_exclusive_group()
    pg.add_argument("--pin", action="store_true",
                    help="only pinned: daemons and measuring process on CPU 0 (taskset -c 0)")
    pg.add_argument("--no-pin", action="store_true", help="only unpinned")
    ap.add_argument("--bin", default=os.environ.get("UNIONFS_BIN",
                                                    os.path.join(REPO, "build", "unionfs-cpp")),
                    help="the unionfs-cpp binary (default $UNIONFS_BIN or build/unionfs-cpp)")
    ap.add_argument("--systems", help="comma-separated subset of " + ",".join(SYSTEMS))
    ap.add_argument("--phases", help="comma-separated subset of lookup,spread,read,copyup,node")
    ap.add_argument("--depths", help="comma-separated lookup depths (override the profile)")
    ap.add_argument("--names", type=int, help=f"names per lookup list (max {MAX_NAMES})")
    ap.add_argument("--reps", type=int, help="repetitions per figure")
    ap.add_argument("--no-node", action="store_true", help="skip the Node.js cold start")
    ap.add_argument("--base", default="/var/tmp/unionfs-e2e",
                    help="work directory for layers and mounts (ext4, not tmpfs)")
    ap.add_argument("--results", default=os.path.join(HERE, "results"))
    ap.add_argument("--rebuild-layers", action="store_true", help="rebuild the cached layer pool")
    ap.add_argument("--keep", action="store_true", help="keep the per-mount upper/work dirs")
    ap.set_defaults(profile="default")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_e2e: must run as root (mounts, drop_caches)")
    args.base = os.path.realpath(args.base)

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    atexit.register(unmount_all)
    h = Harness(args)
    rc = 0
    try:
        h.main()
    finally:
        unmount_all()
        left = [mp for mp in mounted_points() if mp.startswith(args.base + "/")]
        if left:
            log(f"ERROR: mounts left behind under {args.base}: {left}")
            rc = 1
        else:
            log(f"mount check: nothing mounted under {args.base}")
            if not args.keep:
                h._rmtree_safe(h.runs)
    return rc


if __name__ == "__main__":
    sys.exit(main())
