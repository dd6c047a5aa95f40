#!/usr/bin/env python3
"""The runner of scripts/bench: mounts the kernel's overlayfs, fuse-overlayfs and layerfs
on the same generated lower layers, runs every workload on each (interleaved: kernel,
fuse-overlayfs, layerfs, kernel, ...), and reports medians with min/max and the ratios of
layerfs to the two others. Started by scripts/bench, which builds what it needs, owns the
temporary directory and unmounts whatever is left under it on exit; see scripts/bench
--help for the options and sizes.
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
    "BENCH_RANDREADS": (20000, "random 4 KiB reads"),
}
QUICK = {
    "BENCH_LAYERS": 5,
    "BENCH_FILES": 4000,
    "BENCH_BIGDIR": 5000,
    "BENCH_LARGE_MIB": 64,
    "BENCH_COPYUP_MIB": 16,
    "BENCH_CREATE_FILES": 1000,
    "BENCH_RANDREADS": 5000,
}

# The rows of the table: key, label, unit kind. Kinds: "time" (seconds, lower is better),
# "rate" (per second, higher is better; the unit is in RATE_UNITS), "mem" (bytes, lower
# is better), "info" (shown, no ratio).
ROWS = [
    ("walk_cold", "tree walk + lstat, cold (caches dropped, fresh mount)", "time"),
    ("walk_warm", "tree walk + lstat, warm (same mount again)", "time"),
    ("walk_fresh", "tree walk + lstat, fresh mount (host caches warm)", "time"),
    ("mount", "mount (host caches warm)", "time"),
    ("rss", "daemon RSS after the cold and warm walks", "mem"),
    ("seq_cold", "sequential read of the large files, cold", "rate:MiB/s"),
    ("seq_warm", "sequential read of the large files, warm (reopened)", "rate:MiB/s"),
    ("rand", "random 4 KiB reads of a large file, fresh mount", "rate:IOPS"),
    ("create", "small files: create + write + close, new dir", "rate:files/s"),
    ("copyup", "copy-up: open(O_WRONLY) + close of a lower file", "time"),
    ("chmod", "chmod -R of a lower tree (copy-up)", "time"),
    ("readdir", "readdir of the big directory, fresh mount (ls -f)", "time"),
    ("readdir_stat", "readdir + lstat of the big directory, warm", "time"),
    ("untar", "untar a tarball into the mount", "time"),
    ("rm_untarred", "rm -rf of the untarred tree", "time"),
    ("rm_lower", "rm -rf of a lower tree (whiteouts)", "time"),
]


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


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise Failed("no VmRSS")


class Target:
    """One of the systems under test."""

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

    def mount_cmd(self, upper, work):
        lowers = ":".join(reversed(self.ctx.manifest["layers"]))  # top first
        opts = f"lowerdir={lowers}" + (f",upperdir={upper},workdir={work}" if upper else "")
        if self.key == "kernel":
            return ["mount", "-t", "overlay", "overlay", "-o", opts, self.mnt]
        return self.ctx.pin + [self.binary, "-o", opts, self.mnt]

    def unmount(self):
        """Unmounts, waits for the daemon to end; forces it when a clean unmount fails."""
        if not is_mounted(self.mnt):
            return
        cmd = ["umount", self.mnt] if self.key == "kernel" else ["fusermount3", "-u", self.mnt]
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
    """A fresh mount of a target with a new empty upper and workdir; unmounted and its
    upper removed on exit."""

    def __init__(self, target, readonly=False):
        self.t = target
        self.readonly = readonly  # no upper (only for workloads that do not write)

    def __enter__(self):
        t = self.t
        t.unmount()
        t.serial += 1
        base = os.path.join(t.ctx.tmp, "rw", f"{t.key}-{t.serial}")
        self.base = base
        upper, work = os.path.join(base, "upper"), os.path.join(base, "work")
        os.makedirs(upper)
        os.makedirs(work)
        os.makedirs(t.mnt, exist_ok=True)
        start = time.perf_counter()
        try:
            if self.readonly:
                run(t.mount_cmd(None, None), 60, what="mount")
            else:
                run(t.mount_cmd(upper, work), 60, what="mount")
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
        self.t.unmount()
        self._remove()
        return False

    def _remove(self):
        if is_mounted(self.t.mnt):
            return  # never remove a tree that something may still write into
        shutil.rmtree(self.base, ignore_errors=True)

    def path(self, rel=""):
        return os.path.join(self.t.mnt, rel) if rel else self.t.mnt


# --- the benchmark ----------------------------------------------------------------------


class Bench:
    def __init__(self, args, log):
        self.args = args
        self.log = log
        self.tmp = args.tmp
        self.timeout = args.timeout
        self.pin = ["taskset", "-c", "0"] if args.pin else []
        self.root = os.geteuid() == 0
        self.manifest = None
        self.results = {}  # row key -> target key -> list of values
        self.failures = {}  # (session, target key) -> message
        self.notes = []
        self.targets = []

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
        if text not in self.notes:
            self.notes.append(text)
            self.log(f"   note: {text}")

    def check_count(self, target, what, seen, expected):
        if seen != expected:
            self.note(f"{target.title}: {what} found {seen} entries, the layers hold {expected}")

    # the sessions: each mounts what it needs and returns {row key: value}

    def s_walk(self, t):
        out = {}
        if self.root:
            self.drop_caches()
            with Mount(t, self.args.ro) as m:
                r = self.driver("walk", m.path())
                out["walk_cold"] = r["seconds"]
                self.check_count(t, "the walk", r["entries"], self.manifest["merged_entries"])
                out["walk_warm"] = self.driver("walk", m.path())["seconds"]
                if t.is_fuse:
                    out["rss"] = rss_bytes(t.pid) if t.pid else None
        with Mount(t, self.args.ro) as m:
            out["mount"] = m.seconds
            r = self.driver("walk", m.path())
            out["walk_fresh"] = r["seconds"]
            self.check_count(t, "the walk", r["entries"], self.manifest["merged_entries"])
            if not self.root:
                out["walk_warm"] = self.driver("walk", m.path())["seconds"]
                if t.is_fuse:
                    out["rss"] = rss_bytes(t.pid) if t.pid else None
        return out

    def s_seq(self, t):
        files = [f["path"] for f in self.manifest["large_files"]]
        total = sum(f["bytes"] for f in self.manifest["large_files"])
        out = {}
        if self.root:
            self.drop_caches()
        with Mount(t, self.args.ro) as m:
            paths = [m.path(f) for f in files]
            for key in ("seq_cold", "seq_warm"):
                r = self.driver("seqread", *paths)
                if r["bytes"] != total:
                    raise Failed(f"read {r['bytes']} bytes, the files hold {total}")
                if key == "seq_warm" or self.root:
                    out[key] = r["bytes"] / MIB / r["seconds"]
        return out

    def s_rand(self, t):
        rel = self.manifest["large_files"][0]["path"]
        self.driver("seqread", self.lower(rel))  # the lower file in the host's page cache
        n = self.sizes["BENCH_RANDREADS"]
        with Mount(t, self.args.ro) as m:
            r = self.driver("randread", m.path(rel), n, 42)
        return {"rand": r["ops"] / r["seconds"]}

    def s_create(self, t):
        n = self.sizes["BENCH_CREATE_FILES"]
        with Mount(t) as m:
            r = self.driver("create", m.path("bench-create"), n, self.sizes["BENCH_CREATE_BYTES"])
        return {"create": r["files"] / r["seconds"]}

    def s_copyup(self, t):
        rel = self.manifest["copyup"]["path"]
        self.driver("seqread", self.lower(rel))
        with Mount(t) as m:
            r = self.driver("openw", m.path(rel))
            if r["bytes"] != self.manifest["copyup"]["bytes"]:
                raise Failed(f"after the copy-up the file has {r['bytes']} bytes, not "
                             f"{self.manifest['copyup']['bytes']}")
        return {"copyup": r["seconds"]}

    def s_chmod(self, t):
        with Mount(t) as m:
            return {"chmod": self.timed(["chmod", "-R", "o-r", m.path(self.manifest["chmod"]["path"])],
                                        "chmod -R")}

    def s_readdir(self, t):
        rel = self.manifest["bigdir"]["path"]
        want = self.manifest["bigdir"]["entries"]
        with Mount(t, self.args.ro) as m:
            r = self.driver("readdir", m.path(rel))
            self.check_count(t, "readdir of the big directory", r["entries"], want)
            out = {"readdir": r["seconds"]}
            self.driver("readdir", m.path(rel), "stat")
            out["readdir_stat"] = self.driver("readdir", m.path(rel), "stat")["seconds"]
        return out

    def s_untar(self, t):
        with Mount(t) as m:
            out = {"untar": self.timed(["tar", "-xf", self.tarball, "-C", m.path()], "tar -x")}
            out["rm_untarred"] = self.timed(["rm", "-rf", m.path("bench-untar")], "rm -rf")
        return out

    def s_rm(self, t):
        with Mount(t) as m:
            return {"rm_lower": self.timed(["rm", "-rf", m.path(self.manifest["rm"]["path"])], "rm -rf")}

    SESSIONS = [
        ("walk", "s_walk", ["walk_cold", "walk_warm", "rss", "walk_fresh", "mount"]),
        ("seq", "s_seq", ["seq_cold", "seq_warm"]),
        ("rand", "s_rand", ["rand"]),
        ("create", "s_create", ["create"]),
        ("copyup", "s_copyup", ["copyup"]),
        ("chmod", "s_chmod", ["chmod"]),
        ("readdir", "s_readdir", ["readdir", "readdir_stat"]),
        ("untar", "s_untar", ["untar", "rm_untarred"]),
        ("rm", "s_rm", ["rm_lower"]),
    ]

    # setup

    def setup_targets(self):
        a = self.args
        fo = shutil.which("fuse-overlayfs")
        specs = [
            ("kernel", "kernel overlayfs", None, []),
            ("fuse-overlayfs", "fuse-overlayfs", fo, ["fuse-overlayfs"]),
            ("layerfs", "layerfs", a.layerfs, ["layerfs"]),
        ]
        for key, title, binary, names in specs:
            t = Target(key, title, binary, names, self)
            if key == "kernel" and not self.root:
                t.unavailable = "skipped: the kernel's overlayfs needs root"
            elif key != "kernel" and not binary:
                t.unavailable = f"skipped: {key} is not installed"
            if key in a.targets:
                self.targets.append(t)

    def generate(self):
        data = self.args.data or os.path.join(self.tmp, "data")
        manifest = os.path.join(data, "manifest.json")
        wanted = {k: env_int(k, gen_layers.SIZES) for k in gen_layers.SIZES}
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

    def make_tarball(self):
        src = self.manifest["tar"]["layer_path"]
        self.tarball = os.path.join(self.tmp, "untar.tar")
        run(["tar", "-cf", self.tarball, "-C", os.path.dirname(src), "--transform",
             f"s,^{os.path.basename(src)},bench-untar,", os.path.basename(src)], 600, what="tar -c")

    # running

    def run_all(self):
        sessions = [s for s in self.SESSIONS if s[0] in self.args.only]
        reps = self.args.reps
        for name, method, _ in sessions:
            self.log(f"== {name} ", end="")
            start = time.perf_counter()
            failed = []
            for rep in range(reps):
                for t in self.targets:
                    if t.unavailable or (name, t.key) in self.failures:
                        continue
                    try:
                        out = getattr(self, method)(t)
                    except Exception as e:  # noqa: BLE001 - one failed cell, the run goes on
                        if not isinstance(e, Failed):
                            e = f"{type(e).__name__}: {e}"
                        self.failures[(name, t.key)] = f"failed: {e}"
                        failed.append(f"   {t.title}: failed: {e}")
                        self.log("x", end="")
                        t.unmount()
                        continue
                    for key, value in out.items():
                        if value is not None:
                            self.results.setdefault(key, {}).setdefault(t.key, []).append(value)
                    self.log(".", end="")
            self.log(f" {time.perf_counter() - start:.1f} s")
            for line in failed:
                self.log(line)

    # reporting

    def cell(self, row, t):
        key, kind = row[0], row[2]
        if t.unavailable:
            return None, t.unavailable
        session = next(s[0] for s in self.SESSIONS if key in s[2])
        if session not in self.args.only:
            return None, "not run"
        if (session, t.key) in self.failures and not self.results.get(key, {}).get(t.key):
            return None, self.failures[(session, t.key)]
        values = self.results.get(key, {}).get(t.key)
        if not values:
            if key == "rss" and not t.is_fuse:
                return None, "no daemon"
            if key in ("walk_cold", "seq_cold") and not self.root:
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
            return f"{v / MIB:.1f} MiB"
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
        extra = {
            "walk_cold": f"{m['merged_entries']:,} entries",
            "seq_cold": f"{sum(f['bytes'] for f in m['large_files']) // MIB} MiB in {len(m['large_files'])} files",
            "rand": f"{self.sizes['BENCH_RANDREADS']:,} reads of {m['large_files'][0]['bytes'] // MIB} MiB",
            "create": f"{self.sizes['BENCH_CREATE_FILES']:,} × {self.sizes['BENCH_CREATE_BYTES']} B",
            "copyup": f"{m['copyup']['bytes'] // MIB} MiB",
            "chmod": f"{m['chmod']['entries']:,} entries",
            "readdir": f"{m['bigdir']['entries']:,} entries from {min(4, len(m['layers']))} layers",
            "untar": f"{m['tar']['files']:,} files, {m['tar']['dirs']:,} dirs",
            "rm_lower": f"{m['rm']['entries']:,} entries",
        }.get(key)
        return f"{text} ({extra})" if extra else text

    def table(self):
        """The table of medians and ratios, the table of min-max spreads, the records."""
        by_key = {t.key: t for t in self.targets}
        cols = [k for k in ("kernel", "fuse-overlayfs", "layerfs") if k in by_key]
        head = ["benchmark"] + [by_key[k].title for k in cols]
        if "layerfs" in by_key:
            head += [f"layerfs / {by_key[k].title}" for k in cols if k != "layerfs"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        spread_head = ["benchmark: min – max"] + [by_key[k].title for k in cols]
        spread = ["| " + " | ".join(spread_head) + " |", "|" + "---|" * len(spread_head)]
        records = []
        ran = {k for s in self.SESSIONS if s[0] in self.args.only for k in s[2]}
        for row in ROWS:
            key, text, kind = row
            if key not in ran:
                continue
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
                records.append({
                    "benchmark": key, "label": self.label(key, text),
                    "unit": {"time": "s", "mem": "bytes"}.get(kind, kind.split(":")[-1]),
                    "better": "higher" if kind.startswith("rate") else "lower",
                    "target": k, "median": v, "min": min(vals) if vals else None,
                    "max": max(vals) if vals else None, "n": len(vals), "values": vals,
                    "status": "ok" if v is not None else why,
                })
            if "layerfs" in by_key:
                for k in cols:
                    if k != "layerfs":
                        cells.append(self.ratio(kind, medians.get("layerfs"), medians.get(k)))
            lines.append("| " + " | ".join(cells) + " |")
            spread.append("| " + " | ".join(spread_cells) + " |")
        return "\n".join(lines), "\n".join(spread), records


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
    commit = cmd("git", "-C", root, "rev-parse", "--short", "HEAD")
    if cmd("git", "-C", root, "status", "--porcelain", "--untracked-files=no"):
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


def main():
    ap = argparse.ArgumentParser(prog="scripts/bench", add_help=False)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--layerfs", required=True)
    ap.add_argument("--buildtype", default="?")
    ap.add_argument("--driver", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int)
    ap.add_argument("--pin", action="store_true")
    ap.add_argument("--ro", action="store_true")
    ap.add_argument("--only", default=",".join(s[0] for s in Bench.SESSIONS))
    ap.add_argument("--targets", default="kernel,fuse-overlayfs,layerfs")
    ap.add_argument("--data")
    ap.add_argument("--timeout", type=int, default=int(os.environ.get("BENCH_TIMEOUT") or 600))
    args = ap.parse_args()
    args.only = [s for s in args.only.split(",") if s]
    args.targets = [s for s in args.targets.split(",") if s]
    bad = [s for s in args.only if s not in [x[0] for x in Bench.SESSIONS]]
    bad += [s for s in args.targets if s not in ("kernel", "fuse-overlayfs", "layerfs")]
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
        bench.make_tarball()
        bench.setup_targets()
        m = bench.manifest
        log("== method")
        log(f"   targets, all on the same {len(m['layers'])} lower layers, each mount with a new empty upper"
            f"{' (the reading benchmarks with no upper: --ro)' if args.ro else ''}:")
        for t in bench.targets:
            cmd = t.mount_cmd("U", "W")
            cmd[cmd.index("-o") + 1] = "lowerdir=...,upperdir=U,workdir=W"
            log(f"     {t.title}: {t.unavailable or ' '.join(cmd)}")
        log(f"   {args.reps} repetitions of each benchmark, targets interleaved (kernel, fuse-overlayfs, "
            f"layerfs, kernel, ...); the table shows medians, the JSON/CSV also min and max")
        log("   cold: sync + echo 3 > /proc/sys/vm/drop_caches, then a fresh mount; fresh mount: "
            "unmounted and mounted again, host caches warm; writes: a fresh mount with an empty upper each time")
        log(f"   pinned to CPU 0 (taskset, daemon and workload): {'yes' if args.pin else 'no'}")
        log(f"   lower layers: {m['entries_in_layers']:,} entries, {m['whiteouts']} whiteouts, "
            f"{m['opaque_dirs']} opaque dirs ({m['whiteout_format']} format), {m['rewritten_files']} "
            f"files rewritten by upper layers; the union: {m['merged_entries']:,} entries")
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
    busy = max(info["load_average_at_start"][0], info["load_average_at_end"][0])
    if busy > (os.cpu_count() or 1) / 2:
        bench.notes.append(f"the machine was busy (load average up to {busy:.1f} on {os.cpu_count()} CPUs): "
                           "other work shared the CPUs, expect noise")
    legend = ("ratios: layerfs ÷ the other. \"time\" and \"mem\": < 1 means layerfs is faster or smaller, "
              "> 1 slower or larger; \"thrpt\": > 1 means layerfs has the higher throughput, < 1 lower.")
    log("")
    log(f"layerfs benchmarks, {info['date']}: {info['nproc']} CPUs ({info['cpu']}), "
        f"{info['memory_gib']} GiB, Linux {info['kernel']}, {info['tmp_fs']} under {info['tmp_dir']}; "
        f"median of {args.reps}{', pinned to one CPU' if args.pin else ''}"
        f"{', --quick sizes' if args.quick else ''}{', reads without an upper' if args.ro else ''}; load average {info['load_average_at_start'][0]:.2f} "
        f"at start, {info['load_average_at_end'][0]:.2f} at end")
    log("")
    log(table)
    log("")
    log(legend)
    log("")
    log(spread)
    log("")
    for n in bench.notes:
        log(f"note: {n}")
    log(f"\nbenchmarks took {elapsed:.0f} s; results in {args.results}")
    with open(os.path.join(args.results, "table.md"), "w") as f:
        f.write(table + "\n\n" + legend + "\n\n" + spread + "\n")
    with open(os.path.join(args.results, "results.json"), "w") as f:
        json.dump({"machine": info, "quick": args.quick, "reps": args.reps, "pinned": args.pin,
                   "reads_without_upper": args.ro,
                   "sizes": {**bench.manifest["sizes"], **bench.sizes},
                   "dataset": {k: v for k, v in bench.manifest.items() if k not in ("layers",)},
                   "notes": bench.notes, "results": records}, f, indent=1)
    with open(os.path.join(args.results, "results.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["benchmark", "label", "target", "unit", "better", "median", "min", "max", "n", "status"])
        for r in records:
            w.writerow([r["benchmark"], r["label"], r["target"], r["unit"], r["better"], r["median"],
                        r["min"], r["max"], r["n"], r["status"]])


if __name__ == "__main__":
    main()
