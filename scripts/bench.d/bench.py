#!/usr/bin/env python3
"""The runner of scripts/bench: mounts the kernel's overlayfs (also with metacopy=on, for
chown/chmod), fuse-overlayfs and layerfs on the same generated lower layers, and uses the
merged tree materialised as a plain directory as the physical limit; runs every workload
on each (interleaved: kernel, ..., layerfs, plain, kernel, ...), the metadata workloads
also pinned to one CPU, and reports medians with min/max and the ratios of layerfs to the
kernel's overlayfs and to fuse-overlayfs. Started by scripts/bench, which builds what it
needs, owns the temporary directory and unmounts whatever is left under it on exit; see
scripts/bench --help for the options and sizes.
"""

import argparse
import csv
import datetime
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import gen_layers  # noqa: E402  (beside this file)
MIB = 1 << 20

# Sizes of the workloads that are not part of the generated layers (gen_layers.py has those).
WORK_SIZES = {
    "BENCH_CREATE_FILES": (5000, "files created by the small-file benchmark"),
    "BENCH_CREATE_BYTES": (4096, "bytes written into each of them"),
    "BENCH_RANDREADS": (50000, "random 4 KiB reads (fio)"),
    "BENCH_DEPTH_COLD": (1, "1: the lookup-depth rows also cold (caches dropped per mount)"),
}
# --quick: every dataset and workload, smaller. The lookup-depth paths and the chown/chmod
# tree are cut most: at 500 layers and with a copy-up (and its fsync) per file they are
# what takes the time.
QUICK = {
    "BENCH_LAYERS": 10,
    "BENCH_FILES": 3000,
    "BENCH_BIGDIR": 5000,
    "BENCH_BIG_MIB": 128,
    "BENCH_META_FILES": 200,
    "BENCH_UNTAR_FILES": 1000,
    "BENCH_DEPTH_FILES": 200,
    "BENCH_CREATE_FILES": 500,
    "BENCH_RANDREADS": 5000,
    "BENCH_DEPTH_COLD": 0,
}
TARGET_KEYS = ["kernel", "kernel-metacopy", "fuse-overlayfs", "layerfs", "plain"]
# Ratio columns: layerfs against these.
RATIO_AGAINST = ["kernel", "kernel-metacopy", "fuse-overlayfs"]
PIN = ["taskset", "-c", "0"]

# The rows of the table: key, label, unit kind. Kinds: "time" (seconds, lower is better),
# "rate" (per second, higher is better; the unit is in RATE_UNITS), "mem" (bytes, lower
# is better). The lookup-depth rows are added per depth (depth_rows). A pinned run of a
# row has the key KEY@pin.
ROWS = [
    ("walk_cold", "tree walk + lstat, cold (caches dropped, fresh mount)", "time"),
    ("walk_warm", "tree walk + lstat, warm (same mount again)", "time"),
    ("walk_fresh", "tree walk + lstat, fresh mount (host caches warm)", "time"),
    ("mount", "mount (host caches warm)", "time"),
    ("walk_p1", "walk on a fresh mount, 1 process", "time"),
    ("walk_p2", "walk on a fresh mount, 2 processes (each lstats half)", "time"),
    ("rss_hwm", "daemon peak RSS (VmHWM) after the cold and warm walks", "mem"),
    ("rss_node", "daemon RSS per cached node ((VmRSS after the walks - after mount) / entries)", "mem"),
    ("seq_cold", "sequential read of the big file, cold (caches dropped, fresh mount)", "rate:MiB/s"),
    ("seq_warm", "sequential read of the big file, warm (reopened)", "rate:MiB/s"),
    ("rand", "random 4 KiB reads (fio psync), fresh mount, lower in the host cache", "rate:IOPS"),
    ("create", "small files: create + write + close, new dir", "rate:files/s"),
    ("copyup", "copy-up of the big file: append one byte", "time"),
    ("copyup_sparse", "copy-up of the sparse file: append one byte", "time"),
    ("copyup_alloc", "space the sparse file's copy takes in the upper (st_blocks)", "mem"),
    ("chown", "chown -R of a lower tree", "time"),
    ("chmod", "chmod -R of a lower tree", "time"),
    ("readdir", "ls -f (readdir) of the big directory, cold (caches dropped, fresh mount)", "time"),
    ("readdir_stat", "readdir + lstat of the big directory, warm", "time"),
    ("untar", "untar a tarball into the mount", "time"),
    ("rm_untarred", "rm -rf of the untarred tree", "time"),
    ("rm_lower", "rm -rf of a lower tree (whiteouts)", "time"),
]


def depth_rows(depths):
    rows = []
    for n in depths:
        rows += [
            (f"depth{n}_exist", f"{n} layer{'s' if n != 1 else ''}: mount + lstat of the existing paths, fresh mount", "time"),
            (f"depth{n}_missing", f"{n} layer{'s' if n != 1 else ''}: lstat of the missing paths, same mount", "time"),
        ]
    for n in depths:
        rows += [
            (f"depth{n}_cold_exist", f"{n} layer{'s' if n != 1 else ''}: mount + lstat of the existing paths, cold", "time"),
            (f"depth{n}_cold_missing", f"{n} layer{'s' if n != 1 else ''}: lstat of the missing paths, cold, same mount", "time"),
        ]
    return rows


class Failed(Exception):
    """A workload or a mount failed; the message says how."""


class Log:
    """Writes to stdout and to the run's log file."""

    def __init__(self, path):
        self.file = open(path, "w", buffering=1)

    def __call__(self, *parts, end="\n"):
        text = " ".join(str(p) for p in parts) + end
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except (BrokenPipeError, OSError):
            pass
        self.file.write(text)


def env_int(name, table):
    value = os.environ.get(name, "")
    return int(value) if value else table[name][0]


def short(text, limit=160):
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- processes and mounts ---------------------------------------------------------------


def run(cmd, timeout, what=None, **kw):
    """Runs cmd; raises Failed with the command's last stderr line when it fails."""
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        raise Failed(f"{what or os.path.basename(cmd[0])}: timed out after {timeout} s") from None
    except OSError as e:
        raise Failed(f"{what or cmd[0]}: {e.strerror}") from None
    if p.returncode != 0:
        err = [line for line in p.stderr.splitlines() if line.strip()]
        msg = err[-1] if err else f"exit status {p.returncode}"
        raise Failed(f"{what or os.path.basename(cmd[0])}: {short(msg)}")
    return p


def mountinfo():
    """(mount point, major:minor, fstype) of every mount, unescaped."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
            out.append((point, fields[2], fields[sep + 1]))
    return out


def is_mounted(path):
    return any(p == path for p, _, _ in mountinfo())


def daemon_pid(mnt, names):
    """The pid of the FUSE daemon serving mnt: the process of that name whose command line
    holds the mount point (unique to this run)."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if args and os.path.basename(args[0]).decode(errors="replace") in names and mnt.encode() in args:
            return int(d)
    return None


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def proc_status(pid, field="VmRSS"):
    """A memory field of /proc/PID/status, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise Failed(f"no {field} in /proc/{pid}/status")


class Target:
    """One of the systems under test. "plain" is no mount at all: the merged tree
    materialised as a directory (the physical limit)."""

    def __init__(self, key, title, binary, daemon_names, ctx):
        self.key = key
        self.title = title
        self.binary = binary
        self.daemon_names = daemon_names
        self.ctx = ctx
        self.unavailable = None  # why this target cannot run, if it cannot
        self.mnt = os.path.join(ctx.tmp, "mnt", key)
        self.serial = 0
        self.pid = None

    @property
    def is_fuse(self):
        return bool(self.daemon_names)

    @property
    def is_kernel(self):
        return self.key.startswith("kernel")

    @property
    def is_plain(self):
        return self.key == "plain"

    def mount_cmd(self, upper, work, layers=None):
        """The mount command and the directory it runs in. The kernel gets the lower
        layers relative to their parent directory (a mount's options must fit in a page:
        500 layers do only with short names)."""
        layers = layers or self.ctx.manifest["layers"]  # bottom first
        cwd = None
        if self.is_kernel:
            cwd = os.path.dirname(layers[0])
            lowers = ":".join(os.path.basename(d) for d in reversed(layers))  # top first
        else:
            lowers = ":".join(reversed(layers))
        opts = f"lowerdir={lowers}" + (f",upperdir={upper},workdir={work}" if upper else "")
        if self.key == "kernel-metacopy":
            opts += ",metacopy=on"
        if self.is_kernel:
            return ["mount", "-t", "overlay", "overlay", "-o", opts, self.mnt], cwd
        return self.ctx.pin + [self.binary, "-o", opts, self.mnt], cwd

    def unmount(self):
        """Unmounts, waits for the daemon to end; forces it when a clean unmount fails."""
        if self.is_plain or not is_mounted(self.mnt):
            return
        cmd = ["umount", self.mnt] if self.is_kernel else ["fusermount3", "-u", self.mnt]
        done = False
        for _ in range(20):
            try:
                done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      timeout=30).returncode == 0
            except subprocess.TimeoutExpired:
                break
            if done:
                break
            time.sleep(0.25)
        if not done:
            self.force_unmount()
        self.wait_daemon()

    def force_unmount(self):
        for point, dev, fstype in mountinfo():
            if point == self.mnt and fstype.startswith("fuse"):
                minor = dev.split(":")[1]
                try:
                    with open(f"/sys/fs/fuse/connections/{minor}/abort", "w") as f:
                        f.write("1")
                except OSError:
                    pass
        subprocess.run(["umount", "-l", self.mnt], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=30)
        if self.pid and alive(self.pid):
            os.kill(self.pid, signal.SIGTERM)

    def wait_daemon(self):
        if not self.pid:
            return
        deadline = time.monotonic() + 10
        while alive(self.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        if alive(self.pid):
            os.kill(self.pid, signal.SIGKILL)
        self.pid = None


class Mount:
    """A fresh mount of a target with a new empty upper and workdir (none when readonly);
    unmounted and its upper removed on exit. depth=N mounts the lookup-depth stack of N
    layers instead of the image. For the plain target nothing is mounted: the path is the
    materialised merged tree, and the workloads that write undo their changes."""

    def __init__(self, target, readonly=False, depth=None):
        self.t = target
        self.readonly = readonly  # no upper (only for workloads that do not write)
        self.depth = depth
        self.seconds = None
        self.upper = None

    def __enter__(self):
        t = self.t
        m = t.ctx.manifest
        if t.is_plain:
            self.root = m["depth"]["plain"] if self.depth else m["plain"]
            self.seconds = 0.0
            return self
        t.unmount()
        self.root = t.mnt
        t.serial += 1
        base = os.path.join(t.ctx.tmp, "rw", f"{t.key}-{t.serial}")
        self.base = base
        upper, work = os.path.join(base, "upper"), os.path.join(base, "work")
        os.makedirs(upper)
        os.makedirs(work)
        os.makedirs(t.mnt, exist_ok=True)
        layers = m["depth"]["layers"][str(self.depth)] if self.depth else None
        if self.readonly:
            cmd, cwd = t.mount_cmd(None, None, layers)
        else:
            cmd, cwd = t.mount_cmd(upper, work, layers)
            self.upper = upper
        start = time.perf_counter()
        try:
            run(cmd, 60, what="mount", cwd=cwd)
        except Failed:
            self._remove()
            raise
        self.seconds = time.perf_counter() - start
        if not is_mounted(t.mnt):
            self._remove()
            raise Failed("mount: the mount command succeeded but nothing is mounted")
        t.pid = daemon_pid(t.mnt, t.daemon_names) if t.is_fuse else None
        return self

    def __exit__(self, *exc):
        if self.t.is_plain:
            return False
        self.t.unmount()
        self._remove()
        return False

    def _remove(self):
        if is_mounted(self.t.mnt):
            return  # never remove a tree that something may still write into
        shutil.rmtree(self.base, ignore_errors=True)

    def path(self, rel=""):
        return os.path.join(self.root, rel) if rel else self.root


# --- the benchmark ----------------------------------------------------------------------


class Bench:
    def __init__(self, args, log):
        self.args = args
        self.log = log
        self.tmp = args.tmp
        self.timeout = args.timeout
        self.pin = []  # PIN while a pinned run goes on: for the workload and the daemon
        self.pinned = False
        self.root = os.geteuid() == 0
        self.manifest = None
        self.results = {}  # row key -> target key -> list of values
        self.failures = {}  # (session, target key) -> message
        self.notes = []
        self.targets = []
        self.sizes = {}

    # helpers used by the sessions

    def driver(self, *args):
        p = run(self.pin + [self.args.driver, *map(str, args)], self.timeout, what=f"driver {args[0]}")
        return json.loads(p.stdout)

    def timed(self, cmd, what):
        start = time.perf_counter()
        run(self.pin + cmd, self.timeout, what=what)
        return time.perf_counter() - start

    def drop_caches(self):
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3")

    def lower(self, rel):
        """The path of rel in the topmost layer that has it."""
        for layer in reversed(self.manifest["layers"]):
            p = os.path.join(layer, rel)
            if os.path.lexists(p):
                return p
        raise Failed(f"{rel} is in no layer")

    def note(self, text):
        """A note for the report (printed with the table, not in the middle of a row of dots)."""
        if text not in self.notes:
            self.notes.append(text)

    def check_count(self, target, what, seen, expected):
        if seen != expected:
            self.note(f"{target.title}: {what} found {seen} entries, the layers hold {expected}")

    # the sessions: each mounts what it needs and returns {row key: value}

    def s_walk(self, t):
        out = {}
        entries = self.manifest["merged_entries"]
        if self.root:
            self.drop_caches()
            with Mount(t, self.args.ro) as m:
                base = proc_status(t.pid) if t.pid else None
                r = self.driver("walk", m.path())
                out["walk_cold"] = r["seconds"]
                self.check_count(t, "the walk", r["entries"], entries)
                out["walk_warm"] = self.driver("walk", m.path())["seconds"]
                if t.is_fuse and not self.pinned and t.pid:
                    out["rss_hwm"] = proc_status(t.pid, "VmHWM")
                    out["rss_node"] = (proc_status(t.pid) - base) / entries
        with Mount(t, self.args.ro) as m:
            out["mount"] = m.seconds if not t.is_plain else None
            base = proc_status(t.pid) if t.pid else None
            r = self.driver("walk", m.path())
            out["walk_fresh"] = r["seconds"]
            self.check_count(t, "the walk", r["entries"], entries)
            if not self.root:
                out["walk_warm"] = self.driver("walk", m.path())["seconds"]
                if t.is_fuse and not self.pinned and t.pid:
                    out["rss_hwm"] = proc_status(t.pid, "VmHWM")
                    out["rss_node"] = (proc_status(t.pid) - base) / entries
        return out

    def s_pwalk(self, t):
        out = {}
        for n in (1, 2):
            with Mount(t, self.args.ro) as m:
                out[f"walk_p{n}"] = self.driver("pwalk", n, m.path())["seconds"]
        return out

    def s_seq(self, t):
        big = self.manifest["big"]
        out = {}
        if self.root:
            self.drop_caches()
        with Mount(t, self.args.ro) as m:
            for key in ("seq_cold", "seq_warm"):
                r = self.driver("seqread", m.path(big["path"]))
                if r["bytes"] != big["bytes"]:
                    raise Failed(f"read {r['bytes']} bytes, the file holds {big['bytes']}")
                if key == "seq_warm" or self.root:
                    out[key] = r["bytes"] / MIB / r["seconds"]
        return out

    def s_rand(self, t):
        if not shutil.which("fio"):
            raise Failed("fio is not installed")
        big = self.manifest["big"]
        src = os.path.join(self.manifest["plain"], big["path"]) if t.is_plain else self.lower(big["path"])
        self.driver("seqread", src)  # the file in the host's page cache
        n = self.sizes["BENCH_RANDREADS"]
        with Mount(t, self.args.ro) as m:
            p = run(self.pin + ["fio", "--name=randread", f"--filename={m.path(big['path'])}", "--readonly",
                                "--rw=randread", "--bs=4k", "--ioengine=psync", "--invalidate=0",
                                f"--size={big['bytes']}", f"--number_ios={n}", "--randrepeat=0",
                                "--randseed=42", "--output-format=json"], self.timeout, what="fio")
        try:
            job = json.loads(p.stdout[p.stdout.index("{"):])["jobs"][0]["read"]
        except (ValueError, KeyError, IndexError) as e:
            raise Failed(f"fio: no result in its output ({e})") from None
        if job["total_ios"] < n:
            raise Failed(f"fio did {job['total_ios']} reads, not {n}")
        return {"rand": job["iops"]}

    def s_create(self, t):
        n = self.sizes["BENCH_CREATE_FILES"]
        with Mount(t) as m:
            r = self.driver("create", m.path("bench-create"), n, self.sizes["BENCH_CREATE_BYTES"])
            if t.is_plain:
                shutil.rmtree(m.path("bench-create"))
        return {"create": r["files"] / r["seconds"]}

    def s_copyup(self, t):
        out = {}
        big, sparse = self.manifest["big"], self.manifest["sparse"]
        for rel in (big["path"], sparse["path"]):
            src = os.path.join(self.manifest["plain"], rel) if t.is_plain else self.lower(rel)
            if rel == big["path"]:
                self.driver("seqread", src)  # host cache warm: the copy, not the disk, is timed
        with Mount(t) as m:
            for key, f in (("copyup", big), ("copyup_sparse", sparse)):
                r = self.driver("append", m.path(f["path"]))
                if r["bytes"] != f["bytes"] + 1:
                    raise Failed(f"after appending one byte {f['path']} has {r['bytes']} bytes, not "
                                 f"{f['bytes'] + 1}")
                out[key] = r["seconds"]
                # The data before the appended byte must be the lower's.
                with open(m.path(f["path"]), "rb") as fh:
                    fh.seek(f["bytes"] - 4096)
                    tail = fh.read(4097)
                with open(os.path.join(self.manifest["plain"], f["path"]), "rb") as fh:
                    fh.seek(f["bytes"] - 4096)
                    want = fh.read(4096) + b"!"
                if t.is_plain:
                    os.truncate(m.path(f["path"]), f["bytes"])
                if tail != want:
                    raise Failed(f"after the copy-up the last 4 KiB + 1 byte of {f['path']} differ from "
                                 "the lower file's + the byte appended")
            if m.upper:
                copy = os.path.join(m.upper, sparse["path"])
                if not os.path.exists(copy):
                    raise Failed(f"no copy of {sparse['path']} in the upper layer")
                alloc = os.stat(copy).st_blocks * 512
                out["copyup_alloc"] = alloc
                # Data: 1 MiB every 32 MiB and the appended byte (one block, rounded up).
                kept = alloc <= sparse["data_bytes"] + 4 * MIB
                self.note(f"{t.title}: the sparse file's copy-up {'kept' if kept else 'did NOT keep'} its holes "
                          f"({alloc / MIB:.1f} MiB allocated for {sparse['data_bytes'] / MIB:.0f} MiB of data "
                          f"in {sparse['bytes'] / MIB:.0f} MiB)")
        return out

    def _meta(self, t, cmd, what, check):
        rel = self.manifest["meta"]["path"]
        with Mount(t) as m:
            seconds = self.timed(cmd + [m.path(rel)], what)
            probe = os.path.join(m.path(rel), "d0000", "f000000")
            st = os.lstat(probe)
            if not check(st):
                raise Failed(f"after {what} {probe} has uid {st.st_uid}, mode {st.st_mode & 0o7777:o}")
            if t.is_plain:  # undo, untimed
                run(["chown", "-R", f"{os.getuid()}:{os.getgid()}", m.path(rel)], self.timeout, what="chown back")
                run(["chmod", "-R", "o+r", m.path(rel)], self.timeout, what="chmod back")
        return seconds

    def s_chown(self, t):
        uid = 1 if self.root else os.getuid()
        return {"chown": self._meta(t, ["chown", "-R", f"{uid}:{uid}"], "chown -R",
                                    lambda st: st.st_uid == uid)}

    def s_chmod(self, t):
        return {"chmod": self._meta(t, ["chmod", "-R", "o-r"], "chmod -R",
                                    lambda st: not st.st_mode & 0o004)}

    def s_readdir(self, t):
        rel = self.manifest["bigdir"]["path"]
        want = self.manifest["bigdir"]["entries"]
        out = {}
        if self.root:
            self.drop_caches()
        with Mount(t, self.args.ro) as m:
            r = self.driver("readdir", m.path(rel))
            self.check_count(t, "readdir of the big directory", r["entries"], want)
            if self.root:
                out["readdir"] = r["seconds"]
            self.driver("readdir", m.path(rel), "stat")
            out["readdir_stat"] = self.driver("readdir", m.path(rel), "stat")["seconds"]
        return out

    def s_untar(self, t):
        with Mount(t) as m:
            out = {"untar": self.timed(["tar", "-xf", self.manifest["tar"]["path"], "-C", m.path()], "tar -x")}
            out["rm_untarred"] = self.timed(["rm", "-rf", m.path("bench-untar")], "rm -rf")
        return out

    def s_rm(self, t):
        rel = self.manifest["rm"]["path"]
        with Mount(t) as m:
            if t.is_plain:  # remove a fresh copy, keep the tree
                run(["cp", "-a", m.path(rel), m.path(rel + ".bench-rm")], self.timeout, what="cp -a")
                rel += ".bench-rm"
            return {"rm_lower": self.timed(["rm", "-rf", m.path(rel)], "rm -rf")}

    def s_depth(self, t):
        d = self.manifest["depth"]
        out = {}
        for n in d["depths"]:
            for cold in ((False, True) if self.root and self.sizes["BENCH_DEPTH_COLD"] else (False,)):
                tag = f"depth{n}_cold" if cold else f"depth{n}"
                if cold:
                    self.drop_caches()
                with Mount(t, depth=n) as m:
                    r = self.driver("lstat", m.path(), d["exist"], "exist")
                    out[f"{tag}_exist"] = m.seconds + r["seconds"]
                    out[f"{tag}_missing"] = self.driver("lstat", m.path(), d["missing"], "missing")["seconds"]
        return out

    # name, method, rows, also pinned, targets (None: all but kernel-metacopy)
    SESSIONS = [
        ("walk", "s_walk", ["walk_cold", "walk_warm", "rss_hwm", "rss_node", "walk_fresh", "mount"], True, None),
        ("pwalk", "s_pwalk", ["walk_p1", "walk_p2"], False, None),
        ("seq", "s_seq", ["seq_cold", "seq_warm"], False, None),
        ("rand", "s_rand", ["rand"], False, None),
        ("copyup", "s_copyup", ["copyup", "copyup_sparse", "copyup_alloc"], False, None),
        ("chown", "s_chown", ["chown"], True, TARGET_KEYS),
        ("chmod", "s_chmod", ["chmod"], True, TARGET_KEYS),
        ("readdir", "s_readdir", ["readdir", "readdir_stat"], True, None),
        ("untar", "s_untar", ["untar", "rm_untarred"], True, None),
        ("rm", "s_rm", ["rm_lower"], True, None),
        ("create", "s_create", ["create"], True, None),
        ("depth", "s_depth", ["depth*"], True, None),
    ]

    def session_of(self, key):
        key = key.split("@")[0]
        return next(s for s in self.SESSIONS if key in s[2] or (key.startswith("depth") and "depth*" in s[2]))

    @staticmethod
    def runs_on(session, t):
        allowed = session[4] or [k for k in TARGET_KEYS if k != "kernel-metacopy"]
        return t.key in allowed

    # setup

    def setup_targets(self):
        a = self.args
        fo = shutil.which("fuse-overlayfs")
        specs = [
            ("kernel", "kernel overlayfs", None, []),
            ("kernel-metacopy", "kernel overlayfs metacopy=on", None, []),
            ("fuse-overlayfs", "fuse-overlayfs", fo, ["fuse-overlayfs"]),
            ("layerfs", "layerfs", a.layerfs, ["layerfs"]),
            ("plain", "plain directory", None, []),
        ]
        for key, title, binary, names in specs:
            t = Target(key, title, binary, names, self)
            if key.startswith("kernel") and not self.root:
                t.unavailable = "skipped: the kernel's overlayfs needs root"
            elif key in ("fuse-overlayfs", "layerfs") and not binary:
                t.unavailable = f"skipped: {key} is not installed"
            if key in a.targets:
                self.targets.append(t)

    def generate(self):
        data = self.args.data or os.path.join(self.tmp, "data")
        manifest = os.path.join(data, "manifest.json")
        wanted = {k: env_int(k, gen_layers.SIZES) for k in gen_layers.SIZES}
        wanted["BENCH_DEPTHS"] = os.environ.get("BENCH_DEPTHS") or gen_layers.DEPTHS_DEFAULT
        if os.path.exists(manifest):
            with open(manifest) as f:
                m = json.load(f)
            same_format = m.get("whiteout_format") == ("kernel" if self.root else "oci")
            if m.get("sizes") == wanted and same_format and all(os.path.isdir(d) for d in m["layers"]):
                self.log(f"== dataset: reusing {data}")
                self.manifest = m
                return
            shutil.rmtree(data)
        self.log(f"== dataset: generating in {data}")
        start = time.perf_counter()
        p = run([sys.executable, os.path.join(HERE, "gen_layers.py"), data], 3600, what="gen_layers.py")
        with open(manifest) as f:
            self.manifest = json.load(f)
        self.log(f"   {p.stdout.strip()} ({time.perf_counter() - start:.1f} s)")

    # running

    def modes(self, session):
        """Unpinned, and pinned too for the metadata workloads (unless --no-pinned)."""
        return [False, True] if session[3] and not self.args.no_pinned else [False]

    def run_all(self):
        sessions = [s for s in self.SESSIONS if s[0] in self.args.only]
        reps = self.args.reps
        for session in sessions:
            name, method = session[0], session[1]
            for pinned in self.modes(session):
                self.pinned = pinned
                self.pin = PIN if pinned else []
                suffix = "@pin" if pinned else ""
                self.log(f"== {name}{' pinned to CPU 0' if pinned else ''} ", end="")
                start = time.perf_counter()
                failed = []
                for rep in range(reps):
                    for t in self.targets:  # interleaved: A B C A B C ...
                        fkey = (name + suffix, t.key)
                        if t.unavailable or fkey in self.failures or not self.runs_on(session, t):
                            continue
                        try:
                            out = getattr(self, method)(t)
                        except Exception as e:  # noqa: BLE001 - one failed cell, the run goes on
                            if not isinstance(e, Failed):
                                e = f"{type(e).__name__}: {e}"
                            self.failures[fkey] = f"failed: {e}"
                            failed.append(f"   {t.title}: failed: {e}")
                            self.log("x", end="")
                            t.unmount()
                            continue
                        for key, value in out.items():
                            if value is not None:
                                self.results.setdefault(key + suffix, {}).setdefault(t.key, []).append(value)
                        self.log(".", end="")
                self.log(f" {time.perf_counter() - start:.1f} s")
                for line in failed:
                    self.log(line)
        self.pinned = False
        self.pin = []

    # reporting

    def all_rows(self):
        """(key, label, kind) of every row that this run can fill: unpinned first, then the
        pinned runs of the metadata workloads."""
        base = ROWS + depth_rows(self.manifest["depth"]["depths"])
        ran = [s for s in self.SESSIONS if s[0] in self.args.only]
        rows = [r for r in base if self.session_of(r[0]) in ran]
        pinned = [(f"{k}@pin", f"{text} [pinned]", kind) for k, text, kind in rows
                  if True in self.modes(self.session_of(k)) and k not in ("rss_hwm", "rss_node")]
        return rows + pinned

    def cell(self, row, t):
        key, kind = row[0], row[2]
        base = key.split("@")[0]
        session = self.session_of(key)
        if not self.runs_on(session, t):
            return None, "—"
        if t.unavailable:
            return None, t.unavailable
        fkey = (session[0] + ("@pin" if "@pin" in key else ""), t.key)
        values = self.results.get(key, {}).get(t.key)
        if fkey in self.failures and not values:
            return None, self.failures[fkey]
        if not values:
            if base in ("rss_hwm", "rss_node") and not t.is_fuse:
                return None, "no daemon"
            if base == "mount" and t.is_plain:
                return None, "no mount"
            if base == "copyup_alloc" and t.is_plain:
                return None, "no upper"
            if (base in ("walk_cold", "seq_cold", "readdir") or "_cold_" in base) and not self.root:
                return None, "skipped: dropping caches needs root"
            return None, "no value"
        return statistics.median(values), None

    @staticmethod
    def fmt(kind, v):
        if kind == "time":
            ms = v * 1000
            if ms < 10:
                return f"{ms:.2f} ms"
            if ms < 100:
                return f"{ms:.1f} ms"
            if ms < 10000:
                return f"{ms:.0f} ms"
            return f"{v:.1f} s"
        if kind == "mem":
            return f"{v / MIB:.1f} MiB" if abs(v) >= MIB else f"{v:,.0f} B"
        unit = kind.split(":", 1)[1]
        if v >= 100:
            return f"{v:,.0f} {unit}"
        return f"{v:.3g} {unit}"

    @staticmethod
    def ratio(kind, mine, other):
        if mine is None or other is None or other == 0:
            return "—"
        r = mine / other
        word = {"time": "time", "mem": "mem"}.get(kind, "thrpt")
        return f"{r:.2f}× {word}"

    def label(self, key, text):
        m = self.manifest
        base = key.split("@")[0]
        big = f"{m['big']['bytes'] // MIB} MiB"
        extra = {
            "walk_cold": f"{m['merged_entries']:,} entries",
            "seq_cold": big,
            "rand": f"{self.sizes['BENCH_RANDREADS']:,} reads of {big}",
            "create": f"{self.sizes['BENCH_CREATE_FILES']:,} × {self.sizes['BENCH_CREATE_BYTES']} B",
            "copyup": big,
            "copyup_sparse": f"{m['sparse']['bytes'] // MIB} MiB, {m['sparse']['data_bytes'] // MIB} MiB of data",
            "chown": f"{m['meta']['entries']:,} entries",
            "chmod": f"{m['meta']['entries']:,} entries",
            "readdir": f"{m['bigdir']['entries']:,} entries from {m['bigdir']['layers']} layers",
            "untar": f"{m['tar']['files']:,} files, {m['tar']['dirs']:,} dirs",
            "rm_lower": f"{m['rm']['entries']:,} entries",
        }.get(base)
        if base.startswith("depth") and base.endswith("_exist"):
            extra = f"{m['depth']['files']:,} paths"
        return f"{text} ({extra})" if extra else text

    def table(self):
        """The table of medians and ratios, the table of min-max spreads, the records."""
        by_key = {t.key: t for t in self.targets}
        cols = [k for k in TARGET_KEYS if k in by_key]
        head = ["benchmark"] + [by_key[k].title for k in cols]
        against = [k for k in RATIO_AGAINST if k in by_key] if "layerfs" in by_key else []
        head += [f"layerfs / {by_key[k].title}" for k in against]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        spread_head = ["benchmark: min – max"] + [by_key[k].title for k in cols]
        spread = ["| " + " | ".join(spread_head) + " |", "|" + "---|" * len(spread_head)]
        records = []
        for row in self.all_rows():
            key, text, kind = row
            if not any(self.results.get(key, {}).get(k) for k in cols) and not any(
                    (self.session_of(key)[0] + ("@pin" if "@pin" in key else ""), k) in self.failures
                    for k in cols):
                continue  # nothing ran for this row (e.g. cold rows without root)
            medians = {}
            cells = [self.label(key, text)]
            spread_cells = [text]
            for k in cols:
                v, why = self.cell(row, by_key[k])
                medians[k] = v
                vals = self.results.get(key, {}).get(k, []) if v is not None else []
                cells.append(self.fmt(kind, v) if v is not None else why)
                spread_cells.append(f"{self.fmt(kind, min(vals))} – {self.fmt(kind, max(vals))}"
                                    if vals else "—")
                if why == "—":
                    continue
                records.append({
                    "benchmark": key, "label": self.label(key, text), "pinned": "@pin" in key,
                    "unit": {"time": "s", "mem": "bytes"}.get(kind, kind.split(":")[-1]),
                    "better": "higher" if kind.startswith("rate") else "lower",
                    "target": k, "median": v, "min": min(vals) if vals else None,
                    "max": max(vals) if vals else None, "n": len(vals), "values": vals,
                    "status": "ok" if v is not None else why,
                })
            for k in against:
                cells.append(self.ratio(kind, medians.get("layerfs"), medians.get(k)))
            lines.append("| " + " | ".join(cells) + " |")
            spread.append("| " + " | ".join(spread_cells) + " |")
        return "\n".join(lines), "\n".join(spread), records

    def depth_curve(self):
        """The lookup-depth curve: per target, existing + missing lookups at N layers as a
        multiple of 1 layer (the first depth)."""
        depths = self.manifest["depth"]["depths"]
        cols = [t for t in self.targets if not t.unavailable and self.runs_on(self.session_of("depth1_exist"), t)]
        out = []
        curves = {}
        for variant, label in (("", "fresh mount"), ("_cold", "cold"), ("@pin", "fresh mount, pinned")):
            lines = []
            for t in cols:
                vals = []
                for n in depths:
                    suffix = "@pin" if variant == "@pin" else ""
                    tag = f"depth{n}{'_cold' if variant == '_cold' else ''}"
                    e = self.results.get(f"{tag}_exist{suffix}", {}).get(t.key)
                    mi = self.results.get(f"{tag}_missing{suffix}", {}).get(t.key)
                    vals.append(statistics.median(e) + statistics.median(mi) if e and mi else None)
                if vals[0] is None:
                    continue
                curves.setdefault(label, {})[t.key] = dict(zip(map(str, depths), vals))
                cells = [f"{v * 1000:.1f} ms ({v / vals[0]:.1f}×)" if v is not None else "—" for v in vals]
                lines.append(f"| {t.title} | " + " | ".join(cells) + " |")
            if lines:
                out.append(f"lookup-depth curve, {label}: mount + lstat of {self.manifest['depth']['files']:,} "
                           f"existing + {self.manifest['depth']['files']:,} missing paths (× the time at "
                           f"{depths[0]} layer{'s' if depths[0] != 1 else ''})")
                out.append("")
                out.append("| target | " + " | ".join(f"{n} layer{'s' if n != 1 else ''}" for n in depths) + " |")
                out.append("|" + "---|" * (len(depths) + 1))
                out += lines
                out.append("")
        return "\n".join(out), curves


def machine_info(args, tmp):
    def cmd(*c):
        try:
            return subprocess.run(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  timeout=20).stdout.strip()
        except OSError:
            return ""

    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) * 1024
    fo_version = next((l for l in cmd("fuse-overlayfs", "--version").splitlines()
                       if l.startswith("fuse-overlayfs")), "")
    root = os.path.dirname(os.path.dirname(HERE))
    # git refuses a repository of another user ("dubious ownership"): then the commit is unknown.
    git = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True, timeout=20)
    commit = git.stdout.strip() if git.returncode == 0 else "unknown"
    if git.returncode == 0 and cmd("git", "-C", root, "status", "--porcelain", "--untracked-files=no"):
        commit += " (with uncommitted changes)"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem / (1 << 30), 1),
        "kernel": platform.release(),
        "tmp_fs": cmd("findmnt", "-n", "-o", "FSTYPE", "--target", tmp),
        "tmp_dir": os.path.dirname(tmp),
        "load_average_at_start": os.getloadavg(),
        "layerfs": short(cmd(args.layerfs, "--version")) + f" ({args.layerfs}, {args.buildtype})",
        "layerfs_commit": commit,
        "fuse_overlayfs": fo_version,
        "libfuse": cmd("pkg-config", "--modversion", "fuse3"),
        "python": platform.python_version(),
    }


def method(bench, args):
    """The lines that say how the numbers were made; printed and kept with the results."""
    m = bench.manifest
    d = m["depth"]
    lines = ["== method",
             f"targets, all on the same {len(m['layers'])} lower layers, each mount with a new empty upper"
             f"{' (the reading benchmarks with no upper: --ro)' if args.ro else ''}:"]
    for t in bench.targets:
        if t.is_plain:
            lines.append(f"  {t.title}: {t.unavailable or m['plain']} (the merged tree materialised: the "
                         "physical limit; no mount; writes undone after each run, untimed)")
            continue
        cmd, _ = t.mount_cmd("U", "W")
        cmd[cmd.index("-o") + 1] = ("lowerdir=...,upperdir=U,workdir=W"
                                    + (",metacopy=on" if t.key == "kernel-metacopy" else ""))
        only = " (chown -R and chmod -R only)" if t.key == "kernel-metacopy" else ""
        lines.append(f"  {t.title}{only}: {t.unavailable or ' '.join(cmd)}")
    lines += [
        f"repetitions: {args.reps} of each workload, targets interleaved (A B C A B C ...); the table "
        "shows the median, the min – max table and results.json the spread and every value",
        "cold: sync + echo 3 > /proc/sys/vm/drop_caches, then a fresh mount; fresh mount: unmounted and "
        "mounted again, host caches warm; warm: the same workload again on the same mount; every "
        "workload that writes gets a fresh mount with an empty upper",
        "pinning: each workload runs unpinned; the metadata workloads (walk, chown, chmod, readdir, untar, "
        "rm, create, lookup depth) run again pinned to CPU 0 (taskset -c 0 for the client and the FUSE "
        "daemon), rows marked [pinned]" + (" -- skipped in this run (--no-pinned)" if args.no_pinned else ""),
        "mount time: its own row (mount(8) or the daemon until the mount is there), where an index built "
        "at mount shows; in the lookup-depth rows it is added to the lookups of the existing paths; "
        "whatever the daemon builds lazily counts in the workload that triggers it",
        "timing: CLOCK_MONOTONIC around the workload inside the driver (scripts/bench.d/driver.cpp), "
        "around the process for tar, rm, chown, chmod; fio reports its own IOPS (psync, 4 KiB, "
        f"{bench.sizes['BENCH_RANDREADS']:,} reads, invalidate=0, lower file in the host page cache)",
        "copy-up: append one byte through the mount to a file of the bottom layer; the sparse file's copy "
        "in the upper is checked for holes (st_blocks), the big file's last 4 KiB + 1 byte for content",
        f"lower layers: {m['entries_in_layers']:,} entries, {m['whiteouts']} whiteouts, {m['opaque_dirs']} "
        f"opaque dirs ({m['whiteout_format']} format), {m['rewritten_files']} files rewritten by upper layers; "
        f"the union: {m['merged_entries']:,} entries; big file {m['big']['bytes'] // MIB} MiB of real data"
        f"{' (--quick size; 2048 MiB in a full run)' if m['big']['bytes'] < 2048 * MIB else ''}",
        "workloads run: " + ", ".join(args.only) + ("" if "create" in args.only else
                                                      " (create left out: --quick, or --only)"),
        f"lookup depth: {d['files']:,} files in {d['dirs']} directories spread over {', '.join(map(str, d['depths']))}"
        " layers (every directory in every layer); lstat of all of them and of as many missing names",
    ]
    return lines


def main():
    ap = argparse.ArgumentParser(prog="scripts/bench", add_help=False)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--layerfs", required=True)
    ap.add_argument("--buildtype", default="?")
    ap.add_argument("--driver", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int)
    ap.add_argument("--no-pinned", action="store_true")
    ap.add_argument("--ro", action="store_true")
    ap.add_argument("--only")
    ap.add_argument("--targets", default=",".join(TARGET_KEYS))
    ap.add_argument("--data")
    ap.add_argument("--timeout", type=int, default=int(os.environ.get("BENCH_TIMEOUT") or 600))
    args = ap.parse_args()
    if args.only is None:
        # --quick leaves out the one workload that issue 7 does not list (small-file create).
        args.only = ",".join(s[0] for s in Bench.SESSIONS if not (args.quick and s[0] == "create"))
    args.only = [s for s in args.only.split(",") if s]
    args.targets = [s for s in args.targets.split(",") if s]
    bad = [s for s in args.only if s not in [x[0] for x in Bench.SESSIONS]]
    bad += [s for s in args.targets if s not in TARGET_KEYS]
    if bad:
        sys.exit(f"scripts/bench: unknown benchmark or target: {', '.join(bad)}")
    if args.quick:
        for k, v in QUICK.items():
            os.environ.setdefault(k, str(v))
    if args.reps is None:
        args.reps = int(os.environ.get("BENCH_REPS") or 3)

    os.makedirs(args.results, exist_ok=True)
    log = Log(os.path.join(args.results, "run.log"))
    bench = Bench(args, log)
    bench.sizes = {k: env_int(k, WORK_SIZES) for k in WORK_SIZES}
    # SIGTERM and SIGHUP end the run like Ctrl-C does: through the cleanup below.
    def interrupt(*_):
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)

    info = machine_info(args, args.tmp)
    log("== machine")
    for k, v in info.items():
        log(f"   {k}: {v}")
    try:
        bench.generate()
        bench.setup_targets()
        bench.method_text = method(bench, args)
        for line in bench.method_text:
            log("   " + line)
        start = time.perf_counter()
        bench.run_all()
        elapsed = time.perf_counter() - start
    except KeyboardInterrupt:
        log("\ninterrupted")
        for t in bench.targets:
            t.unmount()
        sys.exit(130)
    finally:
        for t in bench.targets:
            try:
                t.unmount()
            except Exception:  # noqa: BLE001 - the shell's trap is the last resort
                pass

    info["load_average_at_end"] = os.getloadavg()
    table, spread, records = bench.table()
    curve, curves = bench.depth_curve()
    if not bench.sizes["BENCH_DEPTH_COLD"] and "depth" in args.only:
        bench.notes.append("the lookup-depth rows ran on fresh mounts only, not cold (BENCH_DEPTH_COLD=0, "
                           "the --quick default)")
    busy = max(info["load_average_at_start"][0], info["load_average_at_end"][0])
    if busy > (os.cpu_count() or 1) / 2:
        bench.notes.append(f"the machine was busy (load average up to {busy:.1f} on {os.cpu_count()} CPUs): "
                           "other work shared the CPUs, expect noise")
    legend = ("ratios: layerfs ÷ the other. \"time\" and \"mem\": < 1 means layerfs is faster or smaller, "
              "> 1 slower or larger; \"thrpt\": > 1 means layerfs has the higher throughput, < 1 lower. "
              "[pinned]: client and daemon on CPU 0 (taskset -c 0). \"—\": the workload is not run on that target.")
    head = (f"layerfs benchmarks, {info['date']}: {info['nproc']} CPUs ({info['cpu']}), "
            f"{info['memory_gib']} GiB, Linux {info['kernel']}, {info['tmp_fs']} under {info['tmp_dir']}; "
            f"median of {args.reps}, targets interleaved{', --quick sizes' if args.quick else ''}"
            f"{', reads without an upper' if args.ro else ''}; load average "
            f"{info['load_average_at_start'][0]:.2f} at start, {info['load_average_at_end'][0]:.2f} at end")
    notes = "\n".join(f"note: {n}" for n in bench.notes)
    log("")
    log(head)
    log("")
    log(table)
    log("")
    log(legend)
    log("")
    log(curve)
    log(spread)
    log("")
    log(notes)
    json_path = os.path.join(args.results, "results.json")
    log(f"\nbenchmarks took {elapsed:.0f} s; table: {os.path.join(args.results, 'table.md')}; JSON: {json_path}")
    with open(os.path.join(args.results, "table.md"), "w") as f:
        f.write("\n\n".join([head, table, legend, curve, spread, notes,
                              "method:\n" + "\n".join(bench.method_text[1:])]) + "\n")
    with open(json_path, "w") as f:
        json.dump({"machine": info, "quick": args.quick, "reps": args.reps, "pinned_runs": not args.no_pinned,
                   "reads_without_upper": args.ro, "method": bench.method_text[1:],
                   "sizes": {**bench.manifest["sizes"], **bench.sizes},
                   "dataset": {k: v for k, v in bench.manifest.items() if k not in ("layers",)},
                   "benchmarks_seconds": round(elapsed, 1),
                   "notes": bench.notes, "lookup_depth_curve": curves, "results": records}, f, indent=1)
    with open(os.path.join(args.results, "results.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["benchmark", "label", "pinned", "target", "unit", "better", "median", "min", "max", "n",
                    "status"])
        for r in records:
            w.writerow([r["benchmark"], r["label"], r["pinned"], r["target"], r["unit"], r["better"],
                        r["median"], r["min"], r["max"], r["n"], r["status"]])


if __name__ == "__main__":
    main()
