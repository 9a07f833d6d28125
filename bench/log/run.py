#!/usr/bin/python3
"""Log-writing benchmark: a service appending small records to its log, on a union and on a volume.

Runs bench/log_bench.cc (one write(2) per 200-byte record, O_APPEND, optionally fdatasync every N
records; every write timed) against:

  lower        unionfs-cpp, the log already exists in a lower layer: opening it for writing copies
               it up to the upper layer first (the "copy-up pause"), then the appends go there
  new          unionfs-cpp, a new log created in the union (goes to the upper layer directly)
  volume-mount unionfs-cpp -v HOST_DIR:var/log/app: the log directory is a volume bind-mounted
               inside the mount (skipped if this unionfs-cpp has no --volume)
  volume       the same host directory written directly (what the bind mount gives: no FUSE)
  kovl-lower   kernel overlayfs reference, log in a lower layer (copy-up on open)
  kovl-new     kernel overlayfs reference, new log

for each initial log size (the size of the existing log; 1 MiB, 64 MiB, 1 GiB), each appending the
same amount (--append, default 8 MiB), with fsync none and every 100 records. Upper-layer growth is
`du` of the upper directory (of the volume directory for the volume cases) before and after.
Page cache is dropped before each run, so a copy-up reads the lower log from disk.

Results: bench/log/results/RESULTS.md (markdown table, also printed), results.json,
latency_over_time.png (gnuplot). Layers live under /var/tmp/unionfs-logbench: the lower logs and
volume logs are written once and reused (pool/), uppers and mount points are per run and removed.

Mount hygiene: every mount is undone in a finally block (and at exit, and on SIGTERM/SIGHUP) with
fusermount3 -u / umount, falling back to the lazy forms; the unionfs-cpp daemon runs in the
foreground as our own child so that only it is ever killed; every external command has a timeout;
at the end /proc/self/mountinfo is checked for anything left under the work directory.
"""

import argparse
import atexit
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
MiB = 1 << 20
GiB = 1 << 30
LOGDIR = "var/log/app"  # where the service's log lives inside the image
LOGNAME = "app.log"

CASES = ["lower", "new", "volume-mount", "volume", "kovl-lower", "kovl-new"]
CASE_LABEL = {
    "lower": "unionfs-cpp, existing log in lower layer (copy-up)",
    "new": "unionfs-cpp, new log in the union",
    "volume-mount": "unionfs-cpp --volume (bind mount in the union)",
    "volume": "volume: host directory, written directly",
    "kovl-lower": "kernel overlayfs, existing log in lower layer (copy-up)",
    "kovl-new": "kernel overlayfs, new log",
}
SHORT = {
    "lower": "unionfs-cpp: lower log (copy-up)", "new": "unionfs-cpp: new log",
    "volume-mount": "unionfs-cpp: --volume", "volume": "volume (host dir)",
    "kovl-lower": "kernel ovl: lower log (copy-up)", "kovl-new": "kernel ovl: new log",
}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class CmdError(RuntimeError):
    pass


def run(cmd, timeout, check=True, cwd=None):
    try:
        p = subprocess.run(cmd, timeout=timeout, text=True, cwd=cwd, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except subprocess.TimeoutExpired:
        raise CmdError(f"timed out after {timeout}s: {' '.join(cmd)[:300]}")
    if check and p.returncode != 0:
        raise CmdError(f"exit {p.returncode}: {' '.join(cmd)[:300]}: {p.stderr.strip()[-500:]}")
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


def fmt_size(n):
    if n >= GiB and n % GiB == 0:
        return f"{n // GiB} GiB"
    if n >= MiB:
        return f"{n / MiB:g} MiB"
    return f"{n / 1024:g} KiB" if n else "0"


def parse_size(s):
    s = s.strip()
    for suf, mul in (("GiB", GiB), ("G", GiB), ("MiB", MiB), ("M", MiB), ("KiB", 1024), ("K", 1024)):
        if s.endswith(suf):
            return int(float(s[: -len(suf)]) * mul)
    return int(s)


def du_bytes(path):
    """Disk blocks used under path, in bytes (what the file system really holds)."""
    p = run(["du", "-s", "-B1", path], timeout=120)
    return int(p.stdout.split()[0])


ACTIVE = {}  # mountpoint -> Mount


class Mount:
    """One mount of unionfs-cpp or kernel overlayfs; a context manager that always unmounts."""

    def __init__(self, kind, bin_path, lowers, rundir, volumes=()):
        self.kind, self.bin, self.lowers, self.volumes = kind, bin_path, lowers, list(volumes)
        self.upper = os.path.join(rundir, "upper")
        self.work = os.path.join(rundir, "work")
        self.mnt = os.path.join(rundir, "merged")
        self.log_path = os.path.join(rundir, "daemon.log")
        self.proc = None
        self.logf = None

    def __enter__(self):
        for d in (self.upper, self.work, self.mnt):
            os.makedirs(d, exist_ok=True)
        ACTIVE[self.mnt] = self
        try:
            self._mount()
        except BaseException:
            self.unmount()
            raise
        return self

    def __exit__(self, *exc):
        self.unmount()
        return False

    def _mount(self):
        if self.kind == "kovl":
            opts = (f"lowerdir={':'.join(reversed(self.lowers))},upperdir={self.upper},"
                    f"workdir={self.work}")
            run(["mount", "-t", "overlay", "overlay", "-o", opts, self.mnt], timeout=60)
            return
        cmd = [self.bin, "-f"]
        for host, path in self.volumes:
            cmd += ["-v", f"{host}:{path}"]
        cmd += [":".join(self.lowers + [self.upper]), self.mnt]
        self.logf = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        want = [os.path.realpath(self.mnt)] + [os.path.realpath(os.path.join(self.mnt, p))
                                               for _, p in self.volumes]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pts = mounted_points()
            if all(w in pts for w in want):
                return
            if self.proc.poll() is not None:
                raise CmdError(f"unionfs-cpp exited with {self.proc.returncode} before the mount "
                               f"was live: {self.daemon_log()}")
            time.sleep(0.005)
        raise CmdError("unionfs-cpp: mount not live after 60 s")

    def daemon_log(self, n=400):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-n:].strip()
        except OSError:
            return ""

    def unmount(self):
        errors = []
        # Volumes first (bind mounts inside the mount); the daemon also detaches them on exit.
        for _, p in reversed(self.volumes):
            sub = os.path.join(self.mnt, p)
            for cmd in (["umount", sub], ["umount", "-l", sub]):
                if not is_mounted(sub):
                    break
                p_ = run(cmd, timeout=30, check=False)
                if p_.returncode:
                    errors.append(p_.stderr.strip())
        if self.kind == "kovl":
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
                p_ = run(cmd, timeout=30, check=False)
                if p_.returncode:
                    errors.append(p_.stderr.strip())
            except CmdError as e:
                errors.append(str(e))
        ACTIVE.pop(self.mnt, None)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                log(f"  ! unionfs-cpp {self.proc.pid} still running after unmount; SIGTERM")
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=5)
            self.proc = None
        if self.logf:
            self.logf.close()
            self.logf = None
        if is_mounted(self.mnt):
            raise RuntimeError(f"could not unmount {self.mnt}: {errors}")


def unmount_all():
    for m in list(ACTIVE.values()):
        try:
            m.unmount()
        except Exception as e:  # noqa: BLE001 - best effort at exit
            log(f"unmount of {m.mnt} failed: {e}")


class Bench:
    def __init__(self, args):
        self.args = args
        self.base = args.base
        self.pool = os.path.join(self.base, "pool")
        self.runs = os.path.join(self.base, "runs")
        self.results = []
        self.notes = []
        self.nrun = 0

    def note(self, msg):
        if msg not in self.notes:
            self.notes.append(msg)
        log("  note: " + msg)

    # -- layers ---------------------------------------------------------------------------------
    def fill(self, path, size):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        run([self.args.log_bench, path, "--fill", str(size), "--record", str(self.args.record)],
            timeout=1800)

    def layers(self, size):
        """pool/<size>/lower (holds var/log/app/app.log of `size` bytes, and a bit of an image) and
        pool/<size>/volume (the volume's host directory, with its own app.log of `size` bytes)."""
        d = os.path.join(self.pool, str(size))
        lower = os.path.join(d, "lower")
        lower_log = os.path.join(lower, LOGDIR, LOGNAME)
        vol = os.path.join(d, "volume")
        vol_log = os.path.join(vol, LOGNAME)
        stamp = os.path.join(d, "ok")
        if not os.path.exists(stamp) or os.path.getsize(lower_log) != size:
            log(f"making the layers for a {fmt_size(size)} log (once, reused later)")
            shutil.rmtree(d, ignore_errors=True)
            for sub in ("etc", "usr/bin", LOGDIR):
                os.makedirs(os.path.join(lower, sub), exist_ok=True)
            with open(os.path.join(lower, "etc", "app.conf"), "w") as f:
                f.write("log=/var/log/app/app.log\n")
            self.fill(lower_log, size)
            os.makedirs(vol)
            shutil.copyfile(lower_log, vol_log)
            with open(stamp, "w") as f:
                f.write("ok\n")
        # The volume log grows in every volume run; put it back to its initial size.
        if os.path.getsize(vol_log) < size:
            shutil.copyfile(lower_log, vol_log)
        os.truncate(vol_log, size)
        for name in os.listdir(vol):
            if name != LOGNAME:
                os.unlink(os.path.join(vol, name))
        return lower, vol

    def drop_caches(self):
        if self.args.no_drop:
            return
        run(["sync"], timeout=300)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")

    # -- one run --------------------------------------------------------------------------------
    def bench(self, path, create, fsync_every):
        cmd = [self.args.log_bench, path, "--total", str(self.args.append), "--record",
               str(self.args.record), "--fsync-every", str(fsync_every), "--points",
               str(self.args.points)]
        if not create:
            cmd.append("--no-create")
        return json.loads(run(cmd, timeout=self.args.run_timeout).stdout)

    def one(self, case, size, fsync_every, lower, vol):
        self.nrun += 1
        rundir = os.path.join(self.runs, f"{self.nrun:03d}-{case}")
        shutil.rmtree(rundir, ignore_errors=True)
        os.makedirs(rundir)
        if case.startswith("volume"):
            os.truncate(os.path.join(vol, LOGNAME), size)  # every volume run starts at `size`
        try:
            if case == "volume":
                target, grow_dir, create = os.path.join(vol, LOGNAME), vol, False
                self.drop_caches()
                before = du_bytes(grow_dir)
                r = self.bench(target, create, fsync_every)
                run(["sync", "-f", grow_dir], timeout=300)
                after = du_bytes(grow_dir)
            else:
                kind = "kovl" if case.startswith("kovl") else "unionfs-cpp"
                volumes = [(vol, LOGDIR)] if case == "volume-mount" else []
                with Mount(kind, self.args.bin, [lower], rundir, volumes) as m:
                    name = "new.log" if case.endswith("new") else LOGNAME
                    target = os.path.join(m.mnt, LOGDIR, name)
                    grow_dir = vol if case == "volume-mount" else m.upper
                    create = case.endswith("new")
                    self.drop_caches()
                    before = du_bytes(grow_dir)
                    r = self.bench(target, create, fsync_every)
                    run(["sync", "-f", m.mnt], timeout=300)
                    after = du_bytes(grow_dir)
                    if kind == "unionfs-cpp":
                        txt = m.daemon_log(300)
                        if txt:
                            self.note(f"unionfs-cpp printed: {txt}")
        finally:
            shutil.rmtree(rundir, ignore_errors=True)
        del r["path"]
        r.update(case=case, log_size=size, growth=after - before,
                 growth_where="volume dir" if case.startswith("volume") else "upper dir")
        self.results.append(r)
        log(f"  {SHORT[case]:<34} fsync={fsync_every or 'none':<5} "
            f"{r['throughput_mib_s']:8.2f} MiB/s  p50 {r['p50_us']:8.1f} us  p99 "
            f"{r['p99_us']:9.1f} us  max {r['max_us']:10.1f} us  pause {r['pause_us'] / 1000:9.2f} ms"
            f"  growth {r['growth'] / MiB:8.1f} MiB")
        return r

    # -- report ---------------------------------------------------------------------------------
    def markdown(self, elapsed):
        a = self.args
        out = []
        out.append("# Log-writing benchmark: unionfs-cpp vs a volume\n")
        out.append(f"Generated by `scripts/bench_log.sh{' ' + ' '.join(a.argv) if a.argv else ''}` "
                   f"on {datetime.date.today().isoformat()} ({platform.node()}, kernel "
                   f"{platform.release()}, {os.cpu_count()} CPUs), {elapsed / 60:.1f} min.\n")
        out.append(f"Each run appends {fmt_size(a.append)} in {a.record}-byte records, one "
                   f"`write(2)` each (O_APPEND), to a log that starts at the size in the first "
                   f"column (a new log starts empty), with `fdatasync` every N records or never. "
                   f"Page cache dropped before each run. Latencies are per record "
                   f"(its write plus, when it triggers one, the fdatasync), µs. **Pause** is "
                   f"`open(2)` + the first write: where the log is in a lower layer, opening it "
                   f"for writing copies the whole file up first. **Upper growth** is `du` of the "
                   f"upper directory (of the volume directory for the volume rows) after minus "
                   f"before.\n")
        out.append("| log size | case | fsync | MiB/s | records/s | p50 µs | p99 µs | max µs "
                   "(after 1st) | pause ms | upper growth MiB |")
        out.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in self.results:
            size = fmt_size(r["log_size"]) if not r["case"].endswith("new") else \
                f"{fmt_size(r['log_size'])} (new: 0)"
            grow = f"{r['growth'] / MiB:.1f}"
            if r["case"].startswith("volume"):
                grow += " (volume)"
            out.append(f"| {size} | {SHORT[r['case']]} | {r['fsync_every'] or 'none'} | "
                       f"{r['throughput_mib_s']:.1f} | {r['records_per_s']:,.0f} | "
                       f"{r['p50_us']:.1f} | {r['p99_us']:.1f} | {r['max_after_first_us']:,.0f} | "
                       f"{r['pause_us'] / 1000:,.2f} | {grow} |")
        out.append("")
        out.append("Cases: " + "; ".join(f"`{SHORT[c]}` = {CASE_LABEL[c]}" for c in a.cases
                                         if any(r['case'] == c for r in self.results)) + ".\n")
        if self.notes:
            out.append("Notes:\n")
            out += [f"- {n}" for n in self.notes]
            out.append("")
        out.append("![write latency over time](latency_over_time.png)\n")
        return "\n".join(out) + "\n"

    def plot(self, path):
        size = max(r["log_size"] for r in self.results)
        res = os.path.dirname(path)
        series = [c for c in ("lower", "kovl-lower", "new", "volume") if c in self.args.cases]
        color = {"lower": "#d62728", "kovl-lower": "#9467bd", "new": "#ff7f0e",
                 "volume": "#2ca02c"}
        per = max(1, (self.args.append // self.args.record) // self.args.points)
        panels = []
        for fs in self.args.fsync:
            plots = []
            for c in series:
                r = next((r for r in self.results if r["case"] == c and r["log_size"] == size
                          and r["fsync_every"] == fs), None)
                if r is None:
                    continue
                dat = os.path.join(res, f"plotdata-{c}-fsync{fs}.dat")
                with open(dat, "w") as f:
                    f.write("# t_s p50_us max_us records (first row: open + first write)\n")
                    for row in r["series"]:
                        f.write(" ".join(str(x) for x in row) + "\n")
                pause = r["pause_us"] / 1000
                title = (f"{SHORT[c]}: pause {pause:,.0f} ms, p50 {r['p50_us']:,.0f} µs"
                         if pause >= 10 else
                         f"{SHORT[c]}: pause {pause:.2f} ms, p50 {r['p50_us']:.1f} µs")
                lc = f"lc rgb '{color[c]}'"
                plots.append(f"'{dat}' every ::1 using 1:3 with points {lc} pt 7 ps 0.25 notitle")
                plots.append(f"'{dat}' every ::1 using 1:2 with lines {lc} lw 2.5 title '{title}'")
                plots.append(f"'{dat}' every ::0::0 using 1:2 with points {lc} pt 7 ps 2.5 notitle")
            what = "no fsync" if not fs else f"fdatasync every {fs} records"
            panels.append(f"set title 'appending {fmt_size(self.args.append)} in "
                          f"{self.args.record}-byte records to a {fmt_size(size)} log, {what}' "
                          f"font ',14'\n"
                          f"plot " + ", \\\n     ".join(plots))
        gp = os.path.join(res, "latency_over_time.gp")
        with open(gp, "w") as f:
            f.write(f"""set terminal pngcairo size 1400,{560 * len(panels)} font 'DejaVu Sans,12'
set output '{path}'
set multiplot layout {len(panels)},1
set logscale xy
set format y '10^{{%L}}'
set format x '10^{{%L}}'
set xrange [1e-5:*]
set yrange [0.5:*]
set grid xtics ytics lc rgb '#dddddd'
set xlabel 'time since the log was opened, s (log scale)'
set ylabel 'write latency, µs (log scale)'
set key top left box opaque font ',11'
set label 1 'lines: median of each {per} records; small dots: their maximum (fsyncs); big dot: open + first write, where a copy-up happens' at graph 0.01, graph -0.17 font ',10'
set bmargin 5
""")
            f.write("\n".join(panels) + "\nunset multiplot\n")
        run(["gnuplot", gp], timeout=120)

    # -- main -----------------------------------------------------------------------------------
    def main(self):
        a = self.args
        t0 = time.monotonic()
        os.makedirs(self.runs, exist_ok=True)
        if "volume-mount" in a.cases:
            p = run([a.bin, "--help"], timeout=30, check=False)
            if "--volume" not in (p.stdout + p.stderr):
                a.cases.remove("volume-mount")
                self.note("this unionfs-cpp has no --volume yet: the volume is measured as the "
                          "host directory written directly (which is what the bind mount gives)")
        if not os.path.exists("/sys/module/overlay") and any(c.startswith("kovl") for c in a.cases):
            if run(["modprobe", "overlay"], timeout=60, check=False).returncode:
                a.cases = [c for c in a.cases if not c.startswith("kovl")]
                self.note("kernel overlayfs not available: its reference rows are skipped")
        self.note("the 'volume' rows write to the volume's host directory directly; the "
                  "'--volume' rows write through the unionfs-cpp mount to the same directory "
                  "bind-mounted inside it, so the kernel serves them without FUSE")
        load0 = os.getloadavg()
        for size in a.sizes:
            lower, vol = self.layers(size)
            log(f"log size {fmt_size(size)}:")
            for fs in a.fsync:
                for case in a.cases:
                    try:
                        self.one(case, size, fs, lower, vol)
                    except (CmdError, json.JSONDecodeError) as e:
                        self.note(f"{case}, {fmt_size(size)}, fsync {fs}: failed: {e}")
                        if case == "volume-mount":
                            a.cases.remove(case)
                            break
            lower, vol = self.layers(size)  # put the volume log back to its size
        elapsed = time.monotonic() - t0
        load1 = os.getloadavg()
        self.note(f"load average (1 min) {load0[0]:.1f} at the start and {load1[0]:.1f} at the end "
                  f"on {os.cpu_count()} CPUs: a FUSE write is a round trip to the daemon, so "
                  f"its latency suffers first when other work competes for the CPUs")
        os.makedirs(a.results, exist_ok=True)
        with open(os.path.join(a.results, "results.json"), "w") as f:
            json.dump({"date": datetime.datetime.now().isoformat(timespec="seconds"),
                       "host": platform.node(), "kernel": platform.release(),
                       "cpus": os.cpu_count(), "append_bytes": a.append,
                       "record_bytes": a.record, "sizes": a.sizes, "fsync": a.fsync,
                       "notes": self.notes, "runs": self.results}, f, indent=1)
        md = self.markdown(elapsed)
        try:
            self.plot(os.path.join(a.results, "latency_over_time.png"))
        except (CmdError, OSError, StopIteration, ValueError) as e:
            self.note(f"plot failed: {e}")
            md = self.markdown(elapsed)
        with open(os.path.join(a.results, "RESULTS.md"), "w") as f:
            f.write(md)
        print(md, end="")
        log(f"results in {a.results}/ (RESULTS.md, results.json, latency_over_time.png); "
            f"{elapsed / 60:.1f} min")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="log sizes 1 MiB and 64 MiB only, 4 MiB appended per run (~3 min)")
    ap.add_argument("--sizes", help="comma-separated initial log sizes (default 1M,64M,1G)")
    ap.add_argument("--append", help="bytes appended per run (default 8M; 4M with --quick)")
    ap.add_argument("--record", type=int, default=200, help="record size in bytes (default 200)")
    ap.add_argument("--fsync", default="0,100",
                    help="comma-separated fdatasync intervals in records; 0 = never (default 0,100)")
    ap.add_argument("--cases", default=",".join(CASES), help="subset of " + ",".join(CASES))
    ap.add_argument("--no-kernel", action="store_true", help="skip the kernel overlayfs rows")
    ap.add_argument("--no-drop", action="store_true", help="do not drop the page cache per run")
    ap.add_argument("--points", type=int, default=1500, help="points per latency series")
    ap.add_argument("--bin", default=os.environ.get("UNIONFS_BIN",
                                                    os.path.join(REPO, "build", "unionfs-cpp")))
    ap.add_argument("--log-bench", default=os.environ.get("LOG_BENCH_BIN",
                                                          os.path.join(REPO, "build", "log_bench")))
    ap.add_argument("--base", default="/var/tmp/unionfs-logbench",
                    help="work directory (layers, mounts), on a disk file system, not tmpfs")
    ap.add_argument("--results", help="output directory (default bench/log/results/, "
                    "bench/log/results/quick/ with --quick)")
    ap.add_argument("--run-timeout", type=int, default=900, help="seconds per log_bench run")
    args = ap.parse_args()
    argv, skip = [], False
    for x in sys.argv[1:]:  # the command as the user typed it (the script adds --bin/--log-bench)
        if skip:
            skip = False
        elif x in ("--bin", "--log-bench"):
            skip = True
        elif not x.startswith(("--bin=", "--log-bench=")):
            argv.append(x)
    args.argv = argv
    if args.results is None:
        args.results = os.path.join(HERE, "results", "quick") if args.quick else \
            os.path.join(HERE, "results")
    if os.geteuid() != 0:
        sys.exit("bench_log: must run as root (mounts, drop_caches)")
    args.sizes = [parse_size(s) for s in (args.sizes or ("1M,64M" if args.quick else "1M,64M,1G"))
                  .split(",")]
    args.append = parse_size(args.append or ("4M" if args.quick else "8M"))
    args.fsync = [int(x) for x in args.fsync.split(",")]
    args.cases = [c for c in args.cases.split(",") if c]
    bad = [c for c in args.cases if c not in CASES]
    if bad:
        sys.exit(f"bench_log: unknown case(s) {bad}")
    if args.no_kernel:
        args.cases = [c for c in args.cases if not c.startswith("kovl")]
    for b in (args.bin, args.log_bench):
        if not os.access(b, os.X_OK):
            sys.exit(f"bench_log: {b} not found (build it, or pass --bin / --log-bench)")
    args.base = os.path.realpath(args.base)

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    atexit.register(unmount_all)
    b = Bench(args)
    rc = 0
    try:
        b.main()
    finally:
        unmount_all()
        left = [mp for mp in mounted_points() if mp.startswith(args.base + "/")]
        if left:
            log(f"ERROR: mounts left behind under {args.base}: {left}")
            rc = 1
        else:
            log(f"mount check: nothing mounted under {args.base}")
            shutil.rmtree(b.runs, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
